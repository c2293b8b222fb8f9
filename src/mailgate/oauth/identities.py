"""Validation of an account's OAuth grant and its app-only credentials (the OAuth page's grant fields).

Pure: takes the merged values of a save and says what is wrong with each field, before anything is stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from ..types import Grant, OAuthConfig, ProviderSpec
from .assertions import key_matches_certificate, load_certificate, load_private_key, parse_service_account_key

__all__ = ["GRANT_LABELS", "AppOnlyFields", "IdentityInfo", "check_grant", "identity_info"]

#: What the OAuth page calls each grant.
GRANT_LABELS = {
    Grant.AUTHORIZATION_CODE: "Authorization code (a mailbox consents)",
    Grant.CLIENT_CREDENTIALS: "Application (client credentials)",
    Grant.SERVICE_ACCOUNT: "Service account (domain-wide delegation)",
}
_TENANT_WORDS = ("common", "organizations", "consumers")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_MAX_UPLOAD = 64 * 1024


@dataclass(frozen=True)
class AppOnlyFields:
    """The grant fields of a save, merged with what is stored (``None``: keep; secrets: ``""`` keeps too)."""

    grant: str
    mailbox: str
    #: A newly sent credential ("" when none was sent) and the stored one of the same provider.
    certificate_pem: str = ""
    private_key_pem: str = field(default="", repr=False)
    service_account_key: str = field(default="", repr=False)
    client_secret_sent: bool = False


def check_grant(
    spec: ProviderSpec, fields: AppOnlyFields, kept: OAuthConfig | None, tenant: str, errors: dict[str, str]
) -> tuple[Grant, dict[str, str]]:
    """The grant and the app-only values to store (``mailbox``, ``certificate_pem``, ``private_key_pem``,
    ``service_account_key``, and ``client_id`` for a service account); problems go into ``errors`` by field."""
    try:
        grant = Grant(fields.grant or Grant.AUTHORIZATION_CODE)
    except ValueError:
        errors["grant"] = f"must be one of {', '.join(g.value for g in Grant)}"
        return Grant.AUTHORIZATION_CODE, {}
    values = {"mailbox": "", "certificate_pem": "", "private_key_pem": "", "service_account_key": ""}
    if grant is Grant.AUTHORIZATION_CODE:
        return grant, values  # the guide's flow: nothing app-only is kept
    if grant.value not in spec.app_grants:
        offered = ", ".join(["authorization_code", *spec.app_grants])
        errors["grant"] = f"{GRANT_LABELS[grant]} is not offered by {spec.label}: choose one of {offered}"
        return grant, values
    values["mailbox"] = fields.mailbox
    if not fields.mailbox:
        errors["mailbox"] = "is required: the mailbox mailgate sends as (e.g. reports@contoso.com)"
    elif not _EMAIL.match(fields.mailbox) or len(fields.mailbox) > 320:
        errors["mailbox"] = "must be an email address such as reports@contoso.com"
    if grant is Grant.CLIENT_CREDENTIALS:
        _check_client_credentials(spec, fields, kept, tenant, values, errors)
    else:
        _check_service_account(fields, kept, values, errors)
    return grant, values


def _check_client_credentials(
    spec: ProviderSpec,
    fields: AppOnlyFields,
    kept: OAuthConfig | None,
    tenant: str,
    values: dict[str, str],
    errors: dict[str, str],
) -> None:
    if (tenant or spec.default_tenant).lower() in _TENANT_WORDS and "tenant" not in errors:
        errors["tenant"] = (
            "must be the Directory (tenant) ID or a verified domain: Application (client credentials) needs the "
            "directory, Microsoft refuses it on common, organizations and consumers (AADSTS9001023)"
        )
    certificate = fields.certificate_pem or (kept.certificate_pem if kept and not fields.client_secret_sent else "")
    key = fields.private_key_pem or (kept.private_key_pem if kept and not fields.client_secret_sent else "")
    if fields.certificate_pem or fields.private_key_pem or (certificate and key):
        problem = _certificate_problem(certificate, key)
        if problem:
            errors[problem[0]] = problem[1]
        values["certificate_pem"], values["private_key_pem"] = certificate, key
        values["client_secret"] = ""  # the certificate replaces the secret: one credential, the one last given
    elif not fields.client_secret_sent and not (kept and kept.client_secret):
        errors["client_secret"] = (
            "is required for Application (client credentials): enter the client secret's Value, or upload a "
            "certificate and its private key"
        )


def _certificate_problem(certificate: str, key: str) -> tuple[str, str] | None:
    if not certificate:
        return "certificate", "is required with a private key: upload the certificate (PEM) registered in Entra"
    if not key:
        return "private_key", "is required with a certificate: upload its private key (PEM, unencrypted)"
    if len(certificate) > _MAX_UPLOAD or len(key) > _MAX_UPLOAD:
        return "certificate", "is too large for a PEM certificate or key"
    try:
        load_certificate(certificate)
    except ValueError as exc:
        return "certificate", str(exc)
    try:
        load_private_key(key)
    except ValueError as exc:
        return "private_key", str(exc)
    if not key_matches_certificate(key, certificate):
        return "private_key", "does not belong to the certificate: upload the key the certificate was made with"
    return None


def _check_service_account(
    fields: AppOnlyFields, kept: OAuthConfig | None, values: dict[str, str], errors: dict[str, str]
) -> None:
    text = fields.service_account_key or (kept.service_account_key if kept else "")
    if not text:
        errors["service_account_key"] = (
            "is required: upload the service account's JSON key (Google Cloud console > IAM & Admin > "
            "Service accounts > Keys > Add key)"
        )
        return
    if len(text) > _MAX_UPLOAD:
        errors["service_account_key"] = "is too large for a JSON key"
        return
    try:
        key = parse_service_account_key(text)
    except ValueError as exc:
        errors["service_account_key"] = str(exc)
        return
    values["service_account_key"] = text
    values["client_secret"] = ""  # a service account signs with its key: no client secret is kept
    # The Admin console allows delegation to this client ID: it is the account's Client ID.
    values["client_id"] = key.client_id


@dataclass(frozen=True)
class IdentityInfo:
    """What reads show of the app-only credentials: never the keys."""

    certificate_set: bool = False
    certificate_thumbprint: str = ""
    certificate_expires_at: datetime | None = None
    service_account_email: str = ""
    service_account_key_id: str = ""


def identity_info(config: OAuthConfig | None) -> IdentityInfo:
    """The public facts of the stored credentials (a certificate's thumbprint and expiry, a key's account)."""
    if config is None:
        return IdentityInfo()
    info = IdentityInfo()
    if config.certificate_pem and config.private_key_pem:
        try:
            cert = load_certificate(config.certificate_pem)
        except ValueError:
            return IdentityInfo(certificate_set=True)
        info = IdentityInfo(
            certificate_set=True, certificate_thumbprint=cert.thumbprint, certificate_expires_at=cert.not_after
        )
    if config.service_account_key:
        try:
            key = parse_service_account_key(config.service_account_key)
        except ValueError:
            return info
        info = IdentityInfo(service_account_email=key.client_email, service_account_key_id=key.private_key_id)
    return info
