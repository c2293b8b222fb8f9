"""Administrator credentials and API keys: argon2 hashes only, never the secret itself."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from .errors import NotFoundError, ValidationError
from .singleflight import SingleFlight
from .store import Database
from .store.models import AdminUser, ApiKey

__all__ = ["ADMIN_USER", "Admins", "NewApiKey"]

ADMIN_USER = "admin"
_KEY_PREFIX = "mg_"
#: A verified API key is trusted this long without asking the database again (every request of an
#: application is authenticated: the lookup would cost more than the request).  A key deleted in another
#: process stops working within this time; in this process, at once.
API_KEY_CACHE_SECONDS = 1.0
#: ``last_used_at`` is written at most this often per key, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class NewApiKey:
    id: int
    name: str
    #: Shown once, at creation; only its SHA-256 is stored.
    key: str


class Admins:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._hasher = PasswordHasher()
        # A hash to verify against when the user does not exist, so both paths cost the same.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))
        #: SHA-256 of recently verified API keys -> when (monotonic).
        self._verified: dict[str, float] = {}
        #: Incremented by every deletion: a verification that read the key before it must not cache it.
        self._deletions = 0
        #: The database lookups of API keys under way, by SHA-256.
        self._looking_up: SingleFlight[str, bool] = SingleFlight()

    async def ensure_admin(self, configured_password: str) -> str | None:
        """Set up user ``admin``.  ``MAILGATE_ADMIN_PASSWORD`` (re)sets its password at every start; without
        it, a first start generates one and returns it so that it can be printed once."""
        async with self._db.session() as session:
            user = await _admin_user(session, ADMIN_USER)
            if configured_password:
                if user is None:
                    session.add(AdminUser(username=ADMIN_USER, password_hash=self._hasher.hash(configured_password)))
                elif not self._matches(user.password_hash, configured_password):
                    user.password_hash = self._hasher.hash(configured_password)
                return None
            if user is not None:
                return None
            generated = secrets.token_urlsafe(12)
            session.add(AdminUser(username=ADMIN_USER, password_hash=self._hasher.hash(generated)))
            return generated

    async def set_password(self, password: str) -> None:
        if len(password) < 8:
            raise ValidationError({"password": "must have at least 8 characters"})
        async with self._db.session() as session:
            user = await _admin_user(session, ADMIN_USER)
            if user is None:
                session.add(AdminUser(username=ADMIN_USER, password_hash=self._hasher.hash(password)))
            else:
                user.password_hash = self._hasher.hash(password)

    async def verify_password(self, username: str, password: str) -> bool:
        async with self._db.session() as session:
            user = await _admin_user(session, username)
        if user is None:
            self._matches(self._dummy, password)
            return False
        return self._matches(user.password_hash, password)

    def _matches(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def create_api_key(self, name: str) -> NewApiKey:
        name = name.strip()
        if not name or len(name) > 100:
            raise ValidationError({"name": "is required, at most 100 characters"})
        key = _KEY_PREFIX + secrets.token_urlsafe(32)
        async with self._db.session() as session:
            row = ApiKey(name=name, prefix=key[:10], key_hash=_sha256(key))
            session.add(row)
            await session.flush()
            return NewApiKey(id=row.id, name=name, key=key)

    async def verify_api_key(self, key: str) -> bool:
        if not key.startswith(_KEY_PREFIX):
            return False
        # API keys are long random strings: a fast hash is enough, and lets us look the key up by hash.
        digest = _sha256(key)
        checked = self._verified.get(digest)
        if checked is not None and time.monotonic() - checked < API_KEY_CACHE_SECONDS:
            return True
        # The requests that find the key due share one lookup: each doing its own, an application's 16
        # concurrent connections made dozens of database sessions each time the cache ran out.
        return await self._looking_up.run(digest, functools.partial(self._look_up, digest))

    async def _look_up(self, digest: str) -> bool:
        while True:
            deletions = self._deletions
            async with self._db.session() as session:
                row = (await session.execute(select(ApiKey).where(ApiKey.key_hash == digest))).scalar_one_or_none()
                if row is None or not hmac.compare_digest(row.key_hash, digest):
                    self._verified.pop(digest, None)
                    return False
                now = datetime.now(UTC)
                if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
                    row.last_used_at = now
            if deletions == self._deletions:
                self._verified[digest] = time.monotonic()
                return True
            # A key was deleted meanwhile (perhaps this one): read again, for every caller waiting.

    async def list_api_keys(self) -> list[dict[str, object]]:
        async with self._db.session() as session:
            rows = (await session.execute(select(ApiKey).order_by(ApiKey.id))).scalars().all()
        return [
            {
                "id": r.id,
                "name": r.name,
                "prefix": r.prefix,
                "created_at": r.created_at.isoformat(),
                "last_used_at": r.last_used_at.isoformat() if r.last_used_at else None,
            }
            for r in rows
        ]

    async def delete_api_key(self, key_id: int) -> None:
        async with self._db.session() as session:
            result = await session.execute(delete(ApiKey).where(ApiKey.id == key_id))
        # Committed: forget every verified key (which digest was deleted is not known here).
        self._deletions += 1
        self._verified.clear()
        if getattr(result, "rowcount", 0) == 0:
            raise NotFoundError(f"No API key with id {key_id}.", hint="List the keys with `mailgate apikey list`.")


async def _admin_user(session: AsyncSession, username: str) -> AdminUser | None:
    return (await session.execute(select(AdminUser).where(AdminUser.username == username))).scalar_one_or_none()


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
