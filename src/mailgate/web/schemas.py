"""Request bodies of the REST API.  Unknown fields are refused (``extra="forbid"``); secrets are write-only."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EmailServerIn", "OAuthConfigIn", "ServerTestIn"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=4096)


class OAuthConfigIn(_In):
    provider: str = Field(max_length=32)
    tenant: str = Field(default="", max_length=4096)
    client_id: str = Field(default="", max_length=4096)
    #: Omitted or empty keeps the stored secret.
    client_secret: str | None = Field(default=None, max_length=4096)
    redirect_uri: str = Field(default="", max_length=4096)
    #: Read-only, derived from the provider; accepted only when equal to the derived value.
    authorization_url: str | None = None
    token_url: str | None = None
    # Read-only fields a client may echo back from a GET.
    client_secret_set: bool | None = None
    refresh_token_set: bool | None = None


class EmailServerIn(_In):
    host: str = Field(max_length=4096)
    port: int = Field(ge=-(2**31), le=2**31)
    security: str = "starttls"
    authentication: str = "oauth"
    username: str = ""
    sender: str = ""
    #: Omitted or empty keeps the stored password.
    password: str | None = None
    ca_file: str = ""
    password_set: bool | None = None


class ServerTestIn(_In):
    #: When given, a test message is sent to this address after the checks pass.
    send_to: str | None = Field(default=None, max_length=320)
