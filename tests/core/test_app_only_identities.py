"""App-only identities without a provider: the claims (pure), the signatures (checked with the public key), the
scopes, and the validation of the grant fields (422 naming the field, nothing stored)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mailgate.configure import OAuthConfigUpdate
from mailgate.errors import ConfigurationError
from mailgate.oauth.assertions import (
    app_only_body,
    client_assertion_claims,
    service_account_claims,
)
from mailgate.providers import bundled_catalogue_text, load_catalogue, scopes_for
from mailgate.sandbox.apponly import AppOnlyRegistry
from mailgate.types import Grant, OAuthConfig

API = "/ddenterpriseapi/v2"
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
TOKEN_URL = "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"


def _decode(part: str) -> dict[str, Any]:
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


@pytest.fixture(scope="module")
def cert() -> dict[str, str]:
    return AppOnlyRegistry().register_certificate("cid-1")


@pytest.fixture(scope="module")
def sa_key() -> dict[str, str]:
    key = AppOnlyRegistry().register_service_account(mailboxes=["boss@example.com"])
    return {**key, "token_uri": "https://oauth2.googleapis.com/token"}


def test_client_assertion_claims_follow_microsofts_format() -> None:
    claims = client_assertion_claims("cid-1", TOKEN_URL, now=1_000, jti="j-1")
    assert claims == {
        "aud": TOKEN_URL,
        "iss": "cid-1",
        "sub": "cid-1",
        "jti": "j-1",
        "iat": 1_000,
        "nbf": 1_000,
        "exp": 1_600,
    }


def test_service_account_claims_live_at_most_an_hour() -> None:
    claims = service_account_claims(
        "sa@p.iam.gserviceaccount.com", "boss@example.com", ["s1", "s2"], "https://t", now=5
    )
    assert claims == {
        "iss": "sa@p.iam.gserviceaccount.com",
        "sub": "boss@example.com",
        "scope": "s1 s2",
        "aud": "https://t",
        "iat": 5,
        "exp": 3605,
    }


def test_certificate_body_carries_a_signed_assertion_with_both_thumbprints(cert: dict[str, str]) -> None:
    config = OAuthConfig(
        provider="microsoft",
        tenant="contoso.onmicrosoft.com",
        client_id="cid-1",
        client_secret="",
        redirect_uri="",
        grant=Grant.CLIENT_CREDENTIALS,
        mailbox="app@contoso.com",
        certificate_pem=cert["certificate_pem"],
        private_key_pem=cert["private_key_pem"],
    )
    body = app_only_body(config, TOKEN_URL, ("https://outlook.office365.com/.default",), now=NOW)
    assert body["grant_type"] == "client_credentials" and "client_secret" not in body
    assert body["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    head, claims, signature = body["client_assertion"].split(".")
    header = _decode(head)
    der = x509.load_pem_x509_certificate(cert["certificate_pem"].encode()).public_bytes(serialization.Encoding.DER)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    assert header["x5t#S256"] == base64.urlsafe_b64encode(digest.finalize()).rstrip(b"=").decode()
    assert header["alg"] == "RS256" and header["x5t"]
    assert _decode(claims)["exp"] - _decode(claims)["nbf"] <= 600
    public = x509.load_pem_x509_certificate(cert["certificate_pem"].encode()).public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    public.verify(raw, f"{head}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())  # raises if wrong
    # Each token request signs a new assertion (Microsoft refuses a replayed jti).
    again = app_only_body(config, TOKEN_URL, ("x",), now=NOW)["client_assertion"]
    assert _decode(again.split(".")[1])["jti"] != _decode(claims)["jti"]


def test_secrets_stay_out_of_reprs(cert: dict[str, str], sa_key: dict[str, str]) -> None:
    config = OAuthConfig(
        provider="google",
        tenant="",
        client_id="1",
        client_secret="the-secret",
        redirect_uri="",
        grant=Grant.SERVICE_ACCOUNT,
        private_key_pem=cert["private_key_pem"],
        service_account_key=json.dumps(sa_key),
    )
    update = OAuthConfigUpdate(private_key_pem=cert["private_key_pem"], service_account_key=json.dumps(sa_key))
    for text in (repr(config), repr(update)):
        assert "PRIVATE KEY" not in text and "the-secret" not in text


def test_scopes_for_each_grant() -> None:
    catalogue = load_catalogue(bundled_catalogue_text())
    microsoft, google = catalogue.get("microsoft"), catalogue.get("google")
    assert scopes_for(microsoft, Grant.AUTHORIZATION_CODE) == microsoft.scopes
    assert scopes_for(microsoft, Grant.CLIENT_CREDENTIALS) == ("https://outlook.office365.com/.default",)
    assert scopes_for(google, Grant.SERVICE_ACCOUNT) == ("https://mail.google.com/",)
    with pytest.raises(ConfigurationError):
        scopes_for(microsoft, Grant.CLIENT_CREDENTIALS, delivery="carrier-pigeon")


MS_APP = {
    "provider": "microsoft",
    "tenant": "contoso.onmicrosoft.com",
    "grant": "client_credentials",
    "client_id": "cid-1",
    "mailbox": "app@contoso.com",
}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({**MS_APP}, "client_secret"),  # neither a secret nor a certificate
        ({**MS_APP, "client_secret": "s", "mailbox": ""}, "mailbox"),
        ({**MS_APP, "client_secret": "s", "mailbox": "not-an-address"}, "mailbox"),
        ({**MS_APP, "grant": "service_account", "client_secret": "s"}, "grant"),  # Microsoft offers no such grant
        ({**MS_APP, "grant": "password"}, "grant"),
        ({**MS_APP, "certificate_pem": "-----BEGIN CERTIFICATE-----\nxx\n", "private_key_pem": "k"}, "certificate"),
        (
            {"provider": "google", "grant": "service_account", "mailbox": "a@b.c", "service_account_key": "{"},
            "service_account_key",
        ),
        ({"provider": "google", "grant": "service_account", "mailbox": "a@b.c"}, "service_account_key"),
        (
            {
                "provider": "google",
                "grant": "client_credentials",
                "client_id": "x",
                "client_secret": "s",
                "mailbox": "a@b.c",
            },
            "grant",
        ),
    ],
)
async def test_bad_grant_fields_are_422_naming_the_field_and_nothing_is_stored(
    api: httpx.AsyncClient, fields: dict[str, Any], field: str
) -> None:
    r = await api.put(f"{API}/oauth/config", json=fields)
    assert r.status_code == 422, r.text
    assert field in r.json()["fields"], r.json()
    assert (await api.get(f"{API}/oauth/config")).json()["provider"] == ""


async def test_a_private_key_of_another_certificate_is_refused(api: httpx.AsyncClient, cert: dict[str, str]) -> None:
    other = AppOnlyRegistry().register_certificate("cid-1")
    r = await api.put(
        f"{API}/oauth/config",
        json={**MS_APP, "certificate_pem": cert["certificate_pem"], "private_key_pem": other["private_key_pem"]},
    )
    assert r.status_code == 422 and "does not belong to the certificate" in r.json()["fields"]["private_key"]
    encrypted = serialization.load_pem_private_key(cert["private_key_pem"].encode(), None).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    r = await api.put(
        f"{API}/oauth/config",
        json={**MS_APP, "certificate_pem": cert["certificate_pem"], "private_key_pem": encrypted.decode()},
    )
    assert r.status_code == 422 and "without a password" in r.json()["fields"]["private_key"]


async def test_certificate_replaces_the_secret_and_a_new_secret_replaces_the_certificate(
    api: httpx.AsyncClient, cert: dict[str, str]
) -> None:
    r = await api.put(f"{API}/oauth/config", json={**MS_APP, "client_secret": "s3cret"})
    assert r.status_code == 200 and r.json()["certificate_set"] is False
    r = await api.put(
        f"{API}/oauth/config",
        json={"certificate_pem": cert["certificate_pem"], "private_key_pem": cert["private_key_pem"]},
    )
    assert r.status_code == 200 and r.json()["certificate_set"] is True, r.text
    assert r.json()["client_secret_set"] is False
    r = await api.put(f"{API}/oauth/config", json={"mailbox": "other@contoso.com"})  # keeps the certificate
    assert r.json()["certificate_set"] is True and r.json()["mailbox"] == "other@contoso.com"
    r = await api.put(f"{API}/oauth/config", json={"client_secret": "new-secret"})
    assert r.json()["certificate_set"] is False and r.json()["client_secret_set"] is True


def test_every_provider_keeps_its_name_with_the_app_only_fields() -> None:
    catalogue = load_catalogue(
        bundled_catalogue_text(),
        '[providers.extra]\nlabel = "X"\nauthorization_url = "https://x/a"\n'
        'token_url = "https://x/t"\nscopes = ["s"]\nsmtp_host = "x"\nsmtp_port = 587\n'
        'smtp_security = "starttls"\napp_grants = ["client_credentials"]\napp_scopes = ["y"]\n',
    )
    assert {name: spec.name for name, spec in catalogue.providers.items()} == {n: n for n in catalogue.providers}
    assert catalogue.get("extra").app_grants == ("client_credentials",)
