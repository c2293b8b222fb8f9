"""SMTP-side failures the sandbox can be told to answer with, per mailbox, worded as Microsoft 365 and Gmail do.

The OAuth side of a grant can be fine while the mail server still refuses: SMTP AUTH disabled for the mailbox
(535 5.7.139), a password login refused (550 5.7.30), no Send As permission (550 5.7.60), login throttling
(454 4.7.0) or too many connections (432 4.3.2).  Tests and demonstrations switch them on with
``POST /_control/smtp-fault`` (or :meth:`SmtpFaults.set`).  A token of the wrong mailbox needs no switch: the
SMTP server refuses it with 535 5.7.3 by itself.  Facts: shared/PROVIDERS.md, "SMTP answers".
"""

from __future__ import annotations

from typing import Literal, get_args

from fastapi import APIRouter
from starlette.responses import JSONResponse, Response

__all__ = ["ANY_MAILBOX", "FAULT_REPLIES", "SmtpFault", "SmtpFaults", "smtp_faults_router"]

SmtpFault = Literal[
    "smtp_auth_disabled", "basic_auth_refused", "send_as_denied", "login_throttled", "too_many_connections"
]

#: The reply of each fault (Microsoft's words; 454 is Gmail's).
FAULT_REPLIES: dict[SmtpFault, str] = {
    "smtp_auth_disabled": "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
    "Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.",
    "basic_auth_refused": "550 5.7.30 Basic authentication is not supported for Client Submission.",
    "send_as_denied": "550 5.7.60 SMTP; Client does not have permissions to send as this sender",
    "login_throttled": "454 4.7.0 Too many login attempts, please try again later.",
    "too_many_connections": "432 4.3.2 Concurrent connections limit exceeded.",
}

#: The mailbox name that stands for every mailbox.
ANY_MAILBOX = "*"

# Which command each fault answers: AUTH with a bearer token, AUTH with a password, or MAIL FROM.
_ON_TOKEN_AUTH: tuple[SmtpFault, ...] = ("smtp_auth_disabled", "login_throttled", "too_many_connections")
_ON_PASSWORD_AUTH: tuple[SmtpFault, ...] = ("basic_auth_refused", *_ON_TOKEN_AUTH)


class SmtpFaults:
    """The faults switched on, by mailbox (lower case) or :data:`ANY_MAILBOX`."""

    def __init__(self) -> None:
        self._faults: dict[str, SmtpFault] = {}

    def set(self, mailbox: str, fault: SmtpFault | None) -> None:
        """Make ``mailbox`` (``*``: every mailbox) fail with ``fault`` from now on; None clears it."""
        if fault is None:
            self._faults.pop(mailbox.lower(), None)
        else:
            self._faults[mailbox.lower()] = fault

    def clear(self) -> None:
        self._faults.clear()

    def as_dict(self) -> dict[str, str]:
        return dict(self._faults)

    def _reply(self, mailbox: str, kinds: tuple[SmtpFault, ...]) -> str | None:
        fault = self._faults.get(mailbox.lower()) or self._faults.get(ANY_MAILBOX)
        return FAULT_REPLIES[fault] if fault in kinds else None

    def on_auth(self, mailbox: str, *, password: bool) -> str | None:
        """The refusal of an AUTH that would otherwise succeed for ``mailbox``, or None."""
        return self._reply(mailbox, _ON_PASSWORD_AUTH if password else _ON_TOKEN_AUTH)

    def on_mail(self, mailbox: str) -> str | None:
        """The refusal of MAIL FROM in a session authenticated as ``mailbox``, or None."""
        return self._reply(mailbox, ("send_as_denied",))


def smtp_faults_router(faults: SmtpFaults) -> APIRouter:
    """``POST /_control/smtp-fault?mailbox=M&fault=F`` (``fault=none`` clears) and ``GET /_control/smtp-faults``."""
    router = APIRouter()
    names = get_args(SmtpFault)

    @router.post("/_control/smtp-fault")
    async def set_fault(fault: str, mailbox: str = ANY_MAILBOX) -> Response:
        if fault != "none" and fault not in names:
            return JSONResponse({"error": f"fault must be none or one of {', '.join(names)}"}, status_code=400)
        faults.set(mailbox, None if fault == "none" else fault)  # type: ignore[arg-type]
        return JSONResponse(faults.as_dict())

    @router.get("/_control/smtp-faults")
    async def list_faults() -> Response:
        return JSONResponse(faults.as_dict())

    return router
