"""SQLAlchemy models.  Columns ending in ``_enc`` hold Fernet ciphertext (see crypto.py), never clear text."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, Date, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, TypeDecorator, text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "AccountRow",
    "AdminUser",
    "AlertConditionRow",
    "AlertNotificationRow",
    "AlertSettingsRow",
    "ApiKey",
    "AuditRow",
    "Base",
    "EmailServerRow",
    "OAuthAccountRow",
    "OAuthConfigRow",
    "OAuthStateRow",
    "OutboxBodyRow",
    "OutboxMessageRow",
    "RelayUserRow",
    "RevokedSession",
    "UtcDateTime",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


class AdminUser(Base):
    __tablename__ = "admin_users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class RevokedSession(Base):
    """An admin session ended by logout: refused until its cookie would have expired (then deleted)."""

    __tablename__ = "revoked_sessions"
    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    #: First characters of the key, to recognise it in a list; the key itself is only hashed.
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class AccountRow(Base):
    """A sending mailbox (``default`` always exists): the senders it may use besides its own mailbox."""

    __tablename__ = "accounts"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: Extra From addresses it may use: ``alias@example.com`` or ``*@example.com``, lower-cased.
    senders: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class OAuthConfigRow(Base):
    """The OAuth page of an account: one row per account."""

    __tablename__ = "oauth_config"
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    tenant: Mapped[str] = mapped_column(String(255), default="")
    client_id: Mapped[str] = mapped_column(String(255))
    client_secret_enc: Mapped[str] = mapped_column(Text, default="")
    redirect_uri: Mapped[str] = mapped_column(String(2048))
    #: When the client secret expires (Microsoft shows it when the secret is created); None: not entered.
    client_secret_expires_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    #: authorization_code (the guide's flow), client_credentials or service_account (app-only identities).
    grant_type: Mapped[str] = mapped_column(String(32), default="authorization_code")
    #: App-only: the mailbox sent as (and impersonated by a service account).
    mailbox: Mapped[str] = mapped_column(String(320), default="")
    #: Client credentials: the certificate (public, PEM) and its private key (encrypted).
    certificate_pem: Mapped[str] = mapped_column(Text, default="")
    private_key_enc: Mapped[str] = mapped_column(Text, default="")
    #: Service account: the JSON key file (encrypted).
    service_account_key_enc: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class OAuthAccountRow(Base):
    """The consented account and its tokens.  One row per account (``default`` for the OAuth page)."""

    __tablename__ = "oauth_accounts"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    client_id: Mapped[str] = mapped_column(String(255))
    account: Mapped[str] = mapped_column(String(320), default="")
    refresh_token_enc: Mapped[str] = mapped_column(Text, default="")
    access_token_enc: Mapped[str] = mapped_column(Text, default="")
    access_token_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(32), default="not_authorized")
    status_reason: Mapped[str] = mapped_column(Text, default="")
    authorized_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_refreshed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    refresh_count: Mapped[int] = mapped_column(Integer, default=0)
    #: When the stored refresh token was issued (consent, or a rotation by a refresh).
    refresh_token_issued_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    #: When the provider said the refresh token dies whatever its use (Google ``refresh_token_expires_in``:
    #: a consent screen in Testing, or time-based access); None: no fixed end.
    refresh_token_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    #: When an access token was last handed out for a send (written at most hourly).
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    #: When ``status`` last changed (the start of a "re-authorization required" problem).
    status_since: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class EmailServerRow(Base):
    """The Email server page of an account: one row per account."""

    __tablename__ = "email_server"
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    security: Mapped[str] = mapped_column(String(16))
    username: Mapped[str] = mapped_column(String(320), default="")
    sender: Mapped[str] = mapped_column(String(320), default="")
    authentication: Mapped[str] = mapped_column(String(16))
    password_enc: Mapped[str] = mapped_column(Text, default="")
    ca_file: Mapped[str] = mapped_column(String(1024), default="")
    #: ``smtp``, ``graph`` or ``gmail_api`` (issue 24).
    delivery: Mapped[str] = mapped_column(String(16), default="smtp", server_default="smtp")
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class OAuthStateRow(Base):
    """A pending authorization request.  Keyed by a hash of ``state``; one-time (``used_at``)."""

    __tablename__ = "oauth_states"
    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: The account whose mailbox consents (every account shares the one redirect URI).
    account_id: Mapped[str] = mapped_column(String(64), default="default")
    #: Hash of the browser cookie the flow is bound to.
    binding_hash: Mapped[str] = mapped_column(String(64))
    code_verifier_enc: Mapped[str] = mapped_column(Text)
    provider: Mapped[str] = mapped_column(String(32))
    tenant: Mapped[str] = mapped_column(String(255), default="")
    client_id: Mapped[str] = mapped_column(String(255))
    redirect_uri: Mapped[str] = mapped_column(String(2048))
    return_to: Mapped[str] = mapped_column(String(512), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class OutboxMessageRow(Base):
    """One message of the outbox (see ``mailgate.outbox``); its RFC 5322 bytes are its :class:`OutboxBodyRow`.

    ``status``: queued, sending (claimed under a lease), sent, retrying, held (waiting for the administrator:
    consent or server configuration), failed.  ``recipient_results`` maps each envelope recipient to
    ``{"status": "sent"|"failed"|"pending", "code": int|None, "reply": str}``.
    """

    __tablename__ = "outbox_messages"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64), default="default")
    status: Mapped[str] = mapped_column(String(16))
    sender: Mapped[str] = mapped_column(String(320))
    recipients: Mapped[list[str]] = mapped_column(JSON)
    subject: Mapped[str] = mapped_column(String(255), default="")
    message_id: Mapped[str] = mapped_column(String(998))
    #: The body's size in bytes.
    size: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    #: Retries stop (status failed) after this time.
    deadline_at: Mapped[datetime] = mapped_column(UtcDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    last_error_code: Mapped[str] = mapped_column(String(64), default="")
    smtp_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    smtp_reply: Mapped[str] = mapped_column(Text, default="")
    recipient_results: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    #: SHA-256 of the request that created the message, to recognise a reused Idempotency-Key.
    request_hash: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)

    __table_args__ = (
        # Claiming: due messages of an account in claiming order (one status at a time), expired leases too
        # (status sending: the few being sent).
        Index("ix_outbox_due", "account_id", "status", "next_attempt_at", "created_at"),
        # Listing.
        Index("ix_outbox_created", "created_at"),
        # The sending-rate window: sent messages only (an enqueue writes no entry).
        Index(
            "ix_outbox_sent",
            "account_id",
            "sent_at",
            sqlite_where=text("sent_at IS NOT NULL"),
            postgresql_where=text("sent_at IS NOT NULL"),
        ),
    )


class OutboxBodyRow(Base):
    """The RFC 5322 bytes of an outbox message (``raw``: never log it), written once with the message.

    Apart from the message's row, which changes at every claim and result: SQLite writes a changed row whole,
    so a body kept in it (up to the size limit, 25 MB by default) was copied into the write-ahead log at each
    change, holding the database's write lock meanwhile, and read into memory with every claim.
    """

    __tablename__ = "outbox_bodies"
    id: Mapped[str] = mapped_column(String(36), ForeignKey("outbox_messages.id", ondelete="CASCADE"), primary_key=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)


class RelayUserRow(Base):
    """A credential of the SMTP relay (one per application).  ``password_hash``: SecretBox.digest of the
    generated password; the password itself is never stored."""

    __tablename__ = "relay_users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    #: The account it sends through (by name).
    account: Mapped[str] = mapped_column(String(64), default="default")
    #: Addresses (or ``*@domain``) it may send as besides its account's senders.
    senders: Mapped[list[str]] = mapped_column(JSON, default=list)
    password_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class AlertSettingsRow(Base):
    """Where alerts go (one row, id 1): a webhook, email addresses, and an optional fallback SMTP server for the
    email alerts when no account is healthy.  ``smtp_password_enc``: SecretBox ciphertext."""

    __tablename__ = "alert_settings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_url: Mapped[str] = mapped_column(String(2048), default="")
    #: Addresses separated by ", ".
    email_to: Mapped[str] = mapped_column(String(2048), default="")
    smtp_host: Mapped[str] = mapped_column(String(255), default="")
    smtp_port: Mapped[int] = mapped_column(Integer, default=587)
    smtp_security: Mapped[str] = mapped_column(String(16), default="starttls")
    smtp_username: Mapped[str] = mapped_column(String(320), default="")
    smtp_password_enc: Mapped[str] = mapped_column(Text, default="")
    smtp_sender: Mapped[str] = mapped_column(String(320), default="")
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class AlertConditionRow(Base):
    """A condition the notifier has announced as started and not yet as resolved (see mailgate.alerts).
    The primary key makes two notifiers (two processes) announce it once."""

    __tablename__ = "alert_conditions"
    account: Mapped[str] = mapped_column(String(64), primary_key=True)
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    severity: Mapped[str] = mapped_column(String(16), default="critical")
    message: Mapped[str] = mapped_column(Text, default="")
    since: Mapped[datetime] = mapped_column(UtcDateTime)
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AlertNotificationRow(Base):
    """One notification (a condition started or resolved, or a test) and its delivery on each channel.

    ``*_state``: pending (to be tried at ``*_next_at``), sent, failed (given up), or none (channel not set)."""

    __tablename__ = "alert_notifications"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event: Mapped[str] = mapped_column(String(16))
    account: Mapped[str] = mapped_column(String(64), default="")
    code: Mapped[str] = mapped_column(String(64), default="")
    #: The JSON the webhook receives (never a secret).
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    webhook_state: Mapped[str] = mapped_column(String(16), default="none")
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0)
    webhook_next_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    webhook_detail: Mapped[str] = mapped_column(Text, default="")
    email_state: Mapped[str] = mapped_column(String(16), default="none")
    email_attempts: Mapped[int] = mapped_column(Integer, default=0)
    email_next_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    email_detail: Mapped[str] = mapped_column(Text, default="")


class AuditRow(Base):
    """One entry of the audit log: who did what, when.  ``details`` names fields, never holds a secret."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    #: ``user admin``, ``API key``, ``CLI (user root)``, or ``anonymous`` (the OAuth redirect, a failed login).
    actor: Mapped[str] = mapped_column(String(128))
    #: e.g. ``oauth_config.changed``, ``account.deleted``, ``login.failed``.
    action: Mapped[str] = mapped_column(String(64))
    account: Mapped[str] = mapped_column(String(64), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
