"""SQLite (apsw) store: raw ticks in columnar chunks, derived tables in rows.

Raw trades and quotes are stored as chunks: one row per up to
``CHUNK_ROWS`` ticks holding the packed numpy records (``engine.types``) as a
BLOB, with the chunk's time range for selection. Loading a day of ticks is
then a handful of BLOB reads and ``np.frombuffer`` instead of millions of row
fetches (one SQL row per tick was rejected: ~1 M rows/s to read at best,
against the 2 M events/s target for ``pbdtui features``).

Each chunk's digest is remembered in ``tick_digests`` for good (also after
a purge drops or trims the chunk), and importers cut chunks
deterministically from the start of a file, so re-importing the same file
inserts nothing, and cannot bring back ticks a purge removed.

Duplicate ticks are dropped on the way in (``append_ticks``), whoever
writes (importers, synth, the live recorder): a trade whose
``(ts, trade_id)`` is already stored or appears earlier in the batch, and a
quote whose every field equals a stored quote or an earlier one of the
batch. Only the stored chunks overlapping the batch's ``[min ts, max ts]``
are read for this (the same trade always carries the same exchange time),
so there is no id table to grow with the history (one was rejected: hundreds
of millions of ids). Keying trades on ``(ts, trade_id)`` rather than the id
alone keeps two real trades whose ids collide (an empty or hashed id) when
their times differ.

Writers take SQLite's write lock up front (``BEGIN IMMEDIATE``, see
``Store.write``) and wait for another writer instead of failing: a deferred
transaction starts as a reader and its upgrade to a writer fails at once with
``BusyError`` when someone else writes, whatever the busy timeout.

Raw-tick retention depends on what the database is for, kept in its
``meta`` as ``raw_retention``: ``live`` (a recorder's database: raw ticks
past ``retention_hours``, 48 h by default, are purged) or ``archive`` (a
history a user builds on purpose with ``pbdtui data import``/``download
--import``/``synth``: raw ticks are kept for good). The first writer of a
new database sets it (``claim_retention``); the recorder purges only a
``live`` database and ``pbdtui data purge`` refuses an ``archive`` one
unless ``--keep-hours`` is given; ``pbdtui data retention`` shows or
changes it. A database from before the setting counts as an archive when
it logged an import, else as live.

Derived tables (``bars_1m``, ``features_1m``, ``signals_1m``,
``trades_exec``) use spec.md's column names, prices in price units, ``ts_min``
in ms. The database runs in WAL mode: one writer, any number of readers,
and readers never block the writer. Files are created owner-only
(``engine.private``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw
import numpy as np

from engine.private import create_private_file
from engine.types import FUNDING_DTYPE, QUOTE_DTYPE, TRADE_DTYPE

log = logging.getLogger("pbdtui.store")

SCHEMA_VERSION = "1"
CHUNK_ROWS = 1 << 18
# Page size of archive databases: a tick chunk (12 MB) is stored in 192 pages instead of 3072, and the
# WAL and its checkpoint copy them in as many writes: appending 1 M trades took 0.66 s with 4 KB pages,
# 0.21-0.6 s with 64 KB (2 vCPU, bench/README.md "Import at 1 M rows/s")
ARCHIVE_PAGE_SIZE = 65536
MINUTE_MS = 60_000
DAY_MS = 86_400_000
WAIT_MS = 600_000  # how long a writer waits for another one (an import of a big file takes a minute)
WAIT_NOTICE_MS = 1_000  # after this long waiting, say so once
SQLITE_MAGIC = b"SQLite format 3\x00"

KIND_DTYPES = {"trade": TRADE_DTYPE, "quote": QUOTE_DTYPE}

RETENTION_KEY = "raw_retention"  # meta key: what the raw-tick retention of this database is (module docstring)
LIVE = "live"  # a recorder's database: raw ticks past retention_hours are purged
ARCHIVE = "archive"  # a history built on purpose: raw ticks are kept
RETENTIONS = (LIVE, ARCHIVE)

BARS_COLUMNS = (
    "ts_min", "open", "high", "low", "close", "volume", "vwap",
    "bid_px_close", "ask_px_close", "bid_sz_close", "ask_sz_close", "n_trades",
)
# market structure (issue 12), added to features_1m after it shipped: created and migrated from this list
_STRUCTURE_COLUMNS = (
    ("dev_poc", "REAL"), ("dev_vah", "REAL"), ("dev_val", "REAL"),
    ("prev_day_poc", "REAL"), ("prev_day_vah", "REAL"), ("prev_day_val", "REAL"),
    ("shape", "TEXT"), ("shape_poc_pos", "REAL"), ("shape_skew", "REAL"), ("shape_va_frac", "REAL"),
    ("shape_valley", "REAL"), ("naked_pocs", "INTEGER"), ("naked_poc_above", "REAL"), ("naked_poc_below", "REAL"),
    ("roll_poc", "REAL"), ("roll_vah", "REAL"), ("roll_val", "REAL"),
)
FEATURES_COLUMNS = (
    "ts_min", "mid_close", "sigma_240", "bin_width", "poc", "vah", "val", "va_coverage",
    "of_1m", "of_norm_1m", "qimb_close", "qimb_ema", "ambiguous_trade_frac_1m",
    "sign_agree_frac_1m", "bvc_buy_frac_1m", "bvc_net_proxy_1m", "ready_code", "feed_gap",
    *(name for name, _ in _STRUCTURE_COLUMNS),
)
SIGNALS_COLUMNS = (
    "run_id", "ts_min", "signal_breakin_long", "signal_breakin_short",
    "signal_breakout_long", "signal_breakout_short", "signal_failbreak_long",
    "signal_failbreak_short", "acceptance_state", "chosen_action", "reason_code", "position",
)
TRADES_EXEC_COLUMNS = (
    "run_id", "trade_id", "ts_ms_submit", "ts_ms_fill", "side", "qty", "order_type",
    "fill_px", "fee", "funding_cost", "pnl_realized", "pnl_unrealized_at_close",
    "strategy_tag", "exit_reason", "slippage", "spread_paid", "exec_id",
)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tick_chunks(
    chunk_id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('trade', 'quote')),
    ts_first INTEGER NOT NULL,
    ts_last INTEGER NOT NULL,
    n INTEGER NOT NULL,
    digest TEXT NOT NULL,
    source TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS tick_chunks_kind_ts ON tick_chunks(kind, ts_first);
CREATE TABLE IF NOT EXISTS funding(ts INTEGER PRIMARY KEY, rate REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tick_digests(digest TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS imports(
    seq INTEGER PRIMARY KEY, source TEXT NOT NULL, format TEXT NOT NULL, rows_ok INTEGER,
    rows_bad INTEGER, rows_new INTEGER
);
CREATE TABLE IF NOT EXISTS bars_1m(
    ts_min INTEGER PRIMARY KEY, open REAL, high REAL, low REAL, close REAL, volume REAL,
    vwap REAL, bid_px_close REAL, ask_px_close REAL, bid_sz_close REAL, ask_sz_close REAL,
    n_trades INTEGER
);
CREATE TABLE IF NOT EXISTS features_1m(
    ts_min INTEGER PRIMARY KEY, mid_close REAL, sigma_240 REAL, bin_width REAL, poc REAL,
    vah REAL, val REAL, va_coverage REAL, of_1m REAL, of_norm_1m REAL, qimb_close REAL,
    qimb_ema REAL, ambiguous_trade_frac_1m REAL, sign_agree_frac_1m REAL,
    bvc_buy_frac_1m REAL, bvc_net_proxy_1m REAL, ready_code TEXT, feed_gap INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS runs(
    run_id TEXT PRIMARY KEY, mode TEXT NOT NULL, config_json TEXT NOT NULL, summary_json TEXT
);
CREATE TABLE IF NOT EXISTS signals_1m(
    run_id TEXT NOT NULL, ts_min INTEGER NOT NULL,
    signal_breakin_long INTEGER, signal_breakin_short INTEGER,
    signal_breakout_long INTEGER, signal_breakout_short INTEGER,
    signal_failbreak_long INTEGER, signal_failbreak_short INTEGER,
    acceptance_state INTEGER, chosen_action TEXT, reason_code TEXT, position INTEGER,
    PRIMARY KEY(run_id, ts_min)
);
CREATE TABLE IF NOT EXISTS trades_exec(
    run_id TEXT NOT NULL, trade_id INTEGER NOT NULL, ts_ms_submit INTEGER, ts_ms_fill INTEGER,
    side TEXT, qty REAL, order_type TEXT, fill_px REAL, fee REAL, funding_cost REAL,
    pnl_realized REAL, pnl_unrealized_at_close REAL, strategy_tag TEXT, exit_reason TEXT,
    slippage REAL, spread_paid REAL, exec_id TEXT,
    PRIMARY KEY(run_id, trade_id)
);
INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');
"""


def _migrate(db: apsw.Connection) -> None:
    """Columns added since a database was created (``CREATE TABLE IF NOT EXISTS`` keeps old tables)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(features_1m)")}
    if "feed_gap" not in columns:  # live feed gap marks
        db.execute("ALTER TABLE features_1m ADD COLUMN feed_gap INTEGER NOT NULL DEFAULT 0")
    if "exec_id" not in {row[1] for row in db.execute("PRAGMA table_info(trades_exec)")}:
        # the exchange's execId of a live fill: a restart records what a killed run had not committed
        db.execute("ALTER TABLE trades_exec ADD COLUMN exec_id TEXT")
    for name, kind in _STRUCTURE_COLUMNS:  # market structure (issue 12)
        if name not in columns:
            db.execute(f"ALTER TABLE features_1m ADD COLUMN {name} {kind}")


class StoreError(RuntimeError):
    """The database cannot be used as asked (wrong instrument, corrupt chunk, ...)."""


class NoTablesError(StoreError):
    """Opened for reading, the file has no pbdtui schema (yet: its creator may not have committed it)."""


@dataclass(frozen=True)
class Instrument:
    """What the integer ticks and lots of a store mean."""

    symbol: str
    tick_size: float
    qty_step: float


@dataclass(frozen=True)
class PurgePlan:
    """What a purge removes: raw ticks with ``ts < cutoff`` (cutoff = now - keep)."""

    cutoff: int
    now: int  # the reference time (default: the newest stored tick)
    rows: dict[str, int]  # kind ('trade', 'quote') -> ticks removed
    first_ts: int | None  # oldest tick removed (None: nothing to remove)
    last_ts: int | None  # newest tick removed


def _bounds(start_ms: int | None, end_ms: int | None) -> tuple[int, int]:
    """A range's (inclusive, exclusive) bounds with None as unbounded."""
    return (-(2**62) if start_ms is None else int(start_ms)), (2**62 if end_ms is None else int(end_ms))


def _digest(kind: str, data: bytes | memoryview) -> str:
    h = hashlib.blake2b(kind.encode(), digest_size=20)  # the same digest as of kind + data, without the copy
    h.update(data)
    return h.hexdigest()


@dataclass(frozen=True)
class Appended:
    """What ``Store.append_ticks_counted`` did with a batch of ticks."""

    new: int  # rows stored
    duplicates: int  # rows dropped: the same tick was stored already, or came earlier in the batch
    known: int  # rows of chunks stored before, byte for byte (a file imported again; perhaps purged since)


def _dedup_keys(kind: str, arr: np.ndarray) -> np.ndarray:
    """The identity of each tick as int64 columns: trades (ts, trade_id), quotes every field."""
    names = ("ts", "trade_id") if kind == "trade" else KIND_DTYPES[kind].names
    return np.stack([arr[name] for name in names], axis=1).astype(np.int64, copy=False)


def _repeated(keys: np.ndarray) -> np.ndarray:
    """Rows whose key (a row of ``keys``, the time first) equals that of an earlier row.

    Equal keys have equal times, so rows are put in time order (stable: an
    earlier row stays earlier) and ``engine.kernels.dedup`` checks each run
    of one time. Exact: no hash decides alone that two ticks are the same.
    """
    out = np.zeros(len(keys), dtype=bool)
    if len(keys) < 2:
        return out
    # imported here: numba takes about a second to import, and most store users never write
    from engine.kernels import dedup as _dedup

    keys = np.ascontiguousarray(keys)
    ts = keys[:, 0]
    if np.any(ts[1:] < ts[:-1]):
        order = np.argsort(ts, kind="stable")
        flags = np.zeros(len(keys), dtype=bool)
        _dedup.repeated_in_runs(keys[order], flags)
        out[order] = flags
    else:
        _dedup.repeated_in_runs(keys, out)
    return out


class _Checkpointer:
    """Copies a database's WAL into its file on a thread and connection of their own.

    SQLite checkpoints in the COMMIT that takes the WAL past 1000 pages, on
    the committing thread: for an import that is a second write of every row
    (and its fsync), waited for between two files. With it the writer's
    connection does not checkpoint; each of its commits starts a PASSIVE
    checkpoint here, which copies what is committed while the writer reads
    its next file.

    The WAL starts over only at a write that finds all of it copied, and a
    writer that starts its next file at once never does: left alone, the WAL
    held the whole import (777 MB for 16 archives). So once the WAL passes
    ``wait_bytes`` (as the last checkpoint counted it), a commit waits for
    the checkpoint of everything it committed, and the next write starts
    the WAL over. The last connection to close checkpoints the rest.
    """

    def __init__(self, path: str, wait_bytes: int, frame_bytes: int):
        self.path, self.wait_bytes, self.frame_bytes = path, wait_bytes, frame_bytes
        self._conn: apsw.Connection | None = None
        self._cond = threading.Condition()
        self._asked = 0  # commits to checkpoint
        self._done = 0  # commits a finished checkpoint covered
        self.wal_bytes = 0  # the WAL's content at the last checkpoint
        self.waits = 0  # commits that waited for their checkpoint
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="checkpoint", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        """After a commit: checkpoint it behind the writer, or wait for that when the WAL is past the bound."""
        with self._cond:
            self._asked += 1
            self._cond.notify_all()
            if self.wal_bytes > self.wait_bytes:
                self.waits += 1
                self._cond.wait_for(lambda: self._done >= self._asked)

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closing or self._done < self._asked)
                if self._closing:
                    break
                upto = self._asked
            frames = None
            try:
                if self._conn is None:
                    self._conn = apsw.Connection(self.path, flags=apsw.SQLITE_OPEN_READWRITE)
                    self._conn.setbusytimeout(WAIT_MS)
                _, frames, _ = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except apsw.Error as exc:  # the close's checkpoint copies what this one could not
                log.warning("%s: background checkpoint failed: %s", self.path, exc)
            with self._cond:
                self._done = upto
                if frames is not None:
                    self.wal_bytes = max(0, frames) * self.frame_bytes
                self._cond.notify_all()
        if self._conn is not None:
            self._conn.close()
        with self._cond:
            self._done = self._asked
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()


class Store:
    """One connection to a pbdtui database file.

    Args:
        path: the SQLite file (created when missing).
        instrument: binds a new store to an instrument; an existing store
            refuses a different tick or lot size, since its ticks would mean
            other prices.
        readonly: open for reading only (console, reports).
        page_size: SQLite's page size for a new file (bytes; ignored for an
            existing one). ``ARCHIVE_PAGE_SIZE`` for archives built by the
            import commands; the default 4096 elsewhere (the live recorder
            commits a few rows four times a second).
        background_checkpoint: copy the WAL into the file on a thread of its
            own after each commit (``_Checkpointer``) instead of in the
            commit that fills it: for a bulk import writing one file while
            the last one's rows reach the database file.
    """

    def __init__(self, path: str | os.PathLike[str], instrument: Instrument | None = None, readonly: bool = False,
                 wait_ms: int = WAIT_MS, page_size: int | None = None, background_checkpoint: bool = False):
        self.path = str(path)
        self.wait_ms = wait_ms
        self._checkpointer: _Checkpointer | None = None
        self._check_file(readonly)
        flags = apsw.SQLITE_OPEN_READONLY if readonly else apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
        try:
            self.db = apsw.Connection(self.path, flags=flags)
        except apsw.Error as exc:
            raise StoreError(f"{self.path}: cannot open database: {exc}") from exc
        self._waited = False
        self._busy_since = 0.0
        self.db.set_busy_handler(self._busy)
        try:
            self._prepare(instrument, readonly, page_size)
            if background_checkpoint and not readonly:
                page = self.db.execute("PRAGMA page_size").fetchone()[0]
                pages = self.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] or 1000
                self.db.execute("PRAGMA wal_autocheckpoint=0")
                # a WAL frame is a page and its 24-byte header; the bound is 2x SQLite's own checkpoint point
                self._checkpointer = _Checkpointer(self.path, wait_bytes=2 * pages * (page + 24),
                                                   frame_bytes=page + 24)
        except StoreError:
            self.db.close()
            raise
        except apsw.ReadOnlyError as exc:
            self.db.close()
            raise StoreError(f"{self.path}: the database is read-only here ({exc}); this command writes to "
                             "it: check the file's permissions, or copy it somewhere writable") from exc
        except apsw.Error as exc:  # e.g. not a database at all: a one-line error, not a traceback
            self.db.close()
            raise StoreError(f"{self.path}: not a usable database: {exc}") from exc

    def _prepare(self, instrument: Instrument | None, readonly: bool, page_size: int | None) -> None:
        """Journal mode, schema, instrument binding: tried again while SQLite answers busy.

        SQLite can answer busy at once, without asking the busy handler,
        while another process's last connection to the file cleans up its
        WAL on close, or while a first connection recovers a WAL left by a
        crash; every step here may be run again.
        """
        started = time.monotonic()
        pause = 0.005
        while True:
            try:
                if not readonly:
                    if page_size is not None and self.db.execute("PRAGMA page_count").fetchone()[0] == 0:
                        self.db.execute(f"PRAGMA page_size={int(page_size)}")  # before WAL: fixed from then on
                    self.db.execute("PRAGMA journal_mode=WAL")
                    self.db.execute("PRAGMA synchronous=NORMAL")
                    with self.write():  # the schema too: a deferred transaction would fail at its upgrade
                        self.db.execute(_SCHEMA)
                        _migrate(self.db)
                elif not self._has_table("tick_chunks"):
                    # an empty file, or one whose creator has not committed the schema yet: a reader
                    # would fail on its first query with "no such table"
                    raise NoTablesError(f"{self.path}: holds no pbdtui tables (an empty file, or a database "
                                        "still being created)")
                self.instrument = self._bind(instrument, readonly)
                return
            except apsw.BusyError:
                if (time.monotonic() - started) * 1000 >= self.wait_ms:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.1)

    def _check_file(self, readonly: bool) -> None:
        """Refuse what is not a SQLite file with the reason; create a new database file owner-only.

        SQLite's own message for a gzip file or a text file is "file is not
        a database", which does not say what the file is instead.
        """
        path = Path(self.path)
        if path.is_dir():
            raise StoreError(f"{self.path}: is a folder, not a database file")
        if not path.exists():
            if readonly:
                raise StoreError(f"{self.path}: no such database")
            if not path.parent.is_dir():
                raise StoreError(f"{self.path}: folder {str(path.parent)!r} does not exist")
            try:
                create_private_file(path)
            except OSError as exc:
                raise StoreError(f"{self.path}: cannot create the database: {exc.strerror}") from exc
            return
        try:
            with open(path, "rb") as fh:
                head = fh.read(len(SQLITE_MAGIC))
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot read the database: {exc.strerror}") from exc
        if head and head != SQLITE_MAGIC[:len(head)]:
            what = {b"\x1f\x8b": "a gzip file (gunzip it first)", b"PK": "a zip archive (unzip it first)",
                    b"BZ": "a bzip2 file", b"\x28\xb5": "a zstd file"}.get(head[:2])
            if what is None:
                what = "not a SQLite database (it does not start with 'SQLite format 3')"
            else:
                what = "not a SQLite database but " + what
            raise StoreError(f"{self.path}: {what}")

    def _busy(self, count: int) -> bool:
        """SQLite's busy handler: wait (up to ``wait_ms``) for another writer, saying so once."""
        if count == 0:
            self._busy_since = time.monotonic()
        waited_ms = (time.monotonic() - self._busy_since) * 1000
        if waited_ms >= self.wait_ms:
            return False  # SQLite raises BusyError: the caller's message names the file
        if waited_ms >= WAIT_NOTICE_MS and not self._waited:
            self._waited = True
            log.warning("%s: another process is writing to this database; waiting for it (up to %d s)",
                        self.path, self.wait_ms // 1000)
        time.sleep(min(0.002 * (count + 1), 0.05))
        return True

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        """A write transaction that holds the write lock from its start (``BEGIN IMMEDIATE``).

        A second writer waits in ``BEGIN IMMEDIATE`` (busy handler) until the
        first commits. Inside an open transaction it is a savepoint, so
        helpers that write can be called from a caller's transaction.
        Readers never wait for it (WAL).
        """
        if self.db.in_transaction:
            with self.db:
                yield
            return
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except apsw.BusyError as exc:
            raise StoreError(f"{self.path}: another process has been writing to this database for more than "
                             f"{self.wait_ms // 1000} s; try again when it is done") from exc
        try:
            yield
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        if self._checkpointer is not None:
            self._checkpointer.committed()

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- meta ---------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def retention(self) -> str:
        """``LIVE`` or ``ARCHIVE``: the stored setting, else inferred (an import was logged: an archive)."""
        value = self.meta(RETENTION_KEY)
        if value in RETENTIONS:
            return value
        imported = self._has_table("imports") and self.db.execute("SELECT 1 FROM imports LIMIT 1").fetchone()
        return ARCHIVE if imported else LIVE

    def set_retention(self, value: str) -> None:
        """Store the retention setting (``LIVE`` or ``ARCHIVE``)."""
        if value not in RETENTIONS:
            raise StoreError(f"{self.path}: retention must be one of {', '.join(RETENTIONS)}, not {value!r}")
        with self.write():
            self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (RETENTION_KEY, value))

    def claim_retention(self, value: str) -> bool:
        """Set the retention of a database that has none and holds no ticks yet (its first writer decides).

        Returns True when it was set; a database with a setting, or with
        ticks from before the setting existed, keeps what it has.
        """
        with self.write():
            if self.meta(RETENTION_KEY) is not None or self.tick_range() is not None:
                return False
            self.set_retention(value)
        return True

    def _bind(self, instrument: Instrument | None, readonly: bool) -> Instrument | None:
        stored = self.meta("symbol") if self._has_table("meta") else None
        if stored is None:
            if instrument is None or readonly:
                return instrument
            with self.write():
                for key, value in (("symbol", instrument.symbol), ("tick_size", repr(instrument.tick_size)),
                                   ("qty_step", repr(instrument.qty_step))):
                    self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))
            return instrument
        have = Instrument(stored, float(self.meta("tick_size") or 0), float(self.meta("qty_step") or 0))
        if instrument is not None and (
            instrument.symbol != have.symbol
            or abs(instrument.tick_size - have.tick_size) > 1e-15
            or abs(instrument.qty_step - have.qty_step) > 1e-15
        ):
            raise StoreError(
                f"{self.path}: holds {have.symbol} with tick_size {have.tick_size} and qty_step "
                f"{have.qty_step}; the config asks for {instrument.symbol} with tick_size "
                f"{instrument.tick_size} and qty_step {instrument.qty_step}"
            )
        return have

    def unbind(self) -> None:
        """Forget the instrument of a store that holds no ticks (an import that stored nothing bound it)."""
        if self.tick_range() is not None:
            raise StoreError(f"{self.path}: holds ticks; its instrument stays")
        with self.write():
            self.db.execute("DELETE FROM meta WHERE key IN ('symbol', 'tick_size', 'qty_step')")
        self.instrument = None

    def _has_table(self, name: str) -> bool:
        row = self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone()
        return row is not None

    # --- raw ticks ----------------------------------------------------------

    def append_ticks(self, kind: str, records: np.ndarray, source: str) -> int:
        """Store ``records`` as chunks without duplicates; returns how many rows were new.

        See ``append_ticks_counted``, which also says how many were dropped.
        """
        return self.append_ticks_counted(kind, records, source).new

    def append_ticks_counted(self, kind: str, records: np.ndarray, source: str) -> Appended:
        """Store ``records`` as chunks, dropping duplicate ticks; returns what happened to them.

        Chunks are cut every ``CHUNK_ROWS`` rows from the start of ``records``
        and sorted by ts (stable). A chunk whose bytes were stored before
        (perhaps purged since) is skipped whole. Otherwise rows already
        stored, or repeated earlier in the chunk, are dropped (module
        docstring) and the rest is stored.
        """
        dtype = KIND_DTYPES[kind]
        if records.dtype != dtype:
            raise TypeError(f"{kind} records must have dtype {dtype}, not {records.dtype}")
        new = dup = known = 0
        with self.write():
            for start in range(0, len(records), CHUNK_ROWS):
                part = records[start:start + CHUNK_ROWS]
                if len(part) == 0:
                    continue
                ts = part["ts"]
                if np.any(ts[1:] < ts[:-1]):
                    part = part[np.argsort(ts, kind="stable")]
                data = memoryview(np.ascontiguousarray(part).view(np.uint8))  # the chunk's bytes, not a copy
                digest = _digest(kind, data)
                self.db.execute("INSERT OR IGNORE INTO tick_digests(digest) VALUES (?)", (digest,))
                if not self.db.changes():
                    known += len(part)  # stored before (and perhaps purged since)
                    continue
                keep = self._not_stored(kind, part)
                if keep.all():
                    new += self._insert_chunk(kind, part, source, keep_digest=digest, data=data)
                else:
                    dup += len(part) - int(keep.sum())
                    new += self._insert_chunk(kind, part[keep], source, keep_digest=digest)
        return Appended(new, dup, known)

    def _not_stored(self, kind: str, part: np.ndarray) -> np.ndarray:
        """Mask of the rows of ``part`` (sorted by ts) that are neither stored nor repeated earlier in it."""
        lo, hi = int(part["ts"][0]), int(part["ts"][-1])
        stored = [self.read_chunk(kind, chunk_id) for chunk_id, _, _ in self.chunk_index(kind, lo, hi + 1)]
        stored = [s[np.searchsorted(s["ts"], lo, "left"):np.searchsorted(s["ts"], hi, "right")] for s in stored]
        before = np.concatenate(stored) if stored else part[:0]
        keys = _dedup_keys(kind, np.concatenate([before, part]) if len(before) else part)
        return ~_repeated(keys)[len(before):]

    def _insert_chunk(self, kind: str, part: np.ndarray, source: str, keep_digest: str,
                      data: bytes | memoryview | None = None) -> int:
        """Insert ``part`` (sorted by ts; ``data`` its bytes when at hand) as one chunk under ``keep_digest``.

        Returns its rows.
        """
        if len(part) == 0:
            return 0
        ts = part["ts"]
        if data is None:
            data = np.ascontiguousarray(part).tobytes()
        digest = keep_digest
        self.db.execute(
            "INSERT INTO tick_chunks(kind, ts_first, ts_last, n, digest, source, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (kind, int(ts[0]), int(ts[-1]), len(part), digest, source, data),
        )
        return len(part)

    def tick_range(self, start_ms: int | None = None, end_ms: int | None = None) -> tuple[int, int] | None:
        """(first, last) exchange ts of the stored trades and quotes with ``start_ms <= ts < end_ms``, or None.

        Exact: a chunk that straddles a bound is read to find its first (or
        last) tick inside the range; chunks wholly inside answer from their
        stored ts range.
        """
        if start_ms is None and end_ms is None:
            row = self.db.execute("SELECT MIN(ts_first), MAX(ts_last) FROM tick_chunks").fetchone()
            return None if row[0] is None else (int(row[0]), int(row[1]))
        lo, hi = _bounds(start_ms, end_ms)
        firsts, lasts = [], []
        for kind in KIND_DTYPES:
            inside = self.db.execute(
                "SELECT MIN(ts_first) FROM tick_chunks WHERE kind=? AND ts_first>=? AND ts_first<?", (kind, lo, hi)
            ).fetchone()[0]
            if inside is not None:
                firsts.append(int(inside))
            for (chunk_id,) in self.db.execute(
                "SELECT chunk_id FROM tick_chunks WHERE kind=? AND ts_first<? AND ts_last>=?", (kind, lo, lo)
            ).fetchall():
                ts = self.read_chunk(kind, chunk_id)["ts"]
                i = int(np.searchsorted(ts, lo, "left"))
                if i < len(ts) and ts[i] < hi:
                    firsts.append(int(ts[i]))
            inside = self.db.execute(
                "SELECT MAX(ts_last) FROM tick_chunks WHERE kind=? AND ts_last>=? AND ts_last<?", (kind, lo, hi)
            ).fetchone()[0]
            if inside is not None:
                lasts.append(int(inside))
            for (chunk_id,) in self.db.execute(
                "SELECT chunk_id FROM tick_chunks WHERE kind=? AND ts_first<? AND ts_last>=?", (kind, hi, hi)
            ).fetchall():
                ts = self.read_chunk(kind, chunk_id)["ts"]
                i = int(np.searchsorted(ts, hi, "left"))
                if i > 0 and ts[i - 1] >= lo:
                    lasts.append(int(ts[i - 1]))
        return (min(firsts), max(lasts)) if firsts else None

    def count_ticks(self, kind: str, start_ms: int | None = None, end_ms: int | None = None) -> int:
        """How many ``kind`` ticks have ``start_ms <= ts < end_ms`` (exact; straddling chunks are read)."""
        if start_ms is None and end_ms is None:
            return int(self.db.execute("SELECT COALESCE(SUM(n), 0) FROM tick_chunks WHERE kind=?",
                                       (kind,)).fetchone()[0])
        lo, hi = _bounds(start_ms, end_ms)
        total = int(self.db.execute(
            "SELECT COALESCE(SUM(n), 0) FROM tick_chunks WHERE kind=? AND ts_first>=? AND ts_last<?", (kind, lo, hi)
        ).fetchone()[0])
        for (chunk_id,) in self.db.execute(
            "SELECT chunk_id FROM tick_chunks WHERE kind=? AND ts_last>=? AND ts_first<? AND (ts_first<? OR ts_last>=?)",
            (kind, lo, hi, lo, hi),
        ).fetchall():
            ts = self.read_chunk(kind, chunk_id)["ts"]
            total += int(np.searchsorted(ts, hi, "left") - np.searchsorted(ts, lo, "left"))
        return total

    def load_ticks(self, kind: str, ts_from: int | None = None, ts_to: int | None = None) -> np.ndarray:
        """All ``kind`` records with ``ts_from <= ts < ts_to``, sorted by ts (stable)."""
        dtype = KIND_DTYPES[kind]
        lo = -(2**62) if ts_from is None else ts_from
        hi = 2**62 if ts_to is None else ts_to
        parts = []
        for chunk_id, n, data in self.db.execute(
            "SELECT chunk_id, n, data FROM tick_chunks WHERE kind=? AND ts_last>=? AND ts_first<? "
            "ORDER BY chunk_id",  # insertion (file) order; the stable sort below orders by ts
            (kind, lo, hi),
        ):
            if len(data) != n * dtype.itemsize:
                raise StoreError(f"{self.path}: {kind} chunk {chunk_id} is corrupt ({len(data)} bytes for {n} rows)")
            arr = np.frombuffer(data, dtype=dtype)
            if arr["ts"][0] < lo or arr["ts"][-1] >= hi:
                ts = arr["ts"]
                arr = arr[np.searchsorted(ts, lo, "left"):np.searchsorted(ts, hi, "left")]
            parts.append(arr)
        if not parts:
            return np.zeros(0, dtype=dtype)
        out = np.concatenate(parts) if len(parts) > 1 else parts[0].copy()
        ts = out["ts"]
        if len(parts) > 1 and np.any(ts[1:] < ts[:-1]):
            out = out[np.argsort(ts, kind="stable")]
        return out

    def next_tick_ts(self, ts_from: int) -> int | None:
        """The first exchange ts at or after ``ts_from`` over trades and quotes, or None.

        Reads only the chunks that straddle ``ts_from``; a replay asks this to
        jump over a gap instead of waiting it out.
        """
        row = self.db.execute("SELECT MIN(ts_first) FROM tick_chunks WHERE ts_first>=?", (ts_from,)).fetchone()
        best = None if row[0] is None else int(row[0])
        for kind, chunk_id in self.db.execute(
                "SELECT kind, chunk_id FROM tick_chunks WHERE ts_first<? AND ts_last>=?", (ts_from, ts_from)).fetchall():
            ts = self.read_chunk(kind, chunk_id)["ts"]
            i = int(np.searchsorted(ts, ts_from, "left"))
            if i < len(ts) and (best is None or int(ts[i]) < best):
                best = int(ts[i])
        return best

    def iter_windows(self, window_ms: int = DAY_MS, start_ms: int | None = None, end_ms: int | None = None
                     ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield ``(window_end, trades, quotes)`` for consecutive time windows, in order.

        Only ticks with ``start_ms <= ts < end_ms`` (None: unbounded) are
        loaded. Memory stays bounded by one window of ticks.
        """
        rng = self.tick_range(start_ms, end_ms)
        if rng is None:
            return
        lo, hi = _bounds(start_ms, end_ms)
        start = (rng[0] // window_ms) * window_ms
        while start <= rng[1]:
            end = start + window_ms
            a, b = max(start, lo), min(end, hi)
            yield end, self.load_ticks("trade", a, b), self.load_ticks("quote", a, b)
            start = end

    def chunk_index(self, kind: str, start_ms: int | None = None, end_ms: int | None = None
                    ) -> list[tuple[int, int, int]]:
        """(chunk_id, ts_first, ts_last) of the ``kind`` chunks overlapping the range, by ts_first."""
        lo, hi = _bounds(start_ms, end_ms)
        return [(int(a), int(b), int(c)) for a, b, c in self.db.execute(
            "SELECT chunk_id, ts_first, ts_last FROM tick_chunks WHERE kind=? AND ts_last>=? AND ts_first<? "
            "ORDER BY ts_first, chunk_id", (kind, lo, hi))]

    def read_chunk(self, kind: str, chunk_id: int) -> np.ndarray:
        """One chunk read straight into a writable numpy buffer.

        ``blob_open(...).read_into`` skips the bytes object a SELECT would
        build (measured 0.5 s instead of 1.8-2.9 s for 2.8 GB), and a
        writable array spares numba a second compiled variant for read-only
        inputs.
        """
        dtype = KIND_DTYPES[kind]
        n = self.db.execute("SELECT n FROM tick_chunks WHERE chunk_id=?", (chunk_id,)).fetchone()[0]
        with self.db.blob_open("main", "tick_chunks", "data", chunk_id, False) as blob:
            size = blob.length()
            if size != n * dtype.itemsize:
                raise StoreError(f"{self.path}: {kind} chunk {chunk_id} is corrupt ({size} bytes for {n} rows)")
            out = np.empty(n, dtype=dtype)
            blob.read_into(out.view(np.uint8))
        return out

    def iter_event_slices(self, with_trades: bool = True, start_ms: int | None = None, end_ms: int | None = None
                          ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(trades, quotes)`` slices covering every stored tick once, in time order.

        Only ticks with ``start_ms <= ts < end_ms`` (None: unbounded) are
        yielded, and only the chunks overlapping that range are read.
        Slices are views of the stored chunks (no copy, no concatenation);
        each holds every event with ``ts`` below a cut and at or above the
        previous cut. When chunks of one kind overlap in time (e.g. two
        imports of overlapping files), falls back to day windows, which load
        and sort. ``with_trades=False`` reads quotes only (trades come back
        empty), for drivers that only execute.
        """
        lo, hi = _bounds(start_ms, end_ms)
        t_index = self.chunk_index("trade", start_ms, end_ms) if with_trades else []
        q_index = self.chunk_index("quote", start_ms, end_ms)
        for index in (t_index, q_index):
            if any(index[i][1] < index[i - 1][2] for i in range(1, len(index))):
                for _end, trades, quotes in self.iter_windows(DAY_MS, start_ms, end_ms):
                    yield (trades if with_trades else trades[:0]), quotes
                return

        def next_chunk(kind: str, index: list[tuple[int, int, int]], i: int) -> tuple[np.ndarray, int]:
            # the next chunk with ticks inside the range (a straddling chunk may have none)
            while i < len(index):
                arr = self.read_chunk(kind, index[i][0])
                i += 1
                ts = arr["ts"]
                if ts[0] < lo or ts[-1] >= hi:
                    arr = arr[np.searchsorted(ts, lo, "left"):np.searchsorted(ts, hi, "left")]
                if len(arr):
                    return arr, i
            return np.zeros(0, dtype=KIND_DTYPES[kind]), i

        ti = qi = 0  # next chunk to load
        tr = np.zeros(0, dtype=TRADE_DTYPE)
        qu = np.zeros(0, dtype=QUOTE_DTYPE)
        while True:
            if len(tr) == 0:
                tr, ti = next_chunk("trade", t_index, ti)
            if len(qu) == 0:
                qu, qi = next_chunk("quote", q_index, qi)
            if len(tr) == 0 and len(qu) == 0:
                return
            # cut at the end of whichever loaded chunk ends first
            ends = [int(a["ts"][-1]) + 1 for a in (tr, qu) if len(a)]
            cut = min(ends)
            nt = int(np.searchsorted(tr["ts"], cut, "left")) if len(tr) else 0
            nq = int(np.searchsorted(qu["ts"], cut, "left")) if len(qu) else 0
            yield tr[:nt], qu[:nq]
            tr, qu = tr[nt:], qu[nq:]

    def plan_purge(self, keep_ms: int, now_ms: int | None = None) -> PurgePlan:
        """What ``purge_raw(keep_ms, now_ms)`` would remove, without changing anything."""
        rng = self.tick_range()
        if rng is None:
            return PurgePlan(0, 0, {kind: 0 for kind in KIND_DTYPES}, None, None)
        now = rng[1] if now_ms is None else now_ms
        cutoff = now - keep_ms
        rows = {}
        first: int | None = None
        last: int | None = None
        for kind in KIND_DTYPES:
            n, a, b = self.db.execute(
                "SELECT COALESCE(SUM(n), 0), MIN(ts_first), MAX(ts_last) FROM tick_chunks WHERE kind=? AND ts_last<?",
                (kind, cutoff),
            ).fetchone()
            rows[kind] = int(n)
            if a is not None:
                first = int(a) if first is None else min(first, int(a))
                last = int(b) if last is None else max(last, int(b))
            for (chunk_id,) in self.db.execute(
                "SELECT chunk_id FROM tick_chunks WHERE kind=? AND ts_first<? AND ts_last>=?", (kind, cutoff, cutoff)
            ).fetchall():
                ts = self.read_chunk(kind, chunk_id)["ts"]
                k = int(np.searchsorted(ts, cutoff, "left"))
                rows[kind] += k
                if k:
                    first = int(ts[0]) if first is None else min(first, int(ts[0]))
                    last = int(ts[k - 1]) if last is None else max(last, int(ts[k - 1]))
        return PurgePlan(cutoff, now, rows, first, last)

    def purge_raw(self, keep_ms: int, now_ms: int | None = None) -> tuple[int, int]:
        """Drop raw ticks older than ``now_ms - keep_ms``; derived tables are untouched.

        ``now_ms`` defaults to the newest stored tick (event time, so a replayed
        database purges the same way whenever it is run). Returns (rows
        dropped, cutoff).
        """
        rng = self.tick_range()
        if rng is None:
            return 0, 0
        now = rng[1] if now_ms is None else now_ms
        cutoff = now - keep_ms
        dropped = 0
        with self.write():
            row = self.db.execute("SELECT COALESCE(SUM(n), 0) FROM tick_chunks WHERE ts_last < ?", (cutoff,)).fetchone()
            dropped += int(row[0])
            self.db.execute("DELETE FROM tick_chunks WHERE ts_last < ?", (cutoff,))
            for chunk_id, kind, source, digest, data in self.db.execute(
                "SELECT chunk_id, kind, source, digest, data FROM tick_chunks WHERE ts_first < ?", (cutoff,)
            ).fetchall():
                arr = np.frombuffer(data, dtype=KIND_DTYPES[kind])
                keep = arr[arr["ts"] >= cutoff]
                dropped += len(arr) - len(keep)
                self.db.execute("DELETE FROM tick_chunks WHERE chunk_id=?", (chunk_id,))
                # the trimmed chunk keeps its original digest: re-importing its file stays a no-op
                self._insert_chunk(kind, keep, source, keep_digest=digest)
        return dropped, cutoff

    def file_bytes(self) -> int:
        """Bytes on disk: the database file plus its WAL."""
        return sum(os.path.getsize(p) for p in (self.path, self.path + "-wal") if os.path.exists(p))

    def reclaim_space(self) -> None:
        """Give the pages freed by deletes back to the file system.

        ``VACUUM`` rewrites the file without its free pages (needs free disk
        space about the size of the kept data while it runs); a database
        created with ``auto_vacuum=INCREMENTAL`` uses ``incremental_vacuum``
        instead. In WAL mode the rewritten pages first land in the WAL, so a
        ``TRUNCATE`` checkpoint copies them back and truncates both files:
        without it the file would only shrink at some later checkpoint.
        """
        if self.db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
            self.db.execute("PRAGMA incremental_vacuum").fetchall()
        else:
            self.db.execute("VACUUM")
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    # --- funding ----------------------------------------------------------------

    def append_funding(self, records: np.ndarray) -> None:
        with self.write():
            self.db.executemany(
                "INSERT OR REPLACE INTO funding(ts, rate) VALUES (?, ?)",
                [(int(r["ts"]), float(r["rate"])) for r in records],
            )

    def load_funding(self) -> np.ndarray:
        rows = self.db.execute("SELECT ts, rate FROM funding ORDER BY ts").fetchall()
        out = np.zeros(len(rows), dtype=FUNDING_DTYPE)
        if rows:
            out["ts"] = [r[0] for r in rows]
            out["rate"] = [r[1] for r in rows]
        return out

    # --- imports log ------------------------------------------------------------

    def log_import(self, source: str, fmt: str, rows_ok: int, rows_bad: int, rows_new: int) -> None:
        with self.write():
            self.db.execute(
                "INSERT INTO imports(source, format, rows_ok, rows_bad, rows_new) VALUES (?, ?, ?, ?, ?)",
                (source, fmt, rows_ok, rows_bad, rows_new),
            )

    # --- runs ---------------------------------------------------------------

    def put_run(self, run_id: str, mode: str, settings: dict[str, Any], summary: dict[str, Any],
                sweep: bool = False) -> None:
        """Write a run's ``runs`` row (call inside the caller's transaction).

        A sweep row (``sweep=True``, marked ``"sweep": true``) replaces only an
        earlier sweep's row: a ``pbdtui backtest`` row of the same run id holds
        the same figures plus the equity curve and its trade rows, and is kept.
        """
        config_json = json.dumps(settings, sort_keys=True)
        if not sweep:
            self.db.execute("INSERT OR REPLACE INTO runs(run_id, mode, config_json, summary_json) VALUES (?, ?, ?, ?)",
                            (run_id, mode, config_json, json.dumps(summary, sort_keys=True)))
            return
        self.db.execute(
            "INSERT INTO runs(run_id, mode, config_json, summary_json) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(run_id) DO UPDATE SET mode=excluded.mode, config_json=excluded.config_json, "
            "summary_json=excluded.summary_json WHERE json_extract(runs.summary_json, '$.sweep') IS 1",
            (run_id, mode, config_json, json.dumps(summary | {"sweep": True}, sort_keys=True)),
        )

    # --- derived tables -----------------------------------------------------

    def replace_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                     where: str = "", args: Sequence[Any] = ()) -> None:
        """Delete ``table`` rows matching ``where`` (all when empty), then insert ``rows``."""
        placeholders = ", ".join("?" for _ in columns)
        with self.write():
            self.db.execute(f"DELETE FROM {table}" + (f" WHERE {where}" if where else ""), tuple(args))
            self.db.executemany(f"INSERT INTO {table}({', '.join(columns)}) VALUES ({placeholders})", rows)

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        placeholders = ", ".join("?" for _ in columns)
        with self.write():
            self.db.executemany(
                f"INSERT OR REPLACE INTO {table}({', '.join(columns)}) VALUES ({placeholders})", rows
            )

    def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.db.execute(sql, tuple(args)).fetchall()


def instrument_of(settings: Any) -> Instrument:
    """The Instrument a Settings object trades."""
    return Instrument(settings.symbol, settings.tick_size, settings.qty_step)
