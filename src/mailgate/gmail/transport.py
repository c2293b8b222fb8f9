"""The Gmail API ``POST /upload/gmail/v1/users/me/messages/send?uploadType=media``, body ``message/rfc822``.

Scope ``https://www.googleapis.com/auth/gmail.send`` is enough (narrower than https://mail.google.com/ and not
a restricted scope).  Recipients come from the headers; a Bcc header is honoured and removed from the copies
delivered (see :mod:`mailgate.httpsend.envelope`).  Media uploads take messages up to 35 MB: larger ones are
refused up front, naming the limit.
"""

from __future__ import annotations

import httpx

from ..httpsend import ApiError, HttpTransport, json_body

__all__ = ["GMAIL_MAX_MESSAGE_BYTES", "GmailTransport"]

#: The Gmail API's media upload limit for messages.send.
GMAIL_MAX_MESSAGE_BYTES = 35 * 1024 * 1024
#: 403 reasons that mean "slow down", not "forbidden" (Gmail API: usage limits).
_RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "dailyLimitExceeded", "quotaExceeded"})


class GmailTransport(HttpTransport):
    """Sends as the consented Google account (``users/me``) through the Gmail API."""

    api = "the Gmail API"
    max_bytes = GMAIL_MAX_MESSAGE_BYTES
    limit_text = "the Gmail API takes messages of at most 35 MB"
    grant_hint = (
        "Enable the Gmail API in the Google Cloud project of the OAuth client, add the scope "
        "https://www.googleapis.com/auth/gmail.send to its consent screen (for a service account: allow it in "
        "the Admin console's domain-wide delegation), then click Authorize again."
    )

    @property
    def mailbox(self) -> str:
        return self.config.username or "the consented account"

    def send_request(self, token: str, message: bytes) -> httpx.Request:
        url = f"{self.base_url}/upload/gmail/v1/users/me/messages/send"
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "message/rfc822"}
        return self._client.build_request("POST", url, params={"uploadType": "media"}, content=message, headers=headers)

    def probe_request(self, token: str) -> httpx.Request:
        # users.getProfile needs a read scope that gmail.send does not give; an empty messages.send does: Gmail
        # checks the token and the scope, then refuses the empty message with 400.
        url = f"{self.base_url}/gmail/v1/users/me/messages/send"
        return self._client.build_request("POST", url, json={}, headers={"Authorization": f"Bearer {token}"})

    def throttled(self, error: ApiError) -> bool:
        return error.code in _RATE_REASONS

    def parse_error(self, response: httpx.Response) -> ApiError:
        # {"error": {"code": 403, "message": "...", "errors": [{"reason": "insufficientPermissions"}],
        #  "status": "PERMISSION_DENIED"}}
        error = json_body(response).get("error")
        if not isinstance(error, dict):
            return ApiError(response.status_code, "", response.text[:200])
        reasons = [e.get("reason") for e in error.get("errors") or [] if isinstance(e, dict)]
        code = next((str(r) for r in reasons if r), str(error.get("status") or ""))
        return ApiError(response.status_code, code, str(error.get("message") or ""))
