"""The ``sharescan`` command: a thin layer over the library.

One module per verb (``analyze``, ``dedup``, ``export``, ``tie``), shared
option declarations in ``_options``, all printing through ``_output``, and
one place, ``_errors``, that turns what a command raises into a line on
stderr and an exit code. Only click is imported at start-up: a verb's
module is imported when that verb runs (``_LazyGroup``), and the analysis,
numpy and the loaders inside the command, so ``sharescan --help`` stays fast
and never imports torch, and ``sharescan analyze`` never imports what
``tie`` or ``zoo`` need.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import logging
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import click

from sharescan import __version__
from sharescan.cli._errors import debugging, describe
from sharescan.cli._output import QUIET
from sharescan.errors import InputError

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

__all__ = ["main", "cli", "VERBS", "collector_paused", "ends_with_command"]

PROG_NAME = "sharescan"
# click's shell completion protocol: `_SHARESCAN_COMPLETE=bash_source sharescan`.
COMPLETE_VAR = f"_{PROG_NAME.upper()}_COMPLETE"


# Each verb: the command ``sharescan.cli.<verb>.<verb>``, and the first
# sentence of its help, which ``sharescan --help`` and shell completion show
# without importing the verb's module (tests/test_cli.py checks they agree).
VERBS: dict[str, str] = {
    "align": "Permute model B's hidden units so its weights come closest to model A's (weight matching).",
    "analyze": "Analyse MODEL files or folders (PyTorch, TorchScript, .pt2, safetensors, ONNX, Hugging Face folders).",
    "dedup": "Write MODEL.onnx with every tensor it stores twice shared, verified with onnxruntime.",
    "export": "Export a PyTorch or transformers MODEL to ONNX, deduplicate it, and check onnxruntime against torch.",
    "palettize": "Store MODEL's float weights as 2^BITS-entry codebooks (soft weight-sharing fine-tuning first with --task or --inputs).",
    "tie": "Pull near-equal parameters together by penalised fine-tuning, then share them.",
    "zoo": "Find what the models under ROOT (or listed in MANIFEST, one path per line) share: safetensors, PyTorch, ONNX, Hugging Face folders.",
}


# Verbs whose work is many small matrix products beside their own worker
# threads (the scan's). OpenBLAS's threads add only their wake-ups there:
# 0.1-0.3 s of an analysis of a 2 GB file on two busy cores, for no product
# large enough to gain from them. They run BLAS on the calling thread unless
# the user set OPENBLAS_NUM_THREADS; OpenBLAS reads it when numpy loads.
ONE_BLAS_THREAD = frozenset({"analyze"})


class _LazyGroup(click.Group):
    """A group that imports a verb's module only when that verb is invoked.

    Importing every verb at start-up cost ``sharescan analyze`` what ``tie``
    (numpy, the training loop's modules) and ``zoo`` import: a third of its
    start-up time.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(VERBS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in VERBS:
            if cmd_name in ONE_BLAS_THREAD and "numpy" not in sys.modules:
                os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
            with collector_paused():
                module = importlib.import_module(f"sharescan.cli.{cmd_name}")
            self.add_command(getattr(module, cmd_name), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's list of commands, from ``VERBS``: no verb is imported to show it."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        with formatter.section("Commands"):
            formatter.write_dl([(name, self._short_help(ctx, name, limit)) for name in names])

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        from click.shell_completion import CompletionItem

        verbs = [CompletionItem(name, help=self._short_help(ctx, name, 45)) for name in self.list_commands(ctx) if name.startswith(incomplete)]
        # The group's own options, as click.Group completes them after its commands.
        return verbs + click.Command.shell_complete(self, ctx, incomplete)

    def _short_help(self, ctx: click.Context, name: str, limit: int) -> str:
        if name in VERBS and name not in self.commands:
            return click.Command(name, help=VERBS[name]).get_short_help_str(limit)  # click's own shortening
        command = self.get_command(ctx, name)
        return command.get_short_help_str(limit) if command is not None else ""


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


@contextlib.contextmanager
def collector_paused(resume: bool = True) -> Iterator[None]:
    """The cyclic garbage collector off, for imports and other work that makes no cycles.

    Importing numpy and the analysis's modules makes tens of thousands of
    long-lived objects, and each collection meanwhile walks them again
    (about 4 ms of ``sharescan analyze``'s start-up). ``resume=False``
    leaves it off: the first collection after a pause walks every object
    made during it (8 ms after an analysis of GPT-2), which a process that
    ends next (:func:`ends_with_command`) does not need.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled and resume:
            gc.enable()


# Set by main() where the process ends as soon as the command is done.
_ENDS_WITH_COMMAND = False


def ends_with_command() -> bool:
    """Whether this process ends once the running command is done (the ``sharescan`` script, not a caller of main(argv))."""
    return _ENDS_WITH_COMMAND


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


def main(argv: Sequence[str] | None = None) -> None:
    """The console script: run one command; whatever it raises becomes one line and an exit code.

    Called without ``argv`` from a script's top level (the ``sharescan``
    script, ``python -m sharescan``, ``python -c``), where nothing but the
    exit follows, the process ends as soon as the command is done (see
    :func:`_leave`); any other caller gets control back.
    """
    global _ENDS_WITH_COMMAND
    if argv is not None or not _script_top_level(sys._getframe(1)):
        _main(list(sys.argv[1:] if argv is None else argv))
        return
    _ENDS_WITH_COMMAND = True
    try:
        _main(sys.argv[1:])
    except SystemExit as e:
        _leave(e.code)
    _leave(0)


def _script_top_level(caller: Any) -> bool:
    """Whether ``caller`` is the module-level code of ``__main__`` run by the interpreter or by ``python -m``.

    A function calling main() wants to go on, and so does whatever ran
    ``__main__`` itself (a profiler's ``-m cProfile``, a harness's
    ``runpy.run_module``): only runpy's frames may stand above it.
    """
    if caller.f_code.co_name != "<module>" or caller.f_globals.get("__name__") != "__main__":
        return False
    outer = caller.f_back
    if outer is None:  # the interpreter ran it: the script, python -c
        return True
    import runpy  # already imported under python -m

    while outer is not None:
        if outer.f_code.co_filename not in ("<frozen runpy>", runpy.__file__):
            return False
        outer = outer.f_back
    return True


def _main(args: list[str]) -> None:
    try:
        _run(args)
    except (Exception, KeyboardInterrupt) as e:  # the last line of defence: one line, never a traceback
        failure = describe(e)
        if not failure.foreseen and debugging():
            raise  # a developer asked for the traceback
        click.echo(failure.line, err=True)
        sys.exit(failure.code)


def _leave(code: object) -> NoReturn:
    """End the process now, without the interpreter's teardown.

    Tearing down frees every module, array and cached object one by one:
    15-25 ms after an analysis of GPT-2 (a tenth of the whole run), for
    memory the process gives back on exit anyway. Output is
    flushed and exit handlers run first; where anything is left that the
    teardown would still do (a thread running, a flush failing, a code that
    is not a number), the exit takes the usual way.
    """
    if code is None:
        code = 0
    if not isinstance(code, int) or threading.active_count() > 1:
        raise SystemExit(code)
    streams = [s for s in (sys.stdout, sys.stderr) if s is not None]  # None: closed when the process started
    try:
        for stream in streams:
            stream.flush()
    except (OSError, ValueError):
        raise SystemExit(code) from None  # the usual exit reports a closed pipe as it always has
    atexit._run_exitfuncs()  # logging's flush, and any handler a caller registered
    for stream in streams:
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


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
