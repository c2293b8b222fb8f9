"""HTTP Basic on the API (issue 20, point 1): argon2 runs off the event loop, a verified password is
remembered (keyed, briefly, forgotten when the password changes), and failed attempts end in 429."""

from __future__ import annotations

import asyncio
import threading
import types

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI

from mailgate import admins
from mailgate.admins import PASSWORD_RECHECK_SECONDS, Admins
from mailgate.app import Services
from tests.conftest import ADMIN_PASSWORD, basic_auth

from .conftest import login

CONFIG = "/ddenterpriseapi/v2/oauth/config"


class CountingHasher(PasswordHasher):
    """argon2 with cheap parameters of its own, counting its verifications."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8 * 1024, parallelism=1)
        self.verifications = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verifications += 1
        return super().verify(hash, password)


class GatedHasher(PasswordHasher):
    """argon2 whose verification, once started, waits for the test to open the gate: "a verification in
    progress" is then a state the test holds, not a matter of timing (bounded: 10 s at most)."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8 * 1024, parallelism=1)
        self.started, self.gate, self.finished = threading.Event(), threading.Event(), threading.Event()

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.started.set()
        try:
            self.gate.wait(10)
            return super().verify(hash, password)
        finally:
            self.finished.set()


async def test_healthz_answers_while_a_wrong_password_is_being_verified(
    services: Services, api: httpx.AsyncClient
) -> None:
    hasher = GatedHasher()
    services.admins = Admins(services.db, hasher=hasher)
    attempt = asyncio.create_task(api.get(CONFIG, headers=basic_auth("wrong password")))
    try:
        assert await asyncio.to_thread(hasher.started.wait, 30)
        health = await api.get("/healthz")
        assert health.status_code == 200
        # On the event loop, the verification would have had to end before /healthz could be answered.
        assert not hasher.finished.is_set()
    finally:
        hasher.gate.set()
    assert (await attempt).status_code == 401


async def test_a_correct_password_is_verified_by_argon2_once(services: Services, api: httpx.AsyncClient) -> None:
    hasher = CountingHasher()
    services.admins = Admins(services.db, hasher=hasher)
    # Concurrent requests share the one verification; later ones find it remembered.
    assert [r.status_code for r in await asyncio.gather(*(api.get(CONFIG) for _ in range(8)))] == [200] * 8
    for _ in range(5):
        assert (await api.get(CONFIG)).status_code == 200
    assert hasher.verifications == 1
    # A wrong password is never taken from the memory of the right one.
    assert (await api.get(CONFIG, headers=basic_auth(ADMIN_PASSWORD + "x"))).status_code == 401
    assert hasher.verifications == 2


async def test_a_password_change_drops_the_remembered_verification(services: Services, api: httpx.AsyncClient) -> None:
    assert (await api.get(CONFIG)).status_code == 200  # verified, remembered
    await services.admins.set_password("a brand new password")
    assert (await api.get(CONFIG)).status_code == 401
    assert (await api.get(CONFIG, headers=basic_auth("a brand new password"))).status_code == 200


async def test_a_password_changed_by_another_process_is_refused_within_the_recheck_time(
    services: Services, api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(admins, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    assert (await api.get(CONFIG)).status_code == 200
    await Admins(services.db).set_password("changed elsewhere")  # another process: this one's memory stays
    now[0] += PASSWORD_RECHECK_SECONDS
    assert (await api.get(CONFIG)).status_code == 401


async def test_wrong_basic_passwords_end_in_429_like_the_login_form(services: Services, app: FastAPI) -> None:
    api = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost:8080")
    browser = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost:8080")
    async with api, browser:
        await _limited(services, api, browser)


async def _limited(services: Services, api: httpx.AsyncClient, browser: httpx.AsyncClient) -> None:
    for _ in range(5):
        refused = await api.get(CONFIG, headers=basic_auth("guess"))
        assert refused.status_code == 401
    limited = await api.get(CONFIG, headers=basic_auth("guess"))
    assert limited.status_code == 429 and limited.json()["error"] == "too_many_requests"
    assert int(limited.headers["Retry-After"]) > 0
    # Even the right password waits (else the 200 would tell a guesser he found it).
    assert (await api.get(CONFIG, headers=basic_auth())).status_code == 429
    assert (await login(browser)).status_code == 429  # the same limiter as the login form's
    # Applications with an API key are not affected.
    key = await services.admins.create_api_key("app")
    assert (await api.get(CONFIG, headers={"Authorization": f"Bearer {key.key}"})).status_code == 200
