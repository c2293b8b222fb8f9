"""Keep OAuth secrets out of access logs: the redirect callback carries ``code`` and ``state`` in its query."""

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
    """Rewrites uvicorn's access log records (their ``args`` hold the path with its query string)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_url(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact_url(record.msg)
        return True


def install_log_redaction() -> None:
    for name in ("uvicorn.access", "uvicorn.error", "httpx"):
        logging.getLogger(name).addFilter(RedactQueryFilter())
