"""The two ways an alert leaves mailgate: a JSON POST to a webhook, and an email.

An email goes through the outbox of a healthy account (its token status valid, and not the account the alert
is about: that one may be unable to send), else straight through the fallback SMTP server.  Each function
answers what happened as a :class:`Delivery`; a failure says why without the webhook URL (it often holds a
token) or any password.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from ..errors import MailgateError
from ..message import from_raw
from ..outbox import Outbox
from ..smtp import SmtpConnection, build_message
from .settings import AlertSettings

__all__ = ["Delivery", "HealthyAccounts", "send_email", "send_webhook", "subject_and_text"]

#: Seconds a webhook has to answer.
WEBHOOK_TIMEOUT = 10.0
#: ``healthy_accounts()``: the accounts whose token status is valid and whose Email server is set up.
HealthyAccounts = Callable[[], Awaitable[list[str]]]


@dataclass(frozen=True)
class Delivery:
    """The outcome of one attempt on one channel."""

    ok: bool
    detail: str


async def send_webhook(client: httpx.AsyncClient, url: str, payload: dict[str, Any]) -> Delivery:
    """POST ``payload`` as JSON; any 2xx answer is a delivery (redirects are not followed)."""
    try:
        response = await client.post(
            url,
            content=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", "User-Agent": "mailgate-alerts"},
            timeout=WEBHOOK_TIMEOUT,
        )
    except httpx.TimeoutException:
        return Delivery(False, f"the webhook did not answer within {WEBHOOK_TIMEOUT:g} seconds")
    except httpx.HTTPError as exc:
        return Delivery(False, f"the webhook could not be reached ({type(exc).__name__})")
    if 200 <= response.status_code < 300:
        return Delivery(True, f"the webhook answered HTTP {response.status_code}")
    return Delivery(False, f"the webhook answered HTTP {response.status_code}")


def subject_and_text(payload: dict[str, Any]) -> tuple[str, str]:
    """The subject and plain-text body of the email of a notification."""
    account = payload.get("account") or "mailgate"
    label = {"started": "Needs attention", "resolved": "Resolved", "test": "Test alert"}.get(payload["event"], "Alert")
    subject = f"[mailgate] {label}: {account}: {payload.get('message', '')}"[:250]
    lines = [payload.get("message", "")]
    if payload.get("fix"):
        lines += ["", f"What to do: {payload['fix']}"]
    if payload.get("link"):
        lines += ["", f"Where: {payload['link']}"]
    lines += ["", f"Account: {account}", f"Code: {payload.get('code', '')}", f"Since: {payload.get('since', '')}"]
    return subject, "\n".join(lines) + "\n"


async def send_email(
    settings: AlertSettings, payload: dict[str, Any], outbox: Outbox, healthy: HealthyAccounts
) -> Delivery:
    """Email the notification to ``settings.email_to``: queued in a healthy account's outbox, else sent now
    through the fallback SMTP server."""
    subject, text = subject_and_text(payload)
    candidates = [name for name in await healthy() if name != payload.get("account")]
    for name in candidates:
        limits = await outbox.limits(name)
        if not limits.default_sender:
            continue
        message = build_message(sender=limits.default_sender, to=settings.email_to, subject=subject, text=text)
        try:
            view, _ = await outbox.enqueue(from_raw(bytes(message), limits), account_id=name)
        except MailgateError as exc:
            return Delivery(False, f"queuing through account {name} failed: {exc.message}")
        return Delivery(True, f"queued as message {view.id} through account {name}")
    fallback = settings.fallback_smtp
    if fallback is None:
        return Delivery(
            False,
            "no healthy account to send through, and no fallback SMTP server: configure one on the Alerts page",
        )
    message = build_message(sender=fallback.sender, to=settings.email_to, subject=subject, text=text)
    try:
        async with SmtpConnection(fallback.server(), None) as connection:
            result = await connection.send_message(message)
    except MailgateError as exc:
        return Delivery(False, f"the fallback SMTP server {fallback.host}: {exc.message}")
    if not result.accepted:
        return Delivery(False, f"the fallback SMTP server {fallback.host} refused every recipient")
    return Delivery(True, f"sent through the fallback SMTP server {fallback.host} to {', '.join(result.accepted)}")
