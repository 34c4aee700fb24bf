"""Shell completion: click's protocol reaches the commands through sharescan's own main().

A shell calls the script with ``_SHARESCAN_COMPLETE`` set and no arguments
(``bash_source`` prints the shell function; ``bash_complete`` answers one
request from ``COMP_WORDS``/``COMP_CWORD``). Each case runs the installed
script, as a shell does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _script() -> list[str]:
    script = Path(sys.executable).parent / "sharescan"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "sharescan"]


def _complete(mode: str, words: str = "", cword: int = 0) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, _SHARESCAN_COMPLETE=mode, COMP_WORDS=words, COMP_CWORD=str(cword))
    return subprocess.run(_script(), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def _values(proc: subprocess.CompletedProcess[str]) -> set[str]:
    assert proc.returncode == 0, proc.stderr
    return {line.split(",", 1)[1] for line in proc.stdout.splitlines() if line}


def test_bash_source_prints_the_completion_function() -> None:
    proc = _complete("bash_source")
    assert proc.returncode == 0, proc.stderr
    assert "_sharescan_completion()" in proc.stdout
    assert "_SHARESCAN_COMPLETE=bash_complete" in proc.stdout
    assert "complete -o nosort -F _sharescan_completion sharescan" in proc.stdout


def test_zsh_source_prints_the_completion_function() -> None:
    proc = _complete("zsh_source")
    assert proc.returncode == 0, proc.stderr
    assert "#compdef sharescan" in proc.stdout


def test_the_verbs_complete_after_the_program_name() -> None:
    assert _values(_complete("bash_complete", "sharescan ", 1)) == {"align", "analyze", "dedup", "export", "palettize", "tie", "zoo"}


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("sharescan dedup --", {"--output", "--tol", "--rows", "--max-error", "--input", "--inputs", "--in-place", "--ram", "--json", "--report"}),
        ("sharescan analyze --trust", {"--trust-code", "--trust-pickle"}),
        ("sharescan tie --fine", {"--finetune-shared"}),
        ("sharescan export --no-", {"--no-constant-folding"}),
    ],
)
def test_options_complete_for_each_verb(words: str, expected: set[str]) -> None:
    got = _values(_complete("bash_complete", words, len(words.split()) - 1))
    assert expected <= got, got
