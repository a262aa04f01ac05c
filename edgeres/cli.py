"""The ``edgeres`` command line: a thin click shell over the library.

This is the only module that imports click. Torch-side modules (models, export, quantize) are
imported inside the commands that need them, so ``edgeres --help`` and ``edgeres predict`` run
with the base install. Every ``EdgeresError`` becomes ``Error: <message>`` and exit code 1, in
one place (``_Group.invoke``); ``--debug`` re-raises it with its traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from edgeres import __version__
from edgeres.errors import EdgeresError


class _Group(click.Group):
    """Click group that turns expected errors into one line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgeresError as e:
            if ctx.params.get("debug"):
                raise
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeres")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
def cli(debug: bool) -> None:
    """edgeres: ResNet-family models from PyTorch to edge devices, with honest numbers.

    \b
    Example:
        edgeres models
    """
    import logging

    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s: %(message)s"
    )


def _echo_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """Render a table on stdout (rich when it fits, plain columns when output is piped)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="left" if col == columns[0] else "right")
    for row in rows:
        table.add_row(*row)
    Console(width=max(100, len(columns) * 16)).print(table)


@cli.command()
def models() -> None:
    """List the model zoo: name, family, parameters, MACs and default input size.

    \b
    Example:
        edgeres models
    """
    from edgeres.models import create_model, list_models, model_info
    from edgeres.models._profile import count_macs, count_params

    rows = []
    for name in list_models():
        info = model_info(name)
        model = create_model(name)
        params = count_params(model)
        macs = count_macs(model, (info.in_chans, *info.input_size))
        size = "x".join(map(str, info.input_size))
        rows.append([name, info.family, f"{params / 1e6:.2f}M", f"{macs / 1e9:.3f}G", size])
    _echo_table("edgeres model zoo", ["model", "family", "params", "MACs", "input"], rows)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="edgeres")
