"""Keep-alive: an idle account is refreshed before the provider's inactivity window ends (clock controlled),
so a quiet mailbox still sends after months; a refused keep-alive shows the problem before mail needs it."""

from __future__ import annotations

from mailgate.store.models import OAuthAccountRow

from .conftest import MAILBOX, Life, LifeFactory, post_and_drain

DAY = 86400


async def _row(life: Life) -> OAuthAccountRow:
    async with life.env.services.db.session() as session:
        row = await session.get(OAuthAccountRow, "default")
        assert row is not None
        return row


async def test_a_quiet_account_is_kept_alive_past_the_90_day_window(make_life: LifeFactory) -> None:
    life = await make_life()
    keepalive = life.env.services.keepalive
    assert (await life.harness.authorize()).status_code == 200
    consented = await _row(life)
    assert consented.refresh_token_issued_at == consented.authorized_at == life.env.clock.now
    refreshes = life.sandbox.stats()["token_requests"]["refresh_token"]
    life.env.clock.advance(6 * DAY)
    assert await keepalive.run_once() == []  # not idle long enough: left alone
    assert life.sandbox.stats()["token_requests"]["refresh_token"] == refreshes
    # 100 quiet days (the sandbox's Microsoft refresh tokens die after 90 days without use), checked daily.
    for _ in range(100):
        life.env.clock.advance(DAY)
        await keepalive.run_once()
    assert keepalive.refreshed == 15 and keepalive.failed == 0  # days 7, 14, ... 105
    row = await _row(life)
    assert row.status == "valid" and row.last_refreshed_at is not None
    assert (life.env.clock.now - row.last_refreshed_at).total_seconds() <= 7 * DAY
    assert row.refresh_token_issued_at == row.last_refreshed_at  # Microsoft rotated it at each refresh
    sent = await post_and_drain(life)
    assert await life.statuses(sent) == ["sent"]
    assert (await _row(life)).last_used_at == life.env.clock.now
    assert await life.codes() == []


async def test_without_keep_alive_the_window_is_real(make_life: LifeFactory) -> None:
    """The control of the test above: the same quiet 100 days without keep-alive need a new consent."""
    life = await make_life()
    assert (await life.harness.authorize()).status_code == 200
    life.env.clock.advance(100 * DAY)
    held = await post_and_drain(life)
    assert await life.statuses(held) == ["held"]
    assert "reauthorization_required" in await life.codes()


async def test_a_refused_keep_alive_shows_the_problem_before_any_mail(make_life: LifeFactory) -> None:
    life = await make_life()
    assert (await life.harness.authorize()).status_code == 200
    life.sandbox.failures.revoke_account(MAILBOX)
    life.env.clock.advance(7 * DAY)
    assert await life.env.services.keepalive.run_once() == []
    assert life.env.services.keepalive.failed == 1
    assert (await life.health())["status"] == "degraded"
    assert await life.codes() == ["reauthorization_required"]
    # Marked, it is not tried again (the refresh token is known dead).
    assert await life.env.services.keepalive.idle_accounts() == []


async def test_keep_alive_runs_in_the_background_until_stopped(make_life: LifeFactory) -> None:
    import asyncio

    life = await make_life()
    assert (await life.harness.authorize()).status_code == 200
    life.env.clock.advance(8 * DAY)
    keepalive = life.env.services.keepalive
    keepalive.start()
    for _ in range(200):
        if keepalive.refreshed:
            break
        await asyncio.sleep(0.01)
    await keepalive.stop()
    assert keepalive.refreshed == 1
