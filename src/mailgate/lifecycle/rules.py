"""What needs attention, per account: pure rules from what is stored about it to :class:`Problem`\\ s.

No I/O: :mod:`.watch` reads the facts, these functions judge them (tests call them with any clock).
Facts behind the rules: shared/PROVIDERS.md (Google Testing grants die 7 days after consent; Microsoft
secrets expire after at most 24 months; refresh tokens die after 90 days (Microsoft) or 6 months (Google)
without use, which the keep-alive prevents).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from urllib.parse import quote

from ..problems import Problem
from ..types import TokenStatus

__all__ = [
    "DELIVERY_FAILING_AFTER",
    "TESTING_GRANT_CRITICAL",
    "AccountFacts",
    "account_links",
    "account_problems",
]

DEFAULT_ACCOUNT = "default"
Severity = Literal["critical", "warning"]
#: Delivery failing this long (no success since) is a problem; shorter outages retry quietly.
DELIVERY_FAILING_AFTER = timedelta(minutes=10)
#: A Google Testing grant this close to its end degrades health (before: a warning from the consent on).
TESTING_GRANT_CRITICAL = timedelta(days=2)
#: Days before a client secret's expiry date at which each problem starts (code, severity).
_SECRET_STEPS: tuple[tuple[int, str, Severity], ...] = (
    (0, "client_secret_expired", "critical"),
    (1, "client_secret_expiring_1d", "critical"),
    (7, "client_secret_expiring_7d", "critical"),
    (30, "client_secret_expiring_30d", "warning"),
)
#: An ``invalid_grant`` this long after a Google consent is the Testing consent screen's 7-day limit.
_TESTING_DEATH = (timedelta(days=6), timedelta(days=8))
#: Entra's "client secret expired" (shared/PROVIDERS.md).
_SECRET_EXPIRED_CODE = "AADSTS7000222"
_PUBLISH = (
    "In the Google Cloud console, open APIs & Services > OAuth consent screen and set Publishing status to "
    "In production (Publish app): grants of a consent screen in Testing die 7 days after consent. Then "
    "authorize again on the Email server page."
)


@dataclass(frozen=True)
class AccountFacts:
    """What mailgate stores about one account, as the rules need it (no secret)."""

    name: str
    #: The OAuth page's provider; ``""`` when the OAuth page was never saved.
    provider: str = ""
    #: The Email server page says ``oauth`` (or is not saved yet).
    uses_oauth: bool = True
    #: An app-only identity (client credentials, service account): no consent, no refresh token.
    app_only: bool = False
    #: The Email server page's user name (the mailbox to send as).
    username: str = ""
    #: When the OAuth page was saved (the start of "not authorized yet").
    configured_at: datetime | None = None
    refresh_token_set: bool = False
    #: The mailbox that consented (from the ID token), ``""`` when unknown.
    consented_mailbox: str = ""
    status: TokenStatus = TokenStatus.NOT_AUTHORIZED
    status_reason: str = ""
    status_since: datetime | None = None
    authorized_at: datetime | None = None
    refresh_token_expires_at: datetime | None = None
    client_secret_expires_on: date | None = None
    #: Since when delivery fails without a success since (None: not failing), and what the last error said.
    failing_since: datetime | None = None
    failing_messages: int = 0
    failing_error: str = ""


def account_links(name: str) -> tuple[str, str]:
    """The OAuth and Email server pages of account ``name``, relative to the context path (the guide's own
    pages for ``default``); the admin pages are served at these paths (:mod:`mailgate.web.pages`)."""
    if name == DEFAULT_ACCOUNT:
        return "/configuration/oauth", "/configuration/email-server"
    base = f"/configuration/accounts/{quote(name, safe='')}"
    return f"{base}/oauth", f"{base}/email-server"


def _who(name: str) -> str:
    return "" if name == DEFAULT_ACCOUNT else f" (account {name})"


def account_problems(facts: AccountFacts, now: datetime) -> list[Problem]:
    """Every problem of one account at ``now``."""
    problems: list[Problem] = []
    if facts.provider and facts.uses_oauth:
        problems += _grant_problems(facts, now)
        problems += _secret_problems(facts, now)
    problem = _delivery_problem(facts, now)
    if problem is not None:
        problems.append(problem)
    return problems


def _grant_problems(facts: AccountFacts, now: datetime) -> list[Problem]:
    _, email_page = account_links(facts.name)
    name, who = facts.name, _who(facts.name)
    if facts.app_only:
        return _app_only_problems(facts, now)
    if not facts.refresh_token_set:
        # Saved but never authorized: expected during setup, so a warning (held mail becomes delivery_failing).
        return [
            Problem(
                name,
                "not_authorized",
                f"OAuth is configured but no mailbox has authorized mailgate yet{who}.",
                "On the Email server page, choose OAuth authentication and click Authorize.",
                facts.configured_at or now,
                email_page,
                "warning",
            )
        ]
    if facts.status is TokenStatus.REAUTHORIZATION_REQUIRED:
        reason = facts.status_reason.rstrip(". ") or "the provider no longer accepts the refresh token"
        since = facts.status_since or now
        if _testing_grant_died(facts, since):
            message = (
                f"The Google grant{who} ended, as grants of a consent screen in Testing do 7 days after "
                f"consent: {reason}."
            )
            return [Problem(name, "reauthorization_required", message, _PUBLISH, since, email_page)]
        message = f"The mailbox must be authorized again{who}: {reason}."
        fix = "On the Email server page, click Authorize and consent again with the mailbox that sends."
        return [Problem(name, "reauthorization_required", message, fix, since, email_page)]
    problems: list[Problem] = []
    ends = facts.refresh_token_expires_at
    if ends is not None:
        left = ends - now
        when = ends.strftime("%Y-%m-%d %H:%M UTC")
        message = (
            f"The Google grant{who} stops working at {when}: the provider gave it a fixed lifetime "
            "(a consent screen in Testing lets grants live 7 days)."
        )
        severity: Severity = "critical" if left <= TESTING_GRANT_CRITICAL else "warning"
        problems.append(
            Problem(name, "testing_grant_expiring", message, _PUBLISH, facts.authorized_at or now, email_page, severity)
        )
    consented, username = facts.consented_mailbox, facts.username
    if consented and username and consented.lower() != username.lower():
        problems.append(
            Problem(
                name,
                "wrong_mailbox_consented",
                f"{consented} authorized mailgate{who}, but the Email server page sends as {username}: the "
                "provider refuses to let one mailbox's token send as another.",
                f"On the Email server page, click Authorize and sign in at the provider as {username} (use its "
                f"account picker or a private window); or, if {consented} is the mailbox to send from, set "
                f"Username to {consented}.",
                facts.authorized_at or now,
                email_page,
            )
        )
    return problems


def _testing_grant_died(facts: AccountFacts, since: datetime) -> bool:
    """An ``invalid_grant`` on Google at the end the provider announced, or 6-8 days after consent."""
    if facts.provider != "google" or "invalid_grant" not in facts.status_reason:
        return False
    if facts.refresh_token_expires_at is not None and since >= facts.refresh_token_expires_at - timedelta(hours=1):
        return True
    if facts.authorized_at is None:
        return False
    low, high = _TESTING_DEATH
    return low <= since - facts.authorized_at <= high


def _secret_problems(facts: AccountFacts, now: datetime) -> list[Problem]:
    expires = facts.client_secret_expires_on
    oauth_page, _ = account_links(facts.name)
    who = _who(facts.name)
    fix = (
        "Create a new client secret for the app registration (Entra: Certificates & secrets > New client "
        "secret), paste its Value into Client Secret on the OAuth page with its expiry date, and save."
    )
    if _SECRET_EXPIRED_CODE in facts.status_reason:
        # The provider said so at the last refresh (Entra AADSTS7000222), with or without a date entered.
        message = f"The provider refuses the client secret{who}: it has expired ({facts.status_reason.rstrip('. ')})."
        return [Problem(facts.name, "client_secret_expired", message, fix, facts.status_since or now, oauth_page)]
    if expires is None:
        return []
    days_left = (expires - now.date()).days
    for days, code, severity in _SECRET_STEPS:
        if days_left <= days:
            start = datetime.combine(expires - timedelta(days=days), time(), tzinfo=UTC)
            if code == "client_secret_expired":
                message = f"The client secret{who} expired on {expires.isoformat()}: the provider refuses it."
            else:
                plural = "s" if days_left != 1 else ""
                message = (
                    f"The client secret{who} expires on {expires.isoformat()}, in {days_left} day{plural}: "
                    "mailgate cannot refresh tokens after that."
                )
            return [Problem(facts.name, code, message, fix, start, oauth_page, severity)]
    return []


def _app_only_problems(facts: AccountFacts, now: datetime) -> list[Problem]:
    """An app-only identity gets each token by its grant: the only grant problem is a token request refused."""
    if not facts.status_reason:
        return []
    oauth_page, _ = account_links(facts.name)
    message = f"The app-only identity{_who(facts.name)} gets no access token: {facts.status_reason.rstrip('. ')}."
    fix = "Correct the credentials or the provider-side permission named above on the OAuth page, then Save."
    return [Problem(facts.name, "app_only_token_refused", message, fix, facts.status_since or now, oauth_page)]


def _delivery_problem(facts: AccountFacts, now: datetime) -> Problem | None:
    since = facts.failing_since
    if since is None or now - since < DELIVERY_FAILING_AFTER:
        return None
    _, email_page = account_links(facts.name)
    minutes = int((now - since).total_seconds() // 60)
    error = facts.failing_error.rstrip(". ")
    message = (
        f"Delivery{_who(facts.name)} has failed for {minutes} minutes: {facts.failing_messages} message(s) "
        "waiting, none sent since." + (f" Last error: {error}." if error else "")
    )
    fix = (
        "The messages are kept and sent when the cause is fixed. Open the Email server page and click Test to see "
        "which step fails and what to do."
    )
    return Problem(facts.name, "delivery_failing", message, fix, since, email_page)
