from pathlib import Path

import pytest

from mailgate.config import Settings
from mailgate.errors import ConfigurationError, ValidationError
from mailgate.providers import bundled_catalogue_text, check_endpoint_url, load_catalogue, validate_tenant
from mailgate.types import Security


def test_bundled_catalogue_has_the_guides_providers() -> None:
    cat = load_catalogue(bundled_catalogue_text())
    google, microsoft = cat.get("google"), cat.get("microsoft")
    assert google.authorization_url_for("") == "https://accounts.google.com/o/oauth2/v2/auth"
    assert google.token_url_for("") == "https://oauth2.googleapis.com/token"
    assert ("access_type", "offline") in google.authorization_params
    assert ("prompt", "consent") in google.authorization_params
    assert "https://mail.google.com/" in google.scopes
    assert microsoft.requires_tenant
    assert microsoft.token_url_for("contoso.onmicrosoft.com") == (
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    )
    assert {"https://outlook.office.com/SMTP.Send", "offline_access"} <= set(microsoft.scopes)
    assert (google.smtp_host, google.smtp_port, google.smtp_security) == ("smtp.gmail.com", 587, Security.STARTTLS)
    assert (microsoft.smtp_host, microsoft.smtp_port) == ("smtp.office365.com", 587)
    assert microsoft.messages_per_minute == 30 and microsoft.max_connections == 3
    assert "sandbox" in cat.names()


def test_override_file_changes_fields_and_adds_providers() -> None:
    override = """
[providers.microsoft]
authorization_url = "https://login.microsoftonline.us/{tenant}/oauth2/v2.0/authorize"
token_url = "https://login.microsoftonline.us/{tenant}/oauth2/v2.0/token"

[providers.corp]
label = "Corp IdP"
authorization_url = "https://idp.corp.example/authorize"
token_url = "https://idp.corp.example/token"
scopes = ["smtp"]
smtp_host = "mail.corp.example"
smtp_port = 465
smtp_security = "ssl"
"""
    cat = load_catalogue(bundled_catalogue_text(), override, "test.toml")
    assert cat.get("microsoft").token_url_for("t").startswith("https://login.microsoftonline.us/t/")
    assert cat.get("microsoft").smtp_host == "smtp.office365.com"  # untouched fields kept
    assert cat.get("corp").smtp_security is Security.SSL


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[providers.google]\ntoken_url = "http://evil.example/token"\n', "https://"),
        ("[providers.google]\nbogus = 1\n", "unknown field"),
        ('[providers.new]\nlabel = "x"\n', "incomplete"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_override_files_are_refused_with_a_reason(text: str, needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        load_catalogue(bundled_catalogue_text(), text, "test.toml")


def test_https_required_except_on_loopback() -> None:
    assert check_endpoint_url("https://login.microsoftonline.com/x") is None
    assert check_endpoint_url("http://127.0.0.1:8765/token") is None
    assert check_endpoint_url("http://localhost/token") is None
    assert check_endpoint_url("http://[::1]:99/token") is None
    assert check_endpoint_url("http://10.0.0.1/token") is not None
    assert check_endpoint_url("ftp://x/y") is not None


@pytest.mark.parametrize(
    "tenant",
    ["72f988bf-86f1-41af-91ab-2d7cd011db47", "contoso.onmicrosoft.com", "organizations", "common", "consumers"],
)
def test_valid_tenants(tenant: str) -> None:
    assert validate_tenant(tenant) is None


@pytest.mark.parametrize("tenant", ["", "not a tenant", "../../x", "72f988bf-86f1", "a" * 300, "x/y"])
def test_invalid_tenants(tenant: str) -> None:
    assert validate_tenant(tenant)


def test_unknown_provider_names_the_choices() -> None:
    cat = load_catalogue(bundled_catalogue_text())
    with pytest.raises(ValidationError) as info:
        cat.get("yahoo")
    assert "google" in info.value.errors["provider"]


def test_settings_from_env(tmp_path: Path) -> None:
    env = {
        "MAILGATE_DATA_DIR": str(tmp_path),
        "MAILGATE_BASE_URL": "https://mail.example.com",
        "MAILGATE_SECRET_KEY": "k",
        "MAILGATE_ADMIN_PASSWORD": "pw",
    }
    settings = Settings.from_env(env)
    assert settings.default_redirect_uri == "https://mail.example.com/ddenterpriseapi/v2/oauth/redirect"
    assert settings.resolved_database_url.endswith(f"{tmp_path}/mailgate.db")
    assert "pw" not in repr(settings) and "'k'" not in repr(settings)
    assert Settings().default_redirect_uri == "http://localhost:8080/ddenterpriseapi/v2/oauth/redirect"
