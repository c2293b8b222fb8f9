"""OAuth 2.0: protocol functions, the token endpoint client, the consent flow and the token manager."""

from .client import TokenClient
from .consent import AuthorizationResult, AuthorizationStart, ConsentFlow
from .manager import AccountTokenSource, TokenManager

__all__ = [
    "AccountTokenSource",
    "AuthorizationResult",
    "AuthorizationStart",
    "ConsentFlow",
    "TokenClient",
    "TokenManager",
]
