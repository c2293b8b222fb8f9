"""The public API of mailgate.smtp is pinned: changing it is a decision, not an accident."""

from __future__ import annotations

import mailgate.smtp


def test_public_names() -> None:
    assert sorted(mailgate.smtp.__all__) == [
        "Attachment",
        "SendResult",
        "SmtpConnection",
        "Step",
        "TokenSource",
        "build_message",
        "error_from_exception",
        "error_from_reply",
        "oauthbearer_initial_response",
        "parse_error_challenge",
        "parse_mailbox",
        "test_connection",
        "xoauth2_initial_response",
    ]
    for name in mailgate.smtp.__all__:
        assert getattr(mailgate.smtp, name).__doc__, name


def test_test_connection_is_not_collected_by_pytest() -> None:
    assert mailgate.smtp.test_connection.__test__ is False  # type: ignore[attr-defined]
