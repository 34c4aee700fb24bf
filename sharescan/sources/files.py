"""Checks every loader makes before it opens or parses a file.

A FIFO given as a model blocks ``open``; /dev/zero (or a ``.pt`` symlink to
it) reads without end. Only regular files are opened, decided by ``stat``
through symlinks, before any read.

Python's json accepts what no model header holds: ``NaN`` and ``Infinity``,
integers thousands of digits long (whose conversion raises past Python
3.11's digit limit, and which overflow numpy), and nesting deep enough to
exhaust the recursion limit. ``strict_json`` refuses all of them as one
InputError.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

from sharescan.errors import InputError

__all__ = ["regular_file", "strict_json", "MAX_JSON_INT_DIGITS", "MAX_ELEMENTS"]

# An int64 has at most 19 digits (20 with a sign); no offset or dim is longer.
MAX_JSON_INT_DIGITS = 20
# A bound on the product of a shape's dims, zeros counted as 1 (a zero dim
# lets the others be anything): no byte arithmetic overflows under it, and
# times the largest item size (16 bytes) it stays within numpy's 2**63 bytes,
# which numpy checks even for a zero-size array.
MAX_ELEMENTS = 1 << 58

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"))


def regular_file(path: Path, shown: str | None = None) -> os.stat_result:
    """``path``'s stat (symlinks followed) if it is a regular file; else InputError.

    ``shown`` names the file in the message when it is not ``path`` itself
    (a shard or external-data file named by a model).
    """
    where = shown or str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{where}: no such file; check the path") from None
    except PermissionError:
        raise InputError(f"{where}: permission denied; check the file's permissions") from None
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        raise InputError(f"{where}: cannot be read ({e.__class__.__name__}); check the path") from None
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a plain file")
        raise InputError(f"{where}: is {kind}, not a regular file; refusing to read it: pass the model file itself")
    return st


class _Refused(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def _constant(name: str) -> object:
    raise _Refused(f"holds {name}, which is not a valid JSON number")


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_INT_DIGITS:
        raise _Refused(f"holds a {len(text)}-digit integer")
    return int(text)


# Any run of more digits than an int64 holds (a long name, or a long int).
_LONG_DIGITS = re.compile(rb"[0-9]{%d}" % (MAX_JSON_INT_DIGITS + 1))


def strict_json(raw: bytes, where: str, what: str, advice: str) -> object:
    """``raw`` parsed as JSON with NaN, Infinity, integers over 20 digits and
    runaway nesting refused: InputError "where: corrupt what (why); advice"."""
    try:
        # Checking every int costs a Python call each (3 s for a million
        # tensor records): only done when the text holds a long digit run.
        if _LONG_DIGITS.search(raw) is None:
            return json.loads(raw, parse_constant=_constant)
        return json.loads(raw, parse_constant=_constant, parse_int=_int)
    except _Refused as e:
        why = e.why
    except RecursionError:
        why = "nested too deeply"
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        why = e.__class__.__name__
    except ValueError as e:  # int conversion limits, lone surrogates
        why = str(e).split(";")[0][:80]
    raise InputError(f"{where}: corrupt {what} ({why}); {advice}")
