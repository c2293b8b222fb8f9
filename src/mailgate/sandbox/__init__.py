"""A local OAuth 2.0 provider and SMTP server for trying and testing mailgate without a Google or Microsoft
account.

It emulates what mailgate relies on (shared/PROVIDERS.md): the authorization endpoint with a consent page,
the token endpoint (authorization code + PKCE, refresh with or without rotation, client credentials),
revocation (RFC 7009), and an SMTP server that requires STARTTLS and accepts XOAUTH2 / OAUTHBEARER with
the access tokens it issued.  Control endpoints let tests revoke, expire and break things on purpose::

    async with Sandbox(SandboxConfig(http_port=0, smtp_port=0)) as sandbox:
        os.environ["MAILGATE_PROVIDERS_FILE"] = ...  # a file with sandbox.providers_toml("microsoft")
"""

from __future__ import annotations

from .config import SandboxClient, SandboxConfig
from .server import Sandbox, run_forever

__all__ = ["Sandbox", "SandboxClient", "SandboxConfig", "run_forever"]
