"""Element types, named once for every format.

Tensors are handed around as numpy arrays of their *storage* type: bfloat16
and the float8 types have no numpy dtype of their own, so their bits travel
as uint16 or uint8 (hashing and byte comparison stay plain integer work).
Where a value (not a byte) comparison needs them, ``ml_dtypes`` reads the
bits as values and rounds values back to bits, so every format's rounding,
NaN encoding and missing negative zero (the ``fnuz`` types) is its
definition, not a hand-written copy of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DType", "DTYPES", "dtype", "to_float", "from_float", "negate_bits", "neighbours"]


@dataclass(frozen=True)
class DType:
    name: str  # canonical name used in every report: "float32", "bfloat16", ...
    storage: str  # numpy dtype that holds the bits
    itemsize: int  # bytes per element
    kind: str  # "float", "int", "uint", "bool", "complex"
    # The ml_dtypes type that gives the bits their values; "" where numpy
    # computes in the storage type directly.
    ml_dtype: str = ""
    # False for a float type without a sign bit (float8_e8m0fnu is all
    # exponent: powers of two, no negative value, no zero).
    signed: bool = True

    @property
    def numpy_native(self) -> bool:
        """True where numpy holds the values in the storage type itself."""
        return not self.ml_dtype

    @property
    def values(self) -> np.dtype:
        """The numpy dtype that reads the storage bits as values."""
        if not self.ml_dtype:
            return np.dtype(self.storage)
        import ml_dtypes  # only models with such a type pay its import (3 ms)

        return np.dtype(getattr(ml_dtypes, self.ml_dtype))

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def sign_mask(self) -> int:
        """The sign bit in an element's bits (signed floats only)."""
        return 1 << (8 * self.itemsize - 1)


_ALL = [
    DType("float64", "float64", 8, "float"),
    DType("float32", "float32", 4, "float"),
    DType("float16", "float16", 2, "float"),
    DType("bfloat16", "uint16", 2, "float", "bfloat16"),
    DType("float8_e4m3fn", "uint8", 1, "float", "float8_e4m3fn"),
    DType("float8_e5m2", "uint8", 1, "float", "float8_e5m2"),
    # The "fnuz" types have no -0 (0x80 is their only NaN); torch and ONNX name both.
    DType("float8_e4m3fnuz", "uint8", 1, "float", "float8_e4m3fnuz"),
    DType("float8_e5m2fnuz", "uint8", 1, "float", "float8_e5m2fnuz"),
    # MX block scales: 2**(bits - 127), 0xFF is NaN.
    DType("float8_e8m0fnu", "uint8", 1, "float", "float8_e8m0fnu", signed=False),
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
    """Values of a float tensor's storage bits, for value comparisons.

    numpy's own float types come back as they are; the ml_dtypes types as
    float32, which holds every one of their values exactly.
    """
    dt = DTYPES[name]
    if dt.numpy_native:
        return array
    # A same-width view reinterprets the bits of any layout (transposed samples too).
    return array.view(dt.values).astype(np.float32)


def from_float(values: np.ndarray, name: str) -> np.ndarray:
    """Values rounded to the dtype (round to nearest even), as storage bits."""
    dt = DTYPES[name]
    return np.asarray(values).astype(dt.values).view(dt.storage)


def negate_bits(array: np.ndarray, name: str) -> np.ndarray:
    """The storage bits of -array, as unsigned ints: what ``Neg`` stores, bit for bit.

    IEEE-style types flip the sign bit of every element, zeros and NaNs
    included; the fnuz types keep 0 as 0 and their NaN as NaN (they have no
    -0). Only for signed float types.
    """
    dt = DTYPES[name]
    unsigned = f"u{dt.itemsize}"
    if dt.numpy_native:
        return np.ascontiguousarray(array).view(unsigned) ^ np.array(dt.sign_mask, dtype=unsigned)
    return np.negative(np.ascontiguousarray(array).view(dt.values)).view(unsigned)


def neighbours(value: float, name: str) -> list[float]:
    """value rounded to the dtype, and the next representable values below and above it."""
    dt = DTYPES[name]
    if dt.numpy_native:
        t = np.dtype(dt.storage).type
        v = t(value)
        return [float(v), float(np.nextafter(v, t(np.inf))), float(np.nextafter(v, t(-np.inf)))]
    # In sign-magnitude bits, one step up or down of the magnitude is a
    # neighbour, as long as the step does not carry into the sign bit.
    b = int(from_float(np.array([value], np.float32), name)[0])
    sign = dt.sign_mask if dt.signed else 0
    steps = [b] + [s for s in (b + 1, b - 1) if 0 <= s < 1 << (8 * dt.itemsize) and not (s ^ b) & sign]
    out = to_float(np.array(steps, dtype=dt.storage), name)
    return [float(x) for x in out if np.isfinite(x)]
