"""SASL message building and error challenge parsing (pure functions)."""

from __future__ import annotations

import base64

import pytest

from mailgate.smtp import oauthbearer_initial_response, parse_error_challenge, xoauth2_initial_response
from mailgate.smtp.auth import SaslReply


def decode(b64: str) -> bytes:
    return base64.b64decode(b64, validate=True)


def test_xoauth2_initial_response() -> None:
    # The example of Google's XOAUTH2 document.
    b64 = xoauth2_initial_response("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg")
    assert (
        decode(b64) == b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
    )


def test_oauthbearer_initial_response_rfc7628_example() -> None:
    # RFC 7628 s4.1 (without the example's line wrapping).
    b64 = oauthbearer_initial_response(
        "user@example.com", "server.example.com", 143, "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="
    )
    assert decode(b64) == (
        b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
        b"auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
    )


def test_oauthbearer_escapes_the_authzid() -> None:
    # RFC 5801 s4: "," and "=" in a saslname.
    assert decode(oauthbearer_initial_response("a=b,c@example.com", "h", 587, "t")).startswith(
        b"n,a=a=3Db=2Cc@example.com,\x01"
    )


@pytest.mark.parametrize("token", ["", "with space", "line\r\nbreak", "sep\x01arator"])
def test_unusable_tokens_are_refused_without_showing_them(token: str) -> None:
    with pytest.raises(ValueError) as caught:
        xoauth2_initial_response("user@example.com", token)
    assert "access token" in str(caught.value)
    if token:
        assert token not in str(caught.value)
    with pytest.raises(ValueError):
        oauthbearer_initial_response("user@example.com", "h", 587, token)


def test_parse_gmail_error_challenge() -> None:
    challenge = "eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ=="
    assert parse_error_challenge(challenge) == {
        "status": "400",
        "schemes": "Bearer",
        "scope": "https://mail.google.com/",
    }


def test_parse_error_challenge_without_padding_and_with_numbers() -> None:
    raw = base64.b64encode(b'{"status": 401, "scope": ["a", "b"]}').decode().rstrip("=")
    assert parse_error_challenge(raw) == {"status": "401", "scope": '["a", "b"]'}


GARBAGE = [b"\xff\xfe", b"plain text", b"[1, 2]"]


@pytest.mark.parametrize("garbage", ["", "   ", "not base64!", *(base64.b64encode(g).decode() for g in GARBAGE)])
def test_parse_error_challenge_tolerates_garbage(garbage: str) -> None:
    assert parse_error_challenge(garbage) == {}


@pytest.mark.parametrize(
    ("reply", "rejected"),
    [
        (SaslReply(535, "5.7.8 Username and Password not accepted.", {"status": "400"}), True),
        (SaslReply(535, "5.7.3 Authentication unsuccessful"), True),
        (SaslReply(535, "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled"), False),
        (SaslReply(501, "5.5.127 Token will expire soon"), True),
        (SaslReply(454, "4.7.0 Too many login attempts, please try again later."), False),
        (SaslReply(454, "4.7.0 whatever", {"status": "401"}), True),
        (SaslReply(535, "5.7.8 x", {"status": "invalid_token"}), True),
    ],
)
def test_when_a_fresh_token_may_help(reply: SaslReply, rejected: bool) -> None:
    assert reply.token_rejected is rejected
