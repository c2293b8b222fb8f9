"""SMTP relay for applications that only speak SMTP with a password (issue 22).

An aiosmtpd submission listener: STARTTLS (or implicit TLS), AUTH PLAIN/LOGIN with generated per-application
credentials (:class:`RelayUsers`), the sender check, and every message committed to the outbox before the
250: the same durability, limits and retries as the messages API.
"""

from __future__ import annotations

from pathlib import Path

from ..config import RelaySettings
from ..outbox import Outbox
from .guard import FailedLogins, RelayMetrics
from .handler import RelayHandler
from .server import Listening, RelayServer
from .tls import RelayCertificate, fingerprint, load_certificate, server_context
from .users import DEFAULT_ACCOUNT, NewRelayUser, RelayUser, RelayUsers, SenderCheck, sender_matches

__all__ = [
    "DEFAULT_ACCOUNT",
    "FailedLogins",
    "Listening",
    "NewRelayUser",
    "RelayCertificate",
    "RelayHandler",
    "RelayMetrics",
    "RelayServer",
    "RelayUser",
    "RelayUsers",
    "SenderCheck",
    "create_relay",
    "fingerprint",
    "load_certificate",
    "sender_matches",
]


def create_relay(
    settings: RelaySettings,
    data_dir: Path,
    *,
    users: RelayUsers,
    outbox: Outbox,
    sender_allowed: SenderCheck,
    metrics: RelayMetrics,
    failed_logins: FailedLogins | None = None,
) -> tuple[RelayServer, RelayCertificate]:
    """The relay server (not started) and its certificate (generated in ``data_dir`` on first use)."""
    certificate = load_certificate(settings, data_dir)
    assert certificate is not None  # create=True
    handler = RelayHandler(
        users,
        outbox,
        sender_allowed,
        metrics=metrics,
        failed_logins=failed_logins or FailedLogins(),
        trusted_networks=settings.trusted_networks,
    )
    return RelayServer(settings, handler, metrics, server_context(certificate)), certificate
