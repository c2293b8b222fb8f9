"""Request bodies of the REST API.  Unknown fields are refused (``extra="forbid"``); secrets are write-only.

``PUT`` of a configuration is a partial update (:class:`_Patch`): a field left out keeps its stored value, and
``null`` is the same as an empty value: it clears an optional field (a required one is then refused, 422).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EmailServerIn", "OAuthConfigIn", "ServerTestIn", "sent_text"]

_KEEP = "Left out: the stored value is kept."
_CLEAR = "Left out: the stored value is kept; null or an empty string clears it."
_SECRET = "Write-only. Left out, null or empty: the stored one is kept."


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=4096)


def _without_defaults(schema: dict[str, Any]) -> None:
    # A field left out of a partial update keeps its stored value: a "default" in the schema would say otherwise.
    for field in schema.get("properties", {}).values():
        field.pop("default", None)


class _Patch(_In):
    """A partial update: only the fields sent change (see the module's docstring)."""

    model_config = ConfigDict(extra="forbid", str_max_length=4096, json_schema_extra=_without_defaults)


def sent_text(body: BaseModel, name: str) -> str | None:
    """Field ``name`` of a partial update: None when the body left it out (keep), ``""`` when it was null."""
    if name not in body.model_fields_set:
        return None
    value = getattr(body, name)
    return "" if value is None else str(value)


class OAuthConfigIn(_Patch):
    provider: str | None = Field(default=None, max_length=32, description=_KEEP)
    tenant: str | None = Field(default=None, max_length=4096, description=_CLEAR)
    client_id: str | None = Field(
        default=None, max_length=4096, description=_KEEP + " Not carried over when the provider changes."
    )
    client_secret: str | None = Field(
        default=None, max_length=4096, description=_SECRET + " Not carried over when the provider changes."
    )
    redirect_uri: str | None = Field(
        default=None, max_length=4096, description=_KEEP + " Null or empty: the default redirect URI."
    )
    #: Read-only, derived from the provider; accepted only when equal to the derived value.
    authorization_url: str | None = Field(
        default=None, description="Read-only: accepted when equal to the derived URL."
    )
    token_url: str | None = Field(default=None, description="Read-only: accepted when equal to the derived URL.")
    copy_from: str | None = Field(
        default=None,
        max_length=64,
        description="Another account whose provider, tenant, client ID and secret and redirect URI are copied "
        "(one app registration for several mailboxes); the other fields sent win.",
    )
    client_secret_expires_on: date | None = Field(
        default=None,
        description="When the client secret expires (YYYY-MM-DD; Microsoft shows it when the secret is created): "
        "mailgate warns 30, 7 and 1 days ahead. Null clears it; left out, it is kept with the secret it belongs to "
        "(a new client_secret without a date clears it).",
    )
    grant: str | None = Field(
        default=None,
        max_length=32,
        description=_KEEP + " authorization_code (a mailbox consents; the default), client_credentials (Microsoft "
        "Application, app-only) or service_account (Google Workspace domain-wide delegation).",
    )
    mailbox: str | None = Field(
        default=None,
        max_length=320,
        description=_CLEAR + " App-only grants: the mailbox sent as (the service account impersonates it).",
    )
    certificate_pem: str | None = Field(
        default=None,
        max_length=65536,
        description="client_credentials: the PEM certificate registered in Entra (replaces the secret). " + _SECRET,
    )
    private_key_pem: str | None = Field(
        default=None,
        max_length=65536,
        description="client_credentials: the certificate's PEM private key, unencrypted; stored encrypted. " + _SECRET,
    )
    service_account_key: str | None = Field(
        default=None,
        max_length=65536,
        description="service_account: the JSON key file's content; stored encrypted. " + _SECRET,
    )
    # Read-only fields a client may echo back from a GET.
    certificate_set: bool | None = Field(default=None, description="Read-only: ignored.")
    client_secret_set: bool | None = Field(default=None, description="Read-only: ignored.")
    refresh_token_set: bool | None = Field(default=None, description="Read-only: ignored.")


class EmailServerIn(_Patch):
    delivery: str | None = Field(
        default=None,
        description=_KEEP + " One of smtp (default), graph (Microsoft Graph sendMail), gmail_api (Gmail API); "
        "graph and gmail_api need no host, port or security, and a change needs a new consent (Authorize).",
    )
    host: str | None = Field(default=None, max_length=4096, description=_KEEP)
    port: int | None = Field(default=None, ge=-(2**31), le=2**31, description=_KEEP)
    security: str | None = Field(default=None, description=_KEEP + " One of starttls, ssl, none.")
    authentication: str | None = Field(default=None, description=_KEEP + " One of none, password, oauth.")
    username: str | None = Field(default=None, description=_CLEAR)
    sender: str | None = Field(default=None, description=_CLEAR)
    password: str | None = Field(default=None, description=_SECRET + " Dropped when authentication is not password.")
    ca_file: str | None = Field(default=None, description=_CLEAR)
    senders: list[str] | None = Field(
        default=None,
        max_length=100,
        description="The account's extra senders besides its mailbox: addresses (aliases) or *@domain. "
        + _KEEP
        + " Null or [] clears them.",
    )
    password_set: bool | None = Field(default=None, description="Read-only: ignored.")


class ServerTestIn(_In):
    #: When given, a test message is sent to this address after the checks pass.
    send_to: str | None = Field(default=None, max_length=320)
