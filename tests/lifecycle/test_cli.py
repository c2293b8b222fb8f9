"""``mailgate oauth configure --client-secret-expires-on``: the date from the command line, validated."""

from __future__ import annotations

from pathlib import Path

from ..core.test_accounts_cli import _run

MS = ["--provider", "microsoft", "--client-id", "client-1", "--client-secret", "s3cret", "--tenant", "contoso.com"]


def test_the_secret_expiry_date_from_the_command_line(tmp_path: Path) -> None:
    result = _run(tmp_path, "oauth", "configure", *MS, "--client-secret-expires-on", "2027-06-30")
    assert result.exit_code == 0, result.output
    status = _run(tmp_path, "oauth", "status")
    assert "client_secret_expires_on 2027-06-30" in status.output
    refused = _run(tmp_path, "oauth", "configure", *MS, "--client-secret-expires-on", "30/06/2027")
    assert refused.exit_code != 0 and "client_secret_expires_on" in refused.output
    assert "YYYY-MM-DD" in refused.output
    assert "client_secret_expires_on 2027-06-30" in _run(tmp_path, "oauth", "status").output
