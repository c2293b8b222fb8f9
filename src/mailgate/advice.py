"""What a provider or SMTP failure means and what the administrator should do: the one table of advice.

Core (no I/O, imports nothing above it).  The OAuth error parsing (:mod:`mailgate.oauth.protocol`), the
consent flow and the SMTP reply mapping (:mod:`mailgate.smtp.replies`) ask here, so the message status, the
Test connection, the OAuth result page, the token status and ``mailgate doctor`` say the same thing.  The
errors built from an :class:`Advice` keep the provider's raw text next to it, for support.

Facts: shared/PROVIDERS.md (the AADSTS table, Google's refresh token lifetimes, Microsoft's SMTP answers),
RFC 6749 s.4.1.2.1 and s.5.2 (OAuth error codes), RFC 5321 s.4.2.1 and RFC 3463 (SMTP replies).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "Advice",
    "aadsts_code",
    "authorization_error",
    "smtp_reply",
    "token_error",
]

_AADSTS = re.compile(r"AADSTS(\d+)")


@dataclass(frozen=True)
class Advice:
    """The likely ``cause`` of a failure and the ``fix``: two sentences an administrator can act on."""

    cause: str
    fix: str


_REAUTHORIZE = "On the OAuth page, click Authorize to authorize again (or run `mailgate oauth authorize`)."
_REGISTER_URI = (
    "Register exactly this redirect URI in the app registration (scheme, host, port, path and trailing slash "
    "must be identical): {uri}"
)

# shared/PROVIDERS.md, "Errors to recognise": Entra ID's AADSTS codes.
_AADSTS_ADVICE: dict[str, Advice] = {
    "7000215": Advice(
        "The client secret is wrong: often the secret's ID was pasted instead of its Value.",
        "Paste the secret's Value (shown once when it is created, under Certificates & secrets) into Client "
        "Secret on the OAuth page and save.",
    ),
    "7000222": Advice(
        "The client secret has expired (Microsoft secrets live at most 24 months).",
        "Create a new client secret under Certificates & secrets of the app registration, paste its Value into "
        "Client Secret on the OAuth page and save.",
    ),
    "700082": Advice(
        "The refresh token expired after 90 days without use.",
        _REAUTHORIZE,
    ),
    "70008": Advice(
        "The refresh token (or authorization code) expired or was revoked. Likely causes: 90 days without use; "
        "the user changed the password or MFA settings; an administrator revoked the sessions or the consent.",
        _REAUTHORIZE,
    ),
    "50173": Advice(
        "The grant was revoked: the user changed the password, or an administrator revoked the sessions.",
        _REAUTHORIZE,
    ),
    "65001": Advice(
        "Consent is missing for the permissions mailgate asks for (SMTP.Send, offline_access).",
        "Grant consent when authorizing, or ask a tenant administrator to grant admin consent under API "
        "permissions of the app registration; then authorize again.",
    ),
    "50011": Advice(
        "The redirect URI sent is not registered for the app (http vs https, host, port or path differ).",
        _REGISTER_URI,
    ),
    "500112": Advice(
        "The redirect URI does not match (often a reverse proxy turns https into http).",
        _REGISTER_URI,
    ),
    "50194": Advice(
        "The app registration is single-tenant but the Tenant field is common (or organizations).",
        "Set the Tenant field on the OAuth page to the app's Directory (tenant) ID.",
    ),
    "90002": Advice(
        "The tenant was not found.",
        "Check the Tenant field on the OAuth page: the Directory (tenant) ID or a verified domain.",
    ),
    "700016": Advice(
        "The application (Client ID) was not found in this tenant.",
        "Check the Client ID (the Application (client) ID of the app registration) and the Tenant field.",
    ),
    "9001023": Advice(
        "App-only (client credentials) tokens need a tenant-specific endpoint.",
        "Set the Tenant field to the Directory (tenant) ID instead of common or organizations.",
    ),
    # App-only (client credentials with a certificate: a signed client assertion, RFC 7523).
    "700027": Advice(
        "The client assertion was refused: the certificate is not registered on the app, or the private key is "
        "not the certificate's own.",
        "Upload the certificate (the .cer/.pem, public part) under Certificates & secrets > Certificates of the "
        "app registration, and upload its own private key on the OAuth page.",
    ),
    "700024": Advice(
        "The client assertion is outside its validity time.",
        "Check the mailgate server's clock (NTP): the assertion is valid for 10 minutes from its issue time.",
    ),
    "50012": Advice(
        "The client assertion was refused (its audience, signature or a replay).",
        "Upload the certificate and its private key again on the OAuth page.",
    ),
    "7000218": Advice(
        "The app registration was used without a credential.",
        "Enter the client secret, or upload a certificate and its private key, on the OAuth page.",
    ),
    "70011": Advice(
        "The provider refused the scope mailgate asked for.",
        "This is a mailgate bug or a providers-file mistake: check the scopes of the provider, then report it.",
    ),
    "900144": Advice(
        "A required parameter was missing from mailgate's request.",
        "This is a mailgate bug: please report it with the provider text below.",
    ),
}

_GOOGLE_DEAD_GRANT = Advice(
    "Google no longer accepts the refresh token. Likely causes: the OAuth consent screen is External and in "
    "Testing (tokens die 7 days after consent); the token was unused for 6 months; the user changed the "
    "password; access was revoked at myaccount.google.com/permissions; or too many tokens were issued for this "
    "client and user (the oldest die first).",
    f"{_REAUTHORIZE} If it keeps dying 7 days after consent, publish the consent screen (Google Cloud console > "
    "OAuth consent screen > Publish app).",
)
_MICROSOFT_DEAD_GRANT = Advice(
    "Microsoft no longer accepts the refresh token. Likely causes: 90 days without use; the user changed the "
    "password or MFA settings; an administrator revoked the sessions or the consent.",
    _REAUTHORIZE,
)

# RFC 6749 s.5.2 and s.4.1.2.1 error codes.
_OAUTH_ADVICE: dict[str, Advice] = {
    "invalid_client": Advice(
        "The provider did not accept the client: the Client ID is wrong, or the client secret is wrong or expired.",
        "Check the Client ID and paste a valid client secret (create a new one if it expired) on the OAuth page.",
    ),
    "unauthorized_client": Advice(
        "This client may not use this grant: the app registration is not a Web application client, or (Google "
        "Workspace delegation) the client ID and scope are not allowed in the Admin console.",
        "Check the app registration's type, or allow the client ID with the scope https://mail.google.com/ in "
        "the Google Admin console (Security > API controls > Domain-wide delegation).",
    ),
    "invalid_scope": Advice(
        "The provider refused the scope mailgate asked for.",
        "Check the API permissions of the app registration (SMTP.Send / https://mail.google.com/), then "
        "authorize again.",
    ),
    "invalid_request": Advice(
        "The provider refused the request as malformed.",
        "Check the OAuth page settings (provider, tenant, client ID); if they are right, report it.",
    ),
    "unsupported_grant_type": Advice(
        "The provider refused the grant type.", "Check the app registration (a Web application client)."
    ),
    "redirect_uri_mismatch": Advice(
        "The redirect URI mailgate sent is not one registered for the client (compared byte for byte).",
        _REGISTER_URI,
    ),
    "admin_policy_enforced": Advice(
        "An administrator's policy blocks this app for the account (Google Workspace API access controls).",
        "Ask the Workspace administrator to trust the app (Admin console > Security > API controls), then "
        "authorize again.",
    ),
    "consent_required": Advice(
        "Your organisation requires an administrator's consent for this app.",
        "Ask an administrator to grant (admin) consent, then authorize again.",
    ),
    "interaction_required": Advice(
        "Your organisation's policy requires something more at sign-in (MFA, consent, a compliant device).",
        "Authorize again in a browser and complete what the provider asks, or ask an administrator.",
    ),
    "access_denied": Advice(
        "Consent was denied at the provider (the user clicked Cancel/Deny), so nothing was changed.",
        "Authorize again and accept the permissions to connect.",
    ),
    "temporarily_unavailable": Advice("The provider is temporarily unavailable.", "Try again in a few minutes."),
    "server_error": Advice("The provider had an internal error.", "Try again in a few minutes."),
}
_UNKNOWN = Advice("The provider refused the request.", "Check the OAuth page settings, then authorize again.")


def aadsts_code(text: str) -> str:
    """The first ``AADSTSnnnn`` number in ``text`` (``"7000215"``), or ``""``."""
    match = _AADSTS.search(text)
    return match.group(1) if match else ""


def _with_uri(advice: Advice, redirect_uri: str) -> Advice:
    uri = redirect_uri or "the Authorized redirect URI shown on the OAuth page"
    return Advice(advice.cause, advice.fix.replace("{uri}", uri))


def token_error(error: str, description: str, *, redirect_uri: str = "") -> Advice:
    """Advice for a token endpoint's ``error`` answer (RFC 6749 s.5.2) with its ``error_description``.

    An AADSTS code wins (Microsoft says precisely what is wrong); ``invalid_grant`` without one is taken as
    Google's (whose answers carry no code).  ``redirect_uri`` is the URI to register on a mismatch.
    """
    code = aadsts_code(description)
    if code in _AADSTS_ADVICE:
        return _with_uri(_AADSTS_ADVICE[code], redirect_uri)
    if error == "invalid_grant":
        return _MICROSOFT_DEAD_GRANT if code else _GOOGLE_DEAD_GRANT
    return _with_uri(_OAUTH_ADVICE.get(error, _UNKNOWN), redirect_uri)


def authorization_error(error: str, description: str = "", *, redirect_uri: str = "") -> Advice:
    """Advice for an ``error`` the provider sent back to the redirect URI (RFC 6749 s.4.1.2.1)."""
    code = aadsts_code(description)
    if code in _AADSTS_ADVICE:
        return _with_uri(_AADSTS_ADVICE[code], redirect_uri)
    return _with_uri(_OAUTH_ADVICE.get(error, _UNKNOWN), redirect_uri)


# --- SMTP -----------------------------------------------------------------------------------------------

_SMTP_BY_STATUS: dict[str, Advice] = {
    "5.7.139": Advice(
        "SMTP AUTH (authenticated client submission) is disabled for this Microsoft 365 mailbox, or for the "
        "whole tenant (security defaults).",
        "An Exchange administrator must enable it: Set-CASMailbox -Identity <mailbox> "
        "-SmtpClientAuthenticationDisabled $false (PowerShell), or Microsoft 365 admin centre > Users > the "
        "mailbox > Mail > Manage email apps > Authenticated SMTP; if it is off tenant-wide "
        "(Set-TransportConfig), enable it there or send through Microsoft Graph.",
    ),
    "5.7.3": Advice(
        "Microsoft rejected the access token: the Username is not the mailbox that consented (the wrong account "
        "signed in), the token lacks the permission https://outlook.office.com/SMTP.Send, or (app-only) the "
        "service principal is not registered in Exchange.",
        "Authorize again signed in as the Username's mailbox (or set Username to the mailbox that consented); "
        "check the delegated permission SMTP.Send; for app-only tokens run New-ServicePrincipal and "
        "Add-MailboxPermission.",
    ),
    "5.7.30": Advice(
        "Microsoft 365 no longer accepts a password (Basic authentication) for SMTP submission.",
        "Set Authentication to oauth on the Email server page and authorize on the OAuth page (an app "
        "registration with the delegated permission SMTP.Send).",
    ),
    "5.7.60": Advice(
        "The authenticated mailbox may not send as this sender address (no Send As permission).",
        "Use the authenticated mailbox (or an address it may send as) as the sender, or have an Exchange "
        "administrator grant it Send As on the sender's mailbox (Add-RecipientPermission -AccessRights SendAs).",
    ),
    "5.5.127": Advice(
        "The access token was about to expire when it was used (Microsoft high-volume endpoint).",
        "Nothing to change: mailgate retries with a fresh token, refreshed earlier. If it persists, check this "
        "machine's clock.",
    ),
    "4.3.2": Advice(
        "Too many simultaneous connections for this mailbox (Microsoft 365 allows 3): a temporary refusal.",
        "mailgate retries later. Lower max_connections for the provider, or stop other programs sending from "
        "the same mailbox.",
    ),
    "5.7.57": Advice(
        "The server requires authentication before sending.",
        "Set Authentication to oauth (or password) on the Email server page.",
    ),
}
_GMAIL_REJECTED = Advice(
    "Google rejected the credentials.",
    "With OAuth, the Username must be exactly the Google account that granted consent, and the consent must "
    "include the scope https://mail.google.com/ (authorize again if not). With a password, use an app password: "
    "Google refuses the account password over SMTP.",
)
_THROTTLED_LOGIN = Advice(
    "The server is throttling logins (Gmail: too many login attempts): a temporary refusal.",
    "mailgate retries later. Wait several minutes before connecting again, and keep connections open for several "
    "messages instead of logging in per message.",
)


def _smtp_by_code(code: int, during: str) -> Advice | None:
    # The reply codes of RFC 5321 s.4.2.3, read in the context of the command refused.
    if code == 530 and during in ("mail", "rcpt", "data"):
        return _SMTP_BY_STATUS["5.7.57"]
    if code == 534:
        return Advice(
            "The server wants a stronger sign-in (Gmail 5.7.9/5.7.14: an app password or OAuth).",
            "Use Authentication oauth.",
        )
    if code == 538:
        return Advice(
            "The server requires an encrypted connection before AUTH.",
            "Use security starttls (587) or ssl (465).",
        )
    if code == 504 and during == "auth":
        return Advice(
            "The server does not support this authentication mechanism.", "Check the host and Authentication."
        )
    if code == 421:
        return Advice("The server is closing the connection (shutting down or overloaded).", "Try again later.")
    if code == 535 and during == "auth":
        return Advice("The server rejected the credentials.", "Check Username, and the password or the OAuth consent.")
    if code == 550:
        if during == "rcpt":
            return Advice("The recipient's mailbox does not exist or refuses mail.", "Check the address.")
        return Advice("The server refused the message by policy.", "Check the sender address and the reply text.")
    if code == 552:
        return Advice(
            "The message is too large or the mailbox is full.",
            "Send a smaller message, e.g. attachments as links (Gmail takes 25 MB, Microsoft 365 35 MB by default).",
        )
    if code == 553:
        if during == "mail":
            return Advice("The sender address is not allowed for this account.", "Use the mailbox you authenticate as.")
        return Advice("The recipient address is not valid.", "Check its spelling.")
    if code == 554:
        return Advice(
            "The server rejected the transaction (policy, spam filter or blocked account).", "Read the reply text."
        )
    if 400 <= code < 500:
        return Advice("A temporary failure.", "Nothing to do: the same message may be accepted later.")
    return None


def smtp_reply(code: int, status: str, text: str, *, during: str) -> Advice | None:
    """Advice for a negative SMTP reply ``code`` (enhanced ``status``, reply ``text``) to stage ``during``.

    ``during`` is one of connect, ehlo, tls, auth, mail, rcpt, data, quit; None when there is nothing more
    to say than the reply itself.
    """
    if status == "5.7.8" and during == "auth":
        return _GMAIL_REJECTED
    if status in _SMTP_BY_STATUS:
        return _SMTP_BY_STATUS[status]
    if "SendAsDenied" in text:
        return _SMTP_BY_STATUS["5.7.60"]
    if code == 454 and (during == "auth" or status == "4.7.0"):
        return _THROTTLED_LOGIN
    if code == 432:
        return _SMTP_BY_STATUS["4.3.2"]
    return _smtp_by_code(code, during)
