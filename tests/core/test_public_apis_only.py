"""Issue 21: no private attribute of another library anywhere in ``src/`` (DESIGN.md: "use libraries through
their public API only").  Checked on the syntax tree: an attribute starting with ``_`` may only be read on
``self`` or ``cls`` (the object's own), and ``getattr``/``setattr`` never name one."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "mailgate"


def _private_uses(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                found.append((node.lineno, ast.unparse(node)))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and node.args[1].value.startswith("_")
            and not node.args[1].value.startswith("__")
        ):
            found.append((node.lineno, ast.unparse(node)))
    return found


def test_the_checker_finds_private_access() -> None:
    code = "def f(self, proto):\n    proto._transport.abort()\n    getattr(proto, '_task')\n    self._ok = 1\n"
    assert sorted(line for line, _ in _private_uses(ast.parse(code))) == [2, 3]


def test_no_private_attribute_of_another_object_in_src() -> None:
    uses = {
        f"{path.relative_to(SRC)}:{line}: {text}"
        for path in sorted(SRC.rglob("*.py"))
        for line, text in _private_uses(ast.parse(path.read_text(encoding="utf-8")))
    }
    assert not uses, "\n".join(sorted(uses))
