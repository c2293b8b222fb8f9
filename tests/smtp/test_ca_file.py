"""ca_file is read safely: regular files only, bounded in size, never waiting on a FIFO (issue 20 point 9)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trustme

from mailgate.errors import SmtpPermanentError
from mailgate.smtp import SmtpConnection
from mailgate.smtp.tls import CA_FILE_MAX_BYTES, CaFileError, client_context, read_ca_file

from .conftest import ServerFactory
from .fifo import WatchedFifo
from .servers import FakeTokenSource


def test_a_fifo_is_refused_without_being_opened(tmp_path: Path) -> None:
    with WatchedFifo(tmp_path / "ca.pem") as fifo, pytest.raises(CaFileError) as caught:
        client_context(str(fifo.path))
    assert not fifo.opened
    assert "named pipe (FIFO), not a regular file" in str(caught.value)
    assert "Set ca_file to the PEM file of the CA" in str(caught.value)


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CaFileError, match="is a directory, not a regular file"):
        client_context(str(tmp_path))


def test_a_huge_file_is_refused_before_reading_it(tmp_path: Path) -> None:
    huge = tmp_path / "huge.pem"
    with huge.open("wb") as file:
        file.truncate(64 * CA_FILE_MAX_BYTES)  # sparse: 64 MiB that take no disk space
    with pytest.raises(CaFileError, match=r"is 67,108,864 bytes, more than a CA file holds \(at most 1,048,576\)"):
        read_ca_file(str(huge))


def test_a_file_of_exactly_the_limit_is_read(tmp_path: Path, ca: trustme.CA) -> None:
    pem = ca.cert_pem.bytes()
    path = tmp_path / "bundle.pem"
    path.write_bytes(pem + b"#" * (CA_FILE_MAX_BYTES - len(pem) - 1) + b"\n")
    assert os.path.getsize(path) == CA_FILE_MAX_BYTES
    assert read_ca_file(str(path)).startswith(pem)
    client_context(str(path))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"not a certificate\n", "holds no PEM certificate"),
        (b"\xff\xfe", "holds no PEM certificate"),
    ],
)
def test_files_without_a_certificate_are_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "ca.pem"
    path.write_bytes(content)
    with pytest.raises(CaFileError, match=message):
        client_context(str(path))


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(CaFileError, match="does not exist on the mailgate server"):
        client_context(str(tmp_path / "nope.pem"))


async def test_connecting_with_a_fifo_as_ca_file_fails_at_once(start_server: ServerFactory, tmp_path: Path) -> None:
    # A ca_file that was a PEM file when saved and is a FIFO now: the connection fails, it does not hang.
    server = start_server()
    with WatchedFifo(tmp_path / "ca.pem") as fifo:
        conn = SmtpConnection(server.config(ca_file=str(fifo.path)), FakeTokenSource())
        with pytest.raises(SmtpPermanentError) as caught:
            await conn.connect()
    assert not fifo.opened
    assert "Cannot load ca_file" in caught.value.message and "named pipe (FIFO)" in caught.value.message
    assert conn.steps[-1].name == "tls" and not conn.steps[-1].ok
    assert server.handler.sasl_commands == []
