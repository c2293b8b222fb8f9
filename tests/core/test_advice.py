"""The advice table: every code of PROVIDERS.md has a cause and a fix, and the errors built from it keep the
provider's own words."""

from __future__ import annotations

import pytest

from mailgate import advice
from mailgate.errors import (
    ReauthorizationRequiredError,
    SmtpAuthenticationError,
    SmtpPermanentError,
    SmtpTransientError,
)
from mailgate.oauth.protocol import error_from_token_answer
from mailgate.smtp.replies import error_from_reply

URI = "https://mail.example.com/ddenterpriseapi/v2/oauth/redirect"


@pytest.mark.parametrize(
    ("code", "fix_part"),
    [
        ("7000215", "Value"),
        ("7000222", "Create a new client secret"),
        ("700082", "authorize again"),
        ("70008", "authorize again"),
        ("50173", "authorize again"),
        ("65001", "admin consent"),
        ("50011", URI),
        ("500112", URI),
        ("50194", "Directory (tenant) ID"),
        ("90002", "Tenant field"),
        ("700016", "Client ID"),
        ("70011", "report it"),
        ("900144", "report it"),
    ],
)
def test_every_aadsts_code_of_the_providers_table(code: str, fix_part: str) -> None:
    found = advice.token_error("invalid_grant", f"AADSTS{code}: something. Trace ID: 1", redirect_uri=URI)
    assert found.cause and fix_part in found.fix


def test_redirect_uri_mismatch_names_the_exact_uri_to_register() -> None:
    for found in (
        advice.authorization_error("redirect_uri_mismatch", "", redirect_uri=URI),
        advice.token_error("redirect_uri_mismatch", "Bad Request", redirect_uri=URI),
        advice.authorization_error(
            "invalid_request", "AADSTS50011: The redirect URI ... does not match", redirect_uri=URI
        ),
    ):
        assert found.fix.endswith(f"trailing slash must be identical): {URI}")
    # Without the flow's URI (a refresh), it points at the OAuth page instead of leaving a placeholder.
    assert "{uri}" not in advice.token_error("invalid_grant", "AADSTS50011: x").fix


def test_invalid_grant_names_the_likely_causes_per_provider() -> None:
    google = advice.token_error("invalid_grant", "Token has been expired or revoked.")
    assert "Testing (tokens die 7 days after consent)" in google.cause and "6 months" in google.cause
    assert "password" in google.cause and "revoked" in google.cause and "Publish app" in google.fix
    microsoft = advice.token_error("invalid_grant", "AADSTS50173: The provided grant has expired.")
    assert "changed the password" in microsoft.cause
    unknown_ms = advice.token_error("invalid_grant", "AADSTS12345: new code")
    assert "90 days without use" in unknown_ms.cause and "MFA" in unknown_ms.cause


@pytest.mark.parametrize(
    ("error", "part"),
    [
        ("invalid_client", "secret is wrong or expired"),
        ("unauthorized_client", "Domain-wide delegation"),
        ("admin_policy_enforced", "API controls"),
        ("access_denied", "Consent was denied"),
    ],
)
def test_oauth_error_codes(error: str, part: str) -> None:
    found = advice.authorization_error(error) if error != "invalid_client" else advice.token_error(error, "")
    assert part in f"{found.cause} {found.fix}"


def test_token_errors_keep_the_provider_text_whole() -> None:
    description = "AADSTS7000222: The provided client secret keys are expired. Trace ID: abc Correlation ID: def"
    err = error_from_token_answer(401, {"error": "invalid_client", "error_description": description}, "")
    assert err.provider_text == description and err.error_code == "AADSTS7000222"
    assert "expired" in err.cause and err.hint.startswith("Create a new client secret")
    assert err.to_dict()["provider_text"] == description and err.to_dict()["cause"] == err.cause
    assert str(err) == f"{err.message} {err.cause} {err.hint}"
    dead = error_from_token_answer(400, {"error": "invalid_grant", "error_description": "Bad Request"}, "")
    assert isinstance(dead, ReauthorizationRequiredError) and "Testing" in dead.cause


@pytest.mark.parametrize(
    ("code", "text", "during", "cls", "part"),
    [
        (535, "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.", "auth",
         SmtpAuthenticationError, "Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false"),
        (535, "5.7.3 Authentication unsuccessful", "auth", SmtpAuthenticationError, "New-ServicePrincipal"),
        (550, "5.7.30 Basic authentication is not supported for Client Submission.", "auth",
         SmtpAuthenticationError, "Set Authentication to oauth"),
        (550, "5.7.60 SMTP; Client does not have permissions to send as this sender", "mail",
         SmtpPermanentError, "Send As"),
        (454, "4.7.0 Too many login attempts, please try again later.", "connect", SmtpTransientError, "retries"),
        (432, "4.3.2 Concurrent connections limit exceeded.", "mail", SmtpTransientError, "max_connections"),
        (501, "5.5.127 Token will expire soon", "auth", SmtpTransientError, "fresh token"),
    ],
)  # fmt: skip
def test_smtp_answers_of_the_providers_table(code: int, text: str, during: str, cls: type, part: str) -> None:
    err = error_from_reply(code, text, during=during)
    assert type(err) is cls
    assert err.cause and part in err.hint and err.reply == text  # the server's words kept whole
    assert err.message.endswith(f"{code} {text}")
