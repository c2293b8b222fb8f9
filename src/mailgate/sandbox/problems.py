"""The errors the sandbox answers with, worded as the real providers word them.

Two flavours, chosen by the path a request came in on: the Microsoft-shaped endpoints
(``/{tenant}/oauth2/v2.0/...``) answer like Entra ID (``AADSTS`` codes, ``error_codes``, trace and
correlation ids); the Google-shaped ones (``/o/oauth2/v2/auth``, ``/token``) answer like Google
(``error`` and a terse ``error_description``).  Facts: shared/PROVIDERS.md.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

__all__ = [
    "AuthorizationPageError",
    "AuthorizationRedirectError",
    "Flavor",
    "TokenError",
]

#: Which provider an endpoint imitates.
Flavor = Literal["microsoft", "google"]


class TokenError(Exception):
    """A token endpoint refusal (RFC 6749 s.5.2): HTTP ``status`` with a JSON body."""

    def __init__(
        self,
        error: str,
        aadsts: int,
        ms_text: str,
        google_text: str,
        *,
        status: int = 400,
        google_error: str = "",
    ) -> None:
        super().__init__(f"{error}: AADSTS{aadsts}")
        self.error = error
        self.aadsts = aadsts
        self.ms_text = ms_text
        self.google_text = google_text
        self.status = status
        self.google_error = google_error or error

    def body(self, flavor: Flavor) -> dict[str, object]:
        """The JSON answer, in the words of the provider imitated."""
        if flavor == "google":
            return {"error": self.google_error, "error_description": self.google_text}
        now = datetime.now(UTC)
        trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
        return {
            "error": self.error,
            "error_description": f"AADSTS{self.aadsts}: {self.ms_text} Trace ID: {trace_id} "
            f"Correlation ID: {correlation_id} Timestamp: {stamp}",
            "error_codes": [self.aadsts],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
        }

    # --- the catalogue -------------------------------------------------------------------------------

    @classmethod
    def missing_parameter(cls, name: str) -> TokenError:
        return cls(
            "invalid_request",
            900144,
            f"The request body must contain the following parameter: '{name}'.",
            f"Missing required parameter: {name}",
        )

    @classmethod
    def unsupported_grant_type(cls, grant_type: str) -> TokenError:
        return cls(
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant_type}'.",
            f"Invalid grant_type: {grant_type}",
        )

    @classmethod
    def unknown_client(cls, client_id: str, tenant: str) -> TokenError:
        return cls(
            "invalid_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory '{tenant}'. This "
            "can happen if the application has not been installed by the administrator of the tenant or "
            "consented to by any user in the tenant. You may have sent your authentication request to the "
            "wrong tenant.",
            "The OAuth client was not found.",
            status=401,
        )

    @classmethod
    def missing_secret(cls) -> TokenError:
        return cls(
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            "client_secret is missing.",
            status=401,
        )

    @classmethod
    def wrong_secret(cls, client_id: str) -> TokenError:
        # The most common setup mistake on Entra: pasting the secret's ID instead of its Value.
        return cls(
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client "
            f"secret value, not the client secret ID, for a secret added to app '{client_id}'.",
            "Unauthorized",
            status=401,
        )

    @classmethod
    def several_client_auth_methods(cls) -> TokenError:
        # RFC 6749 s.2.3: "The client MUST NOT use more than one authentication method in each request."
        return cls(
            "invalid_request",
            90014,
            "The client sent its secret both in the Authorization header and in the request body; use "
            "one client authentication method.",
            "Client authentication must use one method only.",
        )

    @classmethod
    def bad_code(cls, why: str = "") -> TokenError:
        return cls(
            "invalid_grant",
            70000,
            f"The provided value for the 'code' parameter is not valid.{' ' + why if why else ''}",
            "Malformed auth code.",
        )

    @classmethod
    def code_redeemed(cls) -> TokenError:
        return cls(
            "invalid_grant",
            54005,
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an "
            "existing refresh token.",
            "Bad Request",
        )

    @classmethod
    def code_expired(cls) -> TokenError:
        return cls(
            "invalid_grant",
            70008,
            "The provided authorization code or refresh token has expired due to inactivity. Send a new "
            "interactive authorization request for this user and resource.",
            "Bad Request",
        )

    @classmethod
    def redirect_uri_mismatch(cls, received: str, expected: str) -> TokenError:
        # RFC 6749 s.4.1.3: redirect_uri must be identical to the one of the authorization request.
        return cls(
            "invalid_grant",
            500112,
            f"The reply address '{received}' does not match the reply address '{expected}' provided when "
            "requesting Authorization code.",
            "Bad Request",
            google_error="redirect_uri_mismatch",
        )

    @classmethod
    def pkce_missing(cls) -> TokenError:
        # RFC 7636 s.4.5-4.6: a challenge was sent, so a verifier is required.
        return cls(
            "invalid_grant",
            501481,
            "The Code_Verifier does not match the code_challenge supplied in the authorization request "
            "(no code_verifier was sent).",
            "Missing code verifier.",
        )

    @classmethod
    def pkce_mismatch(cls) -> TokenError:
        return cls(
            "invalid_grant",
            501481,
            "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
            "Invalid code verifier.",
        )

    @classmethod
    def refresh_token_dead(cls, why: str) -> TokenError:
        # Expired, revoked, rotated out or unknown: both providers answer invalid_grant.
        return cls(
            "invalid_grant",
            70008,
            "The provided authorization code or refresh token has expired due to inactivity or was "
            f"revoked ({why}). Token has been expired or revoked. Send a new interactive authorization "
            "request for this user and resource.",
            "Token has been expired or revoked.",
        )

    @classmethod
    def grant_of_other_client(cls) -> TokenError:
        return cls(
            "invalid_grant",
            70000,
            "The provided grant was issued to a different client.",
            "Unauthorized",
            google_error="unauthorized_client",
        )

    @classmethod
    def scope_not_consented(cls, client_id: str, scope: str) -> TokenError:
        return cls(
            "invalid_grant",
            65001,
            f"The user or administrator has not consented to use the application with ID '{client_id}' "
            f"for the scope(s) '{scope}'. Send an interactive authorization request for this user and "
            "resource.",
            "Some requested scopes were not granted.",
            google_error="invalid_scope",
        )

    @classmethod
    def client_credentials_scope(cls, scope: str) -> TokenError:
        return cls(
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope} is not valid. Client credential flows must have a scope "
            "value with /.default suffixed to the resource identifier (application ID URI).",
            "Invalid scope.",
        )

    @classmethod
    def client_credentials_on_common(cls) -> TokenError:
        return cls(
            "invalid_request",
            9001023,
            "The grant type is not supported over the /common or /consumers endpoints. Please use the "
            "/organizations or tenant-specific endpoint.",
            "Bad Request",
        )

    @classmethod
    def unavailable(cls) -> TokenError:
        return cls(
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.",
            "The service is currently unavailable.",
            status=503,
        )


@dataclass(eq=False)
class AuthorizationPageError(Exception):
    """An authorization request the sandbox must not redirect back (RFC 6749 s.4.1.2.1: unknown client or
    redirect URI): shown as an error page to the user instead."""

    error: str
    aadsts: int
    message: str
    #: Extra facts shown on the page (label, value), e.g. the redirect URI received and the registered ones.
    details: tuple[tuple[str, str], ...] = ()
    #: What to do about it, shown under the facts.
    hint: str = ""

    def __str__(self) -> str:
        return f"{self.error}: AADSTS{self.aadsts}: {self.message}"


@dataclass(eq=False)
class AuthorizationRedirectError(Exception):
    """An authorization request refused with a redirect to the client (RFC 6749 s.4.1.2.1)."""

    redirect_uri: str
    error: str
    description: str
    state: str

    def __str__(self) -> str:
        return f"{self.error}: {self.description}"
