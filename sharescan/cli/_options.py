"""Options several commands share, declared once.

Each name is a click decorator typed as :data:`Option`; a command stacks
them like its own ``@click.option`` lines, in the order its help lists them.
Options whose help differs per command take that help as an argument.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

__all__ = ["Option", "models_arg", "output_opt", "json_opt", "report_opt", "trust_code_opt", "arch_opt", "ram_opts", "rewrite_opts"]

Option = Callable[[Callable[..., Any]], Callable[..., Any]]

models_arg: Option = click.argument("models", nargs=-1, required=True, metavar="MODEL...")
json_opt: Option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout and nothing else.")
report_opt: Option = click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write a Markdown report to this file.")


def output_opt(help_text: str) -> Option:
    """``-o/--output``: the file a command writes (required)."""
    return click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help=help_text)


def trust_code_opt(help_text: str) -> Option:
    """``--trust-code`` (alias ``--trust-pickle``): load what runs code from a file."""
    return click.option("--trust-code", "--trust-pickle", "trust_pickle", is_flag=True, help=help_text)


def arch_opt(help_text: str) -> Option:
    """``--arch module:factory``: the code that builds a state dict's nn.Module."""
    return click.option("--arch", help=help_text)


def ram_opts(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--ram`` (measure onnxruntime RAM: four more sessions in fresh processes) and the hidden ``--no-ram``.

    RAM used to be measured unless ``--no-ram`` was given; it is still accepted,
    asks for what is now the default, and wins over ``--ram``.
    """
    command = click.option("--no-ram", "no_ram", is_flag=True, hidden=True)(command)
    return click.option("--ram", "measure_ram", is_flag=True, help="Also measure onnxruntime's RAM (RSS growth for a session and one run) before and after, with default and recommended session options: four more sessions in fresh processes.")(command)


def rewrite_opts(command: Callable[..., Any]) -> Callable[..., Any]:
    """The rewrite options dedup and export share: --tol, --rows, --strip-debug, --simplify."""
    for option in reversed((
        click.option("--tol", type=float, default=None, help="Also merge near-equal tensors within this relative distance (lossy)."),
        click.option("--rows", is_flag=True, help="Store tensors with duplicate rows as unique rows plus an index (Gather)."),
        click.option("--strip-debug", is_flag=True, help="Also drop doc strings and exporter metadata (stack traces, graph signature); model metadata, names and types stay."),
        click.option("--simplify", is_flag=True, help="Also drop Identity, repeated and unused nodes, make Reshape targets built from the input's own dims constant, and fold constant subgraphs and fixed shapes where the file gets smaller (specialises to the declared input sizes)."),
    )):
        command = option(command)
    return command
