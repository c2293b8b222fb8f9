"""Migration 0006: a single-account database, as the release before accounts wrote it, becomes the account
``default`` with nothing lost (settings, secrets, tokens, queued mail, a pending authorization)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import text

from mailgate.app import Services, build_services
from mailgate.config import Settings
from mailgate.configure import OAuthConfigUpdate
from mailgate.store import Database, SecretBox
from mailgate.store.repository import get_account, get_oauth_config

from ..conftest import ADMIN_PASSWORD

KEY = "a-key-for-the-migration-test-0123456789"
NOW = "2026-01-01 00:00:00"


def _insert(table: str, row: dict[str, Any]) -> Any:
    return text(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join(':' + k for k in row)})"), row


async def migrated(database_url: str, tmp_path: Path, revision: str, rows: list[Any]) -> Services:
    """The services of this release on a database written by the release at ``revision`` (``rows``)."""
    old = Database(database_url)
    try:
        await old.migrate(revision)
        async with old.engine.begin() as connection:
            for statement, values in rows:
                await connection.execute(statement, values)
    finally:
        await old.close()
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, admin_password=ADMIN_PASSWORD, secret_key=KEY
    )
    return await build_services(settings)  # migrates to the head


async def test_a_single_account_database_becomes_the_account_default(database_url: str, tmp_path: Path) -> None:
    box = SecretBox(KEY)
    # the schema of the release before accounts
    rows = [
        _insert("oauth_config", {
            "id": 1, "provider": "microsoft", "tenant": "contoso.onmicrosoft.com", "client_id": "client-1",
            "client_secret_enc": box.encrypt("s3cret"), "redirect_uri": "http://localhost:8080/r",
            "updated_at": NOW,
        }),
        _insert("email_server", {
            "id": 1, "host": "smtp.office365.com", "port": 587, "security": "starttls",
            "username": "alice@contoso.com", "sender": "noreply@contoso.com", "authentication": "oauth",
            "password_enc": box.encrypt(""), "ca_file": "", "updated_at": NOW,
        }),
        _insert("oauth_accounts", {
            "id": "default", "provider": "microsoft", "client_id": "client-1", "account": "alice@contoso.com",
            "refresh_token_enc": box.encrypt("refresh-1"), "access_token_enc": "", "status": "valid",
            "status_reason": "", "refresh_count": 3, "updated_at": NOW,
        }),
        _insert("oauth_states", {
            "state_hash": "h" * 64, "binding_hash": "b" * 64, "code_verifier_enc": box.encrypt("v"),
            "provider": "microsoft", "tenant": "contoso.onmicrosoft.com", "client_id": "client-1",
            "redirect_uri": "http://localhost:8080/r", "return_to": "", "created_at": NOW,
        }),
        _insert("outbox_messages", {
            "id": "m-1", "account_id": "default", "status": "held", "sender": "noreply@contoso.com",
            "recipients": '["b@example.com"]', "subject": "kept", "message_id": "<1@contoso.com>", "size": 3,
            "attempts": 1, "next_attempt_at": NOW, "deadline_at": NOW, "last_error": "", "last_error_code": "",
            "smtp_reply": "", "recipient_results": "{}", "request_hash": "", "created_at": NOW, "updated_at": NOW,
        }),
        _insert("outbox_bodies", {"id": "m-1", "raw": b"x\r\n"}),
    ]  # fmt: skip
    services = await migrated(database_url, tmp_path, "0006_revoked_sessions", rows)  # then to the head
    try:
        view = await services.config.oauth_view()
        assert (view.provider, view.tenant, view.client_id, view.redirect_uri) == (
            "microsoft", "contoso.onmicrosoft.com", "client-1", "http://localhost:8080/r",
        )  # fmt: skip
        assert view.client_secret_set and view.refresh_token_set and view.account == "alice@contoso.com"
        server = await services.config.email_server()
        assert (server.host, server.username, server.sender) == (
            "smtp.office365.com", "alice@contoso.com", "noreply@contoso.com",
        )  # fmt: skip
        async with services.db.session() as session:
            tokens = await get_account(session)
            assert tokens is not None and services.box.decrypt(tokens.refresh_token_enc) == "refresh-1"
            assert tokens.refresh_count == 3
            state = (await session.execute(text("SELECT account_id FROM oauth_states"))).scalar_one()
            assert state == "default"  # a consent started before the upgrade still completes for default
        message = await services.outbox.get("m-1")
        assert (message.account_id, message.status, message.subject) == ("default", "held", "kept")
        [account] = await services.accounts.list()
        assert (account.name, account.mailbox, account.senders, account.held) == ("default", "alice@contoso.com", [], 1)
        # The secret itself, not only "set": the account's client settings copy to a new account intact.
        await services.accounts.save_oauth("second", OAuthConfigUpdate(copy_from="default"))
        async with services.db.session() as session:
            copied = await get_oauth_config(session, services.box, "second")
        assert copied is not None and copied.client_secret == "s3cret" and copied.client_id == "client-1"
        assert await services.accounts.may_send("default", "NoReply@Contoso.com")
        assert not await services.accounts.may_send("default", "mallory@contoso.com")
    finally:
        await services.aclose()
