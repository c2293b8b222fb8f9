"""A real Dovecot 2.3 submission server for tests: strict SMTP limits, OAuth tokens checked by introspection.

Recipe: shared/TESTING.md ("A strict submission server that validates OAuth tokens").  Dovecot runs in the
foreground with a configuration of its own in a temporary directory, listens on a free loopback port,
validates XOAUTH2 / OAUTHBEARER tokens against an RFC 7662 endpoint (the sandbox's ``/introspect``) and
relays what it accepts to another SMTP server (a test sink).  No pytest in here.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import trustme

__all__ = ["DOVECOT", "RunningDovecot", "dovecot_available", "running_dovecot"]

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
_SUBMISSION = Path("/usr/lib/dovecot/submission")


def dovecot_available() -> bool:
    """Whether Dovecot with its submission service (Debian: dovecot-core dovecot-submissiond) is installed."""
    return os.access(DOVECOT, os.X_OK) and _SUBMISSION.exists()


@dataclass(frozen=True)
class RunningDovecot:
    """Where the server listens, the CA its certificate comes from, and its log (for failure messages)."""

    host: str
    port: int
    ca_file: str
    log: Path

    def log_text(self) -> str:
        """The server's log so far (it never holds tokens: Dovecot logs no SASL responses by default)."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _config(root: Path, port: int, relay_port: int, mechanisms: str) -> str:
    if os.geteuid() == 0:
        # Dovecot refuses mail processes running as root: sessions run as nobody, logins as the package's users.
        users = ""
        uid, gid = 65534, 65534
    else:
        name, group = pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name
        users = f"default_internal_user = {name}\ndefault_login_user = {name}\ndefault_internal_group = {group}\n"
        uid, gid = os.geteuid(), os.getegid()
    return f"""\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
{users}protocols = submission
listen = 127.0.0.1
hostname = localhost
ssl = required
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
auth_mechanisms = {mechanisms}
auth_failure_delay = 0
mail_location = maildir:~/Maildir
first_valid_uid = 1
first_valid_gid = 1
passdb {{
  driver = oauth2
  mechanisms = {mechanisms}
  args = {root}/oauth2.conf.ext
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
submission_relay_host = 127.0.0.1
submission_relay_port = {relay_port}
submission_relay_trusted = no
submission_relay_ssl = no
service submission-login {{
  chroot =
  inet_listener submission {{
    address = 127.0.0.1
    port = {port}
  }}
}}
service anvil {{
  chroot =
}}
"""


def _wait_until_listening(process: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dovecot exited with {process.returncode}: {log.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.settimeout(5)
            if sock.recv(512).startswith(b"220"):
                return
        time.sleep(0.05)
    raise RuntimeError(f"dovecot did not listen on {port} within {timeout:.0f} s")


@contextlib.contextmanager
def running_dovecot(
    introspection_url: str, relay_port: int, mechanisms: tuple[str, ...] = ("xoauth2", "oauthbearer")
) -> Iterator[RunningDovecot]:
    """Run Dovecot's submission server for the ``with`` block, relaying to ``127.0.0.1:relay_port``.

    ``mechanisms``: the SASL mechanisms it offers (both by default; mailgate picks XOAUTH2 when offered).
    """
    # Not pytest's tmp_path: Dovecot's unprivileged login processes must reach the sockets in base_dir.
    root = Path(tempfile.mkdtemp(prefix="mailgate-dovecot-"))
    root.chmod(0o755)
    process: subprocess.Popen[bytes] | None = None
    try:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        cert.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
        cert.private_key_pem.write_to_path(str(root / "key.pem"))
        ca.cert_pem.write_to_path(str(root / "ca.pem"))
        (root / "oauth2.conf.ext").write_text(
            f"introspection_url = {introspection_url}\n"
            "introspection_mode = post\n"
            "username_attribute = email\n"
            "active_attribute = active\n"
            "active_value = true\n"
        )
        # Sessions run as another user (nobody, when the tests run as root) and need a home they can create.
        (root / "home").mkdir(mode=0o1777)
        (root / "home").chmod(0o1777)
        port = _free_port()
        (root / "dovecot.conf").write_text(_config(root, port, relay_port, " ".join(mechanisms)))
        log = root / "dovecot.log"
        with (root / "stderr.log").open("wb") as stderr:
            process = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(root / "dovecot.conf")], stdout=subprocess.DEVNULL, stderr=stderr
            )
        _wait_until_listening(process, port, log)
        yield RunningDovecot("127.0.0.1", port, str(root / "ca.pem"), log)
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(root, ignore_errors=True)
