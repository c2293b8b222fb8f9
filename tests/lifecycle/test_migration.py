"""Migration 0009: a database of the release before (0008) keeps its settings, grant and mail, and gains the
lifecycle columns (the refresh token's issue date taken from its consent, nothing else invented)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from mailgate.store import SecretBox
from mailgate.store.repository import get_account

from ..outbox.test_accounts_migration import KEY, NOW, _insert, migrated


async def test_a_0008_database_upgrades_with_nothing_lost(database_url: str, tmp_path: Path) -> None:
    box = SecretBox(KEY)
    rows = [
        _insert("oauth_config", {
            "account_id": "default", "provider": "microsoft", "tenant": "contoso.onmicrosoft.com",
            "client_id": "client-1", "client_secret_enc": box.encrypt("s3cret"),
            "redirect_uri": "http://localhost:8080/r", "updated_at": NOW,
        }),
        _insert("oauth_accounts", {
            "id": "default", "provider": "microsoft", "client_id": "client-1", "account": "alice@contoso.com",
            "refresh_token_enc": box.encrypt("refresh-1"), "access_token_enc": "", "status": "valid",
            "status_reason": "", "refresh_count": 3, "authorized_at": NOW, "last_refreshed_at": NOW,
            "updated_at": NOW,
        }),
    ]  # fmt: skip
    services = await migrated(database_url, tmp_path, "0008_relay_users", rows)  # then to the head
    try:
        view = await services.config.oauth_view()
        assert (view.client_id, view.client_secret_set, view.refresh_token_set, view.account) == (
            "client-1", True, True, "alice@contoso.com",
        )  # fmt: skip
        assert view.client_secret_expires_on is None
        async with services.db.session() as session:
            grant = await get_account(session)
            assert grant is not None and services.box.decrypt(grant.refresh_token_enc) == "refresh-1"
            consented = datetime(2026, 1, 1, tzinfo=UTC)
            assert (grant.refresh_count, grant.authorized_at, grant.refresh_token_issued_at) == (
                3,
                consented,
                consented,
            )
            assert (grant.refresh_token_expires_at, grant.last_used_at) == (None, None)
        # Nothing invented: a valid grant on a complete configuration is no problem (no Email server page yet:
        # the provider's defaults, OAuth).
        assert await services.problems() == []
        assert (await services.config.oauth_view()).token_status.value == "valid"
    finally:
        await services.aclose()
