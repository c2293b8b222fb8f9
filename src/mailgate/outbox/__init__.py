"""The durable outbox: messages are committed before the API answers, then delivered by a worker.

- :class:`Outbox` enqueues (idempotently), shows, lists, retries and purges messages;
- :class:`Worker` claims due messages under a lease and sends them over pooled SMTP connections;
- :mod:`.policy` decides between retry (with backoff), failure and hold after each attempt.
"""

from .policy import Status
from .service import MessageConflictError, MessageView, Outbox, OutboxMetrics
from .worker import Worker

__all__ = [
    "MessageConflictError",
    "MessageView",
    "Outbox",
    "OutboxMetrics",
    "Status",
    "Worker",
]
