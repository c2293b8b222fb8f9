"""``--account NAME`` on the oauth, email, send and outbox commands, and ``mailgate accounts`` (issue 21)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import Result
from typer.testing import CliRunner

from mailgate.cli.main import app


def _run(tmp_path: Path, *args: str) -> Result:
    return CliRunner().invoke(
        app, [*args, "--data-dir", str(tmp_path)], env={"MAILGATE_ADMIN_PASSWORD": "", "COLUMNS": "200"}
    )


def test_accounts_are_configured_listed_and_deleted_from_the_command_line(tmp_path: Path) -> None:
    ms = ["--provider", "microsoft", "--client-id", "client-1", "--client-secret", "s3cret"]
    ok = [
        _run(tmp_path, "oauth", "configure", *ms, "--tenant", "contoso.onmicrosoft.com", "--account", "reports"),
        _run(tmp_path, "oauth", "copy", "--from", "reports", "--account", "alerts"),
        _run(
            tmp_path, "email", "configure", "--host", "smtp.office365.com", "--username", "reports@contoso.com",
            "--also-from", "*@Contoso.org", "--also-from", "news@contoso.com", "--account", "reports",
        ),
    ]  # fmt: skip
    for result in ok:
        assert result.exit_code == 0, result.output
    listed = _run(tmp_path, "accounts", "list", "--json")
    assert listed.exit_code == 0, listed.output
    accounts = {a["name"]: a for a in json.loads(listed.output)}
    assert list(accounts) == ["default", "alerts", "reports"]
    assert accounts["reports"]["mailbox"] == "reports@contoso.com"
    assert accounts["reports"]["senders"] == ["*@contoso.org", "news@contoso.com"]
    assert accounts["alerts"]["provider"] == "microsoft"  # copied from reports
    status = _run(tmp_path, "oauth", "status", "--account", "alerts")
    assert status.exit_code == 0 and "client-1" in status.output and "s3cret" not in status.output
    assert "contoso.onmicrosoft.com" in status.output

    unknown = _run(tmp_path, "oauth", "status", "--account", "nope")
    assert unknown.exit_code == 1 and "No account 'nope'" in unknown.output
    bad = _run(tmp_path, "oauth", "copy", "--from", "default", "--account", "Not Valid")
    assert bad.exit_code == 1 and "account" in bad.output
    refused = _run(tmp_path, "send", "--from", "mallory@evil.test", "--to", "b@example.com", "--subject", "s",
                   "--body", "b", "--account", "reports")  # fmt: skip
    assert refused.exit_code == 1 and "may not send as 'mallory@evil.test'" in refused.output
    assert _run(tmp_path, "outbox", "list", "--account", "reports").output.strip().endswith("0 of 0 message(s)")
    assert _run(tmp_path, "outbox", "purge", "--account", "reports").output.strip() == "Deleted 0 message(s)."
    no_worker = _run(tmp_path, "worker", "--account", "nope")
    assert no_worker.exit_code == 1 and "No account 'nope'" in no_worker.output

    kept = _run(tmp_path, "accounts", "delete", "default")
    assert kept.exit_code == 1 and "cannot be deleted" in kept.output
    gone = _run(tmp_path, "accounts", "delete", "alerts")
    assert gone.exit_code == 0 and "Deleted account alerts" in gone.output, gone.output
    assert [a["name"] for a in json.loads(_run(tmp_path, "accounts", "list", "--json").output)] == [
        "default",
        "reports",
    ]


def test_app_only_grants_from_the_command_line(tmp_path: Path) -> None:
    from mailgate.sandbox.apponly import AppOnlyRegistry

    registry = AppOnlyRegistry()
    cert = registry.register_certificate("client-1")
    (tmp_path / "app.pem").write_text(cert["certificate_pem"])
    (tmp_path / "app.key").write_text(cert["private_key_pem"])
    (tmp_path / "key.json").write_text(json.dumps(registry.register_service_account()))
    ms = ["--provider", "microsoft", "--client-id", "client-1", "--grant", "client_credentials"]
    saved = _run(tmp_path, "oauth", "configure", *ms, "--tenant", "contoso.onmicrosoft.com",
                 "--certificate", str(tmp_path / "app.pem"), "--private-key", str(tmp_path / "app.key"),
                 "--mailbox", "reports@contoso.com", "--account", "reports")  # fmt: skip
    assert saved.exit_code == 0 and "no consent needed" in saved.output, saved.output
    google = _run(tmp_path, "oauth", "configure", "--provider", "google", "--grant", "service_account",
                  "--service-account-key", str(tmp_path / "key.json"), "--mailbox", "boss@example.com",
                  "--account", "workspace")  # fmt: skip
    assert google.exit_code == 0, google.output
    status = _run(tmp_path, "oauth", "status", "--account", "reports")
    assert "client_credentials" in status.output and cert["thumbprint"] in status.output
    assert "PRIVATE KEY" not in status.output + _run(tmp_path, "oauth", "status", "--account", "workspace").output
    common = _run(tmp_path, "oauth", "configure", *ms, "--tenant", "common", "--client-secret", "s",
                  "--mailbox", "reports@contoso.com", "--account", "other")  # fmt: skip
    assert common.exit_code == 1 and "AADSTS9001023" in common.output
    missing = _run(tmp_path, "oauth", "configure", "--provider", "google", "--grant", "service_account",
                   "--service-account-key", str(tmp_path / "nope.json"), "--mailbox", "a@b.c")  # fmt: skip
    assert missing.exit_code == 2 and "nope.json" in missing.output
