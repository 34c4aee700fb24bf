"""Storage-side deduplication as model hubs do it: exact chunks, kept once, over a zoo's files.

    python benchmarks/chunk_dedup.py ROOT|manifest.txt [--json]

Each file is cut into chunks, each chunk hashed (SHA-256) and stored once;
"bytes kept" is the sum of the distinct chunks' sizes. Schemes:

- ``file``: whole files (a blob store keyed by file hash, Git LFS).
- ``fixed-64KiB``: fixed 64 KiB chunks from offset 0.
- ``cdc-64KiB``: content-defined chunks, average 64 KiB (min 16 KiB, max
  512 KiB, FastCDC's defaults for that average), the average Hugging Face's
  Xet storage targets.
- ``cdc-8KiB``: content-defined chunks, average 8 KiB (min 2 KiB, max
  64 KiB): finer, finds more, costs 8x the chunk index.

Content-defined boundaries come from the ``fastcdc`` package (FastCDC,
Xia et al. 2016, its Cython build). Only exact bytes are shared: a
transposed copy or a fine-tune one step away shares no chunk with its source.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["SCHEMES", "ChunkResult", "Scheme", "dedup", "dedup_all", "listed_files"]

KiB = 1024


@dataclass(frozen=True)
class Scheme:
    """One way of cutting files into chunks."""

    name: str
    kind: str  # file | fixed | cdc
    avg: int  # chunk size (fixed) or target average (cdc), bytes
    min: int = 0  # cdc only
    max: int = 0  # cdc only


SCHEMES = (
    Scheme("file", "file", 0),
    Scheme("fixed-64KiB", "fixed", 64 * KiB),
    Scheme("cdc-64KiB", "cdc", 64 * KiB, 16 * KiB, 512 * KiB),
    Scheme("cdc-8KiB", "cdc", 8 * KiB, 2 * KiB, 64 * KiB),
)


@dataclass(frozen=True)
class ChunkResult:
    """What one scheme keeps of a set of files."""

    scheme: str
    files: int
    input_bytes: int  # the files' sizes, summed
    kept_bytes: int  # distinct chunks' sizes, summed
    chunks: int
    distinct_chunks: int
    seconds: float

    @property
    def kept_fraction(self) -> float:
        return self.kept_bytes / self.input_bytes if self.input_bytes else 1.0


def _chunks(data: bytes, scheme: Scheme) -> Iterable[tuple[bytes, int]]:
    """(digest, size) of each chunk of ``data``."""
    if scheme.kind == "file":
        yield hashlib.sha256(data).digest(), len(data)
    elif scheme.kind == "fixed":
        view = memoryview(data)
        for start in range(0, len(data), scheme.avg):
            piece = view[start : start + scheme.avg]
            yield hashlib.sha256(piece).digest(), len(piece)
    else:
        from fastcdc import fastcdc

        view = memoryview(data)
        for c in fastcdc(data, min_size=scheme.min, avg_size=scheme.avg, max_size=scheme.max):
            yield hashlib.sha256(view[c.offset : c.offset + c.length]).digest(), c.length


def dedup(paths: Iterable[Path], scheme: Scheme) -> ChunkResult:
    """Bytes ``scheme`` keeps of ``paths``: every distinct chunk once."""
    started = time.perf_counter()
    sizes: dict[bytes, int] = {}
    files = total = chunks = 0
    for path in paths:
        data = path.read_bytes()
        files += 1
        total += len(data)
        for digest, size in _chunks(data, scheme):
            chunks += 1
            sizes[digest] = size
    return ChunkResult(scheme.name, files, total, sum(sizes.values()), chunks, len(sizes), round(time.perf_counter() - started, 3))


def dedup_all(paths: list[Path], schemes: tuple[Scheme, ...] = SCHEMES) -> list[ChunkResult]:
    return [dedup(paths, s) for s in schemes]


def listed_files(target: Path) -> list[Path]:
    """The files of a folder (walked, sorted) or of a manifest (one path per line, relative to it)."""
    if target.is_dir():
        return sorted(p for p in target.rglob("*") if p.is_file())
    lines = [line.strip() for line in target.read_text().splitlines()]
    return [target.parent / line for line in lines if line and not line.startswith("#")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path, help="a folder of files, or a manifest listing them")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    opts = parser.parse_args()
    results = dedup_all(listed_files(opts.target))
    if opts.json:
        print(json.dumps([asdict(r) | {"kept_fraction": round(r.kept_fraction, 4)} for r in results], indent=1))
        return
    print(f"{'scheme':<12} {'files':>6} {'input MiB':>10} {'kept MiB':>10} {'kept':>7} {'chunks':>9} {'distinct':>9} {'s':>6}")
    for r in results:
        print(f"{r.scheme:<12} {r.files:>6} {r.input_bytes / KiB**2:>10.2f} {r.kept_bytes / KiB**2:>10.2f} {r.kept_fraction:>7.1%} {r.chunks:>9} {r.distinct_chunks:>9} {r.seconds:>6.2f}")


if __name__ == "__main__":
    main()
