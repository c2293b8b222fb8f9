"""Microsoft Graph ``POST /v1.0/users/{mailbox}/sendMail`` with the MIME message, base64 in a text/plain body.

Graph answers 202 once it accepted the message for every recipient (no per-recipient answer).  Recipients come
from the MIME headers; a Bcc header is honoured and not delivered (see :mod:`mailgate.httpsend.envelope`).

Size: a Graph request is limited to 4 MB, and the base64 MIME body grows by a third, so about 3 MB of message.
Larger messages would need a draft with an attachment upload session, which takes JSON, not our stored MIME:
mailgate refuses them up front, naming the limit (permanent error), and the README says to use SMTP for them.
"""

from __future__ import annotations

import base64
from urllib.parse import quote

import httpx

from ..httpsend import ApiError, HttpTransport, json_body

__all__ = ["GRAPH_MAX_REQUEST_BYTES", "GraphTransport"]

#: Microsoft Graph's request size limit (4 MB), applied to the base64 MIME body of sendMail.
GRAPH_MAX_REQUEST_BYTES = 4 * 1024 * 1024


class GraphTransport(HttpTransport):
    """Sends as the account's mailbox (Username) through Microsoft Graph."""

    api = "Microsoft Graph"
    max_bytes = GRAPH_MAX_REQUEST_BYTES
    limit_text = "Microsoft Graph sendMail takes at most 4 MB of base64 MIME (about 3 MB of message)"
    grant_hint = (
        "Grant the Microsoft Graph permission Mail.Send to the app registration (delegated, or application with "
        "admin consent), then click Authorize again; with application permissions an application access policy "
        "may restrict which mailboxes it can send as."
    )

    @property
    def _url(self) -> str:
        mailbox = quote(self.config.username, safe="@") if self.config.username else ""
        return f"{self.base_url}/v1.0/users/{mailbox}/sendMail" if mailbox else f"{self.base_url}/v1.0/me/sendMail"

    def body_size(self, message: bytes) -> int:
        return 4 * ((len(message) + 2) // 3)  # the base64 text

    def send_request(self, token: str, message: bytes) -> httpx.Request:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}
        return self._client.build_request("POST", self._url, content=base64.b64encode(message), headers=headers)

    def probe_request(self, token: str) -> httpx.Request:
        # A message without recipients: Graph checks the token and the permission, then refuses it with 400.
        body = {"message": {"subject": "mailgate permission probe", "toRecipients": []}, "saveToSentItems": False}
        headers = {"Authorization": f"Bearer {token}"}
        return self._client.build_request("POST", self._url, json=body, headers=headers)

    def parse_error(self, response: httpx.Response) -> ApiError:
        # {"error": {"code": "ErrorAccessDenied", "message": "Access is denied. Check credentials and try again."}}
        error = json_body(response).get("error")
        if isinstance(error, dict):
            return ApiError(response.status_code, str(error.get("code") or ""), str(error.get("message") or ""))
        return ApiError(response.status_code, "", response.text[:200])
