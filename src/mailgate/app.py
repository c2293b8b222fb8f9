"""Wiring: ``build_services(settings)`` creates every long-lived object and owns its lifecycle."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .accounts import Accounts
from .admins import Admins
from .alerts import AlertConfig, Notifier
from .audit import AuditLog
from .config import Settings
from .configure import ConfigService
from .errors import ConfigurationError
from .lifecycle import KeepAlive, ProblemWatch
from .mailer import Mailer
from .oauth import ConsentFlow, TokenClient, TokenManager
from .outbox import Outbox
from .problems import ProblemSource
from .providers import Catalogue, bundled_catalogue_text, load_catalogue
from .relay import RelayMetrics, RelayUsers
from .store import Database, SecretBox, load_or_create_key
from .store.files import private_data_dir
from .types import TokenStatus

__all__ = ["Services", "build_services", "load_providers"]


@dataclass
class Services:
    settings: Settings
    db: Database
    box: SecretBox
    catalogue: Catalogue
    token_client: TokenClient
    tokens: TokenManager
    consent: ConsentFlow
    config: ConfigService
    admins: Admins
    mailer: Mailer
    outbox: Outbox
    accounts: Accounts
    #: The SMTP relay's credentials and the counters of its listener.
    relay_users: RelayUsers
    relay_metrics: RelayMetrics
    #: Who changed what (see mailgate.audit).
    audit: AuditLog
    #: Where alerts go, and the notifier that sends them (``serve`` and ``worker`` run it).
    alerts: AlertConfig
    notifier: Notifier
    #: What needs the administrator's attention now, per account (``/healthz``, the banner, alerts).
    problems: ProblemSource
    #: Refreshes idle grants; started where the outbox worker runs (``keepalive.start()``).
    keepalive: KeepAlive

    async def aclose(self) -> None:
        await self.notifier.aclose()
        await self.keepalive.stop()
        await self.mailer.aclose()
        await self.token_client.aclose()
        await self.outbox.writes.close()
        await self.db.close()


def load_providers(settings: Settings) -> Catalogue:
    override = None
    if settings.providers_file is not None:
        try:
            override = settings.providers_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(
                f"MAILGATE_PROVIDERS_FILE {settings.providers_file} cannot be read: {exc.strerror}",
                hint="Point MAILGATE_PROVIDERS_FILE at a readable TOML file, or unset it.",
            ) from exc
    return load_catalogue(bundled_catalogue_text(), override, str(settings.providers_file or ""))


async def build_services(
    settings: Settings,
    *,
    token_client: TokenClient | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Services:
    """Open the database (migrating it), load the key and the provider catalogue, build the services."""
    catalogue = load_providers(settings)
    private_data_dir(settings.data_dir)  # 0700, files 0600: message bodies and tokens are in there
    box = SecretBox(load_or_create_key(settings.data_dir, settings.secret_key))
    db = Database(settings.resolved_database_url)
    try:
        await db.migrate()
    except BaseException:
        await db.close()
        raise
    client = token_client or TokenClient(clock=clock)
    tokens = TokenManager(
        db, box, client, catalogue, margin=timedelta(seconds=settings.refresh_margin_seconds), clock=clock
    )
    audit = AuditLog(db, clock=clock)
    config = ConfigService(db, box, catalogue, settings.default_redirect_uri, audit=audit, forget_tokens=tokens.forget)
    consent = ConsentFlow(db, box, client, catalogue, tokens, clock=clock, audit=audit)
    accounts = Accounts(db, config, consent, clock=clock, audit=audit)
    outbox = Outbox(db, config, catalogue, settings.outbox, clock=clock)
    alerts = AlertConfig(db, box, audit)

    def versions() -> tuple[int, ...]:
        # Not the outbox's counters: they move with every message, and a probe under load would read each time.
        return (config.changes, consent.changes, tokens.status_changes)

    problems = ProblemWatch(db, clock=clock, versions=versions)

    async def healthy_accounts() -> list[str]:
        return [a.name for a in await accounts.list() if a.token_status == TokenStatus.VALID.value]

    notifier = Notifier(
        db,
        alerts,
        problems,
        outbox=outbox,
        healthy=healthy_accounts,
        settings=settings.alerts,
        link_base=settings.base_url.rstrip("/") + settings.context_path,
        clock=clock,
    )
    return Services(
        settings=settings,
        db=db,
        box=box,
        catalogue=catalogue,
        token_client=client,
        tokens=tokens,
        consent=consent,
        config=config,
        admins=Admins(db, audit=audit),
        mailer=Mailer(config, tokens, catalogue),
        outbox=outbox,
        accounts=accounts,
        relay_users=RelayUsers(db, box, accounts.exists, audit=audit),
        relay_metrics=RelayMetrics(),
        audit=audit,
        alerts=alerts,
        notifier=notifier,
        problems=problems,
        keepalive=KeepAlive(db, tokens, clock=clock, idle=timedelta(days=settings.keepalive_days)),
    )
