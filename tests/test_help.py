"""Every command's ``--help`` and the one version source.

The commands are discovered from the click group (nested groups included), never listed by
hand, so a new command is covered the moment it is registered.
"""

from __future__ import annotations

import importlib.metadata
import re

import click
import pytest
from click.testing import CliRunner

import edgeres
from edgeres.cli import cli


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...],
                                                                         click.Command]]:
    """(argv path, command) for ``group`` itself and every command below it."""
    found: list[tuple[tuple[str, ...], click.Command]] = [(path, group)]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
        else:
            found.append(((*path, name), command))
    return found


COMMANDS = _commands(cli)


def test_commands_are_discovered() -> None:
    """The walk finds the group's commands (the parametrised tests below are not vacuous)."""
    names = {path[-1] for path, _ in COMMANDS if path}
    assert len(names) >= 8
    assert set(cli.commands) <= names


@pytest.mark.parametrize(("path", "command"), COMMANDS,
                         ids=[" ".join(p) or "edgeres" for p, _ in COMMANDS])
def test_help(path: tuple[str, ...], command: click.Command) -> None:
    """``edgeres ... --help`` exits 0 with a usage line and the command's own description."""
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="edgeres")
    assert result.exit_code == 0, result.output
    usage = result.output.splitlines()[0]
    assert re.match(rf"Usage: edgeres{''.join(' ' + p for p in path)}\b", usage), usage
    first = (command.help or "").strip().splitlines()[0]
    assert first and first.rstrip(".")[:40] in " ".join(result.output.split())


@pytest.mark.parametrize(("path", "command"), COMMANDS,
                         ids=[" ".join(p) or "edgeres" for p, _ in COMMANDS])
def test_docstring_has_example(path: tuple[str, ...], command: click.Command) -> None:
    """Every command's docstring ends with an example that runs this command (CONTRIBUTING R10)."""
    text = command.help or ""
    assert "Example" in text, f"edgeres {' '.join(path)} has no Example in its docstring"
    example = text[text.index("Example"):]
    assert f"edgeres {' '.join(path)}".strip() in example


def test_version_has_one_source() -> None:
    """The installed metadata, the package and ``--version`` all give edgeres.__version__."""
    assert importlib.metadata.version("edgeres") == edgeres.__version__
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"edgeres, version {edgeres.__version__}"
