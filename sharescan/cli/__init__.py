"""The ``sharescan`` command: a thin layer over the library.

One module per verb (``analyze``, ``dedup``, ``export``, ``tie``), shared
option declarations in ``_options``, all printing through ``_output``, and
one place, ``_errors``, that turns what a command raises into a line on
stderr and an exit code. Only click is imported at start-up; the analysis,
numpy and the loaders are imported inside each command, so
``sharescan --help`` stays fast and never imports torch.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

import click

from sharescan import __version__
from sharescan.cli._errors import debugging, describe
from sharescan.cli._output import QUIET
from sharescan.cli.align import align
from sharescan.cli.analyze import analyze
from sharescan.cli.dedup import dedup
from sharescan.cli.export import export
from sharescan.cli.palettize import palettize
from sharescan.cli.tie import tie
from sharescan.cli.zoo import zoo
from sharescan.errors import InputError

__all__ = ["main", "cli"]

PROG_NAME = "sharescan"
# click's shell completion protocol: `_SHARESCAN_COMPLETE=bash_source sharescan`.
COMPLETE_VAR = f"_{PROG_NAME.upper()}_COMPLETE"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name=PROG_NAME)
@click.option("-q", "--quiet", is_flag=True, help="Errors only; print the summary line instead of the report tables.")
@click.option("-v", "--verbose", count=True, help="Log progress (-v) or details (-vv) on stderr.")
@click.pass_context
def cli(ctx: click.Context, quiet: bool, verbose: int) -> None:
    """Find parameters that trained models store more than once, and what sharing them reclaims."""
    if quiet and verbose:
        raise InputError("-q and -v contradict each other; pass one of them")
    _log_to_stderr(logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)])
    ctx.meta[QUIET] = quiet


class _StderrHandler(logging.Handler):
    """Log records as ``warning: ...`` lines on stderr, like the CLI's own; stderr is looked up per record."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"{record.levelname.lower()}: {record.getMessage()}", err=True)


def _log_to_stderr(level: int) -> None:
    """sharescan's own loggers at ``level``; libraries it calls (onnx, torch) keep theirs."""
    logger = logging.getLogger("sharescan")
    logger.setLevel(level)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())


for _command in (analyze, dedup, export, tie, align, palettize, zoo):
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> None:
    """The console script: run one command; whatever it raises becomes one line and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        _run(args)
    except (Exception, KeyboardInterrupt) as e:  # the last line of defence: one line, never a traceback
        failure = describe(e)
        if not failure.foreseen and debugging():
            raise  # a developer asked for the traceback
        click.echo(failure.line, err=True)
        sys.exit(failure.code)


def _run(args: list[str]) -> None:
    if not args and COMPLETE_VAR not in os.environ:
        click.echo(cli.get_help(click.Context(cli, info_name=PROG_NAME)))
        return
    for arg in args:
        if "\x00" in arg:  # a shell cannot pass one; a caller building argv can
            raise InputError(f"{arg.replace(chr(0), '<NUL>')}: an argument may not hold a NUL byte; check the path")
    code = cli.main(args, prog_name=PROG_NAME, complete_var=COMPLETE_VAR, standalone_mode=False)
    if isinstance(code, int) and code != 0:
        sys.exit(code)
