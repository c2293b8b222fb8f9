"""What ``pip install -e .`` (no extras) installs: everything the runtime imports, in ranges (issue 19.1).

The quick start itself runs in scripts/quickstart-smoke.sh (needs the package registry); this pins the
declarations it depends on, without a network.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PROJECT = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
RUNTIME: list[str] = PROJECT["dependencies"]


def test_sqlalchemy_is_installed_with_its_asyncio_extra() -> None:
    # SQLAlchemy 2.1 no longer installs greenlet, which its asyncio layer needs; only the extra brings it.
    [sqlalchemy] = [r for r in RUNTIME if r.lower().startswith("sqlalchemy")]
    assert sqlalchemy.lower().startswith("sqlalchemy[asyncio]")


def test_runtime_dependencies_are_ranges_up_to_the_next_major_version() -> None:
    for requirement in RUNTIME:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+(?:\[[a-z,]+\])?)>=(\d+)(?:\.\d+)*,<(\d+)", requirement)
        assert match, f"{requirement!r} is not a range >=x.y.z,<x+1"
        assert int(match.group(3)) == int(match.group(2)) + 1, requirement


def test_extras_are_compatible_ranges_not_exact_pins() -> None:
    # Issue 21: no "==". The test tools take patch releases (~=x.y.z), not the next minor version, whose new
    # lint rules or type checks would fail a build nobody changed.
    for extra, requirements in PROJECT["optional-dependencies"].items():
        for requirement in requirements:
            assert "==" not in requirement, f"{extra}: {requirement!r} is an exact pin"
            assert re.fullmatch(r"[A-Za-z0-9_.\-]+(?:\[[a-z,]+\])?(?:~=\d+\.\d+\.\d+|>=[\d.]+,<\d+)", requirement), (
                f"{extra}: {requirement!r} is not a compatible range (~=x.y.z or >=x.y.z,<x+1)"
            )
