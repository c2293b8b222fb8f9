"""The one error hierarchy of mailgate.

Every error says what to do next.  Whether a failure is worth retrying is a property of its class
(``retryable``), never a string match.  Errors of third-party libraries are converted to these at the
one boundary that uses each library (``raise XError(...) from exc``).
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "ConsentRequiredError",
    "CredentialsRejectedError",
    "DeliveryError",
    "MailgateError",
    "NotFoundError",
    "OAuthError",
    "OAuthFlowError",
    "PermanentDeliveryError",
    "ReauthorizationRequiredError",
    "SmtpAuthenticationError",
    "SmtpError",
    "SmtpPermanentError",
    "SmtpTransientError",
    "TokenEndpointError",
    "TokenEndpointUnavailableError",
    "TransientDeliveryError",
    "ValidationError",
]


class MailgateError(Exception):
    """Base class of every error mailgate raises on purpose.

    ``message`` says what went wrong (with the server's or provider's own words, when there are any),
    ``cause`` its likely cause when mailgate can tell (see :mod:`mailgate.advice`), ``hint`` what the
    administrator should do about it.
    """

    retryable: bool = False
    #: HTTP status the web layer answers with.
    http_status: int = 500
    #: Stable machine-readable code, part of API answers.
    code: str = "error"

    def __init__(self, message: str, *, hint: str = "", cause: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.cause = cause

    def __str__(self) -> str:
        return " ".join(part for part in (self.message, self.cause, self.hint) if part)

    def to_dict(self) -> dict[str, object]:
        """The JSON body the API answers with."""
        body: dict[str, object] = {"error": self.code, "message": self.message}
        if self.cause:
            body["cause"] = self.cause
        if self.hint:
            body["hint"] = self.hint
        return body


class ValidationError(MailgateError):
    """Input was refused; nothing was changed.  ``errors`` maps field names to what is wrong."""

    http_status = 422
    code = "invalid_input"

    def __init__(self, errors: dict[str, str], *, hint: str = "") -> None:
        summary = "; ".join(f"{field}: {text}" for field, text in errors.items())
        super().__init__(f"Invalid input: {summary}", hint=hint or "Correct the fields named and try again.")
        self.errors = dict(errors)

    def to_dict(self) -> dict[str, object]:
        body = super().to_dict()
        body["fields"] = self.errors
        return body


class NotFoundError(MailgateError):
    http_status = 404
    code = "not_found"


class ConfigurationError(MailgateError):
    """mailgate is not (fully) configured for what was asked."""

    http_status = 409
    code = "not_configured"


class OAuthError(MailgateError):
    """Base of the OAuth failures."""

    http_status = 502
    code = "oauth_error"


class OAuthFlowError(OAuthError):
    """The authorization (consent) flow failed: bad/missing state, provider error, code exchange failure."""

    http_status = 400
    code = "oauth_flow_error"

    def __init__(
        self, message: str, *, hint: str = "", cause: str = "", provider_error: str = "", provider_text: str = ""
    ) -> None:
        super().__init__(message, hint=hint, cause=cause)
        #: The provider's error code (``access_denied``, ``AADSTS50011``).
        self.provider_error = provider_error
        #: The provider's own words (``error_description``), kept whole for support.
        self.provider_text = provider_text

    def to_dict(self) -> dict[str, object]:
        body = super().to_dict()
        if self.provider_error:
            body["provider_error"] = self.provider_error
        if self.provider_text:
            body["provider_text"] = self.provider_text
        return body


class TokenEndpointError(OAuthError):
    """The token endpoint refused a request (an OAuth ``error`` answer other than ``invalid_grant``)."""

    code = "token_endpoint_error"

    def __init__(
        self,
        message: str,
        *,
        hint: str = "",
        cause: str = "",
        error: str = "",
        error_code: str = "",
        provider_text: str = "",
    ) -> None:
        super().__init__(message, hint=hint, cause=cause)
        #: The OAuth ``error`` value, e.g. ``invalid_client``.
        self.error = error
        #: A provider-specific code such as ``AADSTS7000215``, when the answer had one.
        self.error_code = error_code
        #: The provider's own words (``error_description``, trace and correlation ids included), for support.
        self.provider_text = provider_text

    def to_dict(self) -> dict[str, object]:
        body = super().to_dict()
        for key in ("error_code", "provider_text"):
            if value := getattr(self, key):
                body[key] = value
        return body


class ReauthorizationRequiredError(TokenEndpointError):
    """The refresh token is no longer accepted (``invalid_grant``): an administrator must authorize again."""

    http_status = 409
    code = "reauthorization_required"


ConsentRequiredError = ReauthorizationRequiredError


class TokenEndpointUnavailableError(OAuthError):
    """The token endpoint could not be reached or answered 5xx: try again later."""

    retryable = True
    http_status = 503
    code = "token_endpoint_unavailable"


class DeliveryError(MailgateError):
    """Handing a message over failed, whatever the transport (SMTP today; Microsoft Graph, the Gmail API).

    ``reply_code``/``reply`` keep what the server said, when it said anything.  The subclasses say what to
    do: :class:`TransientDeliveryError` try again later, :class:`PermanentDeliveryError` this will not work
    as it is, :class:`CredentialsRejectedError` the account's credentials must be fixed first.
    """

    http_status = 502
    code = "delivery_error"

    def __init__(
        self, message: str, *, hint: str = "", cause: str = "", reply_code: int | None = None, reply: str = ""
    ) -> None:
        super().__init__(message, hint=hint, cause=cause)
        self.reply_code = reply_code
        self.reply = reply

    def to_dict(self) -> dict[str, object]:
        body = super().to_dict()
        if self.reply_code is not None:
            body["smtp_code"] = self.reply_code
            body["smtp_reply"] = self.reply
        return body


class TransientDeliveryError(DeliveryError):
    """The same message may be accepted later (4xx, throttling, a dropped connection, a timeout).

    ``retry_after``: seconds the server asked to wait (HTTP ``Retry-After``), None when it did not say.
    """

    retryable = True
    code = "delivery_transient"

    def __init__(
        self,
        message: str,
        *,
        hint: str = "",
        cause: str = "",
        reply_code: int | None = None,
        reply: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, hint=hint, cause=cause, reply_code=reply_code, reply=reply)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """Sending the same thing again will fail the same way (5xx, a configuration that cannot work)."""

    code = "delivery_permanent"


class CredentialsRejectedError(PermanentDeliveryError):
    """The server refused the account's credentials (a password, or an access token even after a refresh)."""

    code = "credentials_rejected"


class SmtpError(DeliveryError):
    """An SMTP exchange failed."""

    code = "smtp_error"


class SmtpTransientError(SmtpError, TransientDeliveryError):
    """4xx replies, disconnects, timeouts: the same message may succeed later."""

    retryable = True
    code = "smtp_transient"


class SmtpPermanentError(SmtpError, PermanentDeliveryError):
    """5xx replies and refused configurations: retrying the same thing will fail the same way."""

    code = "smtp_permanent"


class SmtpAuthenticationError(SmtpPermanentError, CredentialsRejectedError):
    """The server refused the credentials (535, or an XOAUTH2 error challenge)."""

    code = "smtp_auth_failed"
