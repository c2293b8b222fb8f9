"""The OAuth endpoints over real HTTP: consent page, code flow with PKCE, refresh, errors, control."""

from __future__ import annotations

import base64

import httpx
import pytest

from mailgate.sandbox import Sandbox

from .helpers import (
    CLIENT,
    REDIRECT_URI,
    Flow,
    SandboxFactory,
    consent_id_of,
    decode_jwt_payload,
)


def query(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    return dict(httpx.URL(response.headers["location"]).params)


async def test_full_code_flow_with_pkce(flow: Flow, sandbox: Sandbox) -> None:
    page = await flow.authorize()
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["x-frame-options"] == "DENY"
    html = page.text
    assert ">Accept</button>" in html and ">Deny</button>" in html
    assert 'value="user@sandbox.test"' in html  # the default account is proposed
    assert "mailgate (sandbox)" in html and "https://outlook.office.com/SMTP.Send" in html

    answer = await flow.consent(consent_id_of(html), account="alice@sandbox.test")
    location = answer.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    params = query(answer)
    assert params["state"] == "state-123" and params["code"]

    token = await flow.exchange(params["code"])
    assert token.status_code == 200, token.text
    assert token.headers["cache-control"] == "no-store"
    body = token.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert len(body["access_token"]) >= 2100  # as long as Entra's
    assert body["refresh_token"]
    assert body["scope"].split() == ["https://outlook.office.com/SMTP.Send", "offline_access", "openid", "email"]
    claims = decode_jwt_payload(body["id_token"])
    assert claims["email"] == claims["preferred_username"] == "alice@sandbox.test"
    assert claims["aud"] == "sandbox-client"
    assert claims["iss"] == f"{sandbox.base_url}/sandbox/v2.0"
    assert claims["exp"] > claims["iat"] and claims["sub"]


async def test_google_shaped_flow(flow: Flow, sandbox: Sandbox) -> None:
    flow.google = True
    tokens = await flow.tokens("bob@gmail.test")
    claims = decode_jwt_payload(tokens["id_token"])
    assert claims["email"] == "bob@gmail.test"
    assert claims["iss"] == sandbox.base_url
    assert tokens["scope"] == "https://mail.google.com/ openid email"


async def test_login_hint_prefills_the_account(flow: Flow) -> None:
    page = await flow.authorize(login_hint="carol@sandbox.test")
    assert 'value="carol@sandbox.test"' in page.text


async def test_deny_redirects_with_access_denied(flow: Flow, sandbox: Sandbox) -> None:
    page = await flow.authorize()
    answer = await flow.consent(consent_id_of(page.text), action="deny")
    assert answer.status_code == 302
    assert (
        "error=access_denied&error_description=The+user+denied+consent&state=state-123" in (answer.headers["location"])
    )
    assert sandbox.stats()["consents_denied"] == 1


async def test_consent_is_one_time(flow: Flow) -> None:
    page = await flow.authorize()
    consent_id = consent_id_of(page.text)
    assert (await flow.consent(consent_id)).status_code == 302
    again = await flow.consent(consent_id)
    assert again.status_code == 400
    assert "already answered" in again.text


async def test_consent_with_a_bad_account_shows_the_page_again(flow: Flow) -> None:
    page = await flow.authorize()
    consent_id = consent_id_of(page.text)
    again = await flow.consent(consent_id, account="not an address")
    assert again.status_code == 400
    assert "Enter an email address" in again.text and consent_id_of(again.text) == consent_id
    assert (await flow.consent(consent_id, account="dave@sandbox.test")).status_code == 302


async def test_redirect_uri_mismatch_is_an_error_page_not_a_redirect(flow: Flow) -> None:
    wrong = REDIRECT_URI + "/"  # a trailing slash is enough: byte-exact comparison
    page = await flow.authorize(redirect_uri=wrong)
    assert page.status_code == 400
    assert "location" not in page.headers
    assert "redirect_uri_mismatch" in page.text and "AADSTS50011" in page.text
    assert wrong in page.text and REDIRECT_URI in page.text
    # Which URI it got, which it expected, and how to make the sandbox accept the one it got (issue 19.3).
    assert "Redirect URI received" in page.text and "Expected (registered) redirect URIs" in page.text
    assert f"--redirect-uri &#39;{wrong}&#39;" in page.text and "MAILGATE_SANDBOX_REDIRECT_URI" in page.text


async def test_unknown_client_is_an_error_page(flow: Flow) -> None:
    page = await flow.authorize(client_id="no-such-client")
    assert page.status_code == 400
    assert "location" not in page.headers
    assert "AADSTS700016" in page.text and "no-such-client" in page.text


async def test_error_page_escapes_what_it_shows(flow: Flow) -> None:
    page = await flow.authorize(redirect_uri="http://localhost/<script>alert(1)</script>")
    assert "<script>alert" not in page.text and "&lt;script&gt;" in page.text


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ({"code_challenge": "<omit>"}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "<omit>"}, "invalid_request"),
    ],
)
async def test_bad_requests_of_a_known_client_go_back_with_an_error(
    flow: Flow, override: dict[str, str], error: str
) -> None:
    params = query(await flow.authorize(**override))
    assert params["error"] == error
    assert params["state"] == "state-123"
    assert params["error_description"].startswith("AADSTS")


async def test_wrong_verifier_is_invalid_grant(flow: Flow) -> None:
    code = await flow.code()
    answer = await flow.exchange(code, code_verifier="x" * 50)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"
    assert answer.json()["error_codes"] == [501481]


async def test_missing_verifier_is_invalid_grant(flow: Flow) -> None:
    answer = await flow.exchange(await flow.code(), code_verifier="<omit>")
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_grant")


async def test_redirect_uri_must_equal_the_authorization_one(flow: Flow) -> None:
    answer = await flow.exchange(await flow.code(), redirect_uri="http://localhost:8080/other")
    assert answer.json()["error"] == "invalid_grant"
    assert "AADSTS500112" in answer.json()["error_description"]


async def test_code_is_one_time(flow: Flow) -> None:
    code = await flow.code()
    assert (await flow.exchange(code)).status_code == 200
    again = await flow.exchange(code)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    assert again.json()["error_codes"] == [54005]


async def test_wrong_client_secret(flow: Flow) -> None:
    answer = await flow.exchange(await flow.code(), client_secret="7f2e...secret-id")
    assert answer.status_code in (400, 401)
    body = answer.json()
    assert body["error"] == "invalid_client"
    assert body["error_codes"] == [7000215]
    assert body["error_description"].startswith(
        "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the "
        "client secret value, not the client secret ID"
    )


async def test_google_shaped_errors_have_google_words(flow: Flow) -> None:
    flow.google = True
    answer = await flow.refresh("1//unknown")
    assert answer.json() == {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}


async def test_http_basic_client_authentication(flow: Flow) -> None:
    code = await flow.code()
    basic = base64.b64encode(b"sandbox-client:sandbox-secret").decode()
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    data["code_verifier"] = flow.verifier
    answer = await flow.http.post(flow.token_path, data=data, headers={"Authorization": f"Basic {basic}"})
    assert answer.status_code == 200, answer.text
    both = await flow.http.post(
        flow.token_path, data={**data, "client_secret": "sandbox-secret"}, headers={"Authorization": f"Basic {basic}"}
    )
    assert both.json()["error"] == "invalid_request"  # RFC 6749 s.2.3: one method only


async def test_refresh_with_rotation_kills_the_old_refresh_token(flow: Flow, sandbox: Sandbox) -> None:
    first = await flow.tokens()
    refreshed = await flow.refresh(first["refresh_token"])
    assert refreshed.status_code == 200
    body = refreshed.json()
    assert body["refresh_token"] and body["refresh_token"] != first["refresh_token"]
    assert body["access_token"] != first["access_token"]
    assert decode_jwt_payload(body["id_token"])["email"] == "alice@sandbox.test"
    old = await flow.refresh(first["refresh_token"])
    assert old.status_code == 400
    assert old.json()["error"] == "invalid_grant"
    assert "AADSTS70008" in old.json()["error_description"]
    assert (await flow.refresh(body["refresh_token"])).status_code == 200
    assert sandbox.stats()["token_requests"] == {
        "authorization_code": 1,
        "refresh_token": 3,
        "client_credentials": 0,
        "jwt_bearer": 0,
        "other": 0,
    }


async def test_refresh_without_rotation_keeps_the_refresh_token(make_sandbox: SandboxFactory) -> None:
    sandbox = await make_sandbox(rotate_refresh_tokens=False)
    async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
        flow = Flow(sandbox, http, google=True)
        first = await flow.tokens()
        for _ in range(2):
            answer = await flow.refresh(first["refresh_token"])
            assert answer.status_code == 200
            assert "refresh_token" not in answer.json()


async def test_refresh_may_narrow_but_not_widen_the_scope(flow: Flow) -> None:
    tokens = await flow.tokens()
    narrower = await flow.refresh(tokens["refresh_token"], scope="https://outlook.office.com/SMTP.Send")
    assert narrower.json()["scope"] == "https://outlook.office.com/SMTP.Send"
    wider = await flow.refresh(narrower.json()["refresh_token"], scope="https://graph.microsoft.com/Mail.Send")
    assert wider.json()["error_codes"] == [65001]


async def test_revoke_all_makes_refresh_fail(flow: Flow, sandbox: Sandbox) -> None:
    alice, bob = await flow.tokens("alice@sandbox.test"), await flow.tokens("bob@sandbox.test")
    answer = await flow.http.post("/_control/revoke-all")
    assert answer.json() == {"revoked": 2}
    for tokens in (alice, bob):
        refused = await flow.refresh(tokens["refresh_token"])
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    # A new consent works again.
    assert (await flow.refresh((await flow.tokens())["refresh_token"])).status_code == 200


async def test_token_endpoint_down_answers_503(flow: Flow, sandbox: Sandbox) -> None:
    tokens = await flow.tokens()
    assert (await flow.http.post("/_control/token-endpoint?available=false")).json() == {"available": False}
    down = await flow.refresh(tokens["refresh_token"])
    assert down.status_code == 503
    assert down.json()["error"] == "temporarily_unavailable"
    await flow.http.post("/_control/token-endpoint", params={"available": "true"})
    assert (await flow.refresh(tokens["refresh_token"])).status_code == 200  # nothing was consumed
    stats = sandbox.stats()
    assert stats["token_endpoint_unavailable"] == 1
    assert stats["tokens_issued"]["refresh_token"] == 1


async def test_rfc7009_revocation(flow: Flow) -> None:
    tokens = await flow.tokens()
    assert (await flow.http.post("/revoke", data={"token": tokens["refresh_token"]})).status_code == 200
    assert (await flow.refresh(tokens["refresh_token"])).json()["error"] == "invalid_grant"
    assert (await flow.http.post("/revoke", data={"token": "never-issued"})).status_code == 200


async def test_client_credentials(flow: Flow) -> None:
    data = {"grant_type": "client_credentials", "scope": "https://outlook.office365.com/.default", **CLIENT}
    answer = await flow.http.post(flow.token_path, data=data)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert "refresh_token" not in body and "id_token" not in body
    bad = await flow.http.post(flow.token_path, data={**data, "scope": "https://outlook.office365.com/SMTP.SendAsApp"})
    assert bad.json()["error"] == "invalid_scope"


async def test_unsupported_and_missing_grant_type(flow: Flow) -> None:
    answer = await flow.http.post(flow.token_path, data={"grant_type": "password", **CLIENT})
    assert answer.json()["error"] == "unsupported_grant_type"
    answer = await flow.http.post(flow.token_path, data=CLIENT)
    assert answer.json()["error"] == "invalid_request"


async def test_stats_count_every_step(flow: Flow, sandbox: Sandbox) -> None:
    tokens = await flow.tokens()
    await flow.refresh(tokens["refresh_token"])
    await flow.exchange("not-a-code")
    stats = (await flow.http.get("/_control/stats")).json()
    assert stats["authorization_requests"] == 1
    assert stats["authorizations"] == 1
    assert stats["token_requests"] == {
        "authorization_code": 2,
        "refresh_token": 1,
        "client_credentials": 0,
        "jwt_bearer": 0,
        "other": 0,
    }
    assert stats["tokens_issued"]["authorization_code"] == 1
    assert stats["token_errors"] == {"invalid_grant": 1}
    reset = (await flow.http.post("/_control/reset-stats")).json()
    assert reset["token_requests"]["refresh_token"] == 0


async def test_index_page(http: httpx.AsyncClient, sandbox: Sandbox) -> None:
    page = await http.get("/")
    assert page.status_code == 200 and str(sandbox.ca_file) in page.text


async def test_rfc7662_introspection(flow: Flow, sandbox: Sandbox) -> None:
    # What Dovecot's oauth2 passdb asks (introspection_mode = post): active, and the mailbox in "email".
    tokens = await flow.tokens("erin@sandbox.test")
    answer = await flow.http.post("/introspect", data={"token": tokens["access_token"]})
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["active"] is True and body["email"] == "erin@sandbox.test"
    assert "SMTP.Send" in body["scope"] and body["client_id"] == sandbox.config.clients[0].client_id
    for unknown in ("never-issued", tokens["refresh_token"], ""):
        assert (await flow.http.post("/introspect", data={"token": unknown})).json() == {"active": False}
    await flow.http.post("/revoke", data={"token": tokens["refresh_token"]})
    assert (await flow.http.post("/introspect", data={"token": tokens["access_token"]})).json() == {"active": False}
