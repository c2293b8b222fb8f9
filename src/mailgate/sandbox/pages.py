"""HTML pages of the sandbox (Jinja2 templates bundled in ``templates/``, autoescaped)."""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import HTMLResponse

from .authorize import AuthorizationRequest
from .inbox import ReceivedMessage
from .problems import AuthorizationPageError

__all__ = ["Pages", "describe_scope"]

# What the consent page says for the scopes mailgate asks for (wording after the providers' own pages).
_SCOPE_TEXT = {
    "https://outlook.office.com/SMTP.Send": "Send email as you using SMTP AUTH",
    "https://outlook.office365.com/SMTP.Send": "Send email as you using SMTP AUTH",
    "https://mail.google.com/": "Read, compose, send and permanently delete all your email from Gmail",
    "offline_access": "Maintain access to data you have given it access to",
    "openid": "Sign you in",
    "email": "View your email address",
    "profile": "View your basic profile",
}

#: Consent pages must not be framed (RFC 6749 s.10.13, clickjacking) nor cached.
_PAGE_HEADERS = {"X-Frame-Options": "DENY", "Cache-Control": "no-store"}


def describe_scope(scope: str) -> str:
    """A human sentence for ``scope``."""
    return _SCOPE_TEXT.get(scope, f"Access {scope}")


class Pages:
    """Renders the templates into responses."""

    def __init__(self) -> None:
        self._env = Environment(
            loader=PackageLoader("mailgate.sandbox", "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def _render(self, name: str, status: int = 200, **context: object) -> HTMLResponse:
        html = self._env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status, headers=_PAGE_HEADERS)

    def consent(
        self, request: AuthorizationRequest, *, account: str, message: str = "", status: int = 200
    ) -> HTMLResponse:
        """The consent page: client, scopes, account field, Accept and Deny."""
        scopes = [(scope, describe_scope(scope)) for scope in request.scopes]
        return self._render("consent.html", status, request=request, scopes=scopes, account=account, message=message)

    def error(self, error: AuthorizationPageError) -> HTMLResponse:
        """An authorization error shown to the user instead of a redirect."""
        return self._render("error.html", 400, error=error)

    def index(self, facts: list[tuple[str, str]]) -> HTMLResponse:
        return self._render("index.html", facts=facts)

    def inbox(self, messages: list[ReceivedMessage]) -> HTMLResponse:
        return self._render("inbox.html", messages=list(reversed(messages)))

    def message(self, message: ReceivedMessage) -> HTMLResponse:
        headers = [(name, str(value)) for name, value in message.message.items()]
        return self._render("message.html", m=message, headers=headers, body=message.text_body())
