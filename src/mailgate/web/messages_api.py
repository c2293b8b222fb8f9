"""``/v2/email/messages``: queue messages (JSON or raw RFC 5322), follow them, retry them.

``POST`` answers 202 only after the message is committed to the outbox.  An ``Idempotency-Key`` header
makes a repeated request return the message of the first one (and refuses the key with another body).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from ..app import Services
from ..budget import ByteBudget
from ..errors import MailgateError, ValidationError
from ..message import (
    AttachmentRequest,
    Limits,
    MessageRequest,
    MessageTooLargeError,
    NewMessage,
    from_raw,
    from_request,
)
from ..message.checks import HEAVY_BYTES, HEAVY_ITEMS, MAX_ATTACHMENTS, MAX_HEADERS
from ..outbox import MessageView, Status
from ..store.repository import DEFAULT_ACCOUNT
from .deps import AdminDep, ServicesDep
from .openapi import schema_ref

__all__ = ["MAX_IDEMPOTENCY_KEY", "MAX_OFFSET", "MessageIn", "message_json", "queue_message", "router"]

router = APIRouter(prefix="/email/messages", tags=["messages"])
#: The longest Idempotency-Key accepted (a longer one is a 422).
MAX_IDEMPOTENCY_KEY = 255
#: Bodies up to this size are read at once; larger ones wait for room in the outbox's intake (ByteBudget).
SMALL_REQUEST = 1024 * 1024
#: A large body must keep coming while it holds its share of the intake: one that stalls this long between two
#: of its chunks is refused (408), so that a sender gone silent does not keep the others waiting for good.
BODY_IDLE_SECONDS = 30.0
#: The largest ``offset`` of a listing (the databases' integers are 64-bit; no outbox holds this many).
MAX_OFFSET = 2**53


class UnsupportedMediaTypeError(MailgateError):
    http_status = 415
    code = "unsupported_media_type"


class BodyStalledError(MailgateError):
    http_status = 408
    code = "request_timeout"


class AttachmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filename: str = Field(max_length=255)
    content_type: str = Field(default="application/octet-stream", max_length=255)
    content_base64: str


class MessageIn(BaseModel):
    """A message to queue.  ``account`` (optional) is the account to send it through, else the one whose
    senders include ``from``; ``from`` defaults to the sender configured on that account's Email server page
    (``default``'s when neither is given)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    account: str | None = Field(default=None, max_length=64)
    from_: str | None = Field(default=None, alias="from", max_length=998)
    to: list[str] = Field(default_factory=list)
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list)
    reply_to: str | None = Field(default=None, max_length=998)
    subject: str = Field(default="", max_length=998)
    text: str = ""
    html: str | None = None
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=MAX_ATTACHMENTS)
    headers: dict[str, str] = Field(default_factory=dict, max_length=MAX_HEADERS)

    def to_request(self) -> MessageRequest:
        return MessageRequest(
            sender=self.from_,
            to=self.to,
            cc=self.cc,
            bcc=self.bcc,
            reply_to=self.reply_to,
            subject=self.subject,
            text=self.text,
            html=self.html,
            attachments=[AttachmentRequest(a.filename, a.content_type, a.content_base64) for a in self.attachments],
            headers=self.headers,
        )


_POST_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            # A reference into components/schemas, where create_app puts MessageIn and AttachmentIn (body_models).
            "application/json": {"schema": schema_ref(MessageIn)},
            "message/rfc822": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


async def _read_body(request: Request, limit: int, held: contextlib.AsyncExitStack, intake: ByteBudget) -> bytes:
    """The request's body, read once its bytes fit in ``intake`` (held until ``held`` closes) unless it is
    small: a large body that must wait is left unread meanwhile (in the client and the socket's buffers)."""
    # JSON carries attachments in base64 (4/3 of their size) plus the text: allow for that, refuse more
    # before reading it all into memory.
    ceiling = limit * 4 // 3 + 1024 * 1024
    header = request.headers.get("content-length", "")
    declared = int(header) if header.isdigit() else None
    if declared is not None and declared > ceiling:
        raise MessageTooLargeError({"message": f"the request is {declared:,} bytes; the limit is {limit:,}"})
    small = declared is not None and declared <= SMALL_REQUEST
    holding = False  # a share of the intake
    if declared is not None and not small:
        await held.enter_async_context(intake.reserve(declared))
        holding = True
    chunks: list[bytes] = []
    size = 0
    stream = request.stream()
    while True:
        try:
            if holding:
                async with asyncio.timeout(BODY_IDLE_SECONDS):
                    chunk = await anext(stream)
            else:
                chunk = await anext(stream)
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise BodyStalledError(
                f"The request's body stopped coming for {BODY_IDLE_SECONDS:.0f} s after {size:,} bytes; nothing was "
                "stored.",
                hint="Send the request again.",
            ) from None
        size += len(chunk)
        if size > ceiling:
            raise MessageTooLargeError({"message": f"the request is over the limit of {limit:,} bytes"})
        chunks.append(chunk)
        if not small and not holding and size > SMALL_REQUEST:
            # Of unknown length (chunked) and not small: room for the largest request.
            await held.enter_async_context(intake.reserve(ceiling))
            holding = True
    return b"".join(chunks)


def _check_idempotency_key(key: str) -> None:
    if not key.strip():
        raise ValidationError({"Idempotency-Key": "must not be empty"})
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise ValidationError({"Idempotency-Key": "must not contain control characters (CR, LF, NUL...)"})


def _parse_json(body: bytes) -> MessageIn:
    try:
        return MessageIn.model_validate_json(body or b"null")
    except PydanticValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from exc


async def _compose(taken: list[bytes], media: str, limits: Limits, services: Services) -> tuple[NewMessage, str]:
    """The checked message of a request's body (popped from ``taken``, so that a JSON body is freed once parsed:
    a large message takes several copies while it is composed), parsed and composed in a worker thread when
    it is heavy (HEAVY_BYTES, HEAVY_ITEMS): thousands of addresses or parts would otherwise stall every request.
    With the account it goes out through (see :meth:`mailgate.accounts.Accounts.route`)."""
    heavy = len(taken[0]) > HEAVY_BYTES
    if media == "message/rfc822":
        body = taken.pop()
        if heavy or body.count(b"@", 0, HEAVY_BYTES) > HEAVY_ITEMS:
            message = await asyncio.to_thread(from_raw, body, limits)
        else:
            message = from_raw(body, limits)
        # Routed by its From, which it has (from_raw refuses a message without one).
        return message, await services.accounts.route(message.sender, None)
    parsed = await asyncio.to_thread(_parse_json, taken.pop()) if heavy else _parse_json(taken.pop())
    try:
        account, refused = await services.accounts.route(parsed.from_, parsed.account), None
    except ValidationError as exc:
        if "account" in exc.errors:
            raise
        # The message's own faults first (recipients, headers...), then whether its From may be used.
        account, refused = parsed.account or DEFAULT_ACCOUNT, exc
    if account != DEFAULT_ACCOUNT:
        limits = await services.outbox.limits(account)
    request = parsed.to_request()
    items = len(request.to) + len(request.cc) + len(request.bcc) + len(request.attachments) + len(request.headers)
    if heavy or items > HEAVY_ITEMS:
        message = await asyncio.to_thread(from_request, request, limits)
    else:
        message = from_request(request, limits)
    if refused is not None:
        raise refused
    if not parsed.from_ and message.sender and not await services.accounts.may_send(account, message.sender):
        raise ValidationError({"from": f"account {account!r} may not send as {message.sender!r}"})
    return message, account


@router.post("", status_code=status.HTTP_202_ACCEPTED, openapi_extra=_POST_DOC)
async def post_message(
    request: Request,
    _: AdminDep,
    services: ServicesDep,
    idempotency_key: Annotated[str | None, Header(max_length=MAX_IDEMPOTENCY_KEY)] = None,
) -> JSONResponse:
    """Queue a message; 202 ``{id, status}`` once it is stored."""
    return await queue_message(request, services, idempotency_key)


async def queue_message(request: Request, services: Services, idempotency_key: str | None) -> JSONResponse:
    """The work of ``POST``, once the caller is authenticated.

    Raises MailgateError or RequestValidationError for bad input, before anything is stored.
    """
    outbox = services.outbox
    limits = await outbox.limits()
    async with contextlib.AsyncExitStack() as held:  # a large body's share of the outbox's intake
        body = await _read_body(request, limits.max_bytes, held, outbox.intake)
        media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if idempotency_key is not None:
            _check_idempotency_key(idempotency_key)
        # What Idempotency-Key compares; hashed in parts (joined, a large body would be copied once more).
        digest = hashlib.sha256(media.encode() + b"\0")
        digest.update(body)
        if media not in ("message/rfc822", "application/json", ""):
            raise UnsupportedMediaTypeError(
                f"Content-Type {media!r} is not accepted.",
                hint="Send application/json, or a whole message as message/rfc822.",
            )
        taken = [body]
        del body  # only in taken: _compose lets go of it once parsed
        message, account = await _compose(taken, media, limits, services)
        view, created = await outbox.enqueue(
            message, idempotency_key=idempotency_key, request_hash=digest.hexdigest(), account_id=account
        )
    location = f"{services.settings.api_prefix}/email/messages/{view.id}"
    headers = {"Location": location}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse({"id": view.id, "status": view.status}, status_code=202, headers=headers)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def message_json(view: MessageView) -> dict[str, Any]:
    """A message as the API (and ``mailgate outbox show``) shows it: its state, never its body."""
    error: dict[str, Any] | None = None
    if view.last_error:
        error = {"code": view.last_error_code, "message": view.last_error}
        if view.smtp_code is not None:
            error.update(smtp_code=view.smtp_code, smtp_reply=view.smtp_reply)
    return {
        "id": view.id,
        "status": view.status,
        "account": view.account_id,
        "from": view.sender,
        "recipients": list(view.recipients),
        "subject": view.subject,
        "message_id": view.message_id,
        "size": view.size,
        "attempts": view.attempts,
        "next_attempt_at": _iso(view.next_attempt_at),
        "last_error": error,
        "recipient_results": view.recipient_results,
        "created_at": _iso(view.created_at),
        "updated_at": _iso(view.updated_at),
        "sent_at": _iso(view.sent_at),
    }


@router.get("")
async def list_messages(
    _: AdminDep,
    services: ServicesDep,
    status_: Annotated[list[Status] | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    account: Annotated[str | None, Query(max_length=64, description="Only this account's messages.")] = None,
) -> dict[str, Any]:
    """Newest first, optionally only some statuses (``?status=failed&status=held``) or one account."""
    statuses = [s.value for s in status_ or []]
    items, total = await services.outbox.list(statuses=statuses, limit=limit, offset=offset, account=account)
    following = offset + len(items)
    return {
        "items": [message_json(item) for item in items],
        "total": total,
        "limit": limit,
        "offset": offset,
        "next_offset": following if following < total else None,
    }


@router.get("/{message_id}")
async def get_message(message_id: str, _: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """Status, attempts, the last error with the SMTP reply, Message-ID, per-recipient results, timestamps."""
    return message_json(await services.outbox.get(message_id))


@router.post("/{message_id}/retry")
async def retry_message(message_id: str, _: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """Queue a failed, held or retrying message again, due now."""
    return message_json(await services.outbox.retry(message_id))
