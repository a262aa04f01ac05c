"""CONTRIBUTING R12 on the tests themselves: every test says what it protects, and nothing
that is not a test is named like one."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _functions() -> list[tuple[str, ast.FunctionDef]]:
    """Every module-level function of the test files, with its file's name."""
    found = []
    for path in sorted(TESTS.glob("test_*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef):
                found.append((path.name, node))
    return found


def _is_fixture(node: ast.FunctionDef) -> bool:
    for dec in node.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        if isinstance(target, ast.Attribute) and target.attr == "fixture":
            return True
    return False


def test_every_test_has_a_docstring() -> None:
    """A test without a one-line docstring saying what it protects is a finding."""
    missing = [f"{file}::{f.name}" for file, f in _functions()
               if f.name.startswith("test_") and not _is_fixture(f) and not ast.get_docstring(f)]
    assert missing == []


def test_no_fixture_is_named_like_a_test() -> None:
    """A fixture called test_* reads as a test in reports and greps."""
    named = [f"{file}::{f.name}" for file, f in _functions()
             if _is_fixture(f) and f.name.startswith("test_")]
    assert named == []
