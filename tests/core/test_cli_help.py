"""What ``mailgate --help`` and the commands' help say to a user (issue 19.8)."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from mailgate.cli.main import app


def _help(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert result.exit_code == 0, result.output
    # One line per option, box characters and wrapping aside.
    return re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", result.output))


def test_the_top_level_help_is_for_users_not_the_code() -> None:
    text = _help()
    assert "The only code besides web/" not in text and "``" not in text
    assert "OAuth 2.0" in text


def test_the_data_dir_option_names_its_variable() -> None:
    for command in (("serve",), ("oauth", "status"), ("send",)):
        text = _help(*command)
        assert "Data directory ." not in text
        assert "Data directory (default: MAILGATE_DATA_DIR, else ./mailgate-data)." in text


def test_the_client_secret_is_optional_on_the_command_line() -> None:
    text = _help("oauth", "configure")
    option = re.search(r"--client-secret .*?(?= --tenant)", text)
    assert option, text
    assert "prompted" in option.group(0) and "[required]" not in option.group(0)


def test_a_missing_client_secret_is_prompted_for(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["oauth", "configure", "--provider", "sandbox", "--client-id", "sandbox-client", "--data-dir", str(tmp_path)],
        input="sandbox-secret\n",
        env={"MAILGATE_ADMIN_PASSWORD": ""},
    )
    assert result.exit_code == 0, result.output
    assert "Client secret:" in result.output and "sandbox-secret" not in result.output
    assert "Saved." in result.output
