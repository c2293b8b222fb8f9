"""Client authentication at the token endpoint (RFC 6749 s.2.3.1): HTTP Basic or secret in the body."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from urllib.parse import unquote_plus

from .config import SandboxClient, SandboxConfig
from .problems import TokenError

__all__ = ["authenticate_client", "parse_basic_auth"]


def parse_basic_auth(header: str) -> tuple[str, str] | None:
    """(client_id, client_secret) from an HTTP Basic header; None without one.

    RFC 6749 s.2.3.1: both parts are form-urlencoded before base64, so a secret with ``:`` or ``%``
    survives.
    """
    scheme, _, value = header.strip().partition(" ")
    if not header or scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise TokenError(
            "invalid_client", 7000216, "The Authorization header is not valid HTTP Basic.", "Unauthorized", status=401
        )
    return unquote_plus(client_id), unquote_plus(secret)


def authenticate_client(
    config: SandboxConfig, form: Mapping[str, str], authorization: str, tenant: str
) -> SandboxClient:
    """The registered client the request authenticates as, or :class:`TokenError` (``invalid_client``)."""
    basic = parse_basic_auth(authorization)
    client_id, secret = form.get("client_id", ""), form.get("client_secret")
    if basic is not None:
        # client_secret_basic or client_secret_post, never both ("MUST NOT use more than one method").
        if secret is not None:
            raise TokenError.several_client_auth_methods()
        if client_id and client_id != basic[0]:
            raise TokenError.unknown_client(client_id, tenant or "sandbox")
        client_id, secret = basic
    if not client_id:
        raise TokenError.missing_parameter("client_id")
    client = config.client(client_id)
    if client is None:
        raise TokenError.unknown_client(client_id, tenant or "sandbox")
    if client.client_secret:
        if not secret:
            raise TokenError.missing_secret()
        if not hmac.compare_digest(secret.encode(), client.client_secret.encode()):
            raise TokenError.wrong_secret(client_id)
    return client
