"""Byte counts for people: binary units (KiB, MiB, GiB = 1024-based), always labelled."""

from __future__ import annotations

import re

__all__ = ["human_bytes", "parse_threshold", "parse_bytes", "Threshold"]

_BINARY = (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))
_UNITS = {
    "": 1, "B": 1,
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4,
}


def human_bytes(n: int) -> str:
    for unit, size in _BINARY:
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


class Threshold:
    """A --fail-above limit: bytes, or a percentage of the unique bytes."""

    def __init__(self, value: float, percent: bool, text: str) -> None:
        self.value = value
        self.percent = percent
        self.text = text

    def exceeded(self, reclaimable: int, unique: int) -> bool:
        if self.percent:
            return unique > 0 and 100.0 * reclaimable / unique > self.value
        return reclaimable > self.value


def parse_threshold(text: str) -> Threshold:
    """'5%', '10MB' (10^6), '10MiB' (2^20), '1500' (bytes).

    Raises:
        ValueError: the text is no such limit; its message says what to write
            (a bare number below 1 is refused: 0.5 bytes is no limit anyone means).
    """
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(%|[A-Za-z]*)\s*", text)
    if not m:
        raise ValueError("expected bytes like 1500, 10MB, 10MiB, or a percentage like 5%")
    number, unit = float(m.group(1)), m.group(2)
    if unit == "%":
        if number > 100:
            raise ValueError("a percentage of unique bytes is at most 100%")
        return Threshold(number, True, text)
    if unit.upper() not in _UNITS:
        raise ValueError(f"unknown unit {unit!r}; expected B, KB, MB, GB, TB (10^3) or KiB, MiB, GiB, TiB (2^10)")
    if unit.upper() in ("", "B") and number < 1 and number != 0:
        # Most likely a fraction meant as a share or a size in MB: say both.
        raise ValueError(f"{m.group(1)} bytes? write {100 * number:g}% or {m.group(1)}MB")
    return Threshold(number * _UNITS[unit.upper()], False, text)


def parse_bytes(text: str) -> int:
    """A byte count with an optional unit: '1500', '10KB' (10^3), '1KiB' (2^10); no percentages."""
    if text.strip().endswith("%"):
        raise ValueError("expected a byte count like 1500, 10KB or 1KiB, not a percentage")
    return int(parse_threshold(text).value)
