"""Relay credentials: one generated password per application, stored as a keyed hash only.

A relay user belongs to an account (by name) and may send as that account's senders, plus the addresses of
its own ``senders`` list (an address, or ``*@domain``).
"""

from __future__ import annotations

import dataclasses
import functools
import hmac
import re
import secrets
import string
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from ..audit import AuditLog
from ..errors import NotFoundError, ValidationError
from ..singleflight import SingleFlight
from ..store import Database, SecretBox
from ..store.models import RelayUserRow
from ..store.repository import DEFAULT_ACCOUNT

__all__ = [
    "DEFAULT_ACCOUNT",
    "AccountCheck",
    "NewRelayUser",
    "RelayUser",
    "RelayUsers",
    "SenderCheck",
    "new_password",
    "sender_matches",
]

#: ``sender_allowed(account, address)``: may this account send as this address?  Injected (app.py).
SenderCheck = Callable[[str, str], Awaitable[bool]]
#: ``account_exists(name)``: is there such an account?  Injected (app.py).
AccountCheck = Callable[[str], Awaitable[bool]]

#: A user read from the database is used this long without reading it again (a relay client logs in on every
#: connection).  A user removed in another process is refused within this time; in this process, at once.
LOGIN_CACHE_SECONDS = 1.0
#: ``last_used_at`` is written at most this often per user.
LAST_USED_RESOLUTION = timedelta(minutes=1)

#: Letters and digits only: a password that starts with "-" is taken for an option by command-line clients
#: (swaks, msmtp's passwordeval scripts), and "_" or "-" confuse some devices' forms.
_PASSWORD_ALPHABET = string.ascii_letters + string.digits
#: 43 characters of 62: 256 bits from the OS's CSPRNG, so no one guesses it and a fast keyed hash suffices to store it.
_PASSWORD_LENGTH = 43


def new_password() -> str:
    """A generated relay password."""
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(_PASSWORD_LENGTH))


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
_ACCOUNT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SENDER = re.compile(r"^(\*|[^@\s<>,;\"]+)@[^@\s<>,;\"]+\.[^@\s<>,;\".]+$")


@dataclass(frozen=True)
class RelayUser:
    """A relay credential as listed (never its password or hash)."""

    name: str
    account: str
    senders: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "account": self.account,
            "senders": list(self.senders),
            "created_at": self.created_at.isoformat(),
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
        }


@dataclass(frozen=True)
class NewRelayUser:
    """A relay user just created, with its password: shown once, at creation."""

    user: RelayUser
    password: str = field(repr=False)

    @property
    def username(self) -> str:
        return self.user.name


def sender_matches(address: str, patterns: Sequence[str]) -> bool:
    """Whether ``address`` is one of ``patterns`` (addresses, or ``*@domain``), case-insensitively."""
    address = address.strip().lower()
    domain = address.rpartition("@")[2]
    for pattern in patterns:
        pattern = pattern.lower()
        if pattern == address or (pattern.startswith("*@") and pattern[2:] == domain):
            return True
    return False


def _user(row: RelayUserRow) -> RelayUser:
    return RelayUser(row.name, row.account, tuple(row.senders or ()), row.created_at, row.last_used_at)


class RelayUsers:
    """Adds, lists, removes and authenticates relay users."""

    def __init__(
        self, db: Database, box: SecretBox, account_exists: AccountCheck, *, audit: AuditLog | None = None
    ) -> None:
        self._db = db
        #: Users added and removed are recorded there.
        self._audit = audit
        self._box = box
        self._account_exists = account_exists
        #: name -> (password digest, user, when read (monotonic)): users recently read from the database.
        self._known: dict[str, tuple[str, RelayUser, float]] = {}
        self._reading: SingleFlight[str, tuple[str, RelayUser, float] | None] = SingleFlight()
        #: Incremented by every removal: a lookup that read a user before it must not cache it.
        self._removals = 0

    def __repr__(self) -> str:
        return f"RelayUsers({self._db!r})"

    async def add(self, name: str, *, account: str = DEFAULT_ACCOUNT, senders: Sequence[str] = ()) -> NewRelayUser:
        """Create a user with a generated password (returned once).  422 naming each bad field."""
        name = name.strip()
        account = (account or DEFAULT_ACCOUNT).strip()
        cleaned = tuple(dict.fromkeys(s.strip().lower() for s in senders if s.strip()))
        errors: dict[str, str] = {}
        if not _NAME.match(name):
            errors["name"] = "must be 1 to 64 letters, digits or . _ @ + - (starting with a letter or digit)"
        if not _ACCOUNT.match(account):
            errors["account"] = "must be 1 to 64 letters, digits or . _ -"
        elif not await self._account_exists(account):
            errors["account"] = f"{account!r} is not an account here"
        bad = [s for s in cleaned if not _SENDER.match(s)]
        if bad:
            errors["senders"] = f"{', '.join(map(repr, bad))}: each must be an address or *@domain"
        if errors:
            raise ValidationError(errors, hint="Correct the fields named and try again.")
        password = new_password()
        row = RelayUserRow(
            name=name,
            account=account,
            senders=list(cleaned),
            password_hash=self._box.digest(password),
            created_at=datetime.now(UTC),
        )
        try:
            async with self._db.session() as session:
                session.add(row)
        except IntegrityError:
            raise ValidationError(
                {"name": f"{name!r} is already a relay user"},
                hint="Choose another name, or remove the existing user first.",
            ) from None
        if self._audit is not None:
            await self._audit.record("relay_user.added", account=account, name=name, senders=len(cleaned))
        return NewRelayUser(_user(row), password)

    async def list(self) -> list[RelayUser]:
        async with self._db.session() as session:
            rows = (await session.execute(select(RelayUserRow).order_by(RelayUserRow.name))).scalars().all()
        return [_user(row) for row in rows]

    async def remove(self, name: str) -> None:
        """Delete the user: its application is refused from the next login on."""
        async with self._db.session() as session:
            result = await session.execute(delete(RelayUserRow).where(RelayUserRow.name == name))
        self._removals += 1
        self._known.pop(name, None)
        if getattr(result, "rowcount", 0) == 0:
            raise NotFoundError(
                f"No relay user named {name!r}.", hint="List the relay users with `mailgate relay user list`."
            )
        if self._audit is not None:
            await self._audit.record("relay_user.removed", name=name)

    async def authenticate(self, name: str, password: str) -> RelayUser | None:
        """The user when ``password`` is its password, else None.  One HMAC, and at most once a second per
        user one indexed read shared by the logins under way: well under a millisecond of CPU."""
        digest = self._box.digest(password)
        cached = self._known.get(name)
        if cached is None or time.monotonic() - cached[2] >= LOGIN_CACHE_SECONDS:
            # Applications log in on every connection, often many at once: those that find the user due share
            # one read (each doing its own, 16 clients made a read each per second).
            cached = await self._reading.run(name, functools.partial(self._read, name))
        if cached is None or not hmac.compare_digest(cached[0], digest):
            return None
        user = cached[1]
        now = datetime.now(UTC)
        if user.last_used_at is None or now - user.last_used_at >= LAST_USED_RESOLUTION:
            user = dataclasses.replace(user, last_used_at=now)
            self._known[name] = (cached[0], user, cached[2])
            async with self._db.session() as session:
                await session.execute(update(RelayUserRow).where(RelayUserRow.name == name).values(last_used_at=now))
        return user

    async def _read(self, name: str) -> tuple[str, RelayUser, float] | None:
        removals = self._removals
        async with self._db.session() as session:
            row = (await session.execute(select(RelayUserRow).where(RelayUserRow.name == name))).scalar_one_or_none()
        if row is None:
            self._known.pop(name, None)
            return None
        known = (row.password_hash, _user(row), time.monotonic())
        if removals == self._removals:  # not removed meanwhile (in this process): it may be remembered
            self._known[name] = known
        return known
