"""The durable outbox: messages are committed before the API answers, then delivered by a worker.

- :class:`Outbox` enqueues (idempotently), shows, lists, retries and purges messages;
- :class:`Worker` claims due messages under a lease and sends them over pooled SMTP connections;
- :mod:`.policy` decides between retry (with backoff), failure and hold after each attempt.
"""

from .compose import (
    AttachmentRequest,
    Limits,
    MessageRequest,
    MessageTooLargeError,
    NewMessage,
    from_raw,
    from_request,
)
from .policy import Status
from .service import MessageConflictError, MessageView, Outbox
from .worker import Worker

__all__ = [
    "AttachmentRequest",
    "Limits",
    "MessageConflictError",
    "MessageRequest",
    "MessageTooLargeError",
    "MessageView",
    "NewMessage",
    "Outbox",
    "Status",
    "Worker",
    "from_raw",
    "from_request",
]
