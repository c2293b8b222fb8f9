"""Reads and writes of the configuration rows, with secrets decrypted/encrypted at this one place."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..types import Authentication, Delivery, EmailServerConfig, Grant, OAuthConfig, Security
from .crypto import SecretBox
from .models import AccountRow, EmailServerRow, OAuthAccountRow, OAuthConfigRow

__all__ = [
    "DEFAULT_ACCOUNT",
    "ensure_account",
    "get_account",
    "get_delivery",
    "get_email_server",
    "get_oauth_config",
    "lock_account",
    "save_email_server",
    "save_oauth_config",
]

#: The account of the OAuth and Email server pages of the guide (and of every route without an account).
DEFAULT_ACCOUNT = "default"


async def ensure_account(session: AsyncSession, account: str) -> AccountRow:
    """The account's row, created (with no extra senders) when it does not exist yet."""
    row = await session.get(AccountRow, account)
    if row is None:
        row = AccountRow(name=account, senders=[])
        session.add(row)
    return row


async def get_oauth_config(session: AsyncSession, box: SecretBox, account: str = DEFAULT_ACCOUNT) -> OAuthConfig | None:
    row = await session.get(OAuthConfigRow, account)
    if row is None:
        return None
    return OAuthConfig(
        provider=row.provider,
        tenant=row.tenant,
        client_id=row.client_id,
        client_secret=box.decrypt(row.client_secret_enc),
        redirect_uri=row.redirect_uri,
        client_secret_expires_on=row.client_secret_expires_on,
        grant=Grant(row.grant_type or Grant.AUTHORIZATION_CODE),
        mailbox=row.mailbox or "",
        certificate_pem=row.certificate_pem or "",
        private_key_pem=box.decrypt(row.private_key_enc or ""),
        service_account_key=box.decrypt(row.service_account_key_enc or ""),
    )


async def save_oauth_config(
    session: AsyncSession, box: SecretBox, config: OAuthConfig, account: str = DEFAULT_ACCOUNT
) -> None:
    await ensure_account(session, account)
    row = await session.get(OAuthConfigRow, account)
    if row is None:
        row = OAuthConfigRow(account_id=account)
        session.add(row)
    row.provider = config.provider
    row.tenant = config.tenant
    row.client_id = config.client_id
    row.client_secret_enc = box.encrypt(config.client_secret)
    row.redirect_uri = config.redirect_uri
    row.client_secret_expires_on = config.client_secret_expires_on
    row.grant_type = config.grant.value
    row.mailbox = config.mailbox
    row.certificate_pem = config.certificate_pem
    row.private_key_enc = box.encrypt(config.private_key_pem)
    row.service_account_key_enc = box.encrypt(config.service_account_key)


async def get_email_server(
    session: AsyncSession, box: SecretBox, account: str = DEFAULT_ACCOUNT
) -> EmailServerConfig | None:
    row = await session.get(EmailServerRow, account)
    if row is None:
        return None
    return EmailServerConfig(
        host=row.host,
        port=row.port,
        security=Security(row.security),
        username=row.username,
        sender=row.sender,
        authentication=Authentication(row.authentication),
        password=box.decrypt(row.password_enc),
        ca_file=row.ca_file,
        delivery=Delivery(row.delivery or Delivery.SMTP.value),
    )


async def get_delivery(session: AsyncSession, account: str = DEFAULT_ACCOUNT) -> Delivery:
    """How the account delivers (``smtp`` when its Email server is not saved yet): its scopes follow it."""
    row = await session.get(EmailServerRow, account)
    return Delivery(row.delivery) if row is not None and row.delivery else Delivery.SMTP


async def save_email_server(
    session: AsyncSession, box: SecretBox, config: EmailServerConfig, account: str = DEFAULT_ACCOUNT
) -> None:
    await ensure_account(session, account)
    row = await session.get(EmailServerRow, account)
    if row is None:
        row = EmailServerRow(account_id=account)
        session.add(row)
    row.host = config.host
    row.port = config.port
    row.security = config.security.value
    row.username = config.username
    row.sender = config.sender
    row.authentication = config.authentication.value
    row.password_enc = box.encrypt(config.password)
    row.ca_file = config.ca_file
    row.delivery = config.delivery.value


async def get_account(session: AsyncSession, account_id: str = DEFAULT_ACCOUNT) -> OAuthAccountRow | None:
    return await session.get(OAuthAccountRow, account_id)


async def lock_account(session: AsyncSession, account_id: str) -> OAuthAccountRow | None:
    """Read the account row holding a write lock until the transaction ends.

    This is what makes token refreshes one at a time per account across processes: PostgreSQL takes a row
    lock (``SELECT ... FOR UPDATE``); SQLite has no row locks, so a no-op UPDATE takes the database's write
    lock (other writers wait on ``busy_timeout``).
    """
    bind = session.get_bind()
    if bind.dialect.name == "sqlite":
        await session.execute(
            update(OAuthAccountRow)
            .where(OAuthAccountRow.id == account_id)
            .values(refresh_count=OAuthAccountRow.refresh_count)
        )
    result = await session.execute(
        select(OAuthAccountRow)
        .where(OAuthAccountRow.id == account_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()
