"""Element types, named once for every format.

Tensors are handed around as numpy arrays of their *storage* type: bfloat16
and the float8 types have no numpy dtype, so their bits travel as uint16 or
uint8 and are only converted when a value (not a byte) comparison needs it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DType", "DTYPES", "dtype", "to_float"]


@dataclass(frozen=True)
class DType:
    name: str  # canonical name used in every report: "float32", "bfloat16", ...
    storage: str  # numpy dtype that holds the bits
    itemsize: int  # bytes per element
    kind: str  # "float", "int", "uint", "bool", "complex"
    # True where numpy computes in this type directly (bfloat16 needs help).
    numpy_native: bool = True

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def sign_mask(self) -> int:
        """The sign bit in an element's bits (floats only)."""
        return 1 << (8 * self.itemsize - 1)


_ALL = [
    DType("float64", "float64", 8, "float"),
    DType("float32", "float32", 4, "float"),
    DType("float16", "float16", 2, "float"),
    DType("bfloat16", "uint16", 2, "float", numpy_native=False),
    DType("float8_e4m3fn", "uint8", 1, "float", numpy_native=False),
    DType("float8_e5m2", "uint8", 1, "float", numpy_native=False),
    DType("int64", "int64", 8, "int"),
    DType("int32", "int32", 4, "int"),
    DType("int16", "int16", 2, "int"),
    DType("int8", "int8", 1, "int"),
    DType("uint64", "uint64", 8, "uint"),
    DType("uint32", "uint32", 4, "uint"),
    DType("uint16", "uint16", 2, "uint"),
    DType("uint8", "uint8", 1, "uint"),
    DType("bool", "bool", 1, "bool"),
    DType("complex64", "complex64", 8, "complex"),
    DType("complex128", "complex128", 16, "complex"),
]

DTYPES: dict[str, DType] = {d.name: d for d in _ALL}


def dtype(name: str) -> DType:
    return DTYPES[name]


def to_float(array: np.ndarray, name: str) -> np.ndarray:
    """Values of a float tensor as float32/float64, for value comparisons."""
    dt = DTYPES[name]
    if dt.name == "bfloat16":
        return (array.astype(np.uint32) << 16).view(np.float32)
    if not dt.numpy_native:
        raise ValueError(f"no value conversion for {name}")
    return array


def bfloat16_round(values: np.ndarray) -> np.ndarray:
    """float32 values rounded to bfloat16 bits (round to nearest even)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    return ((bits + rounding) >> 16).astype(np.uint16)
