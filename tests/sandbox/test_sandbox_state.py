"""The sandbox's rules as pure logic: expiry with a fake clock, PKCE, client auth, grants, SMTP checks."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from mailgate.sandbox import SandboxClient, SandboxConfig
from mailgate.sandbox.authorize import add_query
from mailgate.sandbox.client_auth import parse_basic_auth
from mailgate.sandbox.problems import AuthorizationPageError, AuthorizationRedirectError, TokenError
from mailgate.sandbox.state import SandboxState
from mailgate.sandbox.tokens import ACCESS_TOKEN_MIN_LENGTH, make_access_token, pkce_s256

from .helpers import CLIENT, REDIRECT_URI, FakeClock, pkce_pair

SCOPE = "https://outlook.office.com/SMTP.Send offline_access openid email"


class Harness:
    def __init__(self, **config: Any) -> None:
        self.clock = FakeClock()
        self.state = SandboxState(SandboxConfig(**config), clock=self.clock)
        self.verifier = ""

    def code(self, account: str = "alice@sandbox.test", **params: str) -> str:
        self.verifier, challenge = pkce_pair()
        request = self.state.begin_authorization(
            {
                "response_type": "code",
                "client_id": "sandbox-client",
                "redirect_uri": REDIRECT_URI,
                "scope": SCOPE,
                "state": "s",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                **params,
            },
            tenant="sandbox",
            flavor="microsoft",
        )
        url = self.state.decide(request.consent_id, account=account, accept=True)
        return url.split("code=")[1].split("&")[0]

    def token(self, **form: str) -> dict[str, object]:
        return self.state.token_request(
            {**CLIENT, **form}, tenant="sandbox", flavor="microsoft", issuer="http://sandbox/sandbox/v2.0"
        )

    def exchange(self, code: str, **form: str) -> dict[str, object]:
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
        return self.token(**{**data, "code_verifier": self.verifier, **form})

    def refresh(self, refresh_token: object) -> dict[str, object]:
        return self.token(grant_type="refresh_token", refresh_token=str(refresh_token))


def test_pkce_s256_matches_rfc7636_appendix_b() -> None:
    assert pkce_s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_access_tokens_are_long_and_random() -> None:
    first, second = make_access_token(), make_access_token()
    assert len(first) >= ACCESS_TOKEN_MIN_LENGTH and first != second


def test_add_query_keeps_an_existing_query() -> None:
    assert add_query("http://localhost/cb?x=1", {"code": "a b"}) == "http://localhost/cb?x=1&code=a+b"


def test_codes_expire() -> None:
    harness = Harness(authorization_code_lifetime=60)
    code = harness.code()
    harness.clock.advance(61)
    with pytest.raises(TokenError) as caught:
        harness.exchange(code)
    assert (caught.value.error, caught.value.aadsts) == ("invalid_grant", 70008)


def test_code_of_another_client_is_refused() -> None:
    other = SandboxClient("other", "other-secret", (REDIRECT_URI,))
    harness = Harness(clients=(SandboxConfig().clients[0], other))
    code = harness.code()
    with pytest.raises(TokenError) as caught:
        harness.exchange(code, client_id="other", client_secret="other-secret")
    assert caught.value.error == "invalid_grant"


def test_refresh_tokens_expire_after_inactivity() -> None:
    harness = Harness(refresh_token_lifetime=100, rotate_refresh_tokens=False)
    tokens = harness.exchange(harness.code())
    harness.clock.advance(90)
    harness.refresh(tokens["refresh_token"])  # use slides the window (Google style)
    harness.clock.advance(90)
    harness.refresh(tokens["refresh_token"])
    harness.clock.advance(101)
    with pytest.raises(TokenError) as caught:
        harness.refresh(tokens["refresh_token"])
    assert "Token has been expired or revoked" in caught.value.ms_text


def test_access_tokens_expire_for_smtp() -> None:
    harness = Harness(access_token_lifetime=100)
    tokens = harness.exchange(harness.code())
    token = str(tokens["access_token"])
    assert harness.state.check_smtp_token(token, "alice@sandbox.test").account == "alice@sandbox.test"
    assert harness.state.check_smtp_token(token, "ALICE@sandbox.test").account == "alice@sandbox.test"
    harness.clock.advance(100)
    assert harness.state.check_smtp_token(token, "alice@sandbox.test").reason == "access token expired"


def test_smtp_check_reasons() -> None:
    harness = Harness()
    token = str(harness.exchange(harness.code())["access_token"])
    assert harness.state.check_smtp_token("nope", "").reason == "unknown access token"
    assert harness.state.check_smtp_token(token, "bob@sandbox.test").account is None
    assert harness.state.check_smtp_token(token, "").account == "alice@sandbox.test"  # OAUTHBEARER, no a=


def test_app_only_token_sends_as_the_named_mailbox() -> None:
    harness = Harness()
    body = harness.token(grant_type="client_credentials", scope="https://outlook.office365.com/.default")
    assert "refresh_token" not in body
    check = harness.state.check_smtp_token(str(body["access_token"]), "shared@sandbox.test")
    assert check.account == "shared@sandbox.test"


def test_client_credentials_refused_on_common() -> None:
    harness = Harness()
    with pytest.raises(TokenError) as caught:
        harness.state.token_request(
            {**CLIENT, "grant_type": "client_credentials", "scope": "https://outlook.office365.com/.default"},
            tenant="common",
            flavor="microsoft",
            issuer="",
        )
    assert caught.value.aadsts == 9001023


def test_revoking_an_access_token_revokes_its_grant() -> None:
    harness = Harness(rotate_refresh_tokens=False)
    tokens = harness.exchange(harness.code())
    assert harness.state.revoke(str(tokens["access_token"])) is True
    assert harness.state.check_smtp_token(str(tokens["access_token"]), "").account is None
    with pytest.raises(TokenError):
        harness.refresh(tokens["refresh_token"])
    assert harness.state.revoke("unknown") is False


def test_nonce_goes_into_the_id_token() -> None:
    import json

    harness = Harness()
    body = harness.exchange(harness.code(nonce="n-0S6_WzA2Mj"))
    payload = str(body["id_token"]).split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["nonce"] == "n-0S6_WzA2Mj"


def test_no_id_token_without_openid() -> None:
    harness = Harness()
    assert "id_token" not in harness.exchange(harness.code(scope="https://outlook.office.com/SMTP.Send"))


def test_consents_expire() -> None:
    harness = Harness()
    _, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": "sandbox-client",
        "redirect_uri": REDIRECT_URI,
        "scope": SCOPE,
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    request = harness.state.begin_authorization(params, tenant="t", flavor="microsoft")
    harness.clock.advance(3601)
    with pytest.raises(AuthorizationPageError):
        harness.state.decide(request.consent_id, account="a@b.test", accept=True)


def test_missing_state_goes_back_as_invalid_request() -> None:
    harness = Harness()
    with pytest.raises(AuthorizationRedirectError) as caught:
        harness.code(state="")
    assert caught.value.error == "invalid_request"


def test_restricted_tenants() -> None:
    harness = Harness(tenants=("contoso.onmicrosoft.com",))
    with pytest.raises(AuthorizationPageError) as caught:
        harness.state.begin_authorization({}, tenant="common", flavor="microsoft")
    assert caught.value.aadsts == 90002


def test_public_client_needs_no_secret() -> None:
    public = SandboxClient("public-app", "", (REDIRECT_URI,))
    harness = Harness(clients=(public,))
    harness.verifier, challenge = pkce_pair()
    request = harness.state.begin_authorization(
        {
            "response_type": "code",
            "client_id": "public-app",
            "redirect_uri": REDIRECT_URI,
            "scope": SCOPE,
            "state": "s",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
        tenant="sandbox",
        flavor="microsoft",
    )
    code = harness.state.decide(request.consent_id, account="a@b.test", accept=True).split("code=")[1].split("&")[0]
    body = harness.state.token_request(
        {
            "grant_type": "authorization_code",
            "client_id": "public-app",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": harness.verifier,
        },
        tenant="sandbox",
        flavor="microsoft",
        issuer="",
    )
    assert body["refresh_token"]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", None),
        ("Bearer abc", None),
        ("Basic " + base64.b64encode(b"id:se%3Acret").decode(), ("id", "se:cret")),  # RFC 6749 s.2.3.1
        ("basic " + base64.b64encode(b"my+id:x").decode(), ("my id", "x")),
    ],
)
def test_parse_basic_auth(header: str, expected: tuple[str, str] | None) -> None:
    assert parse_basic_auth(header) == expected


def test_malformed_basic_auth_is_invalid_client() -> None:
    with pytest.raises(TokenError) as caught:
        parse_basic_auth("Basic !!!")
    assert (caught.value.error, caught.value.status) == ("invalid_client", 401)


def test_error_bodies_per_flavor() -> None:
    error = TokenError.wrong_secret("sandbox-client")
    microsoft = error.body("microsoft")
    assert microsoft["error_codes"] == [7000215]
    assert str(microsoft["error_description"]).startswith("AADSTS7000215: Invalid client secret provided.")
    assert error.body("google") == {"error": "invalid_client", "error_description": "Unauthorized"}
