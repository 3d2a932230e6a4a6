"""Import tick files users already have: Tardis CSV, Bybit trade and order-book archives.

Every importer streams its file and stores packed records (``engine.types``)
through ``Store.append_ticks`` in blocks of exactly ``CHUNK_ROWS`` valid rows
counted from the start of the file, so the store's chunks (and their digests)
depend only on the file's content: importing the same file again inserts 0
rows. Each file is imported inside one transaction; a file that turns out to
be unreadable half way leaves the database as it was.

Speed: CSV text is read in blocks of ``BLOCK_BYTES`` and split and parsed
with numpy on the raw bytes (newline and comma positions, digits scanned
column by column), so a well-formed row costs no Python objects at all.
Only rows the fast scanner does not recognise (signs, exponents, ``nan``,
non-numeric ids, ...) go through Python's ``float``/``int``/``Decimal``.
Measured on 2M Tardis trade rows, splitting and parsing take about 1.5 s;
``np.loadtxt`` on the numeric columns alone took about 3.5 s, ``bytes.split``
plus ``np.array(..).astype(..)`` about 7 s and ``csv.reader`` about 10 s.

Bad rows are skipped, counted, and the first ``MAX_LOGGED`` of each file are
logged as ``path:line: problem`` (the header is line 1): a wrong field
count, unparsable or non-finite numbers, another symbol, crossed quotes, bad
JSON, and values outside these bounds (``_Checks``):

- times: exchange and receive times inside the plausible range, from the
  config's ``plausible_from`` (default 2015-01-01) to now plus
  ``plausible_until_days`` (default 1). A 1970 or 2200 stamp would make every
  later command span decades of minutes.
- prices: positive, finite, on the ``tick_size`` grid, below
  ``MAX_PRICE_TICKS`` ticks (so they fit int64 ticks with room to spare:
  1e18 used to wrap to a negative tick count).
- sizes: positive, finite, on the ``qty_step`` grid, below ``MAX_SIZE_LOTS``
  lots. Off-grid sizes are bad rows like off-grid prices, not rounded.

A file whose first timestamps (``UNIT_SAMPLE`` of them) fall mostly outside
the plausible range in the unit its format declares (Tardis microseconds,
Bybit trade archives seconds, Bybit books milliseconds) but mostly inside in
another unit is refused whole, with the unit it looks like: one bad row per
line would hide the cause.

Duplicate ticks are dropped by the store (``Store.append_ticks_counted``):
a trade already stored or seen earlier with the same ``(ts, trade_id)``, a
quote equal in every field to one stored or seen earlier; the summary
line says how many ("N duplicates dropped").
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any

import numpy as np

from engine import gz
from engine import store as _store
from engine.adapters.bybit import frames
from engine.config import ConfigError, Settings, plausible_range_ms
from engine.ids import INT64_MAX, INT64_MIN, MASK63, int64_or_none, trade_id_of
from engine.ids import stable_id as stable_id  # re-exported: tests and callers know it here
from engine.ids import uuid_id as uuid_id
from engine.types import (
    MAX_PRICE_TICKS,
    MAX_SIZE_LOTS,
    QUOTE_DTYPE,
    SIDE_BUY,
    SIDE_SELL,
    SIDE_UNKNOWN,
    TRADE_DTYPE,
)

log = logging.getLogger("pbdtui.import")

BLOCK_BYTES = 1 << 22  # text read per block; only the parse cost depends on it, not the chunks
PREFETCH = True  # read the next block in a helper thread
MAX_LOGGED = 20  # bad rows logged one by one per file; the rest are only counted
GRID_TOLERANCE = 1e-6  # |price / tick_size - round(...)| (sizes: / qty_step) above this is off the grid

TARDIS_TRADE_COLUMNS = ("exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price", "amount")
TARDIS_QUOTE_COLUMNS = (
    "exchange", "symbol", "timestamp", "local_timestamp", "ask_amount", "ask_price", "bid_price", "bid_amount",
)
BYBIT_TRADE_COLUMNS = ("timestamp", "symbol", "side", "size", "price", "trdMatchID")

_POW10_F = 10.0 ** np.arange(19)
_POW10_I = 10 ** np.arange(19, dtype=np.int64)
_BLAKE2B_8 = hashlib.blake2b(digest_size=8)  # never updated: copied per id

PathLike = str | os.PathLike[str]


# --- public helpers -------------------------------------------------------------


@dataclass
class ImportReport:
    """What one imported file gave."""

    path: str
    format: str  # 'tardis', 'bybit-trades' or 'bybit-book'
    kind: str  # 'trade' or 'quote'
    rows_ok: int  # valid rows (book: L1 quotes derived)
    rows_bad: int  # skipped rows (book: skipped messages)
    rows_new: int  # rows the store did not hold yet
    seconds: float
    rows_dup: int = 0  # valid rows dropped as duplicates (same trade id and time, or an identical quote)
    first_problem: str | None = None  # the first bad row's ``line N: problem``, for "every row was bad"

    def summary(self) -> str:
        """One line, e.g. ``tardis trades X.csv.gz: 12934 rows, 12934 new, 0 bad (0.05 s, 260k rows/s)``.

        Duplicates dropped are shown when there are any:
        ``..., 10 rows, 5 new, 5 duplicates dropped, 0 bad (...)``.
        """
        label = {"tardis": "tardis", "bybit-trades": "bybit", "bybit-book": "bybit book"}.get(self.format, self.format)
        rate = (self.rows_ok + self.rows_bad) / max(self.seconds, 1e-9)
        rate_text = f"{rate / 1e6:.1f}M" if rate >= 1e7 else f"{rate / 1e3:.0f}k"
        dup = f"{self.rows_dup} duplicates dropped, " if self.rows_dup else ""
        return (
            f"{label} {self.kind}s {Path(self.path).name}: {self.rows_ok} rows, {self.rows_new} new, {dup}"
            f"{self.rows_bad} bad ({self.seconds:.2f} s, {rate_text} rows/s)"
        )


# --- bad rows -------------------------------------------------------------------

# A group of bad rows of one block: row indexes (into the block's rows) and a
# function describing row i. Messages are only built for rows that get logged.
_Group = tuple[np.ndarray, Callable[[int], str]]


class _BadRows:
    """Counts a file's bad rows and logs the first MAX_LOGGED in line order."""

    def __init__(self, path: str):
        self.path = path
        self.count = 0
        self.first: str | None = None  # "line N: problem" of the first bad row

    def add(self, line_no: int, problem: str) -> None:
        self.count += 1
        if self.first is None:
            self.first = f"line {line_no}: {problem}"
        if self.count <= MAX_LOGGED:
            log.warning("%s:%d: %s", self.path, line_no, problem)

    def add_groups(self, parts: list[tuple[np.ndarray, list[_Group]]]) -> None:
        """Count bad rows given as (line numbers of a row space, groups of rows of that space)."""
        items = [(line_nos, rows, describe) for line_nos, groups in parts for rows, describe in groups]
        total = sum(len(rows) for _, rows, _ in items)
        room = MAX_LOGGED - self.count
        if room > 0 and total:
            lines = np.concatenate([line_nos[rows] for line_nos, rows, _ in items])
            rows = np.concatenate([rows for _, rows, _ in items])
            which = np.concatenate([np.full(len(r), g) for g, (_, r, _) in enumerate(items)])
            for k in np.argsort(lines, kind="stable")[:room]:
                problem = items[int(which[k])][2](int(rows[k]))
                if self.first is None:
                    self.first = f"line {int(lines[k])}: {problem}"
                log.warning("%s:%d: %s", self.path, int(lines[k]), problem)
        self.count += total

    def finish(self) -> None:
        if self.count > MAX_LOGGED:
            log.warning("%s: %d bad rows in all; only the first %d were logged", self.path, self.count, MAX_LOGGED)


def _first_failures(n: int, checks: list[tuple[np.ndarray, Callable[[int], str]]]) -> tuple[np.ndarray, list[_Group]]:
    """Assign each row to the first check it fails; returns (bad mask, groups)."""
    bad = np.zeros(n, dtype=bool)
    groups: list[_Group] = []
    for mask, describe in checks:
        new = mask & ~bad
        if new.any():
            groups.append((np.flatnonzero(new), describe))
            bad |= new
    return bad, groups


# --- writing --------------------------------------------------------------------


class _ChunkWriter:
    """Hands records to the store in blocks of exactly CHUNK_ROWS rows (the last may be short).

    With ``background`` the store writes on a thread of its own (SQLite and
    the digest release the GIL) while the caller parses the next block; at
    most two batches wait. ``finish`` waits for it and raises what it raised.
    Nothing else may use the store until then.
    """

    def __init__(self, store: _store.Store, kind: str, source: str, background: bool = False):
        self.store, self.kind, self.source = store, kind, source
        self.parts: list[np.ndarray] = []
        self.pending = 0
        self.rows_ok = 0
        self.rows_new = 0
        self.rows_dup = 0
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store") if background else None
        self.queued: list[Future[None]] = []

    def _append(self, records: np.ndarray) -> None:
        done = self.store.append_ticks_counted(self.kind, records, self.source)
        self.rows_new += done.new
        self.rows_dup += done.duplicates

    def _write(self, records: np.ndarray) -> None:
        if self.pool is None:
            self._append(records)
            return
        if len(self.queued) >= 2:
            self.queued.pop(0).result()
        self.queued.append(self.pool.submit(self._append, records))

    def add(self, records: np.ndarray) -> None:
        if len(records) == 0:
            return
        self.parts.append(records)
        self.pending += len(records)
        self.rows_ok += len(records)
        chunk = _store.CHUNK_ROWS
        if self.pending >= chunk:
            merged = np.concatenate(self.parts) if len(self.parts) > 1 else self.parts[0]
            full = (len(merged) // chunk) * chunk
            self._write(merged[:full])
            rest = merged[full:]
            self.parts = [rest] if len(rest) else []
            self.pending = len(rest)

    def drain(self) -> None:
        """Wait for the batches handed to the store's thread (raising the first error)."""
        try:
            while self.queued:
                self.queued.pop(0).result()
        finally:
            for job in self.queued:
                job.cancel()
            self.queued.clear()

    def finish(self) -> None:
        if self.pending:
            rest = np.concatenate(self.parts) if len(self.parts) > 1 else self.parts[0]
            self._write(rest)
        self.parts, self.pending = [], 0
        self.drain()

    def reset(self) -> None:
        """Forget every row (after the caller rolled their writes back)."""
        self.drain()
        self.parts, self.pending, self.rows_ok, self.rows_new, self.rows_dup = [], 0, 0, 0, 0

    def close(self) -> None:
        if self.pool is not None:
            try:
                self.drain()
            except Exception:  # noqa: BLE001, S110 - closing after an error: the first error is the one raised
                pass
            self.pool.shutdown(wait=True)


# --- files ----------------------------------------------------------------------


class UnreadableFile(ConfigError):
    """A file that cannot be read whole (damaged or truncated compression) or lacks the format's header."""


def _check_exists(path: PathLike) -> None:
    if not Path(path).is_file():
        raise ConfigError(f"{path}: file not found")


class _Gunzip(io.RawIOBase):
    """Streaming gzip reader (multi-member) that decompresses with one call per read (``engine.gz``).

    ``gzip.GzipFile`` runs Python code for every 128 KiB of input; from the
    prefetch thread that code fights the parser for the GIL. Here one
    ``decompress`` call (which releases the GIL) fills most of a block.
    The inflater checks each member's CRC and length.
    """

    IN_CHUNK = 1 << 20

    def __init__(self, raw: IO[bytes]):
        super().__init__()
        self.raw = raw
        self.inflater = gz.inflater()
        self.tail = b""
        self.started = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        want = len(buffer)
        while want:
            if not self.tail:
                self.tail = self.raw.read(self.IN_CHUNK)
                if not self.tail:
                    if self.started and not self.inflater.eof:
                        raise EOFError("compressed file ended before the end-of-stream marker was reached")
                    return 0
            if self.inflater.eof:  # another gzip member follows
                self.inflater = gz.inflater()
            out = self.inflater.decompress(self.tail, want)
            self.started = True
            self.tail = self.inflater.unused_data if self.inflater.eof else self.inflater.unconsumed_tail
            if out:
                buffer[: len(out)] = out
                return len(out)
        return 0

    def close(self) -> None:
        self.raw.close()
        super().close()


def _open_maybe_gzip(path: PathLike) -> IO[bytes]:
    _check_exists(path)
    try:
        fh = open(path, "rb")  # noqa: SIM115 - returned to the caller
        magic = fh.read(2)
        fh.seek(0)
        if magic == b"\x1f\x8b":
            return io.BufferedReader(_Gunzip(fh), buffer_size=1 << 16)
        return fh
    except OSError as exc:
        raise ConfigError(f"{path}: cannot open: {exc}") from exc


Progress = Callable[[float, float], None]  # (bytes of the file read, file size)


def _raw_file(fh: Any) -> Any:
    """The OS-level file under a stack of buffered/gunzip readers (its position is the bytes read)."""
    while hasattr(fh, "raw"):
        fh = fh.raw
    return fh


def _reporter(path: PathLike, fh: Any, progress: Progress | None) -> Callable[[], None]:
    """A call that reports how far into the (compressed) file ``fh``'s reading is."""
    if progress is None:
        return lambda: None
    raw = _raw_file(fh)
    total = max(1, os.path.getsize(path))

    def report() -> None:
        # the prefetch thread may be reading ahead; tell() on the OS file is a safe position either way
        try:
            progress(min(raw.tell(), total), total)
        except (OSError, ValueError):  # closed under us: nothing to show
            pass

    return report


HEADER_LIMIT = 1 << 16  # bytes read for a header line: a file without line breaks is not read whole
SHOWN = 120  # characters of a bad header shown in a message


def _read_header(fh: IO[bytes], path: PathLike, required: tuple[str, ...]) -> tuple[list[str], dict[str, int]]:
    try:
        line = fh.readline(HEADER_LIMIT)
    except (OSError, EOFError, *gz.ERRORS) as exc:
        raise UnreadableFile(f"{path}: cannot read: {exc}") from exc
    text = line.decode("utf-8-sig", "replace")
    body = text.rstrip("\r\n")
    if "\r" in body:
        raise ConfigError(f"{path}: lines end in a bare CR (classic Mac line endings); expected LF or CRLF: "
                          "convert the file (e.g. tr '\\r' '\\n')")
    names = [n.strip() for n in body.split(",")]
    index = {name: i for i, name in enumerate(names)}
    missing = [c for c in required if c not in index]
    if not line.strip() or missing:
        shown = ",".join(names)
        if len(shown) > SHOWN:
            more = "" if line.endswith(b"\n") else " or more"
            shown = f"{shown[:SHOWN]}... ({len(line)} bytes{more})"
        raise UnreadableFile(
            f"{path}: wrong header {shown!r}; expected columns {','.join(required)}"
            + (f" (missing {', '.join(missing)})" if missing else "")
        )
    return names, index


def _blocks(fh: IO[bytes]) -> Iterator[memoryview]:
    """Yield the file's text in blocks of whole lines, each ending in b'\\n'.

    A block is a view of the bytes read, not a copy (a block is megabytes,
    and copying it cost as much as a tenth of the parse); the line cut by a
    read's end is yielded on its own, joined with the start of the next
    read. With PREFETCH the next block is read (and gunzipped: the inflater
    releases the GIL) in a helper thread while the caller parses the current
    one; at most two blocks are in memory either way.
    """
    rest = b""
    pool = ThreadPoolExecutor(max_workers=1) if PREFETCH else None
    try:
        pending = pool.submit(fh.read, BLOCK_BYTES) if pool else None
        while True:
            if pool is not None and pending is not None:
                data = pending.result()
                if data:
                    pending = pool.submit(fh.read, BLOCK_BYTES)
            else:
                data = fh.read(BLOCK_BYTES)
            if not data:
                break
            start = 0
            if rest:
                first = data.find(b"\n")
                if first < 0:
                    rest += data
                    continue
                yield memoryview(rest + data[:first + 1])
                start = first + 1
            cut = data.rfind(b"\n") + 1
            if cut > start:
                yield memoryview(data)[start:cut]
            rest = data[max(cut, start):]
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    if rest:
        yield memoryview(rest + b"\n")


# --- vectorised CSV parsing -------------------------------------------------------


def _csvscan() -> Any:
    """``engine.kernels.csvscan``, imported on first use (numba takes about a second to import)."""
    from engine.kernels import csvscan

    return csvscan


class _Fields:
    """The rows of one text block with the right field count, as field offsets into the bytes.

    Numbers are parsed without Python objects (see ``_scan``); only fields
    that are not plain ``[0-9]+(.[0-9]*)?`` go to Python's parsers.
    """

    def __init__(self, data: bytes, buf: np.ndarray, line_nos: np.ndarray, starts: np.ndarray, ends: np.ndarray):
        self.data = data
        self.buf = buf
        self.line_nos = line_nos  # per row
        self.starts = starts  # (rows, fields), inclusive
        self.ends = ends  # (rows, fields), exclusive
        self.n = len(line_nos)

    def text(self, i: int, k: int) -> str:
        return self.data[int(self.starts[i, k]):int(self.ends[i, k])].decode("utf-8", "replace")

    def equals(self, k: int, text: bytes) -> np.ndarray:
        """Rows whose field k is exactly ``text``."""
        out = np.empty(self.n, dtype=bool)
        _csvscan().fields_equal(self.buf, self.starts[:, k], self.ends[:, k], np.frombuffer(text, dtype=np.uint8), out)
        return out

    def _scan(self, k: int, allow_dot: bool, max_digits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        """Parse field k as ``[0-9]*(.[0-9]*)?`` (``engine.kernels.csvscan.scan_numbers``).

        Returns the digits as one int64 (dot skipped), the number of digits
        after the dot, ``ok`` (the field is such a number with 1..max_digits
        digits; no dot unless allow_dot), ``digits_only`` (no dot, no other
        byte, at most max_digits + 1 digits) and the number of rows not ok.
        Values of rows not ok are meaningless.
        """
        n = self.n
        val = np.empty(n, dtype=np.int64)
        nfrac = np.empty(n, dtype=np.int64)
        ok = np.empty(n, dtype=bool)
        digits_only = np.empty(n, dtype=bool)
        n_bad = _csvscan().scan_numbers(self.buf, self.starts[:, k], self.ends[:, k], allow_dot, max_digits,
                                        val, nfrac, ok, digits_only)
        return val, nfrac, ok, digits_only, int(n_bad)

    def decimal(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Field k as float64 and a mask of unparsable rows (nan/inf parse; callers check)."""
        val, nfrac, ok, _, n_bad = self._scan(k, allow_dot=True, max_digits=15)
        # Below 2**53 the digits and 10**nfrac are exact floats, so one division
        # is correctly rounded: the same double float(text) gives.
        out = val.astype(np.float64) / _POW10_F[np.minimum(nfrac, 18)]
        bad = np.zeros(self.n, dtype=bool)
        for i in (np.flatnonzero(~ok).tolist() if n_bad else ()):
            text = self.text(i, k).strip()
            try:
                if "_" in text:
                    raise ValueError(text)
                out[i] = float(text)
            except ValueError:
                bad[i] = True
        return out, bad

    def integer(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Field k as int64 and a mask of rows that are not integers in int64 range."""
        val, _, ok, _, n_bad = self._scan(k, allow_dot=False, max_digits=18)
        bad = np.zeros(self.n, dtype=bool)
        for i in (np.flatnonzero(~ok).tolist() if n_bad else ()):
            value = int64_or_none(self.text(i, k))
            if value is None:
                bad[i] = True
            else:
                val[i] = value
        return val, bad

    def seconds_ms(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Field k, seconds with a decimal fraction, as floor(seconds * 1000) in exact integers."""
        # 17 digits: with the dot read as a digit the value stays below 2**63
        val, nfrac, ok, _, n_bad = self._scan(k, allow_dot=True, max_digits=17)
        out = np.where(nfrac <= 3, val * _POW10_I[np.clip(3 - nfrac, 0, 3)],
                       val // _POW10_I[np.clip(nfrac - 3, 0, 18)])
        bad = np.zeros(self.n, dtype=bool)
        for i in (np.flatnonzero(~ok).tolist() if n_bad else ()):
            text = self.text(i, k).strip()
            try:
                dec = Decimal(text)
                if not dec.is_finite() or "_" in text:
                    raise InvalidOperation(text)
                ms = int((dec * 1000).to_integral_value(rounding=ROUND_FLOOR))
                if not INT64_MIN <= ms <= INT64_MAX:
                    raise InvalidOperation(text)
                out[i] = ms
            except InvalidOperation:
                bad[i] = True
        return out, bad

    def trade_ids(self, k: int) -> np.ndarray:
        """Field k as int64 ids: integers as they are, UUIDs folded (``uuid_id``), other text hashed (``stable_id``)."""
        w = self.ends[:, k] - self.starts[:, k]
        if self.n and int(w.min()) > 19:  # UUIDs and the like: no int64 among them
            val = np.zeros(self.n, dtype=np.int64)
            is_uuid = np.empty(self.n, dtype=bool)
            if _csvscan().fold_uuids(self.buf, self.starts[:, k], self.ends[:, k], val, is_uuid) == self.n:
                return val  # every id a UUID: the Bybit archives
            todo = np.flatnonzero(~is_uuid)
            digits_only = np.zeros(self.n, dtype=bool)
        else:
            val, _, ok, digits_only, n_bad = self._scan(k, allow_dot=False, max_digits=18)
            if not n_bad:
                return val
            todo = np.flatnonzero(~ok)
        s, e = self.starts[todo, k], self.ends[todo, k]
        # 19-digit numbers and texts with a sign or blanks go through
        # trade_id_of; canonical UUIDs are folded vectorized, the rest hashed.
        first = self.buf[np.minimum(s, len(self.buf) - 1)]
        maybe_int = digits_only[todo] | (first == 43) | (first == 45) | (first == 32)
        data = self.data
        plain = ~maybe_int
        if plain.any():
            folded = np.zeros(len(s), dtype=np.int64)
            is_uuid = np.empty(len(s), dtype=bool)
            _csvscan().fold_uuids(self.buf, s, e, folded, is_uuid)
            uuid_rows = is_uuid & plain
            val[todo[uuid_rows]] = folded[uuid_rows]
            plain &= ~is_uuid
        if plain.any():
            # non-UUID text ids: copying a fresh 8-byte blake2b state skips the
            # constructor's keyword parsing (450 instead of 620 ns a row)
            fresh = _BLAKE2B_8.copy
            digests = []
            keep = digests.append
            for a, b in zip(s[plain].tolist(), e[plain].tolist(), strict=True):
                h = fresh()
                h.update(data[a:b])
                keep(h.digest())
            raw = np.frombuffer(b"".join(digests), dtype="<u8")
            val[todo[plain]] = (raw & np.uint64(MASK63)).astype(np.int64)
        for i, a, b in zip(todo[maybe_int].tolist(), s[maybe_int].tolist(), e[maybe_int].tolist(), strict=True):
            val[i] = trade_id_of(data[a:b])
        return val


def _split_regular(data: bytes, buf: np.ndarray, first_line_no: int, n_fields: int
                   ) -> tuple[_Fields, list[_Group], np.ndarray] | None:
    """The usual block: every line has n_fields fields, none is blank. None when any line does not.

    One pass of ``engine.kernels.csvscan.split_regular`` over the bytes.
    """
    n = int(_csvscan().count_lines(buf))
    f_starts = np.empty((n, n_fields), dtype=np.int64, order="F")  # columns are read whole
    f_ends = np.empty((n, n_fields), dtype=np.int64, order="F")
    if not _csvscan().split_regular(buf, n_fields, f_starts, f_ends):
        return None
    line_nos = first_line_no + np.arange(n, dtype=np.int64)
    return _Fields(data, buf, line_nos, f_starts, f_ends), [], line_nos


def _split_block(data: bytes, first_line_no: int, n_fields: int,
                 used: tuple[int, ...] | None = None) -> tuple[_Fields, list[_Group], np.ndarray]:
    """Cut a block of whole lines into fields; rows with another field count become a bad group.

    Only the offsets of the ``used`` fields (all when None) are filled in.
    Blank lines are skipped silently. Returns (fields, groups, line numbers of all lines).
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    fast = _split_regular(data, buf, first_line_no, n_fields)
    if fast is not None:
        return fast
    nl = np.flatnonzero(buf == 10)
    starts = np.empty(len(nl), dtype=np.int64)
    starts[0:1] = 0
    starts[1:] = nl[:-1] + 1
    ends = nl.astype(np.int64)
    cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == 13)
    if cr.any():
        ends -= cr
    line_nos = first_line_no + np.arange(len(nl), dtype=np.int64)
    commas = np.flatnonzero(buf == 44)
    c0 = np.searchsorted(commas, starts)
    n_commas = np.searchsorted(commas, ends) - c0
    blank = ends == starts
    wrong = (n_commas != n_fields - 1) & ~blank
    groups: list[_Group] = []
    if wrong.any():
        counts = n_commas + 1
        groups.append((np.flatnonzero(wrong), lambda i: f"expected {n_fields} fields, got {int(counts[i])}"))
    good = ~(blank | wrong)
    if good.all():
        g_starts, g_ends, g_c0, g_lines = starts, ends, c0, line_nos
    else:
        g_starts, g_ends, g_c0, g_lines = starts[good], ends[good], c0[good], line_nos[good]
    f_starts = np.empty((len(g_starts), n_fields), dtype=np.int64, order="F")
    f_ends = np.empty((len(g_starts), n_fields), dtype=np.int64, order="F")
    for j in range(n_fields) if used is None else used:
        f_starts[:, j] = g_starts if j == 0 else commas[g_c0 + (j - 1)] + 1
        f_ends[:, j] = g_ends if j == n_fields - 1 else commas[g_c0 + j]
    fields = _Fields(data, buf, g_lines, f_starts, f_ends)
    return fields, groups, line_nos


# Parses the good rows of a block: returns the records of the valid ones and
# groups of bad rows (indexes into the block's good rows).
_RowParser = Callable[[_Fields], tuple[np.ndarray, list[_Group]]]


# Parses a block (its bytes as uint8) when every line is a good row; None sends it to the _RowParser.
_FastParser = Callable[[np.ndarray], "np.ndarray | None"]


class _WrongUnit(ValueError):
    """A file's timestamps are in another unit than its format declares (the file is refused)."""


# unit name -> factor from that unit to ms
_UNIT_TO_MS = {"seconds": 1000.0, "milliseconds": 1.0, "microseconds": 1e-3, "nanoseconds": 1e-6}
UNIT_SAMPLE = 1000  # first timestamps of a file that decide whether its unit is right


def _utc(ms: float) -> str:
    """``ms`` as a UTC date and time for messages, or a year range when out of the calendar."""
    if not math.isfinite(ms) or not -62_135_596_800_000 <= ms < 253_402_300_800_000:
        return "a time outside years 1-9999"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms // 1000)) + " UTC"


class _Checks:
    """The shared checks of imported rows: plausible times, prices and sizes on the instrument's grid.

    Bounds (relative to the instrument): a price is a positive, finite
    multiple of ``tick_size`` below ``MAX_PRICE_TICKS`` ticks; a size is a
    positive, finite multiple of ``qty_step`` below ``MAX_SIZE_LOTS`` lots (0
    deletes a book level); an exchange or receive time lies in
    ``plausible_range_ms`` (config ``plausible_from``, ``plausible_until_days``).
    Off-grid sizes are bad rows like off-grid prices: rounding one silently
    would change the traded volume the features see (and a size rounded to
    0 lots used to be stored as nothing at all).
    """

    def __init__(self, settings: Settings, now_ms: int | None = None):
        self.tick = settings.tick_size
        self.step = settings.qty_step
        now = int(time.time() * 1000) if now_ms is None else now_ms
        self.lo_ms, self.hi_ms = plausible_range_ms(settings, now)
        self.range_text = (f"the plausible range {_utc(self.lo_ms)[:10]} .. {_utc(self.hi_ms)[:10]} "
                           "(config plausible_from, plausible_until_days)")
        self.unit_checked = False

    def price(self, name: str, fields: _Fields, k: int) -> tuple[np.ndarray, list[tuple[np.ndarray, Callable[[int], str]]]]:
        px, unparsable = fields.decimal(k)
        with np.errstate(invalid="ignore", over="ignore"):
            ratio = px / self.tick
            finite = np.isfinite(px)
            huge = ~(ratio < MAX_PRICE_TICKS)
            off = np.abs(ratio - np.rint(ratio)) > GRID_TOLERANCE
            checks = [
                (unparsable, lambda i: f"unparsable {name} {fields.text(i, k)!r}"),
                (~finite, lambda i: f"{name} is {fields.text(i, k)!r}"),
                (~(px > 0), lambda i: f"non-positive {name} {fields.text(i, k)}"),
                (huge, lambda i: f"{name} {fields.text(i, k)} is too large: at least {MAX_PRICE_TICKS:.0e} ticks "
                                 f"of {self.tick:g}"),
                (off, lambda i: f"{name} {fields.text(i, k)} is not a multiple of tick_size {self.tick:g}"),
                (~(np.rint(ratio) >= 1), lambda i: f"{name} {fields.text(i, k)} is below one tick_size {self.tick:g}"),
            ]
            ticks = np.where(finite & ~off & ~huge, np.rint(ratio), 0).astype(np.int64)
        return ticks, checks

    def size(self, name: str, fields: _Fields, k: int) -> tuple[np.ndarray, list[tuple[np.ndarray, Callable[[int], str]]]]:
        sz, unparsable = fields.decimal(k)
        with np.errstate(invalid="ignore", over="ignore"):
            ratio = sz / self.step
            finite = np.isfinite(sz)
            huge = ~(ratio < MAX_SIZE_LOTS)
            off = np.abs(ratio - np.rint(ratio)) > GRID_TOLERANCE
            checks = [
                (unparsable, lambda i: f"unparsable {name} {fields.text(i, k)!r}"),
                (~finite, lambda i: f"{name} is {fields.text(i, k)!r}"),
                (~(sz > 0), lambda i: f"non-positive {name} {fields.text(i, k)}"),
                (huge, lambda i: f"{name} {fields.text(i, k)} is too large: at least {MAX_SIZE_LOTS:.0e} lots "
                                 f"of {self.step:g}"),
                (off, lambda i: f"{name} {fields.text(i, k)} is not a multiple of qty_step {self.step:g}"),
                (~(np.rint(ratio) >= 1), lambda i: f"{name} {fields.text(i, k)} is below one qty_step {self.step:g}"),
            ]
            lots = np.where(finite & ~off & ~huge, np.rint(ratio), 0).astype(np.int64)
        return lots, checks

    def time(self, name: str, fields: _Fields, k: int, ms: np.ndarray, unparsable: np.ndarray
             ) -> tuple[np.ndarray, Callable[[int], str]]:
        """Rows whose time ``ms`` (parsed from field k) is outside the plausible range."""
        out = ~unparsable & ((ms < self.lo_ms) | (ms > self.hi_ms))
        return out, lambda i: (f"{name} {fields.text(i, k)} ({_utc(float(ms[i]))}) is outside {self.range_text}")

    def check_unit(self, values: np.ndarray, unit: str, what: str) -> None:
        """Refuse a file whose first timestamps fit another unit than ``unit`` and not ``unit`` itself.

        Args:
            values: the file's first parsed timestamps, in ``unit``.
            unit: the unit the format declares (a key of ``_UNIT_TO_MS``).
            what: the column and format, for the message.

        Raises:
            _WrongUnit: most of them fall outside the plausible range as
                ``unit`` while most of them fall inside as another unit.
        """
        if self.unit_checked or not len(values):
            return
        self.unit_checked = True
        sample = values[:UNIT_SAMPLE].astype(np.float64)

        def inside(factor: float) -> float:
            ms = sample * factor
            return float(np.mean((ms >= self.lo_ms) & (ms <= self.hi_ms)))

        if inside(_UNIT_TO_MS[unit]) >= 0.5:
            return
        for other, factor in _UNIT_TO_MS.items():
            if other != unit and inside(factor) > 0.5:
                first = float(sample[0])
                raise _WrongUnit(
                    f"{what} looks like {other}, not {unit} as the format writes it: the first value "
                    f"{first:.0f} read as {unit} is {_utc(first * _UNIT_TO_MS[unit])}, as {other} "
                    f"{_utc(first * factor)}; the file is refused, nothing was imported")


def _symbol_check(fields: _Fields, k: int, symbol: str) -> tuple[np.ndarray, Callable[[int], str]]:
    other = ~fields.equals(k, symbol.encode())
    return other, lambda i: f"symbol {fields.text(i, k)!r} is not {symbol}"


def _int_check(fields: _Fields, k: int, name: str) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, Callable[[int], str]]]:
    values, bad = fields.integer(k)
    return values, bad, (bad, lambda i: f"unparsable {name} {fields.text(i, k)!r}")


def _tardis_times(checks: _Checks, f: _Fields, col: dict[str, int]) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, Callable[[int], str]]]]:
    """Tardis ``timestamp`` and ``local_timestamp`` (microseconds) as ms, with their checks, in check order."""
    ts, ts_bad, ts_check = _int_check(f, col["timestamp"], "timestamp")
    local, local_bad, local_check = _int_check(f, col["local_timestamp"], "local_timestamp")
    checks.check_unit(ts[~ts_bad], "microseconds", "the Tardis 'timestamp' column")
    ts_ms, local_ms = ts // 1000, local // 1000
    return ts_ms, local_ms, [ts_check, local_check,
                             checks.time("timestamp", f, col["timestamp"], ts_ms, ts_bad),
                             checks.time("local_timestamp", f, col["local_timestamp"], local_ms, local_bad)]


def _tardis_trade_parser(checks: _Checks, settings: Settings, col: dict[str, int]) -> _RowParser:
    def parse(f: _Fields) -> tuple[np.ndarray, list[_Group]]:
        ts, local, time_checks = _tardis_times(checks, f, col)
        px, px_checks = checks.price("price", f, col["price"])
        qty, qty_checks = checks.size("amount", f, col["amount"])
        bad, groups = _first_failures(
            f.n, [_symbol_check(f, col["symbol"], settings.symbol), *time_checks, *px_checks, *qty_checks]
        )
        keep = ~bad
        k_side = col["side"]
        side = np.where(f.equals(k_side, b"buy"), SIDE_BUY, np.where(f.equals(k_side, b"sell"), SIDE_SELL, SIDE_UNKNOWN))
        out = np.empty(int(keep.sum()), dtype=TRADE_DTYPE)
        out["ts"] = ts[keep]
        out["local_ts"] = local[keep]
        out["px"] = px[keep]
        out["qty"] = qty[keep]
        out["side"] = side[keep]
        out["trade_id"] = f.trade_ids(col["id"])[keep]
        return out, groups

    return parse


def _crossed_check(bid: np.ndarray, ask: np.ndarray) -> tuple[np.ndarray, Callable[[int], str]]:
    return bid >= ask, lambda i: f"crossed quote: bid {int(bid[i])} >= ask {int(ask[i])} ticks"


def _tardis_quote_parser(checks: _Checks, settings: Settings, col: dict[str, int]) -> _RowParser:
    def parse(f: _Fields) -> tuple[np.ndarray, list[_Group]]:
        ts, local, time_checks = _tardis_times(checks, f, col)
        ask_sz, ask_sz_checks = checks.size("ask_amount", f, col["ask_amount"])
        ask_px, ask_px_checks = checks.price("ask_price", f, col["ask_price"])
        bid_px, bid_px_checks = checks.price("bid_price", f, col["bid_price"])
        bid_sz, bid_sz_checks = checks.size("bid_amount", f, col["bid_amount"])
        bad, groups = _first_failures(
            f.n,
            [_symbol_check(f, col["symbol"], settings.symbol), *time_checks, *ask_sz_checks,
             *ask_px_checks, *bid_px_checks, *bid_sz_checks, _crossed_check(bid_px, ask_px)],
        )
        keep = ~bad
        out = np.empty(int(keep.sum()), dtype=QUOTE_DTYPE)
        out["ts"] = ts[keep]
        out["local_ts"] = local[keep]
        out["bid_px"] = bid_px[keep]
        out["bid_sz"] = bid_sz[keep]
        out["ask_px"] = ask_px[keep]
        out["ask_sz"] = ask_sz[keep]
        return out, groups

    return parse


def _bybit_trade_parser(checks: _Checks, settings: Settings, col: dict[str, int]) -> _RowParser:
    def parse(f: _Fields) -> tuple[np.ndarray, list[_Group]]:
        k_ts = col["timestamp"]
        ts, ts_bad = f.seconds_ms(k_ts)
        checks.check_unit(ts[~ts_bad] / 1000.0, "seconds", "the Bybit 'timestamp' column")
        px, px_checks = checks.price("price", f, col["price"])
        qty, qty_checks = checks.size("size", f, col["size"])
        bad, groups = _first_failures(
            f.n,
            [_symbol_check(f, col["symbol"], settings.symbol),
             (ts_bad, lambda i: f"unparsable timestamp {f.text(i, k_ts)!r}"),
             checks.time("timestamp", f, k_ts, ts, ts_bad), *px_checks, *qty_checks],
        )
        keep = ~bad
        k_side = col["side"]
        side = np.where(f.equals(k_side, b"Buy"), SIDE_BUY, np.where(f.equals(k_side, b"Sell"), SIDE_SELL, SIDE_UNKNOWN))
        out = np.empty(int(keep.sum()), dtype=TRADE_DTYPE)
        out["ts"] = ts[keep]
        out["local_ts"] = ts[keep]  # archives carry no receive time
        out["px"] = px[keep]
        out["qty"] = qty[keep]
        out["side"] = side[keep]
        out["trade_id"] = f.trade_ids(col["trdMatchID"])[keep]
        return out, groups

    return parse


def _bybit_trade_fast(checks: _Checks, settings: Settings, col: dict[str, int], n_fields: int) -> _FastParser:
    """The Bybit trade block parser for blocks of good rows only (``engine.kernels.csvscan.bybit_trades``).

    Returns None for a block with any other line: ``_bybit_trade_parser``
    then reads it and reports its bad rows. Both give the same records.
    """
    symbol = np.frombuffer(settings.symbol.encode(), dtype=np.uint8).copy()
    ks = tuple(col[c] for c in ("timestamp", "symbol", "side", "size", "price", "trdMatchID"))

    def fast(buf: np.ndarray) -> np.ndarray | None:
        scan = _csvscan()
        out = np.empty(scan.count_lines(buf), dtype=TRADE_DTYPE)
        rows = scan.bybit_trades(buf, n_fields, *ks, symbol, checks.lo_ms, checks.hi_ms, checks.tick, checks.step,
                                 MAX_PRICE_TICKS, MAX_SIZE_LOTS, GRID_TOLERANCE, _POW10_F, out["ts"], out["px"],
                                 out["qty"], out["side"], out["trade_id"])
        if rows < 0:
            return None
        out["local_ts"] = out["ts"]  # archives carry no receive time
        checks.check_unit(out["ts"][:UNIT_SAMPLE] / 1000.0, "seconds", "the Bybit 'timestamp' column")
        return out

    return fast


def warm_bybit_trades(settings: Settings) -> None:
    """Load the Bybit trade import's kernels from numba's cache (about 0.8 s) on a made-up row.

    ``data download --import`` runs it on a thread while the first archive
    downloads, so that the first import does not wait for it.
    """
    col = {name: i for i, name in enumerate(BYBIT_TRADE_COLUMNS)}
    _bybit_trade_fast(_Checks(settings), settings, col, len(col))(np.frombuffer(b"x\n", dtype=np.uint8))
    trades = np.zeros(2, dtype=TRADE_DTYPE)
    _store._repeated(_store._dedup_keys("trade", trades))


def _import_csv(
    store: _store.Store,
    settings: Settings,
    path: PathLike,
    fmt: str,
    kind: str,
    required: tuple[str, ...],
    make_parser: Callable[[_Checks, Settings, dict[str, int]], _RowParser],
    sort_file: bool,
    progress: Progress | None = None,
    make_fast: Callable[[_Checks, Settings, dict[str, int], int], _FastParser] | None = None,
) -> ImportReport:
    started = time.perf_counter()
    source = str(path)
    fh = _open_maybe_gzip(path)
    report = _reporter(path, fh, progress)
    bad_rows = _BadRows(source)
    writer = _ChunkWriter(store, kind, source, background=True)
    try:
        names, index = _read_header(fh, path, required)
        checks = _Checks(settings)
        parse = make_parser(checks, settings, index)
        fast = make_fast(checks, settings, index, len(names)) if make_fast is not None else None
        used = tuple(sorted(index[c] for c in required))

        def blocks() -> Iterator[np.ndarray]:
            """The records of each block: the fast parser's, else the general one's (which reports bad rows)."""
            first_line = 2
            for data in _blocks(fh):
                records = fast(np.frombuffer(data, dtype=np.uint8)) if fast is not None else None
                if records is not None:  # every line a good row
                    first_line += len(records)
                else:
                    fields, groups, line_nos = _split_block(bytes(data), first_line, len(names), used)
                    first_line += len(line_nos)
                    records, row_groups = parse(fields)
                    bad_rows.add_groups([(line_nos, groups), (fields.line_nos, row_groups)])
                report()
                yield records

        with store.write():  # one transaction per file: an unreadable file leaves nothing behind
            store.claim_retention(_store.ARCHIVE)  # a history built on purpose: no live retention purge
            try:
                (_write_sorted if sort_file else _write_in_file_order)(store, writer, blocks())
            except BaseException:
                writer.close()  # its thread stops writing before the transaction rolls back
                raise
            store.log_import(source, fmt, writer.rows_ok, bad_rows.count, writer.rows_new)
    except (OSError, EOFError, *gz.ERRORS) as exc:
        raise UnreadableFile(f"{path}: cannot read: {exc}") from exc
    except _WrongUnit as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    finally:
        writer.close()
        fh.close()
    bad_rows.finish()
    return ImportReport(source, fmt, kind, writer.rows_ok, bad_rows.count, writer.rows_new,
                        time.perf_counter() - started, writer.rows_dup, bad_rows.first)


def _write_in_file_order(store: _store.Store, writer: _ChunkWriter, blocks: Iterator[np.ndarray]) -> None:
    """Store the blocks' records as they come."""
    for records in blocks:
        writer.add(records)
    writer.finish()


def _write_sorted(store: _store.Store, writer: _ChunkWriter, blocks: Iterator[np.ndarray]) -> None:
    """Store the blocks' records sorted by ts (stable), inside the caller's transaction.

    While the file is in time order (Bybit's archives are) its records are
    stored as they are read, under a savepoint; at the first row out of
    order those writes are rolled back and the whole file, held in memory
    (48 bytes a row), is sorted and stored at the end. Either way the
    chunks are the ones the sorted file gives.
    """
    held: list[np.ndarray] = []
    in_order = True
    last_ts = INT64_MIN
    store.db.execute("SAVEPOINT streamed")
    for records in blocks:
        held.append(records)
        if not in_order or not len(records):
            continue
        ts = records["ts"]
        if ts[0] < last_ts or np.any(ts[1:] < ts[:-1]):
            in_order = False
            writer.reset()  # its thread is idle before the rollback
            store.db.execute("ROLLBACK TO streamed")
            continue
        last_ts = int(ts[-1])
        writer.add(records)
    if not in_order:
        records = np.concatenate(held)
        held.clear()
        writer.add(records[np.argsort(records["ts"], kind="stable")])
    writer.finish()
    store.db.execute("RELEASE streamed")


def _check_csv(path: PathLike, required: tuple[str, ...]) -> None:
    fh = _open_maybe_gzip(path)
    try:
        _read_header(fh, path, required)
    finally:
        fh.close()


def import_tardis(store: _store.Store, settings: Settings, trades: PathLike | None = None,
                  quotes: PathLike | None = None,
                  progress: Callable[[str], Progress | None] | None = None) -> list[ImportReport]:
    """Import Tardis CSV trades and/or quotes (plain or gzip).

    ``progress(path)``, when given, returns the (done, total) callback for
    that file's bytes read (or None).

    Both files are checked (present, right header) before either is imported.
    ``ts`` and ``local_ts`` are the microsecond timestamps floor-divided by 1000.

    Raises:
        ConfigError: a file is missing, unreadable or has the wrong header.
    """
    if trades is not None:
        _check_csv(trades, TARDIS_TRADE_COLUMNS)
    if quotes is not None:
        _check_csv(quotes, TARDIS_QUOTE_COLUMNS)
    reports = []
    if trades is not None:
        reports.append(_import_csv(store, settings, trades, "tardis", "trade", TARDIS_TRADE_COLUMNS,
                                   _tardis_trade_parser, sort_file=False,
                                   progress=progress(str(trades)) if progress else None))
    if quotes is not None:
        reports.append(_import_csv(store, settings, quotes, "tardis", "quote", TARDIS_QUOTE_COLUMNS,
                                   _tardis_quote_parser, sort_file=False,
                                   progress=progress(str(quotes)) if progress else None))
    return reports


def import_bybit_trades(store: _store.Store, settings: Settings, path: PathLike,
                        progress: Progress | None = None) -> ImportReport:
    """Import one Bybit public trade archive (``BTCUSDT<date>.csv.gz``).

    Columns are found by header name (with or without the newer ``RPI``
    column). The file's rows are sorted by ts (stable) before storing, since
    archives may run backwards in time; memory is therefore one file of
    packed records (48 bytes a row), which for a daily archive is bounded.

    Raises:
        ConfigError: the file is missing, unreadable or has the wrong header.
    """
    return _import_csv(store, settings, path, "bybit-trades", "trade", BYBIT_TRADE_COLUMNS,
                       _bybit_trade_parser, sort_file=True, progress=progress, make_fast=_bybit_trade_fast)


def file_symbol(path: PathLike, fmt: str) -> str | None:
    """The symbol of a file's first data row (None when it cannot be told).

    A cheap look before an import, so a file of another instrument is
    refused up front (its prices would be off the configured tick grid and
    every row would be skipped as bad) instead of creating a database bound
    to the wrong instrument. Any problem reading the file is left to the
    import itself, which reports it properly.
    """
    try:
        if fmt == "bybit-book":
            fh, zf = _book_lines(path)
            try:
                for raw in fh:
                    if raw.strip():
                        msg = json.loads(raw)
                        data = msg.get("data") if isinstance(msg, dict) else None
                        symbol = data.get("s") if isinstance(data, dict) else None
                        if symbol is None and isinstance(msg, dict):
                            symbol = str(msg.get("topic", "")).rsplit(".", 1)[-1] or None
                        return symbol if isinstance(symbol, str) else None
                return None
            finally:
                fh.close()
                if zf is not None:
                    zf.close()
        fh = _open_maybe_gzip(path)
        try:
            names = [n.strip() for n in fh.readline().decode("utf-8-sig", "replace").strip().split(",")]
            row = fh.readline().decode("utf-8", "replace").strip().split(",")
        finally:
            fh.close()
        if "symbol" in names and len(row) == len(names):
            return row[names.index("symbol")].strip() or None
    except (ConfigError, OSError, EOFError, ValueError, *gz.ERRORS, zipfile.BadZipFile):
        pass
    return None


# --- order book ------------------------------------------------------------------


# The book replay is the live decoder's (engine.adapters.bybit.frames): one set of rules
# for archives and the WebSocket, which send the same messages.
_BookSide = frames.BookSide
_BadMessage = frames.BadFrame


def _short(value: Any, limit: int = 60) -> str:
    """``value`` for a message, cut to ``limit`` characters (a message never echoes a whole line)."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _book_lines(path: PathLike) -> tuple[IO[bytes], Any]:
    """Open a Bybit book archive: the one member of a zip, or a plain/gzip text file."""
    _check_exists(path)
    try:
        with open(path, "rb") as probe:
            magic = probe.read(4)
        if magic == b"PK\x03\x04" and not zipfile.is_zipfile(path):
            raise ConfigError(f"{path}: a zip archive without its central directory: the file is truncated or "
                              "damaged (download it again)")
        if zipfile.is_zipfile(path):
            zf = zipfile.ZipFile(path)
            members = [m for m in zf.infolist() if not m.is_dir()]
            if len(members) != 1:
                zf.close()
                raise ConfigError(f"{path}: expected one file in the zip archive, found {len(members)}")
            return zf.open(members[0]), zf
        return _open_maybe_gzip(path), None
    except (OSError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{path}: cannot open: {exc}") from exc


def import_bybit_book(store: _store.Store, settings: Settings, path: PathLike,
                      progress: Progress | None = None) -> ImportReport:
    """Import a Bybit order-book archive (``<date>_<SYMBOL>_ob200.data.zip`` / ``ob500``).

    Replays snapshots and deltas into a book and stores an L1 quote whenever
    the best bid or ask (price or size) changes. Exchange time is ``cts``
    (``ts`` when absent), receive time ``ts``. A message that leaves a side
    empty or the book crossed stores nothing and counts as bad; so does bad
    JSON, another symbol, a malformed level or a delta before any snapshot.

    Raises:
        ConfigError: the file is missing, not readable, or not an order-book archive.
    """
    started = time.perf_counter()
    source = str(path)
    checks = _Checks(settings)
    try:
        checks.check_unit(_book_times(path), "milliseconds", "the order book's 'cts'/'ts'")
    except _WrongUnit as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except (OSError, EOFError, *gz.ERRORS, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    fh, zf = _book_lines(path)
    report = _reporter(path, fh if zf is None else zf.fp, progress)
    bad = _BadRows(source)
    writer = _ChunkWriter(store, "quote", source)
    bids, asks = _BookSide(True), _BookSide(False)
    have_book = False
    last: tuple[int, int, int, int] | None = None
    pending: list[tuple[int, int, int, int, int, int]] = []
    checked_format = False
    try:
        with store.write():
            store.claim_retention(_store.ARCHIVE)
            for line_no, raw in enumerate(fh, 1):
                if not line_no & 4095:
                    report()
                if not raw.strip():
                    continue
                try:
                    msg = json.loads(raw)
                except ValueError:
                    msg = None
                if not checked_format:
                    topic = msg.get("topic") if isinstance(msg, dict) else None
                    if not (isinstance(topic, str) and topic.startswith("orderbook.")):
                        raise ConfigError(f"{path}: line {line_no}: not a Bybit order-book message "
                                          "(expected JSON with topic 'orderbook.<depth>.<SYMBOL>')")
                    checked_format = True
                if msg is None:
                    bad.add(line_no, "bad JSON")
                    continue
                try:
                    quote = _apply_message(msg, settings, checks, bids, asks, have_book)
                except _BadMessage as exc:
                    bad.add(line_no, str(exc))
                    continue
                have_book = True
                if isinstance(quote, str):
                    bad.add(line_no, quote)
                    continue
                ts, local_ts, l1 = quote
                if l1 != last:
                    last = l1
                    pending.append((ts, local_ts, *l1))
                    if len(pending) >= 65536:
                        writer.add(np.array(pending, dtype=QUOTE_DTYPE))
                        pending.clear()
            if pending:
                writer.add(np.array(pending, dtype=QUOTE_DTYPE))
            writer.finish()
            store.log_import(source, "bybit-book", writer.rows_ok, bad.count, writer.rows_new)
    except (OSError, EOFError, *gz.ERRORS, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    finally:
        fh.close()
        if zf is not None:
            zf.close()
    bad.finish()
    return ImportReport(source, "bybit-book", "quote", writer.rows_ok, bad.count, writer.rows_new,
                        time.perf_counter() - started, writer.rows_dup, bad.first)


def _book_time(value: Any) -> int:
    """A message's ``ts``/``cts`` (an integer, or its text) in ms; ValueError/TypeError when it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"not an integer: {value!r}")
    return int(value)


def _book_times(path: PathLike, limit: int = UNIT_SAMPLE) -> np.ndarray:
    """The ``cts`` (else ``ts``) of a book archive's first ``limit`` messages that have one, for the unit check."""
    fh, zf = _book_lines(path)
    out: list[int] = []
    try:
        for line_no, raw in enumerate(fh):
            if len(out) >= limit or line_no >= 4 * limit:
                break
            try:
                msg = json.loads(raw)
                value = _book_time(msg["cts"] if "cts" in msg else msg["ts"])
            except (ValueError, TypeError, KeyError, OverflowError):
                continue
            if abs(value) < 2**62:
                out.append(value)
    finally:
        fh.close()
        if zf is not None:
            zf.close()
    return np.array(out, dtype=np.float64)


def _apply_message(
    msg: Any, settings: Settings, checks: _Checks, bids: _BookSide, asks: _BookSide, have_book: bool
) -> tuple[int, int, tuple[int, int, int, int]] | str:
    """Apply one message; returns (ts, local_ts, L1) or a problem with the resulting book.

    Raises _BadMessage (book untouched) when the message itself is unusable.
    """
    return frames.apply_book_message(msg, settings, bids, asks, have_book, ts_range=(checks.lo_ms, checks.hi_ms))
