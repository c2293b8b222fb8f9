"""Domain errors become HTTP answers here, not in routes."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from ..errors import MailgateError

__all__ = [
    "CLIENT_CLOSED_REQUEST",
    "client_gone_response",
    "install_error_handlers",
    "mailgate_error_response",
    "validation_error_response",
]

#: What the access log says of a request whose client went away before sending all of it (nginx's 499).
CLIENT_CLOSED_REQUEST = 499

_HTTP_ERROR_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    429: "too_many_requests",
}


def _field_name(loc: tuple[object, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def mailgate_error_response(exc: MailgateError) -> JSONResponse:
    """The answer to a domain error: its HTTP status and ``{error, message, hint, ...}``."""
    return JSONResponse(exc.to_dict(), status_code=exc.http_status)


def client_gone_response() -> Response:
    """The answer to a request whose client disconnected before its body was read: nobody receives it
    (nothing was stored), but the access log says what happened instead of a 500 and a traceback."""
    return Response(status_code=CLIENT_CLOSED_REQUEST)


def validation_error_response(exc: RequestValidationError) -> JSONResponse:
    """422 naming each invalid field, from FastAPI's (pydantic's) list of errors."""
    fields: dict[str, str] = {}
    for err in exc.errors():
        name = _field_name(tuple(err.get("loc", ())))
        if err.get("type") == "json_invalid":
            name = "body"
            fields[name] = "is not valid JSON"
        elif err.get("type") == "extra_forbidden":
            fields[name] = "is not a known field"
        else:
            fields.setdefault(name, str(err.get("msg", "is invalid")))
    summary = "; ".join(f"{k}: {v}" for k, v in fields.items())
    return JSONResponse(
        {
            "error": "invalid_input",
            "message": f"Invalid input: {summary}",
            "fields": fields,
            "hint": "Correct the fields named and try again.",
        },
        status_code=422,
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MailgateError)
    async def mailgate_error(_request: Request, exc: MailgateError) -> JSONResponse:
        return mailgate_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error_response(exc)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(_request: Request, _exc: ClientDisconnect) -> Response:
        return client_gone_response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_ERROR_CODES.get(exc.status_code, "http_error")
        return JSONResponse(
            {"error": code, "message": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )
