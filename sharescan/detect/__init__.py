"""Detectors: pure functions from entries (and their digests) to groups.

A detector never opens a file: it reads tensors only through the entries'
lazy ``read`` to confirm candidates that the digests proposed.
"""

from __future__ import annotations

from sharescan.detect.aliased import find_aliased
from sharescan.detect.identical import find_identical
from sharescan.detect.negated import find_negated
from sharescan.detect.scaled import find_scaled
from sharescan.detect.transposed import find_transposed

__all__ = ["find_aliased", "find_identical", "find_transposed", "find_negated", "find_scaled", "EXACT_DETECTORS"]

# Run in this order over the units no earlier detector claimed.
EXACT_DETECTORS = (find_identical, find_transposed, find_negated, find_scaled)
