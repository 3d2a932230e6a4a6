"""The recorder: one writer thread that stores what the live runtime receives and computes.

Received ticks and funding rates are committed in one transaction at least
every ``commit_interval`` seconds (1 s by default; the live driver uses 0.25 s),
so a crash loses at most that much; fills (``trades_exec``, with the
exchange's ``exec_id``) are committed at once, and a restart records any
execution a killed run had not (``engine.runtime.trading``); closed minutes are appended to ``bars_1m``/``features_1m``/
``signals_1m`` as they close (``INSERT OR REPLACE`` of those rows, never a
rewrite of the tables). A failed commit (disk full, a locked database) is
logged and counted, and the batch is kept and retried at the next interval,
so nothing received is dropped while the process lives.

Many one-second batches would leave the tick table in tens of thousands of
tiny chunks, and every later read pays per chunk; ``compact_chunks`` merges
runs of small chunks that the live edge has left behind into chunks of up
to ``CHUNK_ROWS`` rows. The raw-tick retention purge (``retention_hours``)
runs on the same thread every ``purge_interval`` seconds (no VACUUM: freed
pages are reused by the next inserts, and a VACUUM would block the writer),
on a live database only: a new database is marked live, an archive one
(``engine.store`` ``raw_retention``) keeps its history.

Trade ids repeated across reconnects are dropped by the feed client before
they get here (``engine.adapters.bybit.ws``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

import numpy as np

from engine.records import bar_rows, feature_rows, fill_rows, signal_rows, units_of
from engine.store import (
    BARS_COLUMNS,
    CHUNK_ROWS,
    FEATURES_COLUMNS,
    KIND_DTYPES,
    LIVE,
    SIGNALS_COLUMNS,
    TRADES_EXEC_COLUMNS,
    Store,
    instrument_of,
)
from engine.types import FUNDING_DTYPE

log = logging.getLogger("pbdtui.recorder")

SOURCE = "live"  # tick_chunks.source of recorded chunks


def compact_chunks(store: Store, kind: str, before_ts: int, small_rows: int = CHUNK_ROWS // 16,
                   min_chunks: int = 16) -> int:
    """Merge consecutive small ``kind`` chunks that end before ``before_ts``; returns chunks removed.

    Only chunks adjacent in ``chunk_id`` order among the kind's chunks are
    merged, and the merged chunk takes the first one's id, so rows with equal
    timestamps keep the order a reader sees (``Store.load_ticks`` sorts
    stably in ``chunk_id`` order).
    """
    rows = store.db.execute(
        "SELECT chunk_id, n, ts_last, source FROM tick_chunks WHERE kind=? ORDER BY chunk_id", (kind,)).fetchall()
    runs: list[list[tuple[int, int]]] = []
    current: list[tuple[int, int]] = []
    for chunk_id, n, ts_last, source in rows:
        if n < small_rows and ts_last < before_ts and source == SOURCE:
            current.append((chunk_id, n))
            if sum(c[1] for c in current) >= CHUNK_ROWS:
                runs.append(current)
                current = []
        else:
            if current:
                runs.append(current)
            current = []
    if current:
        runs.append(current)
    removed = 0
    dtype = KIND_DTYPES[kind]
    with store.write():
        for run in runs:
            if len(run) < min_chunks:
                continue
            ids = [c[0] for c in run]
            parts = [store.read_chunk(kind, i) for i in ids]
            merged = np.concatenate(parts)
            merged = merged[np.argsort(merged["ts"], kind="stable")]
            data = np.ascontiguousarray(merged, dtype=dtype).tobytes()
            digest = f"compact-{kind}-{ids[0]}-{ids[-1]}-{len(merged)}"
            store.db.execute(f"DELETE FROM tick_chunks WHERE chunk_id IN ({', '.join('?' for _ in ids)})", ids)
            store.db.execute(
                "INSERT INTO tick_chunks(chunk_id, kind, ts_first, ts_last, n, digest, source, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (ids[0], kind, int(merged["ts"][0]), int(merged["ts"][-1]), len(merged), digest, SOURCE, data))
            removed += len(ids) - 1
    return removed


class Recorder:
    """Stores ticks and minute rows from any thread through one writer thread.

    Args:
        path: the database (created when missing, bound to the settings' instrument).
        settings: instrument, retention.
        run_id: ``signals_1m.run_id`` of the minutes recorded.
        commit_interval: seconds between commits of received ticks (at most).
        purge_interval: seconds between retention purges (None: never).
        compact_interval: seconds between chunk compactions.
        busy_timeout_ms: how long a commit waits for another writer's lock before it fails (and is retried).
    """

    def __init__(self, path: str, settings: Any, run_id: str = "live", commit_interval: float = 1.0,
                 purge_interval: float | None = 600.0, compact_interval: float = 60.0,
                 busy_timeout_ms: int = 10_000):
        self.path = str(path)
        self.settings = settings
        self.run_id = run_id
        self.commit_interval = commit_interval
        self.purge_interval = purge_interval
        self.compact_interval = compact_interval
        self.busy_timeout_ms = busy_timeout_ms
        self.units = units_of(settings)
        self._q: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()  # commands: flush, commit, close
        # received rows wait here, not in the queue: a put per batch wakes the writer thread and
        # costs a GIL hand-over each time (measured: a third of the feed path at 40k frames/s)
        self._lock = threading.Lock()
        self._ticks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._minutes: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, str | None]] = []
        self._gaps: list[tuple[int, int]] = []  # feed gaps (exchange ms) to flag on minutes already recorded
        # gaps flagged whose last minute is not stored yet: flagged again on the minutes that come (the
        # engine holds one gap at a time, and a later one may replace it before this one's minutes close)
        self._open_gaps: list[tuple[int, int]] = []
        self.purged_to = 0  # the last retention purge's cutoff (exchange ms): no raw tick older is stored
        self._thread = threading.Thread(target=self._run, name="pbdtui-recorder", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.counters = {"trades": 0, "quotes": 0, "funding": 0, "minutes": 0, "fills": 0, "commits": 0,
                         "commit_errors": 0, "purged": 0, "compacted": 0}

    # --- any thread ---------------------------------------------------------------

    def start(self) -> Recorder:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def ticks(self, trades: np.ndarray, quotes: np.ndarray, funding: np.ndarray | None = None) -> None:
        """Hand over received rows (kept by reference: the caller must not modify them afterwards)."""
        with self._lock:
            self._ticks.append((trades, quotes, np.zeros(0, FUNDING_DTYPE) if funding is None else funding))

    def minutes(self, bars: np.ndarray, features: np.ndarray, signals: np.ndarray,
                fills: np.ndarray | None = None, exec_id: str | None = None) -> None:
        """Hand over closed minutes' rows and fills (engine records, kept by reference).

        Fills (``exec_id``: the exchange execution they record) are committed at once, not at the
        next interval: an execution is rarer and dearer than a tick.
        """
        if len(bars) or (fills is not None and len(fills)):
            with self._lock:
                self._minutes.append((bars, features, signals, fills, exec_id))
            if fills is not None and len(fills):
                self._q.put(("commit", None))

    def flag_gap(self, from_ms: int, to_ms: int) -> None:
        """Flag ``feed_gap`` on the stored minutes from ``from_ms`` to ``to_ms`` (exchange ms, inclusive).

        A silent stall is only known once the client's silence limit has
        passed; by then the live clock may have closed (and this recorder
        stored) minutes of the outage as quiet ones. The engine marks the
        minutes not yet closed; this marks the stored rows of those already
        closed, in the commit after their own rows, so every minute an outage
        touched is flagged in ``features_1m``.
        """
        if from_ms > 0 and to_ms >= from_ms:
            with self._lock:
                self._gaps.append((int(from_ms), int(to_ms)))

    def flush(self, timeout: float = 30.0) -> bool:
        """Commit everything queued so far; True once it is on disk."""
        done = threading.Event()
        self._q.put(("flush", done))
        return done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is queued and stop the writer."""
        if self._thread.is_alive():
            self._q.put(("close", None))
            self._thread.join(timeout)

    # --- writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            store = Store(self.path, instrument_of(self.settings), wait_ms=self.busy_timeout_ms)
            store.claim_retention(LIVE)  # a new database is a live one; an archive stays one
            if self.purge_interval is not None and store.retention() != LIVE:
                log.info("recorder: %s is an archive database: raw ticks are kept (no %d h retention purge)",
                         self.path, self.settings.retention_hours)
        except BaseException as exc:  # noqa: BLE001 - handed to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        pending: dict[str, list[np.ndarray]] = {"trade": [], "quote": [], "funding": []}
        minute_rows: list[tuple[list, list, list]] = []
        gap_spans: list[tuple[int, int]] = []
        waiters: list[threading.Event] = []
        last_commit = last_purge = last_compact = time.monotonic()
        closing = False
        with store:
            while True:
                timeout = max(0.0, self.commit_interval - (time.monotonic() - last_commit))
                try:
                    kind, payload = self._q.get(timeout=timeout)
                except queue.Empty:
                    kind, payload = "tick", None
                with self._lock:
                    ticks, self._ticks = self._ticks, []
                    minutes, self._minutes = self._minutes, []
                    gaps, self._gaps = self._gaps, []
                for tr, qu, fu in ticks:
                    pending["trade"].append(tr)
                    pending["quote"].append(qu)
                    pending["funding"].append(fu)
                for bars, feats, sigs, fills, exec_id in minutes:
                    minute_rows.append((bar_rows(bars, self.units),
                                        feature_rows(feats, self.units, self.settings.base_bin_ticks),
                                        signal_rows(sigs, self.run_id),
                                        [] if fills is None else fill_rows(fills, self.units, self.run_id,
                                                                           exec_id)))
                gap_spans.extend(gaps)
                if kind == "flush":
                    waiters.append(payload)
                elif kind == "close":
                    closing = True
                now = time.monotonic()
                if waiters or closing or kind == "commit" or now - last_commit >= self.commit_interval:
                    if self._commit(store, pending, minute_rows, gap_spans):
                        for w in waiters:
                            w.set()
                        waiters.clear()
                    last_commit = now
                if self.purge_interval is not None and now - last_purge >= self.purge_interval:
                    self._purge(store)
                    last_purge = now
                if now - last_compact >= self.compact_interval:
                    self._compact(store)
                    last_compact = now
                if closing:
                    self._compact(store)
                    for w in waiters:
                        w.set()
                    return

    def _commit(self, store: Store, pending: dict[str, list[np.ndarray]], minute_rows: list,
                gap_spans: list[tuple[int, int]] | None = None) -> bool:
        gap_spans = [] if gap_spans is None else gap_spans
        if not any(pending.values()) and not minute_rows and not gap_spans:
            return True
        counts = {"trades": 0, "quotes": 0, "funding": 0, "minutes": 0, "fills": 0}
        try:
            with store.write():
                for kind in ("trade", "quote"):
                    arrs = [a for a in pending[kind] if len(a)]
                    if arrs:
                        rows = np.concatenate(arrs)
                        rows = rows[np.argsort(rows["ts"], kind="stable")]
                        store.append_ticks(kind, rows, SOURCE)
                        counts[kind + "s"] = len(rows)
                fund = [a for a in pending["funding"] if len(a)]
                if fund:
                    rows = np.concatenate(fund)
                    store.append_funding(rows)
                    counts["funding"] = len(rows)
                for bars, feats, sigs, fills in minute_rows:
                    store.insert_rows("bars_1m", BARS_COLUMNS, bars)
                    store.insert_rows("features_1m", FEATURES_COLUMNS, feats)
                    store.insert_rows("signals_1m", SIGNALS_COLUMNS, sigs)
                    store.insert_rows("trades_exec", TRADES_EXEC_COLUMNS, fills)
                    counts["minutes"] += len(bars)
                    counts["fills"] += len(fills)
                spans = self._open_gaps + gap_spans
                newest = -1
                if minute_rows or gap_spans:
                    for lo, hi in spans:
                        store.db.execute("UPDATE features_1m SET feed_gap = 1 WHERE ts_min >= ? AND ts_min <= ?",
                                         (lo // 60_000 * 60_000, hi // 60_000 * 60_000))
                    newest = store.fetch("SELECT COALESCE(MAX(ts_min), -1) FROM features_1m")[0][0]
        except Exception as exc:  # noqa: BLE001 - kept and retried: a lost batch is worse than a late one
            self.counters["commit_errors"] += 1
            log.error("recorder: commit failed, will retry: %s", exc)
            return False
        for v in pending.values():
            v.clear()
        minute_rows.clear()
        gap_spans.clear()
        if newest >= 0:
            self._open_gaps = [(lo, hi) for lo, hi in spans if hi // 60_000 * 60_000 > newest]
        for key, n in counts.items():
            self.counters[key] += n
        self.counters["commits"] += 1
        return True

    def _purge(self, store: Store) -> None:
        try:
            if store.retention() != LIVE:
                return
            dropped, cutoff = store.purge_raw(self.settings.retention_hours * 3_600_000)
            self.counters["purged"] += dropped
            self.purged_to = max(self.purged_to, cutoff)
        except Exception as exc:  # noqa: BLE001 - the next interval tries again
            log.error("recorder: retention purge failed: %s", exc)

    def _compact(self, store: Store) -> None:
        rng = store.tick_range()
        if rng is None:
            return
        try:
            for kind in ("trade", "quote"):
                self.counters["compacted"] += compact_chunks(store, kind, rng[1] - 120_000)
        except Exception as exc:  # noqa: BLE001 - compaction is an optimisation; reads stay correct
            log.error("recorder: compaction failed: %s", exc)
