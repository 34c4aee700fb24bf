"""``module:attribute`` specs naming the user's code (--arch, --task): an explicit opt-in."""

from __future__ import annotations

import pkgutil
import sys
from typing import Any

from sharescan.errors import InputError

__all__ = ["import_entry_point"]


def import_entry_point(spec: str, flag: str, kind: str, example: str) -> Any:
    """The attribute ``spec`` names; one clear InputError when it cannot be had."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise InputError(f"{flag} {spec!r}: expected module:{kind}, e.g. {example}")
    if "" not in sys.path:
        sys.path.insert(0, "")  # the current folder, as `python -m` would have it
    try:
        return pkgutil.resolve_name(spec)
    except ValueError:  # not a dotted name: spaces, a leading digit...
        raise InputError(f"{flag} {spec!r}: expected module:{kind}, e.g. {example}") from None
    except (ImportError, AttributeError) as e:
        raise InputError(f"{flag} {spec!r}: cannot import it ({e}); check the module path and name") from None
