"""The digest store: one SQLite file holding each model's record, keyed cheaply.

A model is looked up by its path; its record holds the (path, size,
mtime_ns) stamp of every file it was read from, so whether it changed is
decided by ``stat`` alone. Each tensor keeps its xxh3-64 content hash (and
the rest of its digest) in its own row, indexed by hash. Finished analyses
are kept too, keyed by every model's stamps and the settings, so a rescan of
an unchanged zoo reads no model file at all.

Only the process that drives the scan opens the store (workers hand records
back), and records are committed as they arrive, at most a quarter of a
second apart, and when the scan stops: an interrupted scan loses at most
the models still under way (a killed one, a quarter of a second more).

Schema (``schema_version`` in ``meta``)::

    models(path PK, stamps JSON, options JSON, status, reason, format,
           file_bytes, files JSON, reused JSON, notes JSON, digested_at)
    tensors(model -> models.path, position, name, shape JSON, dtype, storage,
            storage_nbytes, buffer, span_start, span_end,
            content (xxh3-64 as signed int64; NULL: not a unit), nonfinite,
            has_nan, norm,
            file (index into the model's stamps; NULL: read through its loader), offset)
    samples((content, dtype, shape) PK, grid_shape JSON, grid BLOB, rows_shape JSON, rows BLOB)

A unit's samples are kept once per content, dtype and shape: the frozen
layers a zoo's fine-tunes share with their base are stored once (their
samples are equal, being taken at the same positions of the same bytes).
Two tensors whose 64-bit hashes collide would share one's samples; that
can only cost a candidate, as every relation confirms on the bytes.
    results(key PK, body JSON, created)
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from sharescan.errors import InputError
from sharescan.zoo.records import FileStamp, ModelRecord, TensorRecord

__all__ = ["DigestStore", "SCHEMA_VERSION"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = "3"  # 3: samples at stratified positions (neighbors.axis_sample), kept once per content; where each tensor lies
_KEPT_RESULTS = 4  # analyses kept: the latest few settings of one zoo
# Records are committed together, at most this long apart: a commit per model
# cost 0.35 ms, a third of a second of the client's time on 1,000 small
# models, while the workers digest; a killed scan loses this much work at most.
_COMMIT_SECONDS = 0.25

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models(
  path TEXT PRIMARY KEY, stamps TEXT NOT NULL, options TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL,
  format TEXT NOT NULL, file_bytes INTEGER NOT NULL, files TEXT NOT NULL, reused TEXT NOT NULL, notes TEXT NOT NULL, digested_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tensors(
  model TEXT NOT NULL, position INTEGER NOT NULL, name TEXT NOT NULL, shape TEXT NOT NULL, dtype TEXT NOT NULL, storage TEXT NOT NULL,
  storage_nbytes INTEGER, buffer TEXT, span_start INTEGER, span_end INTEGER,
  content INTEGER, nonfinite INTEGER, has_nan INTEGER, norm REAL, file INTEGER, offset INTEGER,
  PRIMARY KEY(model, position));
CREATE INDEX IF NOT EXISTS tensors_content ON tensors(content);
CREATE TABLE IF NOT EXISTS samples(
  content INTEGER NOT NULL, dtype TEXT NOT NULL, shape TEXT NOT NULL, grid_shape TEXT, grid BLOB, rows_shape TEXT, rows BLOB,
  PRIMARY KEY(content, dtype, shape)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS results(key TEXT PRIMARY KEY, body TEXT NOT NULL, created REAL NOT NULL);
"""


class DigestStore:
    """The store at ``path``, created if missing. Use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.db = sqlite3.connect(str(path), timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")  # a commit per model stays cheap
            self.db.execute("PRAGMA synchronous=NORMAL")
            version = self._version()
            if version is not None and version != SCHEMA_VERSION:
                logger.warning("%s: digests from another sharescan version; they are recomputed", path)
                self.db.executescript("DROP TABLE IF EXISTS models; DROP TABLE IF EXISTS tensors; DROP TABLE IF EXISTS samples; DROP TABLE IF EXISTS results; DROP TABLE IF EXISTS meta;")
            self.db.executescript(_SCHEMA)
            self.db.execute("INSERT OR REPLACE INTO meta VALUES('schema_version', ?)", (SCHEMA_VERSION,))
            self.db.commit()
            self.committed = time.monotonic()
            self.replaced = False  # a model's tensors were replaced or dropped since the last cleanup of samples
        except sqlite3.OperationalError as e:  # a folder that cannot be written, a locked file, a full disk
            raise InputError(f"{path}: cannot open the digest store ({e}); pass --store PATH in a folder you can write") from None
        except sqlite3.DatabaseError as e:
            raise InputError(f"{path}: not a sharescan digest store ({e}); pass another --store path, or delete this file if it is an old store") from None

    def _version(self) -> str | None:
        has_meta = self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        if not has_meta:
            return None
        row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return None if row is None else str(row[0])

    def __enter__(self) -> DigestStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            if self.replaced:
                self._drop_unused_samples()
            self.commit()  # records written since the last commit (an interrupted scan keeps them)
        finally:
            self.db.close()

    def _drop_unused_samples(self) -> None:
        """Samples no stored tensor has any more (its model replaced or dropped): only space, so a failure is said and passed."""
        try:
            self.db.execute(
                "DELETE FROM samples WHERE NOT EXISTS (SELECT 1 FROM tensors t "
                "WHERE t.content = samples.content AND t.dtype = samples.dtype AND t.shape = samples.shape)"
            )
        except sqlite3.Error as e:
            logger.warning("%s: could not drop unused samples (%s)", self.path, e)
        self.replaced = False

    def commit(self) -> None:
        try:
            self.db.commit()
        except sqlite3.Error as e:
            raise self._cannot_write(e) from None
        self.committed = time.monotonic()

    def _cannot_write(self, e: sqlite3.Error) -> InputError:
        return InputError(f"{self.path}: cannot write the digest store ({e}); free some space or pass another --store path (models digested so far are kept)")

    # -- models -------------------------------------------------------------

    def stamps(self, options: str) -> dict[str, tuple[FileStamp, ...]]:
        """path -> stamps of every model stored with these digest options (no tensor row is read)."""
        rows = self.db.execute("SELECT path, stamps FROM models WHERE options = ?", (options,))
        return {path: tuple(tuple(s) for s in json.loads(stamps)) for path, stamps in rows}

    def put(self, record: ModelRecord, options: str) -> None:
        """Store one model's record, replacing any older one; committed with those of the last ``_COMMIT_SECONDS``."""
        try:
            self._put(record, options)
        except sqlite3.Error as e:
            self.db.rollback()  # the records since the last commit are digested again by the next scan
            raise self._cannot_write(e) from None
        if time.monotonic() - self.committed >= _COMMIT_SECONDS:
            self.commit()

    def _put(self, record: ModelRecord, options: str) -> None:
        # One transaction holds the records since the last commit.
        if self.db.execute("DELETE FROM tensors WHERE model = ?", (record.path,)).rowcount:
            self.replaced = True  # the replaced tensors' samples may now be unused
        self.db.execute(
            "INSERT OR REPLACE INTO models VALUES(?,?,?,?,?,?,?,?,?,?,?)",
            (record.path, json.dumps(record.stamps), options, record.status, record.reason, record.format, record.file_bytes,
             json.dumps(record.files), json.dumps(record.reused), json.dumps(record.notes), time.time()),
        )
        self.db.executemany("INSERT INTO tensors VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", (_tensor_row(record.path, k, t) for k, t in enumerate(record.tensors)))
        self.db.executemany("INSERT OR IGNORE INTO samples VALUES(?,?,?,?,?,?,?)", (_sample_row(t) for t in record.tensors if t.digest is not None))

    def records(self, paths: Iterable[str]) -> Iterator[ModelRecord]:
        """The stored records of ``paths``, in that order (a path not stored is left out)."""
        for path in paths:
            row = self.db.execute("SELECT path, stamps, status, reason, format, file_bytes, files, reused, notes FROM models WHERE path = ?", (path,)).fetchone()
            if row is None:
                continue
            rows = self.db.execute(
                "SELECT t.*, s.grid_shape, s.grid, s.rows_shape, s.rows FROM tensors t LEFT JOIN samples s "
                "ON s.content = t.content AND s.dtype = t.dtype AND s.shape = t.shape WHERE t.model = ? ORDER BY t.position",
                (path,),
            )
            tensors = tuple(_tensor_record(r) for r in rows)
            yield ModelRecord(
                row[0], tuple(tuple(s) for s in json.loads(row[1])), row[2], row[3], row[4], row[5], tensors,
                tuple(json.loads(row[6])), tuple((n, c) for n, c in json.loads(row[7])), tuple(json.loads(row[8])),
            )

    def forget_missing(self, listed: Iterable[str]) -> int:
        """Drop the records of models that are not listed and whose path no longer exists; how many.

        A model listed elsewhere (another manifest sharing this store) is
        kept while its file exists; one deleted or moved away would only
        grow the store, its digests never asked for again.
        """
        keep = set(listed)
        gone = [path for (path,) in self.db.execute("SELECT path FROM models") if path not in keep and not os.path.lexists(path)]
        if gone:
            try:
                with self.db:
                    self.db.executemany("DELETE FROM tensors WHERE model = ?", ((p,) for p in gone))
                    self.db.executemany("DELETE FROM models WHERE path = ?", ((p,) for p in gone))
                self.replaced = True
            except sqlite3.Error as e:  # only space is lost
                logger.warning("%s: could not drop the digests of %d removed model(s) (%s)", self.path, len(gone), e)
                return 0
        return len(gone)

    # -- finished analyses --------------------------------------------------

    def result(self, key: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT body FROM results WHERE key = ?", (key,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def put_result(self, key: str, body: Mapping[str, Any]) -> None:
        try:
            with self.db:
                self.db.execute("INSERT OR REPLACE INTO results VALUES(?,?,?)", (key, json.dumps(body), time.time()))
                self.db.execute("DELETE FROM results WHERE key NOT IN (SELECT key FROM results ORDER BY created DESC LIMIT ?)", (_KEPT_RESULTS,))
        except sqlite3.Error as e:  # the result stands; only the next rescan will not find it
            logger.warning("%s: could not keep the analysis in the store (%s); the next scan will search again", self.path, e)


def _signed(h: int) -> int:
    """An unsigned 64-bit hash as SQLite's signed INTEGER."""
    return h - (1 << 64) if h >= 1 << 63 else h


def _unsigned(h: int) -> int:
    return h + (1 << 64) if h < 0 else h


def _tensor_row(model: str, position: int, t: TensorRecord) -> tuple[Any, ...]:
    d = t.digest
    span = t.span or (None, None)
    head = (model, position, t.name, json.dumps(t.shape), t.dtype, t.storage, t.storage_nbytes, t.buffer, span[0], span[1])
    at = t.at or (None, None)
    if d is None:
        return (*head, None, None, None, None, *at)
    norm = None if math.isnan(d.norm) else d.norm
    return (*head, _signed(d.content), int(d.nonfinite), int(d.has_nan), norm, *at)


def _sample_row(t: TensorRecord) -> tuple[Any, ...]:
    d = t.digest
    assert d is not None  # only units, which carry a digest, have samples
    grid = (None, None) if d.grid is None else (json.dumps(d.grid.shape), d.grid.tobytes())
    rows = (None, None) if d.row_sample is None else (json.dumps(d.row_sample.shape), d.row_sample.tobytes())
    return (_signed(d.content), t.dtype, json.dumps(t.shape), *grid, *rows)


def _array(shape: str | None, blob: bytes | None, dtype: str) -> np.ndarray | None:
    # Imported here: a rescan that finds its answer stored reads no record, and imports no numpy.
    import numpy as np

    from sharescan.dtypes import DTYPES

    if shape is None or blob is None:
        return None
    return np.frombuffer(blob, dtype=DTYPES[dtype].storage).reshape(json.loads(shape))


def _tensor_record(r: tuple[Any, ...]) -> TensorRecord:
    from sharescan.digest import Digest

    (_, _, name, shape, dtype, storage, storage_nbytes, buffer, span_start, span_end, content, nonfinite, has_nan, norm, file, offset, grid_shape, grid, rows_shape, rows) = r
    digest = None
    if content is not None:
        digest = Digest(_unsigned(content), bool(nonfinite), bool(has_nan), math.nan if norm is None else float(norm), _array(grid_shape, grid, dtype), _array(rows_shape, rows, dtype))
    span = None if span_start is None else (int(span_start), int(span_end))
    at = None if file is None else (int(file), int(offset))
    return TensorRecord(name, tuple(json.loads(shape)), dtype, storage, storage_nbytes, buffer, span, digest, at)
