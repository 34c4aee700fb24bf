"""The one check every command that writes runs before doing any work."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from sharescan.errors import InputError

__all__ = ["check_output"]


def check_output(out: Path, inputs: Sequence[str | Path], option: str = "-o", in_place: bool | None = None) -> None:
    """Refuse an output that would overwrite an input, or that lies in a folder that cannot be written.

    ``in_place``: None where replacing an input is never allowed; else whether
    the user allowed it (the message then names ``--in-place``).
    """
    if not in_place and any(out.resolve() == Path(p).resolve() for p in inputs):
        hint = ", or pass --in-place to replace the input after verification" if in_place is not None else ""
        raise InputError(f"{out}: is one of the input models; choose another {option}{hint}")
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise InputError(f"{out}: folder {out.parent} does not exist or is not writable; choose another {option}")
