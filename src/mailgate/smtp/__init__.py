"""SMTP submission with OAuth 2.0 (XOAUTH2, OAUTHBEARER) or a password, and typed errors.

Owns aiosmtplib: nothing outside this package imports it.
"""

from .auth import oauthbearer_initial_response, parse_error_challenge, xoauth2_initial_response
from .compose import Attachment, build_message, parse_mailbox
from .diagnose import test_connection
from .replies import error_from_exception, error_from_reply
from .transport import SendResult, SmtpConnection, Step, TokenSource

__all__ = [
    "Attachment",
    "SendResult",
    "SmtpConnection",
    "Step",
    "TokenSource",
    "build_message",
    "error_from_exception",
    "error_from_reply",
    "oauthbearer_initial_response",
    "parse_error_challenge",
    "parse_mailbox",
    "test_connection",
    "xoauth2_initial_response",
]
