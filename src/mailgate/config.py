"""Process settings: a small frozen object built once at the edge from the environment and passed down."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigurationError
from .providers import check_endpoint_url

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_CONTEXT_PATH", "Settings"]

DEFAULT_BASE_URL = "http://localhost:8080"
DEFAULT_CONTEXT_PATH = "/ddenterpriseapi"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("mailgate-data")
    database_url: str = ""
    secret_key: str = field(default="", repr=False)
    admin_password: str = field(default="", repr=False)
    base_url: str = DEFAULT_BASE_URL
    providers_file: Path | None = None
    context_path: str = DEFAULT_CONTEXT_PATH
    #: Refresh an access token this many seconds before it expires.
    refresh_margin_seconds: float = 300.0

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{(self.data_dir / 'mailgate.db').resolve()}"

    @property
    def api_prefix(self) -> str:
        return f"{self.context_path}/v2"

    @property
    def default_redirect_uri(self) -> str:
        return f"{self.base_url.rstrip('/')}{self.api_prefix}/oauth/redirect"

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: object) -> Settings:
        """Build settings from ``MAILGATE_*`` variables; keyword ``overrides`` (CLI flags) win."""
        values: dict[str, object] = {}
        if env.get("MAILGATE_DATA_DIR"):
            values["data_dir"] = Path(env["MAILGATE_DATA_DIR"])
        for key, attr in (
            ("MAILGATE_DATABASE_URL", "database_url"),
            ("MAILGATE_SECRET_KEY", "secret_key"),
            ("MAILGATE_ADMIN_PASSWORD", "admin_password"),
            ("MAILGATE_BASE_URL", "base_url"),
            ("MAILGATE_CONTEXT_PATH", "context_path"),
        ):
            if env.get(key):
                values[attr] = env[key]
        if env.get("MAILGATE_PROVIDERS_FILE"):
            values["providers_file"] = Path(env["MAILGATE_PROVIDERS_FILE"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        problem = check_endpoint_url(self.base_url)
        if problem and "https" not in problem:
            raise ConfigurationError(f"MAILGATE_BASE_URL {self.base_url!r} {problem}")
        if not self.context_path.startswith("/") or self.context_path.endswith("/"):
            raise ConfigurationError(
                f"MAILGATE_CONTEXT_PATH {self.context_path!r} must start with '/' and not end with one"
            )
