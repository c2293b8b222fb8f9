import base64
import json
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

from mailgate.errors import ReauthorizationRequiredError, TokenEndpointError
from mailgate.oauth.pkce import code_challenge, new_code_verifier
from mailgate.oauth.protocol import (
    account_from_id_token,
    authorization_url,
    error_from_token_answer,
    parse_token_response,
    refresh_body,
)
from mailgate.providers import bundled_catalogue_text, load_catalogue
from mailgate.types import OAuthConfig

CAT = load_catalogue(bundled_catalogue_text())
REDIRECT = "http://localhost:8080/ddenterpriseapi/v2/oauth/redirect"


def _config(provider: str, tenant: str = "") -> OAuthConfig:
    return OAuthConfig(provider=provider, tenant=tenant, client_id="cid", client_secret="s3cret", redirect_uri=REDIRECT)


def test_pkce_rfc7636_appendix_b_vector() -> None:
    assert (
        code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )
    verifier = new_code_verifier()
    assert 43 <= len(verifier) <= 128


def test_google_authorization_url_asks_offline_access_and_consent() -> None:
    url = authorization_url(CAT.get("google"), _config("google"), state="st", code_verifier="v" * 50)
    parts = urlsplit(url)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://accounts.google.com/o/oauth2/v2/auth"
    assert q["access_type"] == "offline" and q["prompt"] == "consent"
    assert q["code_challenge_method"] == "S256" and q["code_challenge"] == code_challenge("v" * 50)
    assert q["state"] == "st" and q["redirect_uri"] == REDIRECT and q["response_type"] == "code"
    assert set(q["scope"].split()) == {"https://mail.google.com/", "openid", "email"}
    assert "s3cret" not in url


def test_microsoft_authorization_url_has_tenant_and_smtp_scope() -> None:
    url = authorization_url(
        CAT.get("microsoft"), _config("microsoft", "contoso.com"), state="s", code_verifier="v" * 50
    )
    assert url.startswith("https://login.microsoftonline.com/contoso.com/oauth2/v2.0/authorize?")
    scope = parse_qs(urlsplit(url).query)["scope"][0].split()
    assert "https://outlook.office.com/SMTP.Send" in scope and "offline_access" in scope


def test_refresh_body_for_microsoft_repeats_the_scope() -> None:
    body = refresh_body(_config("microsoft", "common"), CAT.get("microsoft"), "rt")
    assert body["grant_type"] == "refresh_token" and body["refresh_token"] == "rt"
    assert "SMTP.Send" in body["scope"]


def test_token_response_parsing() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    answer = parse_token_response({"access_token": "AT-xyz", "expires_in": 3599, "refresh_token": "RT-xyz"}, now=now)
    assert (answer.expires_at - now).total_seconds() == 3599
    assert answer.refresh_token == "RT-xyz"
    assert "AT-xyz" not in repr(answer) and "RT-xyz" not in repr(answer)


def test_aadsts_errors_carry_the_code_and_what_to_do() -> None:
    err = error_from_token_answer(
        401,
        {
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x",
        },
        "",
    )
    assert type(err) is TokenEndpointError
    assert err.error_code == "AADSTS7000215" and "Value" in err.hint and "Trace ID" not in err.message
    grant = error_from_token_answer(400, {"error": "invalid_grant", "error_description": "AADSTS70008: expired"}, "")
    assert isinstance(grant, ReauthorizationRequiredError)
    google = error_from_token_answer(
        400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}, ""
    )
    assert isinstance(google, ReauthorizationRequiredError) and "authorize again" in google.hint


def _jwt(claims: dict[str, object]) -> str:
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{enc({'alg': 'RS256'})}.{enc(claims)}.sig"


def test_account_from_id_token() -> None:
    assert account_from_id_token(_jwt({"email": "a@example.com"})) == "a@example.com"
    assert account_from_id_token(_jwt({"preferred_username": "b@contoso.com"})) == "b@contoso.com"
    assert account_from_id_token("garbage") == ""
    assert account_from_id_token("a.!!!.c") == ""


def test_access_log_redaction() -> None:
    from mailgate.web.logfilter import redact_url

    assert redact_url("/cb?code=abc&state=x&page=2") == "/cb?code=[redacted]&state=[redacted]&page=2"
    assert redact_url("/x?status=queued") == "/x?status=queued"
    assert redact_url('GET /a?refresh_token=r1 HTTP/1.1"') == 'GET /a?refresh_token=[redacted] HTTP/1.1"'
