"""The pure parts of the HTTP deliveries: Bcc for envelope-only recipients, Retry-After, scopes per delivery."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from mailgate.cli.main import app
from mailgate.errors import PermanentDeliveryError
from mailgate.httpsend import header_recipients, retry_after_seconds, with_envelope_recipients
from mailgate.providers import bundled_catalogue_text, load_catalogue, scopes_for
from mailgate.types import Delivery

MESSAGE = b'From: a@example.com\r\nTo: "Bob, B." <bob@example.com>\r\nCc: carol@example.com\r\nSubject: x\r\n\r\nhi\r\n'


def test_envelope_only_recipients_become_a_folded_bcc_header() -> None:
    rcpts = ["bob@example.com", "Carol@example.com", "d@example.com", "e@example.com"]
    out = with_envelope_recipients(MESSAGE, rcpts, "Graph")
    assert out == b"Bcc: d@example.com,\r\n e@example.com\r\n" + MESSAGE
    assert header_recipients(out) == ["bob@example.com", "carol@example.com", "d@example.com", "e@example.com"]
    assert with_envelope_recipients(MESSAGE, ["bob@example.com", "carol@example.com"], "Graph") == MESSAGE


def test_internationalised_addresses_compare_with_the_envelope() -> None:
    # RFC 6532: raw UTF-8 in the headers; read as bytes they would not match the envelope, and be refused.
    message = "From: a@example.com\r\nTo: Jösé <jösé@exämple.com>\r\nSubject: x\r\n\r\nhi\r\n".encode()
    assert header_recipients(message) == ["jösé@exämple.com"]
    out = with_envelope_recipients(message, ["jösé@exämple.com", "z@example.com"], "the Gmail API")
    assert out == b"Bcc: z@example.com\r\n" + message


def test_a_header_recipient_outside_the_envelope_is_refused() -> None:
    # A retry for the recipients still pending: the API would deliver to carol again.
    with pytest.raises(PermanentDeliveryError, match=r"carol@example\.com"):
        with_envelope_recipients(MESSAGE, ["bob@example.com"], "Microsoft Graph")


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2026, 12, 6, 3, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Sun, 06 Dec 2026 03:01:30 GMT", now) == 90.0
    assert retry_after_seconds("Sun, 06 Dec 2026 02:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_scopes_follow_the_grant_and_the_delivery() -> None:
    catalogue = load_catalogue(bundled_catalogue_text())
    microsoft, google = catalogue.get("microsoft"), catalogue.get("google")
    assert scopes_for(microsoft, "authorization_code", Delivery.SMTP) == microsoft.scopes
    assert scopes_for(microsoft, "authorization_code", "graph") == (
        "https://graph.microsoft.com/Mail.Send", "offline_access", "openid", "email",
    )  # fmt: skip
    assert scopes_for(microsoft, "client_credentials", "graph") == ("https://graph.microsoft.com/.default",)
    assert scopes_for(google, "authorization_code", "gmail_api") == (
        "https://www.googleapis.com/auth/gmail.send", "openid", "email",
    )  # fmt: skip
    assert scopes_for(google, "jwt_bearer", "gmail_api") == ("https://www.googleapis.com/auth/gmail.send",)
    assert microsoft.graph_url == "https://graph.microsoft.com" and google.gmail_url == "https://gmail.googleapis.com"


def test_api_urls_must_be_https_except_on_loopback() -> None:
    from mailgate.errors import ConfigurationError

    override = '[providers.microsoft]\ngraph_url = "http://graph.example.com"\n'
    with pytest.raises(ConfigurationError, match="graph_url must use https"):
        load_catalogue(bundled_catalogue_text(), override)
    local = load_catalogue(bundled_catalogue_text(), '[providers.google]\ngmail_url = "http://127.0.0.1:9"\n')
    assert local.get("google").gmail_url == "http://127.0.0.1:9"


def test_delivery_from_the_command_line(tmp_path: Path) -> None:
    def run(*args: str) -> Result:
        env = {"MAILGATE_ADMIN_PASSWORD": "", "COLUMNS": "200"}
        return CliRunner().invoke(app, [*args, "--data-dir", str(tmp_path)], env=env)

    ms = ["--provider", "microsoft", "--client-id", "client-1", "--client-secret", "s3cret", "--tenant", "contoso.com"]
    assert run("oauth", "configure", *ms).exit_code == 0
    graph = run("email", "configure", "--delivery", "graph", "--username", "reports@contoso.com")
    assert graph.exit_code == 0, graph.output  # no --host needed
    # The delivery is kept when --delivery is left out: graph needs Username (sending as it), so this passes.
    kept = run("email", "configure", "--sender", "reports@contoso.com", "--username", "reports@contoso.com")
    assert kept.exit_code == 0, kept.output
    password = run("email", "configure", "--authentication", "none")
    assert password.exit_code == 1 and "must be oauth for delivery graph" in password.output, password.output
    wrong = run("email", "configure", "--delivery", "gmail_api")
    assert wrong.exit_code == 1 and "gmail_api needs a Google provider" in wrong.output, wrong.output
