"""mailgate: send email through Gmail and Microsoft 365 with OAuth 2.0 (SMTP XOAUTH2)."""

from .app import Services, build_services
from .config import Settings
from .errors import (
    ConfigurationError,
    MailgateError,
    OAuthError,
    OAuthFlowError,
    ReauthorizationRequiredError,
    SmtpAuthenticationError,
    SmtpError,
    SmtpPermanentError,
    SmtpTransientError,
    TokenEndpointError,
    TokenEndpointUnavailableError,
    ValidationError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "MailgateError",
    "OAuthError",
    "OAuthFlowError",
    "ReauthorizationRequiredError",
    "Services",
    "Settings",
    "SmtpAuthenticationError",
    "SmtpError",
    "SmtpPermanentError",
    "SmtpTransientError",
    "TokenEndpointError",
    "TokenEndpointUnavailableError",
    "ValidationError",
    "__version__",
    "build_services",
]
