"""Administrator credentials and API keys: argon2 hashes only, never the secret itself."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from .audit import AuditLog
from .errors import NotFoundError, ValidationError
from .singleflight import SingleFlight
from .store import Database
from .store.models import AdminUser, ApiKey, RevokedSession

__all__ = [
    "ADMIN_USER",
    "API_KEY_CACHE_SECONDS",
    "HASHING_THREADS",
    "PASSWORD_CACHE_SECONDS",
    "PASSWORD_RECHECK_SECONDS",
    "Admins",
    "NewApiKey",
    "password_generation",
]

ADMIN_USER = "admin"
_KEY_PREFIX = "mg_"
#: A verified API key is trusted this long without asking the database again (every request of an
#: application is authenticated: the lookup would cost more than the request).  A key deleted in another
#: process stops working within this time; in this process, at once.
API_KEY_CACHE_SECONDS = 1.0
#: ``last_used_at`` is written at most this often per key, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
#: argon2 runs in worker threads, at most this many at once: each takes ~120 ms of CPU and 64 MiB, and on the
#: event loop it stalled every request (issue 20).  Further verifications wait their turn, off the loop.
HASHING_THREADS = 2
#: A verified HTTP Basic password is trusted this long without asking the database again (like API keys)...
PASSWORD_RECHECK_SECONDS = 1.0
#: ...and, while its user's stored hash has not changed, this long in all before argon2 runs again.
PASSWORD_CACHE_SECONDS = 300.0


@dataclass(frozen=True)
class NewApiKey:
    id: int
    name: str
    #: Shown once, at creation; only its SHA-256 is stored.
    key: str


def password_generation(password_hash: str) -> str:
    """A short fingerprint of a stored password hash, new at every password change (argon2 salts each hash):
    sessions carry it and end when it changes.  A digest, so a cookie shows nothing of the hash itself."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


@dataclass
class _Verified:
    """A password verified by argon2: against which stored hash, when first, and when last confirmed."""

    password_hash: str = field(repr=False)
    verified_at: float
    confirmed_at: float


class Admins:
    def __init__(self, db: Database, *, hasher: PasswordHasher | None = None, audit: AuditLog | None = None) -> None:
        self._db = db
        #: Sign-ins, password changes and API keys created or deleted are recorded there.
        self._audit = audit
        self._hasher = hasher or PasswordHasher()
        self._hashing = anyio.CapacityLimiter(HASHING_THREADS)
        # A hash to verify against when the user does not exist, so both paths cost the same.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))
        #: Keyed digests (HMAC under a key of this process only) of recently verified user + password pairs:
        #: no password, nor anything one could test guesses against without the key, stays in memory.
        self._password_key = secrets.token_bytes(32)
        self._passwords: dict[str, _Verified] = {}
        self._checking: SingleFlight[str, bool] = SingleFlight()
        #: Incremented by every password change here: a check that read the hash before it must not be kept.
        self._password_changes = 0
        #: SHA-256 of recently verified API keys -> when (monotonic).
        self._verified: dict[str, float] = {}
        #: Incremented by every deletion: a verification that read the key before it must not cache it.
        self._deletions = 0
        #: The database lookups of API keys under way, by SHA-256.
        self._looking_up: SingleFlight[str, bool] = SingleFlight()

    async def ensure_admin(self, configured_password: str) -> str | None:
        """Set up user ``admin``.  ``MAILGATE_ADMIN_PASSWORD`` (re)sets its password at every start; without
        it, a first start generates one and returns it so that it can be printed once."""
        changed = False
        async with self._db.session() as session:
            user = await _admin_user(session, ADMIN_USER)
            if configured_password:
                if user is None:
                    session.add(AdminUser(username=ADMIN_USER, password_hash=await self._hash(configured_password)))
                elif not await self._matches(user.password_hash, configured_password):
                    # A new hash (new salt): sessions of the old password end (see password_generation).
                    user.password_hash = await self._hash(configured_password)
                    self._forget_passwords()
                    changed = True
            elif user is None:
                generated = secrets.token_urlsafe(12)
                session.add(AdminUser(username=ADMIN_USER, password_hash=await self._hash(generated)))
                return generated
        if changed:
            await self._record("admin.password_changed", actor="MAILGATE_ADMIN_PASSWORD", user=ADMIN_USER)
        return None

    async def set_password(self, password: str) -> None:
        if len(password) < 8:
            raise ValidationError({"password": "must have at least 8 characters"})
        async with self._db.session() as session:
            user = await _admin_user(session, ADMIN_USER)
            if user is None:
                session.add(AdminUser(username=ADMIN_USER, password_hash=await self._hash(password)))
            else:
                user.password_hash = await self._hash(password)
        # Committed: no verification of the old password is trusted any longer (other processes: within
        # PASSWORD_RECHECK_SECONDS, when they find the stored hash changed).
        self._forget_passwords()
        await self._record("admin.password_changed", user=ADMIN_USER)

    async def _record(self, action: str, *, actor: str | None = None, **details: Any) -> None:
        if self._audit is not None:
            await self._audit.record(action, actor=actor, **details)

    async def record_sign_in(self, username: str, ok: bool, *, address: str, via: str) -> None:
        """Put a sign-in in the audit log: each on the login form, failed ones with HTTP Basic (a successful
        Basic sign-in is every API request's, not an event)."""
        actor = f"user {username}" if ok else "anonymous"
        await self._record(
            "login.succeeded" if ok else "login.failed", actor=actor, user=username, address=address, via=via
        )

    async def verify_password(self, username: str, password: str) -> bool:
        """Whether ``password`` is ``username``'s.  argon2 runs off the event loop; a pair verified in the
        last PASSWORD_CACHE_SECONDS is trusted again (its stored hash re-read at most once a second)."""
        digest = hmac.new(self._password_key, f"{username}\x00{password}".encode(), hashlib.sha256).hexdigest()
        known = self._passwords.get(digest)
        if known is not None and time.monotonic() - known.confirmed_at < PASSWORD_RECHECK_SECONDS:
            return True
        # Concurrent requests with the same credentials share one check: an application's connections
        # starting together would otherwise each queue an argon2 verification (and so would a flood).
        return await self._checking.run(digest, functools.partial(self._check, username, password, digest))

    async def _check(self, username: str, password: str, digest: str) -> bool:
        changes = self._password_changes
        async with self._db.session() as session:
            user = await _admin_user(session, username)
        known = self._passwords.pop(digest, None)
        now = time.monotonic()
        if user is None:
            await self._matches(self._dummy, password)
            return False
        if known is None or now - known.verified_at >= PASSWORD_CACHE_SECONDS:
            if not await self._matches(user.password_hash, password):
                return False
            known = _Verified(user.password_hash, verified_at=now, confirmed_at=now)
        elif not hmac.compare_digest(user.password_hash, known.password_hash):
            return False  # changed since (by another process): a wrong password now
        if changes == self._password_changes:  # not changed in this process meanwhile: remember it
            self._prune(now)
            known.confirmed_at = time.monotonic()
            self._passwords[digest] = known
        return True

    def _forget_passwords(self) -> None:
        self._password_changes += 1
        self._passwords.clear()

    def _prune(self, now: float) -> None:
        for digest in [d for d, v in self._passwords.items() if now - v.verified_at >= PASSWORD_CACHE_SECONDS]:
            del self._passwords[digest]

    async def _hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self._hasher.hash, password, limiter=self._hashing)

    async def _matches(self, password_hash: str, password: str) -> bool:
        def verify() -> bool:
            try:
                return self._hasher.verify(password_hash, password)
            except (VerificationError, InvalidHashError):
                return False

        return await anyio.to_thread.run_sync(verify, limiter=self._hashing)

    # -- admin sessions (the cookies are signed by web/session.py; their end is recorded here) -------------
    async def session_valid(self, username: str, session_id: str, generation: str) -> bool:
        """Whether a signed session is still good: not logged out, and issued under the current password."""
        async with self._db.session() as session:
            user = await _admin_user(session, username)
            revoked = await session.get(RevokedSession, session_id)
        if user is None or revoked is not None:
            return False
        return hmac.compare_digest(password_generation(user.password_hash), generation)

    async def current_generation(self, username: str) -> str | None:
        """The password generation a new session of ``username`` carries (None: no such user)."""
        async with self._db.session() as session:
            user = await _admin_user(session, username)
        return None if user is None else password_generation(user.password_hash)

    async def revoke_session(self, session_id: str, expires_at: datetime) -> None:
        """Refuse this session from now on, in every process and after restarts, until it would have expired
        anyway; the rows of sessions past their expiry are deleted on the way."""
        async with self._db.session() as session:
            await session.execute(delete(RevokedSession).where(RevokedSession.expires_at <= datetime.now(UTC)))
            if await session.get(RevokedSession, session_id) is None:
                session.add(RevokedSession(session_id=session_id, expires_at=expires_at))

    async def create_api_key(self, name: str) -> NewApiKey:
        name = name.strip()
        if not name or len(name) > 100:
            raise ValidationError({"name": "is required, at most 100 characters"})
        key = _KEY_PREFIX + secrets.token_urlsafe(32)
        async with self._db.session() as session:
            row = ApiKey(name=name, prefix=key[:10], key_hash=_sha256(key))
            session.add(row)
            await session.flush()
            created = NewApiKey(id=row.id, name=name, key=key)
        await self._record("api_key.created", id=created.id, name=name, prefix=key[:10])
        return created

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
        await self._record("api_key.deleted", id=key_id)


async def _admin_user(session: AsyncSession, username: str) -> AdminUser | None:
    return (await session.execute(select(AdminUser).where(AdminUser.username == username))).scalar_one_or_none()


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
