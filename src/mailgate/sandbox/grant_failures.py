"""The failures of a grant's life, switched on by tests (issue 23): what an administrator meets months after
setup, reproduced in seconds with the sandbox's clock.

- One mailbox's consent revoked (the user removed the app, or an admin revoked its sessions): its refresh
  tokens answer ``invalid_grant``; a new consent works again.
- A client secret expired (Entra ``AADSTS7000222``, ``invalid_client``): every token request of that client
  is refused until it is "renewed".
- Google's consent screen in Testing: each new grant lives 7 days (configurable) whatever its use; token answers
  carry ``refresh_token_expires_in`` (the remaining lifetime, in seconds), then refreshes get ``invalid_grant``.
- The wrong mailbox consents: whatever the consent form says, the consent is given as a chosen account (as
  when the provider's account picker offers the browser's signed-in account).

SMTP-side failures live elsewhere (kept apart so that both sets grow without colliding).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter
from starlette.responses import JSONResponse, Response

from .problems import TokenError

__all__ = ["GrantFailures", "grant_failures_router"]

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


class GrantFailures:
    """The switches, consulted by :class:`~mailgate.sandbox.state.SandboxState`.  Times are the sandbox clock's."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        #: Mailbox (lower case) -> when its consent was revoked: grants made before then are dead.
        self.revoked_accounts: dict[str, float] = {}
        #: Client ids whose secret has expired.
        self.expired_secrets: set[str] = set()
        #: Seconds a new grant lives whatever its use (Google Testing: 7 days); None: no fixed end.
        self.testing_lifetime: int | None = None
        #: Consents are given as this mailbox whatever the form says; "" = as the form says.
        self.consent_as = ""

    def revoke_account(self, account: str) -> None:
        """Every grant ``account`` gave so far dies (its refresh tokens answer ``invalid_grant``)."""
        self.revoked_accounts[account.lower()] = self._clock()

    def grant_end(self) -> float | None:
        """The fixed end of a grant made now (Testing mode), or None."""
        return self._clock() + self.testing_lifetime if self.testing_lifetime else None

    def check_client(self, client_id: str) -> None:
        """Refuse a token request of a client whose secret expired, in Entra's words."""
        if client_id in self.expired_secrets:
            raise TokenError(
                "invalid_client",
                7000222,
                f"The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to "
                "create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate "
                "credentials for added security: https://aka.ms/certCreds.",
                "The OAuth client secret has expired.",
                status=401,
            )

    def dead_reason(self, account: str | None, created_at: float, fixed_end: float | None) -> str:
        """Why a grant given by ``account`` at ``created_at`` no longer works ("" while it does)."""
        revoked = self.revoked_accounts.get((account or "").lower())
        if revoked is not None and created_at <= revoked:
            return "the user removed the app's access"
        if fixed_end is not None and self._clock() >= fixed_end:
            return "the grant of a consent screen in Testing expired 7 days after consent"
        return ""

    def answer_fields(self, fixed_end: float | None) -> dict[str, object]:
        """Extra token answer fields: Google's ``refresh_token_expires_in`` for a grant with a fixed end."""
        if fixed_end is None:
            return {}
        return {"refresh_token_expires_in": max(int(fixed_end - self._clock()), 0)}


def grant_failures_router(failures: GrantFailures) -> APIRouter:
    """``/_control/...`` routes switching the grant failures (no authentication: a loopback test tool)."""
    router = APIRouter()

    @router.post("/_control/revoke-account")
    async def revoke_account(account: str) -> Response:
        """The consents ``account`` gave so far are revoked."""
        if "@" not in account:
            return JSONResponse({"error": "account must be a mailbox (name@domain)"}, status_code=400)
        failures.revoke_account(account)
        return JSONResponse({"revoked": account})

    @router.post("/_control/client-secret")
    async def client_secret(client_id: str, expired: str) -> Response:
        """``?expired=true``: the client's secret is expired (``AADSTS7000222``) until ``?expired=false``."""
        if expired.lower() not in (*_TRUE, *_FALSE):
            return JSONResponse({"error": "expired must be true or false"}, status_code=400)
        if expired.lower() in _TRUE:
            failures.expired_secrets.add(client_id)
        else:
            failures.expired_secrets.discard(client_id)
        return JSONResponse({"client_id": client_id, "expired": client_id in failures.expired_secrets})

    @router.post("/_control/testing-mode")
    async def testing_mode(days: float) -> Response:
        """New grants live ``days`` whatever their use (Google consent screen in Testing: 7); 0 turns it off."""
        if not 0 <= days <= 3650:
            return JSONResponse({"error": "days must be between 0 and 3650"}, status_code=400)
        failures.testing_lifetime = int(days * 86400) or None
        return JSONResponse({"grant_lifetime_seconds": failures.testing_lifetime})

    @router.post("/_control/consent-as")
    async def consent_as(account: str = "") -> Response:
        """Consents are given as ``account`` whatever the form says ("" turns it off)."""
        if account and "@" not in account:
            return JSONResponse({"error": "account must be a mailbox (name@domain)"}, status_code=400)
        failures.consent_as = account
        return JSONResponse({"consent_as": account})

    return router
