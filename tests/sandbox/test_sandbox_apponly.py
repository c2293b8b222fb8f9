"""The sandbox's app-only grants over real HTTP: client assertions (RFC 7523 s.2.2) and the JWT bearer grant of a
service account (RFC 7523 s.2.1), registered through the control routes."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from mailgate.oauth.assertions import (
    ASSERTION_TYPE,
    JWT_BEARER,
    client_assertion_claims,
    load_certificate,
    service_account_claims,
    sign_jwt,
)
from mailgate.sandbox import Sandbox

GMAIL = "https://mail.google.com/"
MS_SCOPE = "https://outlook.office365.com/.default"


def _ms_token_url(sandbox: Sandbox) -> str:
    return f"{sandbox.base_url}/contoso.onmicrosoft.com/oauth2/v2.0/token"


def _assertion(cert: dict[str, str], token_url: str, *, alg: str = "RS256", **claims: Any) -> str:
    info = load_certificate(cert["certificate_pem"])
    header = {"alg": alg, "typ": "JWT", "x5t": info.x5t, "x5t#S256": info.x5t_s256}
    body = client_assertion_claims(cert["client_id"], token_url, now=int(time.time()), jti=str(uuid.uuid4()))
    body.update(claims)
    return sign_jwt(header, body, cert["private_key_pem"])


async def _cc(http: httpx.AsyncClient, url: str, assertion: str) -> httpx.Response:
    return await http.post(
        url,
        data={
            "grant_type": "client_credentials",
            "client_id": "sandbox-client",
            "scope": MS_SCOPE,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        },
    )


async def test_a_registered_certificate_authenticates_once_per_assertion(
    sandbox: Sandbox, http: httpx.AsyncClient
) -> None:
    r = await http.post("/_control/app-certificates", json={"client_id": "sandbox-client"})
    assert r.status_code == 200, r.text
    cert = r.json()
    assert cert["thumbprint"] == load_certificate(cert["certificate_pem"]).thumbprint
    url = _ms_token_url(sandbox)
    assertion = _assertion(cert, url)
    ok = await _cc(http, url, assertion)
    assert ok.status_code == 200, ok.text
    assert "refresh_token" not in ok.json() and ok.json()["scope"] == MS_SCOPE
    replay = await _cc(http, url, assertion)
    assert replay.status_code == 401 and "jti replay" in replay.json()["error_description"]
    assert (await _cc(http, url, _assertion(cert, url, alg="PS256"))).status_code == 200


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"aud": "http://127.0.0.1:1/other/oauth2/v2.0/token"}, "AADSTS50012"),
        ({"exp": int(time.time()) - 10}, "AADSTS700024"),
        ({"nbf": int(time.time()), "exp": int(time.time()) + 3600}, "AADSTS700024"),
        ({"sub": "someone-else"}, "AADSTS700021"),
        ({"jti": ""}, "AADSTS50012"),
    ],
)
async def test_bad_assertions_are_refused(
    sandbox: Sandbox, http: httpx.AsyncClient, claims: dict[str, Any], code: str
) -> None:
    cert = sandbox.register_app_certificate()
    url = _ms_token_url(sandbox)
    r = await _cc(http, url, _assertion(cert, url, **claims))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert code in r.json()["error_description"]


async def test_a_key_that_is_not_the_certificates_fails_signature_validation(
    sandbox: Sandbox, http: httpx.AsyncClient
) -> None:
    cert = sandbox.register_app_certificate()
    other = sandbox.state.app_only.register_certificate("another-app")
    url = _ms_token_url(sandbox)
    forged = _assertion({**cert, "private_key_pem": other["private_key_pem"]}, url)
    r = await _cc(http, url, forged)
    assert r.status_code == 401 and "AADSTS700027" in r.json()["error_description"]
    unregistered = await _cc(http, url, _assertion({**other, "client_id": "sandbox-client"}, url))
    assert "AADSTS700027" in unregistered.json()["error_description"]


async def _bearer(
    http: httpx.AsyncClient, key: dict[str, str], sub: str, scope: str = GMAIL, **claims: Any
) -> httpx.Response:
    body = service_account_claims(key["client_email"], sub, [scope], key["token_uri"], now=int(time.time()))
    body.update(claims)
    assertion = sign_jwt({"alg": "RS256", "typ": "JWT", "kid": key["private_key_id"]}, body, key["private_key"])
    return await http.post("/token", data={"grant_type": JWT_BEARER, "assertion": assertion})


async def test_service_account_key_file_from_the_control_route_gets_a_token_for_a_known_mailbox(
    sandbox: Sandbox, http: httpx.AsyncClient
) -> None:
    r = await http.post("/_control/service-accounts", json={"mailboxes": ["Boss@Sandbox.test"]})
    key = r.json()
    assert key["type"] == "service_account" and key["token_uri"] == f"{sandbox.base_url}/token"
    ok = await _bearer(http, key, "boss@sandbox.test")
    assert ok.status_code == 200, ok.text
    token = ok.json()["access_token"]
    assert "refresh_token" not in ok.json()
    # The SMTP server accepts it for the mailbox it was issued for only.
    assert sandbox.state.check_smtp_token(token, "boss@sandbox.test").account == "boss@sandbox.test"
    assert sandbox.state.check_smtp_token(token, "other@sandbox.test").account is None


async def test_service_account_refusals(sandbox: Sandbox, http: httpx.AsyncClient) -> None:
    key = sandbox.register_service_account(mailboxes=("boss@sandbox.test",))
    unknown = await _bearer(http, key, "nobody@sandbox.test")
    assert unknown.status_code == 400 and unknown.json() == {
        "error": "invalid_grant",
        "error_description": "Invalid email or User ID",
    }
    scope = await _bearer(http, key, "boss@sandbox.test", scope="https://www.googleapis.com/auth/gmail.readonly")
    assert scope.json()["error"] == "unauthorized_client"
    long_lived = await _bearer(http, key, "boss@sandbox.test", exp=int(time.time()) + 7200)
    assert long_lived.json()["error"] == "invalid_grant" and "60 minutes" in long_lived.json()["error_description"]
    wrong_aud = await _bearer(http, key, "boss@sandbox.test", aud="https://oauth2.googleapis.com/token")
    assert wrong_aud.json()["error"] == "invalid_grant"
    other = sandbox.register_service_account()
    forged = await _bearer(http, {**key, "private_key": other["private_key"]}, "boss@sandbox.test")
    assert forged.json()["error_description"] == "Invalid JWT Signature."
    on_microsoft = await http.post(_ms_token_url(sandbox), data={"grant_type": JWT_BEARER, "assertion": "x.y.z"})
    assert on_microsoft.json()["error"] == "unsupported_grant_type"
    stats = sandbox.stats()
    assert stats["token_requests"]["jwt_bearer"] == 6 and stats["tokens_issued"]["jwt_bearer"] == 0


async def test_control_routes_refuse_bad_input(http: httpx.AsyncClient) -> None:
    r = await http.post("/_control/app-certificates", json={"client_id": "x", "certificate_pem": "not a cert"})
    assert r.status_code == 400 and "PEM" in r.json()["error"]
    r = await http.post("/_control/service-accounts", json={"public_key_pem": "nope"})
    assert r.status_code == 400
