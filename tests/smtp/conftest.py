"""Fixtures for the SMTP tests: a test CA (trustme), TLS contexts, and servers started per test."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import trustme

from .servers import Mailbox, RunningServer, running_server

ServerFactory = Callable[..., RunningServer]


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """The CA the test servers' certificates come from."""
    return trustme.CA()


@pytest.fixture(scope="session")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    """Server side TLS with a certificate for 127.0.0.1 and localhost."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    """A verifying client context that trusts the test CA (and nothing else)."""
    return ssl.create_default_context(cadata=ca.cert_pem.bytes().decode())


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    """The test CA as a PEM file, for ``EmailServerConfig.ca_file``."""
    path = tmp_path / "test-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def start_server(server_context: ssl.SSLContext) -> Iterator[ServerFactory]:
    """Start servers for this test: ``start_server(Mailbox(...), tls="starttls", mechanisms=[...])``."""
    with ExitStack() as stack:

        def start(handler: Mailbox | None = None, *, tls: str = "starttls", **kwargs: Any) -> RunningServer:
            return stack.enter_context(
                running_server(handler or Mailbox(), tls=tls, server_context=server_context, **kwargs)  # type: ignore[arg-type]
            )

        yield start


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts TCP connections (in the backlog) but never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(5)
        yield sock.getsockname()[1]
