"""API input turned into a message ready to queue: checked (:mod:`.checks`), then composed (:mod:`.compose`).

Independent of the outbox: it uses only :mod:`mailgate.errors`, :mod:`mailgate.smtp`'s composing and the
standard library.
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

__all__ = [
    "AttachmentRequest",
    "Limits",
    "MessageRequest",
    "MessageTooLargeError",
    "NewMessage",
    "from_raw",
    "from_request",
]
