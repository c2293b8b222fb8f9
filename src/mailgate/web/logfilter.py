"""Keep OAuth secrets out of logs: the redirect callback carries ``code`` and ``state`` in its query.

``mailgate serve`` writes its access log itself (:mod:`.accesslog`, with :func:`redact_url`); the filter
covers the loggers that can still show a URL (uvicorn's, httpx's)."""

from __future__ import annotations

import logging
import re

__all__ = ["RedactQueryFilter", "install_log_redaction", "redact_url"]

_SENSITIVE = re.compile(
    r"(?P<key>(?:^|[?&])(?:code|state|token|access_token|refresh_token|id_token|client_secret|password|key)=)[^&\s\"]*",
    re.IGNORECASE,
)


def redact_url(text: str) -> str:
    """``/cb?code=abc&state=x&page=2`` -> ``/cb?code=[redacted]&state=[redacted]&page=2``."""
    return _SENSITIVE.sub(lambda m: m.group("key") + "[redacted]", text)


class RedactQueryFilter(logging.Filter):
    """Rewrites a record's string arguments, or its message, with the query strings redacted (uvicorn's access
    log records, should it be turned on, hold the path with its query string in ``args``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_url(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact_url(record.msg)
        return True


def install_log_redaction() -> None:
    for name in ("uvicorn.access", "uvicorn.error", "httpx"):
        logging.getLogger(name).addFilter(RedactQueryFilter())
