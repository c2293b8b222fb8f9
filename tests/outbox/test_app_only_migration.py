"""Migration 0011: a database made by the code before app-only identities keeps every account's OAuth settings,
secrets and tokens; each account gets the grant ``authorization_code`` (the guide's flow, unchanged)."""

from __future__ import annotations

from pathlib import Path

from mailgate.configure import OAuthConfigUpdate
from mailgate.store import SecretBox

from .test_accounts_migration import KEY, NOW, _insert, migrated


async def test_a_database_before_app_only_identities_keeps_its_accounts(database_url: str, tmp_path: Path) -> None:
    box = SecretBox(KEY)
    # the schema of the release before app-only identities
    rows = [
        _insert("accounts", {"name": "sales", "senders": "[]", "created_at": NOW}),
        _insert("oauth_config", {
            "account_id": "default", "provider": "microsoft", "tenant": "contoso.onmicrosoft.com",
            "client_id": "client-1", "client_secret_enc": box.encrypt("s3cret"),
            "redirect_uri": "http://localhost:8080/r", "updated_at": NOW,
        }),
        _insert("oauth_config", {
            "account_id": "sales", "provider": "google", "tenant": "", "client_id": "client-2",
            "client_secret_enc": box.encrypt("g-secret"), "redirect_uri": "http://localhost:8080/r",
            "updated_at": NOW,
        }),
        _insert("oauth_accounts", {
            "id": "default", "provider": "microsoft", "client_id": "client-1", "account": "alice@contoso.com",
            "refresh_token_enc": box.encrypt("refresh-1"), "access_token_enc": "", "status": "valid",
            "status_reason": "", "refresh_count": 3, "updated_at": NOW,
        }),
    ]  # fmt: skip
    services = await migrated(database_url, tmp_path, "0008_relay_users", rows)  # then to the head
    try:
        view = await services.config.oauth_view()
        assert (view.provider, view.client_id, view.grant, view.mailbox) == (
            "microsoft", "client-1", "authorization_code", "",
        )  # fmt: skip
        assert view.client_secret_set and view.refresh_token_set and view.account == "alice@contoso.com"
        assert view.token_status == "valid" and not view.certificate_set
        sales = await services.config.oauth_view("sales")
        assert (sales.provider, sales.client_id, sales.grant, sales.client_secret_set) == (
            "google", "client-2", "authorization_code", True,
        )  # fmt: skip
        # The migrated rows take the new fields: an app-only grant can be chosen afterwards.
        saved = await services.accounts.save_oauth(
            "sales", OAuthConfigUpdate(provider="microsoft", tenant="contoso.onmicrosoft.com", client_id="c",
                                       client_secret="s", grant="client_credentials", mailbox="sales@contoso.com")
        )  # fmt: skip
        assert saved.grant == "client_credentials" and saved.mailbox == "sales@contoso.com"
    finally:
        await services.aclose()
