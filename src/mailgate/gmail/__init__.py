"""The Gmail API ``users.messages.send`` with a media upload of the MIME message (delivery ``gmail_api``)."""

from .transport import GMAIL_MAX_MESSAGE_BYTES, GmailTransport

__all__ = ["GMAIL_MAX_MESSAGE_BYTES", "GmailTransport"]
