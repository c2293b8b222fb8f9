"""Sending over HTTP APIs (Microsoft Graph, the Gmail API): the shared transport and envelope handling."""

from .envelope import header_recipients, with_envelope_recipients
from .transport import ApiError, HttpTransport, json_body, retry_after_seconds

__all__ = [
    "ApiError",
    "HttpTransport",
    "header_recipients",
    "json_body",
    "retry_after_seconds",
    "with_envelope_recipients",
]
