"""The sandbox's grant failures, over HTTP as a test in another process drives them: one mailbox's consent
revoked, an expired client secret, a Google Testing grant with its fixed end, a wrong mailbox consenting."""

from __future__ import annotations

import httpx

from .helpers import FakeClock, Flow, SandboxFactory, decode_jwt_payload

DAY = 86400


async def test_revoking_one_mailbox_kills_its_grants_only(flow: Flow, http: httpx.AsyncClient) -> None:
    alice, bob = await flow.tokens("alice@sandbox.test"), await flow.tokens("bob@sandbox.test")
    assert (await http.post("/_control/revoke-account", params={"account": "Alice@Sandbox.test"})).status_code == 200
    refused = await flow.refresh(str(alice["refresh_token"]))
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert "removed the app's access" in refused.json()["error_description"]
    assert (await flow.refresh(str(bob["refresh_token"]))).status_code == 200
    # A new consent after the revocation works.
    again = await flow.tokens("alice@sandbox.test")
    assert (await flow.refresh(str(again["refresh_token"]))).status_code == 200
    assert (await http.post("/_control/revoke-account", params={"account": "nobody"})).status_code == 400


async def test_an_expired_client_secret_answers_like_entra(flow: Flow, http: httpx.AsyncClient) -> None:
    tokens = await flow.tokens()
    switch = await http.post("/_control/client-secret", params={"client_id": "sandbox-client", "expired": "true"})
    assert switch.json() == {"client_id": "sandbox-client", "expired": True}
    refused = await flow.refresh(str(tokens["refresh_token"]))
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    assert refused.json()["error_codes"] == [7000222]
    assert refused.json()["error_description"].startswith("AADSTS7000222: The provided client secret keys")
    await http.post("/_control/client-secret", params={"client_id": "sandbox-client", "expired": "false"})
    assert (await flow.refresh(str(tokens["refresh_token"]))).status_code == 200
    bad = await http.post("/_control/client-secret", params={"client_id": "sandbox-client", "expired": "maybe"})
    assert bad.status_code == 400


async def test_a_testing_grant_says_its_end_then_dies_whatever_its_use(make_sandbox: SandboxFactory) -> None:
    clock = FakeClock()
    sandbox = await make_sandbox(clock=clock, rotate_refresh_tokens=False)
    async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
        flow = Flow(sandbox, http, google=True)
        assert (await http.post("/_control/testing-mode", params={"days": 7})).json() == {
            "grant_lifetime_seconds": 7 * DAY
        }
        tokens = await flow.tokens()
        assert tokens["refresh_token_expires_in"] == 7 * DAY
        for _ in range(6):  # used every day: it still dies after 7
            clock.advance(DAY)
            answer = await flow.refresh(str(tokens["refresh_token"]))
            assert answer.status_code == 200
        assert answer.json()["refresh_token_expires_in"] == DAY
        clock.advance(DAY)
        dead = await flow.refresh(str(tokens["refresh_token"]))
        assert dead.json() == {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
        # Published: new grants have no fixed end.
        await http.post("/_control/testing-mode", params={"days": 0})
        published = await flow.tokens()
        assert "refresh_token_expires_in" not in published
        assert (await http.post("/_control/testing-mode", params={"days": -1})).status_code == 400


async def test_consent_as_another_mailbox(flow: Flow, http: httpx.AsyncClient) -> None:
    await http.post("/_control/consent-as", params={"account": "mallory@sandbox.test"})
    tokens = await flow.tokens("alice@sandbox.test")
    assert decode_jwt_payload(str(tokens["id_token"]))["email"] == "mallory@sandbox.test"
    await http.post("/_control/consent-as", params={"account": ""})
    tokens = await flow.tokens("alice@sandbox.test")
    assert decode_jwt_payload(str(tokens["id_token"]))["email"] == "alice@sandbox.test"
