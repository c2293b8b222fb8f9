"""``python -m mailgate.sandbox``: run a sandbox (the same as ``mailgate sandbox``), e.g. from tests that
start it as a subprocess with ``--http-port 0 --smtp-port 0 --state-dir DIR`` and read
``DIR/sandbox.json``."""

from __future__ import annotations

import argparse
from pathlib import Path

from .config import DEFAULT_CLIENT, SandboxConfig
from .server import run_forever


def main(argv: list[str] | None = None) -> None:
    """Parse the options and run until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m mailgate.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=8765)
    parser.add_argument("--smtp-port", type=int, default=8587)
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--access-token-lifetime", type=int, default=3600)
    parser.add_argument("--no-rotate", action="store_true", help="Google style: refreshes keep the refresh token")
    parser.add_argument("--smtp-failure-style", choices=("google", "microsoft"), default="microsoft")
    parser.add_argument(
        "--redirect-uri",
        action="append",
        help="redirect URI the sandbox client accepts (repeatable; default: mailgate's on port 8080)",
    )
    args = parser.parse_args(argv)
    run_forever(
        SandboxConfig(
            host=args.host,
            http_port=args.http_port,
            smtp_port=args.smtp_port,
            state_dir=args.state_dir,
            access_token_lifetime=args.access_token_lifetime,
            rotate_refresh_tokens=not args.no_rotate,
            smtp_failure_style=args.smtp_failure_style,
            clients=(DEFAULT_CLIENT.with_redirect_uris(args.redirect_uri),) if args.redirect_uri else (DEFAULT_CLIENT,),
        )
    )


if __name__ == "__main__":
    main()
