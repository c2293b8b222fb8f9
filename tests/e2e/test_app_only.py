"""Issue 24 end to end: app-only identities (Microsoft client credentials with a secret or a certificate, a Google
service account with domain-wide delegation) get tokens from the sandbox and deliver with SMTP XOAUTH2."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from mailgate.errors import TokenEndpointError

from .harness import API, Harness

MAILBOX = "app@sandbox.test"
TENANT = "contoso.onmicrosoft.com"


async def _server(h: Harness) -> None:
    r = await h.api.put(
        f"{API}/email/server",
        json={
            "host": "127.0.0.1",
            "port": h.sandbox.smtp_port,
            "security": "starttls",
            "authentication": "oauth",
            "ca_file": str(h.sandbox.ca_file),
        },
    )
    assert r.status_code == 200, r.text


async def _send_test(h: Harness) -> dict[str, Any]:
    r = await h.api.post(f"{API}/email/server/test", json={"send_to": "bob@example.com"})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _configure(h: Harness, **fields: Any) -> dict[str, Any]:
    r = await h.api.put(f"{API}/oauth/config", json=fields)
    assert r.status_code == 200, r.text
    await _server(h)
    return dict(r.json())


async def _client_credentials(h: Harness, certificate: dict[str, str] | None = None) -> None:
    """The sandbox's Microsoft app registration as "Application (client credentials)": with its secret, or
    with ``certificate`` (its ``certificate_pem`` and ``private_key_pem``)."""
    credential = (
        {"client_secret": "sandbox-secret"}
        if certificate is None
        else {"certificate_pem": certificate["certificate_pem"], "private_key_pem": certificate["private_key_pem"]}
    )
    await _configure(
        h,
        provider="microsoft",
        tenant=TENANT,
        grant="client_credentials",
        client_id="sandbox-client",
        mailbox=MAILBOX,
        **credential,
    )


async def test_client_credentials_with_a_secret_delivers_as_the_mailbox(harness: Harness) -> None:
    h = harness
    view = await _configure(
        h,
        provider="microsoft",
        tenant=TENANT,
        grant="client_credentials",
        client_id="sandbox-client",
        client_secret="sandbox-secret",
        mailbox=MAILBOX,
    )
    assert view["grant"] == "client_credentials" and view["token_status"] == "not_authorized"
    assert view["refresh_token_set"] is False and view["mailbox"] == MAILBOX
    server = (await h.api.get(f"{API}/email/server")).json()
    assert server["username"] == server["sender"] == MAILBOX  # the mailbox is the XOAUTH2 user

    result = await _send_test(h)
    assert result["ok"] is True, result
    [received] = h.sandbox.messages
    assert received.account == MAILBOX and list(received.rcpt_tos) == ["bob@example.com"]
    stats = h.sandbox.stats()
    assert stats["tokens_issued"]["client_credentials"] == 1 and stats["tokens_issued"]["refresh_token"] == 0
    view = (await h.api.get(f"{API}/oauth/config")).json()
    assert view["token_status"] == "valid" and view["account"] == MAILBOX and view["refresh_token_set"] is False


async def test_client_credentials_fetches_a_new_token_near_expiry_without_a_refresh_token(harness: Harness) -> None:
    h = harness
    await _client_credentials(h)
    first = await h.services.tokens.access_token()
    assert await h.services.tokens.access_token() == first  # cached
    h.clock.advance(3600 - 60)  # inside the refresh margin
    second = await h.services.tokens.access_token()
    assert second != first
    assert h.sandbox.stats()["tokens_issued"]["client_credentials"] == 2


async def test_client_credentials_with_a_certificate_signs_an_assertion(harness: Harness) -> None:
    h = harness
    registered = h.sandbox.register_app_certificate("sandbox-client")
    view = await _configure(
        h,
        provider="microsoft",
        tenant=TENANT,
        grant="client_credentials",
        client_id="sandbox-client",
        certificate_pem=registered["certificate_pem"],
        private_key_pem=registered["private_key_pem"],
        mailbox=MAILBOX,
    )
    assert view["certificate_set"] is True and view["certificate_thumbprint"] == registered["thumbprint"]
    assert view["certificate_expires_at"] and view["client_secret_set"] is False
    assert "private_key_pem" not in view and "PRIVATE KEY" not in json.dumps(view)
    result = await _send_test(h)
    assert result["ok"] is True, result
    [received] = h.sandbox.messages
    assert received.account == MAILBOX
    # A second token (as after SMTP refused the first): a new assertion with a new jti, which the sandbox
    # accepts (it refuses a replayed one: tests/sandbox/test_sandbox_apponly.py).
    await h.services.tokens.access_token(force_refresh=True)
    assert h.sandbox.stats()["tokens_issued"]["client_credentials"] == 2


async def test_an_unregistered_certificate_is_refused_with_the_advice(harness: Harness) -> None:
    h = harness
    other = h.sandbox.state.app_only.register_certificate("another-app")  # registered for another app
    await _client_credentials(h, other)
    with pytest.raises(TokenEndpointError) as caught:
        await h.services.tokens.access_token()
    assert caught.value.error_code == "AADSTS700027"
    assert "Certificates & secrets" in caught.value.hint
    view = (await h.api.get(f"{API}/oauth/config")).json()
    assert view["token_status"] == "not_authorized" and "AADSTS700027" in view["token_status_reason"]
    assert h.sandbox.messages == []


@pytest.mark.parametrize("tenant", ["common", "organizations", "consumers", "Common"])
async def test_multi_tenant_endpoints_are_refused_for_client_credentials(harness: Harness, tenant: str) -> None:
    r = await harness.api.put(
        f"{API}/oauth/config",
        json={
            "provider": "microsoft",
            "tenant": tenant,
            "grant": "client_credentials",
            "client_id": "sandbox-client",
            "client_secret": "sandbox-secret",
            "mailbox": MAILBOX,
        },
    )
    assert r.status_code == 422, r.text
    problem = r.json()["fields"]["tenant"]
    assert "AADSTS9001023" in problem and "directory" in problem
    assert (await harness.api.get(f"{API}/oauth/config")).json()["provider"] == ""  # nothing stored


async def test_service_account_impersonates_the_mailbox_and_delivers(harness: Harness) -> None:
    h = harness
    key = h.sandbox.register_service_account(mailboxes=(MAILBOX,))
    view = await _configure(
        h, provider="google", grant="service_account", service_account_key=json.dumps(key), mailbox=MAILBOX
    )
    assert (
        view["service_account_email"] == key["client_email"] and view["service_account_key_id"] == key["private_key_id"]
    )
    assert view["client_id"] == key["client_id"]  # the one to allow in the Admin console
    assert "BEGIN PRIVATE KEY" not in json.dumps(view)
    result = await _send_test(h)
    assert result["ok"] is True, result
    [received] = h.sandbox.messages
    assert received.account == MAILBOX
    stats = h.sandbox.stats()
    assert stats["tokens_issued"]["jwt_bearer"] == 1


async def test_service_account_without_delegation_names_client_id_and_scope(harness: Harness) -> None:
    h = harness
    key = h.sandbox.register_service_account(
        scopes=("https://www.googleapis.com/auth/gmail.readonly",), mailboxes=(MAILBOX,)
    )
    await _configure(
        h, provider="google", grant="service_account", service_account_key=json.dumps(key), mailbox=MAILBOX
    )
    with pytest.raises(TokenEndpointError) as caught:
        await h.services.tokens.access_token()
    assert caught.value.error == "unauthorized_client"
    hint = caught.value.hint
    assert "Security > API controls > Domain-wide delegation" in hint
    assert key["client_id"] in hint and "https://mail.google.com/" in hint
    result = await _send_test(h)
    assert result["ok"] is False and "Domain-wide delegation" in json.dumps(result)


async def test_service_account_for_an_unknown_mailbox_is_refused(harness: Harness) -> None:
    h = harness
    key = h.sandbox.register_service_account()
    await _configure(
        h,
        provider="google",
        grant="service_account",
        service_account_key=json.dumps(key),
        mailbox="nobody@sandbox.test",
    )
    with pytest.raises(TokenEndpointError) as caught:
        await h.services.tokens.access_token()
    assert caught.value.error == "invalid_grant" and "nobody@sandbox.test" in caught.value.hint
    # Not "authorize again": an app-only grant has no consent to renew.
    assert (await h.api.get(f"{API}/oauth/config")).json()["token_status"] == "not_authorized"


async def test_app_only_secrets_are_never_returned_logged_or_in_a_repr(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    caplog.set_level(logging.DEBUG)
    cert = h.sandbox.register_app_certificate("sandbox-client")
    key = h.sandbox.register_service_account(mailboxes=(MAILBOX,))
    await _client_credentials(h, cert)
    await h.services.tokens.access_token()
    config_api = await h.api.get(f"{API}/oauth/config")
    from mailgate.store.repository import get_oauth_config

    async with h.services.db.session() as session:
        config = await get_oauth_config(session, h.services.box, "default")
    assert config is not None
    await h.api.put(
        f"{API}/accounts/google-app/oauth/config",
        json={
            "provider": "google",
            "grant": "service_account",
            "service_account_key": json.dumps(key),
            "mailbox": MAILBOX,
        },
    )
    async with h.services.db.session() as session:
        google = await get_oauth_config(session, h.services.box, "google-app")
    assert google is not None
    private_bits = [cert["private_key_pem"].splitlines()[5], key["private_key"].splitlines()[5]]
    texts = [
        config_api.text,
        repr(config),
        repr(google),
        caplog.text,
        (await h.api.get(f"{API}/accounts/google-app/oauth/config")).text,
    ]
    data = b"".join(p.read_bytes() for p in h.services.settings.data_dir.glob("mailgate.db*"))
    for bit in private_bits:
        assert bit not in data.decode("latin-1")
        for text in texts:
            assert bit not in text


async def test_authorize_is_refused_for_an_app_only_account(harness: Harness) -> None:
    h = harness
    await _client_credentials(h)
    r = await h.api.get(f"{API}/oauth/authorize")
    assert r.status_code == 409 and "app-only" in r.text


async def test_switching_back_to_the_authorization_code_grant_keeps_the_guide_flow(harness: Harness) -> None:
    h = harness
    await _client_credentials(h)
    await h.services.tokens.access_token()
    r = await h.api.put(f"{API}/oauth/config", json={"grant": "authorization_code"})
    assert r.status_code == 200 and r.json()["token_status"] == "not_authorized", r.text
    assert r.json()["mailbox"] == "" and r.json()["client_secret_set"] is True
    back = await h.authorize()
    assert back.status_code == 200 and back.json()["ok"] is True, back.text


async def test_a_new_credential_drops_the_token_the_old_one_got(harness: Harness) -> None:
    h = harness
    await _configure(
        h, provider="microsoft", tenant=TENANT, grant="client_credentials", client_id="sandbox-client",
        client_secret="sandbox-secret", mailbox=MAILBOX,
    )  # fmt: skip
    await h.services.tokens.access_token()
    assert (await h.api.get(f"{API}/oauth/config")).json()["token_status"] == "valid"
    cert = h.sandbox.register_app_certificate("sandbox-client")
    r = await h.api.put(
        f"{API}/oauth/config",
        json={"certificate_pem": cert["certificate_pem"], "private_key_pem": cert["private_key_pem"]},
    )
    assert r.json()["token_status"] == "not_authorized" and r.json()["client_secret_set"] is False
    await h.services.tokens.access_token()  # by the certificate now
    r = await h.api.put(f"{API}/oauth/config", json={"mailbox": MAILBOX})  # nothing about the credential
    assert r.json()["token_status"] == "valid"


@pytest.mark.parametrize("provider", ["microsoft", "google"])
async def test_app_only_identities_deliver_over_http_with_the_app_only_scope(harness: Harness, provider: str) -> None:
    """Issue 24: an app-only identity with Graph (client credentials, scope .default) or the Gmail API (a
    service account, scope gmail.send): the token is fetched by the grant with the HTTP API's scope."""
    h = harness
    if provider == "microsoft":
        await _client_credentials(h)
        delivery, scope, counter = "graph", "https://graph.microsoft.com/.default", "graph_messages"
    else:
        # The Admin console allows the service account's client ID the gmail.send scope (else unauthorized_client).
        key = h.sandbox.register_service_account(
            scopes=("https://www.googleapis.com/auth/gmail.send",), mailboxes=(MAILBOX,)
        )
        await _configure(
            h, provider="google", grant="service_account", service_account_key=json.dumps(key), mailbox=MAILBOX
        )
        delivery, scope, counter = "gmail_api", "https://www.googleapis.com/auth/gmail.send", "gmail_messages"
    r = await h.api.put(f"{API}/email/server", json={"delivery": delivery})
    assert r.status_code == 200, r.text
    result = await _send_test(h)
    assert result["ok"] is True, result
    assert [step["name"] for step in result["steps"]] == ["token", "permission", "send"], result
    [received] = h.sandbox.messages
    assert received.account == MAILBOX and list(received.rcpt_tos) == ["bob@example.com"]
    assert h.sandbox.mail_api.counters[counter] == 1
    token = await h.services.tokens.access_token()
    assert h.sandbox.state.introspect(token)["scope"] == scope
