"""The sandbox's HTTP send APIs: Microsoft Graph ``sendMail`` (MIME) and the Gmail API ``messages.send``.

Like the real ones: a bearer token for that API (its scope; for Graph delegated tokens, the consenting mailbox),
their size limits (Graph: a 4 MB request; Gmail: 35 MB media uploads), recipients taken from the To, Cc and Bcc
headers with the Bcc header removed from the delivered copy, and throttling answers on demand (429 with
``Retry-After``, ``POST /_control/mail-api``).  Messages land in the inbox like those of the SMTP server.
Error bodies are worded as Graph and Google word them.
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
import re
import uuid
from dataclasses import dataclass, field
from email import policy
from email.parser import HeaderParser
from email.utils import getaddresses, parseaddr

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from .inbox import Inbox
from .state import SandboxState

__all__ = ["GMAIL_SCOPES", "GRAPH_SCOPES", "MailApi", "mail_api_router"]

#: Scopes a Graph sendMail accepts (delegated Mail.Send, or app-only .default with Mail.Send granted).
GRAPH_SCOPES = frozenset({"https://graph.microsoft.com/Mail.Send", "https://graph.microsoft.com/.default"})
#: Scopes the Gmail API's messages.send accepts.
GMAIL_SCOPES = frozenset({"https://www.googleapis.com/auth/gmail.send", "https://mail.google.com/"})
_GRAPH_AUDIENCE = "https://graph.microsoft.com/"
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_NO_RECIPIENTS = "At least one recipient is required, but none were found."


@dataclass
class MailApi:
    """Settings and switches of the two APIs (tests change them in process or over ``/_control/mail-api``)."""

    graph_max_request_bytes: int = 4 * 1024 * 1024
    gmail_max_message_bytes: int = 35 * 1024 * 1024
    #: The next ``throttle_count`` send requests answer ``throttle_status`` with ``Retry-After``.
    throttle_count: int = 0
    throttle_retry_after: int = 30
    throttle_status: int = 429
    #: As if the admin removed Mail.Send / the gmail.send scope: authenticated requests answer 403.
    permission_denied: bool = False
    counters: collections.Counter[str] = field(default_factory=collections.Counter)

    def throttle(self, count: int, retry_after: int = 30, status: int = 429) -> None:
        """Answer the next ``count`` send requests with ``status`` (429 or 503) and ``Retry-After``."""
        self.throttle_count, self.throttle_retry_after, self.throttle_status = count, retry_after, status

    def to_dict(self) -> dict[str, object]:
        return {
            "throttle_count": self.throttle_count,
            "throttle_retry_after": self.throttle_retry_after,
            "throttle_status": self.throttle_status,
            "permission_denied": self.permission_denied,
            "counters": dict(self.counters),
        }


class _Refusal(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _graph_answer(refusal: _Refusal) -> Response:
    body = {"error": {"code": refusal.code, "message": refusal.message}}
    return JSONResponse(body, status_code=refusal.status, headers=refusal.headers)


_GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 413: "FAILED_PRECONDITION",
                  429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}  # fmt: skip


def _gmail_answer(refusal: _Refusal) -> Response:
    error = {
        "code": refusal.status,
        "message": refusal.message,
        "errors": [{"message": refusal.message, "domain": "global", "reason": refusal.code}],
        "status": _GOOGLE_STATUS.get(refusal.status, "UNKNOWN"),
    }
    return JSONResponse({"error": error}, status_code=refusal.status, headers=refusal.headers)


def _deliverable(raw: bytes) -> tuple[str, list[str], bytes]:
    """The From address, the recipients (To, Cc, Bcc) and the message as delivered: byte for byte, without
    its Bcc header (with its continuation lines).  Headers are read as UTF-8 (RFC 6532)."""
    match = _BLANK_LINE.search(raw)
    head, rest = (raw[: match.start()], raw[match.start() :]) if match else (raw, b"")
    headers = HeaderParser(policy=policy.compat32).parsestr(head.decode("utf-8", "replace") + "\r\n\r\n")
    values = [str(v) for name in ("to", "cc", "bcc") for v in headers.get_all(name) or []]
    recipients = list(dict.fromkeys(a for _, a in getaddresses(values) if "@" in a))
    kept: list[bytes] = []
    in_bcc = False
    for line in head.splitlines(keepends=True):
        if line[:1] not in (b" ", b"\t"):
            in_bcc = line.lower().startswith(b"bcc:")
        if not in_bcc:
            kept.append(line)
    return parseaddr(str(headers.get("from", "")))[1], recipients, b"".join(kept) + rest


def mail_api_router(state: SandboxState, inbox: Inbox, api: MailApi) -> APIRouter:
    """Routes ``/v1.0/...`` (Graph), ``/upload/gmail/v1/...`` and ``/gmail/v1/...`` (Gmail), ``/_control/mail-api``."""
    router = APIRouter()

    def token_record(request: Request, scopes: frozenset[str], *, graph: bool) -> dict[str, object]:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        record: dict[str, object] = {"active": False}
        if scheme.lower() == "bearer" and token.strip():
            record = state.introspect(token.strip())
        challenge = {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'}
        if not record.get("active"):
            code = "InvalidAuthenticationToken" if graph else "authError"
            text = "Access token has expired or is not valid yet." if token else "Access token is empty."
            if not graph:
                text = "Request had invalid authentication credentials. Expected OAuth 2 access token."
            raise _Refusal(401, code, text, challenge)
        granted = set(str(record.get("scope", "")).split())
        if graph and not any(s.startswith(_GRAPH_AUDIENCE) for s in granted):
            raise _Refusal(401, "InvalidAuthenticationToken", "Invalid audience.", challenge)
        if api.permission_denied or not scopes.intersection(granted):
            if graph:
                raise _Refusal(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
            raise _Refusal(403, "insufficientPermissions", "Request had insufficient authentication scopes.")
        return record

    def throttled(graph: bool) -> None:
        if api.throttle_count > 0:
            api.throttle_count -= 1
            api.counters["throttled"] += 1
            code = ("ApplicationThrottled" if graph else "rateLimitExceeded") if api.throttle_status == 429 else (
                "ServiceUnavailable" if graph else "backendError")  # fmt: skip
            text = "Too many requests: try again after the delay in Retry-After."
            raise _Refusal(api.throttle_status, code, text, {"Retry-After": str(api.throttle_retry_after)})

    def deliver(raw: bytes, mailbox: str, counter: str, *, graph: bool) -> None:
        sender, recipients, delivered = _deliverable(raw)
        if not recipients:
            if graph:
                raise _Refusal(
                    400, "ErrorInvalidRecipients", "At least one recipient is required, but none were found."
                )
            raise _Refusal(400, "invalidArgument", "Recipient address required")
        inbox.add(mail_from=sender or mailbox, rcpt_tos=recipients, account=mailbox, raw=delivered)
        api.counters[counter] += 1

    async def graph_send(request: Request, mailbox: str) -> Response:
        try:
            record = token_record(request, GRAPH_SCOPES, graph=True)
            account = str(record.get("email") or "")
            if mailbox == "me" and not account:
                raise _Refusal(400, "BadRequest", "/me request is only valid with delegated authentication flow.")
            if account and mailbox not in ("me", account) and mailbox.lower() != account.lower():
                raise _Refusal(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
            throttled(graph=True)
            body = await request.body()
            if len(body) > api.graph_max_request_bytes:
                raise _Refusal(413, "RequestBodyTooLarge", "The maximum request length supported is 4MB.")
            if request.headers.get("content-type", "").startswith("application/json"):
                # A JSON message: the sandbox keeps MIME only, but answers an empty one as Graph does.
                message = (json.loads(body or b"{}") or {}).get("message") or {}
                if not message.get("toRecipients") and not message.get("ccRecipients"):
                    raise _Refusal(
                        400, "ErrorInvalidRecipients", "At least one recipient is required, but none were found."
                    )
                raise _Refusal(400, "ErrorInvalidRequest", "The sandbox emulates sendMail with MIME content only.")
            try:
                raw = base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError):
                raise _Refusal(
                    400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."
                ) from None
            deliver(raw, account or mailbox, "graph_messages", graph=True)
        except _Refusal as refusal:
            api.counters[f"graph_{refusal.status}"] += 1
            return _graph_answer(refusal)
        return Response(status_code=202)

    @router.post("/v1.0/users/{mailbox}/sendMail")
    async def graph_user_send(mailbox: str, request: Request) -> Response:
        return await graph_send(request, mailbox)

    @router.post("/v1.0/me/sendMail")
    async def graph_me_send(request: Request) -> Response:
        return await graph_send(request, "me")

    async def gmail_send(request: Request, *, upload: bool) -> Response:
        try:
            record = token_record(request, GMAIL_SCOPES, graph=False)
            account = str(record.get("email") or "")
            if not account:
                raise _Refusal(400, "failedPrecondition", "Precondition check failed: users/me needs a user.")
            throttled(graph=False)
            body = await request.body()
            if upload:
                if request.query_params.get("uploadType") != "media":
                    raise _Refusal(400, "invalidArgument", "Upload requests need uploadType=media here.")
                if len(body) > api.gmail_max_message_bytes:
                    raise _Refusal(413, "uploadTooLarge", "Request too large: messages are limited to 35 MB.")
                raw = body
            else:
                data = json.loads(body or b"{}") if body else {}
                encoded = data.get("raw") if isinstance(data, dict) else None
                if not encoded:
                    text = "'raw' RFC822 payload message string or uploading message via /upload/* URL required"
                    raise _Refusal(400, "invalidArgument", text)
                raw = base64.urlsafe_b64decode(str(encoded) + "=" * (-len(str(encoded)) % 4))
            deliver(raw, account, "gmail_messages", graph=False)
        except _Refusal as refusal:
            api.counters[f"gmail_{refusal.status}"] += 1
            return _gmail_answer(refusal)
        except (ValueError, binascii.Error):
            return _gmail_answer(_Refusal(400, "invalidArgument", "Invalid JSON payload or raw message."))
        ident = uuid.uuid4().hex[:16]
        return JSONResponse({"id": ident, "threadId": ident, "labelIds": ["SENT"]})

    @router.post("/upload/gmail/v1/users/me/messages/send")
    async def gmail_upload(request: Request) -> Response:
        return await gmail_send(request, upload=True)

    @router.post("/gmail/v1/users/me/messages/send")
    async def gmail_json(request: Request) -> Response:
        return await gmail_send(request, upload=False)

    @router.post("/_control/mail-api")
    async def control(request: Request) -> Response:
        """``?throttle=N&retry_after=S&status=429|503``, ``?permission_denied=true|false``: shape the answers."""
        q = request.query_params
        try:
            if "throttle" in q:
                api.throttle(int(q["throttle"]), int(q.get("retry_after", "30")), int(q.get("status", "429")))
            if "permission_denied" in q:
                api.permission_denied = q["permission_denied"].lower() in ("true", "1", "yes", "on")
        except ValueError:
            return JSONResponse({"error": "throttle, retry_after and status must be integers"}, status_code=400)
        return JSONResponse(api.to_dict())

    return router
