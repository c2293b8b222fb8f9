"""Addresses with internationalised domain names go out in ASCII (A-labels), in the envelope and the header."""

from __future__ import annotations

from .conftest import API, SandboxEnv

MESSAGES = f"{API}/email/messages"


async def test_an_internationalised_domain_is_delivered_in_ascii(sandbox_env: SandboxEnv) -> None:
    env, h, sandbox = sandbox_env.env, sandbox_env.harness, sandbox_env.sandbox
    assert (await h.authorize()).status_code == 200
    r = await env.api.post(
        MESSAGES,
        json={"to": ["Jörg <jorg@bücher.de>"], "cc": ["info@straße.de"], "subject": "Grüße", "text": "Hallo\n"},
    )
    assert r.status_code == 202, r.text
    view = await env.status(r.json()["id"])
    assert view["recipients"] == ["jorg@xn--bcher-kva.de", "info@xn--strae-oqa.de"]
    assert await env.worker.drain() == 1
    assert (await env.status(r.json()["id"]))["status"] == "sent"
    [received] = sandbox.messages
    assert received.rcpt_tos == ("jorg@xn--bcher-kva.de", "info@xn--strae-oqa.de")
    assert received.raw.isascii()
    assert b"To: =?utf-8?q?J=C3=B6rg?= <jorg@xn--bcher-kva.de>\r\n" in received.raw
    assert b"Cc: info@xn--strae-oqa.de\r\n" in received.raw


async def test_a_local_part_outside_ascii_is_refused_with_what_to_do(sandbox_env: SandboxEnv) -> None:
    env = sandbox_env.env
    r = await env.api.post(MESSAGES, json={"to": ["jörg@example.com"], "text": "x"})
    assert r.status_code == 422
    assert "outside ASCII before the @" in r.json()["fields"]["to[0]"]
    assert await env.stored_count() == 0
