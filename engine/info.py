"""``pbdtui data info``: what a database holds, without changing it.

Instrument, raw ticks per kind (rows, chunks, bytes, first/last time),
funding, the derived tables, the import log, gaps in the raw data and the
file's size and free pages.

Gaps are computed per minute of event time, but never by walking the span
minute by minute (a database holding two windows 15 months apart would be
650,000 minutes): each chunk is turned into the runs of consecutive minutes
that hold at least one of its events (a chunk covering fewer than three
minutes cannot hide an empty minute and is not even read), the runs of both
kinds are merged, and the holes between merged runs are the gaps. Work and
memory are proportional to the stored ticks' chunks and gaps, not to the
span.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import apsw
import numpy as np

from engine.store import KIND_DTYPES, MINUTE_MS, Store, StoreError
from engine.timerange import duration_text, utc_text

DERIVED = ("bars_1m", "features_1m")
RUN_TABLES = ("signals_1m", "trades_exec")


@dataclass(frozen=True)
class Gap:
    """Whole minutes without a trade or a quote: ``[start_ms, end_ms)``, both on minute boundaries."""

    start_ms: int  # the first empty minute
    end_ms: int  # the first minute with events again

    @property
    def minutes(self) -> int:
        return (self.end_ms - self.start_ms) // MINUTE_MS


def _minute_runs(store: Store, kind: str) -> list[tuple[int, int]]:
    """(first, last) minute numbers of the runs of consecutive minutes holding a ``kind`` event."""
    runs = []
    for chunk_id, first, last in store.chunk_index(kind):
        a, b = first // MINUTE_MS, last // MINUTE_MS
        if b - a < 2:  # no whole minute fits strictly between a and b
            runs.append((a, b))
            continue
        m = store.read_chunk(kind, chunk_id)["ts"] // MINUTE_MS
        cut = np.flatnonzero(np.diff(m) > 1)
        starts = np.concatenate(([m[0]], m[cut + 1]))
        ends = np.concatenate((m[cut], [m[-1]]))
        runs.extend(zip(starts.tolist(), ends.tolist(), strict=True))
    return runs


def event_gaps(store: Store, min_minutes: int = 1) -> list[Gap]:
    """Every gap of at least ``min_minutes`` whole minutes without any trade or quote, in time order."""
    runs = sorted(r for kind in KIND_DTYPES for r in _minute_runs(store, kind))
    gaps = []
    if not runs:
        return gaps
    end = runs[0][1]
    for a, b in runs[1:]:
        if a - end - 1 >= min_minutes:
            gaps.append(Gap((end + 1) * MINUTE_MS, a * MINUTE_MS))
        end = max(end, b)
    return gaps


def _span(first: int | None, last: int | None, ms: bool = False) -> dict[str, Any]:
    if first is None or last is None:
        return {"first_ts": None, "last_ts": None, "first": None, "last": None}
    return {"first_ts": int(first), "last_ts": int(last), "first": utc_text(int(first), ms),
            "last": utc_text(int(last), ms)}


def _has_table(store: Store, name: str) -> bool:
    return bool(store.fetch("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)))


def store_info(store: Store, min_gap_minutes: int = 1, top: int = 10, window_minutes: int | None = None
               ) -> dict[str, Any]:
    """Everything ``pbdtui data info`` shows, as plain JSON-able values (deterministic for a given file).

    Args:
        store: an open store (read-only is enough).
        min_gap_minutes: report gaps of at least this many whole minutes without events.
        top: how many of the longest gaps to list.
        window_minutes: the rolling window; gaps longer than it are flagged
            as segment breaks (features restart from empty after them).

    Raises:
        StoreError: the file is not a pbdtui database.
    """
    try:
        if not _has_table(store, "tick_chunks"):
            raise StoreError(f"{store.path}: not a pbdtui database (no tick_chunks table)")
        doc: dict[str, Any] = {"path": store.path, "schema_version": store.meta("schema_version")}
        inst = store.instrument
        doc["instrument"] = None if inst is None else {
            "symbol": inst.symbol, "tick_size": inst.tick_size, "qty_step": inst.qty_step}
        doc["retention"] = store.retention()
        raw = {}
        for kind in KIND_DTYPES:
            rows, chunks, size, first, last = store.fetch(
                "SELECT COALESCE(SUM(n), 0), COUNT(*), COALESCE(SUM(length(data)), 0), MIN(ts_first), MAX(ts_last) "
                "FROM tick_chunks WHERE kind=?", (kind,))[0]
            raw[kind] = {"rows": int(rows), "chunks": int(chunks), "bytes": int(size), **_span(first, last, ms=True)}
        doc["raw"] = raw
        rows, first, last = store.fetch("SELECT COUNT(*), MIN(ts), MAX(ts) FROM funding")[0]
        doc["funding"] = {"rows": int(rows), **_span(first, last)}
        derived: dict[str, Any] = {}
        for table in DERIVED:
            rows, first, last = store.fetch(f"SELECT COUNT(*), MIN(ts_min), MAX(ts_min) FROM {table}")[0]
            derived[table] = {"rows": int(rows), **_span(first, last)}
        for table in RUN_TABLES:
            rows, runs = store.fetch(f"SELECT COUNT(*), COUNT(DISTINCT run_id) FROM {table}")[0]
            derived[table] = {"rows": int(rows), "runs": int(runs)}
        by_mode = dict(store.fetch("SELECT mode, COUNT(*) FROM runs GROUP BY mode ORDER BY mode"))
        derived["runs"] = {"rows": sum(by_mode.values()), "by_mode": by_mode}
        doc["derived"] = derived
        imports = store.fetch("SELECT source, format, rows_ok, rows_bad, rows_new FROM imports ORDER BY seq")
        doc["imports"] = {"count": len(imports), "recent": [
            {"source": s, "format": f, "rows_ok": ok, "rows_bad": bad, "rows_new": new}
            for s, f, ok, bad, new in imports[-5:]]}
        gaps = event_gaps(store, max(1, int(min_gap_minutes)))
        longest = sorted(gaps, key=lambda g: (-g.minutes, g.start_ms))[:max(0, int(top))]
        doc["gaps"] = {
            "min_minutes": max(1, int(min_gap_minutes)),
            "count": len(gaps),
            "total_minutes": sum(g.minutes for g in gaps),
            "window_minutes": window_minutes,
            "longest": [{"start_ts": g.start_ms, "end_ts": g.end_ms, "start": utc_text(g.start_ms),
                         "end": utc_text(g.end_ms), "minutes": g.minutes,
                         "segment_break": window_minutes is not None and g.minutes > window_minutes}
                        for g in longest],
        }
        page_size = int(store.fetch("PRAGMA page_size")[0][0])
        pages = int(store.fetch("PRAGMA page_count")[0][0])
        free = int(store.fetch("PRAGMA freelist_count")[0][0])
    except apsw.Error as exc:
        raise StoreError(f"{store.path}: cannot read database: {exc}") from exc
    wal = store.path + "-wal"
    doc["file"] = {"bytes": os.path.getsize(store.path), "wal_bytes": os.path.getsize(wal) if os.path.exists(wal) else 0,
                   "page_size": page_size, "page_count": pages, "free_pages": free, "free_bytes": free * page_size}
    return doc


def size_text(n: int) -> str:
    """``12.3 MB`` (decimal units, as ``ls -lh --si`` and disk tools show)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def info_text(doc: dict[str, Any]) -> str:
    """The human-readable ``data info`` report (times UTC)."""
    lines = [f"database {doc['path']} (schema {doc['schema_version']})"]
    inst = doc["instrument"]
    lines.append("  instrument  " + ("none bound yet" if inst is None else
                                     f"{inst['symbol']}  tick_size {inst['tick_size']:g}  qty_step {inst['qty_step']:g}"))
    lines.append("  retention   " + ("live: the recorder purges raw ticks past retention_hours"
                                     if doc["retention"] == "live" else "archive: raw ticks are kept"))
    lines.append("raw ticks (UTC)")
    for kind, r in doc["raw"].items():
        span = f"{r['first']} .. {r['last']}" if r["rows"] else "-"
        lines.append(f"  {kind + 's':<12}{r['rows']:>12} rows  {r['chunks']:>5} chunks  {size_text(r['bytes']):>9}  {span}")
    f = doc["funding"]
    lines.append(f"  {'funding':<12}{f['rows']:>12} rows" + (f"  {f['first']} .. {f['last']}" if f["rows"] else ""))
    lines.append("derived tables")
    for table in DERIVED:
        d = doc["derived"][table]
        lines.append(f"  {table:<12}{d['rows']:>12} rows" + (f"  {d['first']} .. {d['last']}" if d["rows"] else ""))
    for table in RUN_TABLES:
        d = doc["derived"][table]
        lines.append(f"  {table:<12}{d['rows']:>12} rows  {d['runs']} run(s)")
    runs = doc["derived"]["runs"]
    modes = ", ".join(f"{m} {n}" for m, n in runs["by_mode"].items())
    lines.append(f"  {'runs':<12}{runs['rows']:>12} rows" + (f"  ({modes})" if modes else ""))
    g = doc["gaps"]
    what = "a whole minute" if g["min_minutes"] == 1 else f"{g['min_minutes']} whole minutes"
    if g["count"] == 0:
        lines.append(f"gaps (at least {what} without a trade or quote): none")
    else:
        lines.append(f"gaps (at least {what} without a trade or quote): {g['count']}, "
                     f"{duration_text(g['total_minutes'] * MINUTE_MS)} in all; longest first:")
        for gap in g["longest"]:
            flag = "  (new segment: longer than the rolling window)" if gap["segment_break"] else ""
            lines.append(f"  {gap['start']} .. {gap['end']}  {duration_text(gap['minutes'] * MINUTE_MS)}{flag}")
        if g["count"] > len(g["longest"]):
            lines.append(f"  ... and {g['count'] - len(g['longest'])} shorter")
    imp = doc["imports"]
    if imp["count"]:
        lines.append(f"imports: {imp['count']}" + (f" (last {len(imp['recent'])})" if imp["count"] > len(imp["recent"]) else ""))
        for r in imp["recent"]:
            lines.append(f"  {r['format']:<13}{os.path.basename(r['source'])}: {r['rows_ok']} rows, {r['rows_new']} new, "
                         f"{r['rows_bad']} bad")
    fi = doc["file"]
    lines.append(f"file: {size_text(fi['bytes'])} ({fi['page_count']} pages of {fi['page_size']} B, "
                 f"{fi['free_pages']} free = {size_text(fi['free_bytes'])})"
                 + (f" + WAL {size_text(fi['wal_bytes'])}" if fi["wal_bytes"] else ""))
    return "\n".join(lines) + "\n"
