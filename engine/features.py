"""Batch driver: stored ticks -> ``bars_1m`` and ``features_1m``.

Streams the stored chunks (zero-copy slices) through a features-only
engine, so memory stays bounded by a couple of chunks, and
replaces both tables in one transaction at the end: a failure midway leaves
the previous tables intact.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.engine import Engine, concat
from engine.records import bar_rows, feature_rows, units_of
from engine.store import BARS_COLUMNS, FEATURES_COLUMNS, MINUTE_MS, Store, StoreError
from engine.timerange import range_text
from engine.types import READY

log = logging.getLogger("pbdtui.features")

Progress = Callable[[float, float], None]  # (done, total), called by long passes


@dataclass
class FeatureSummary:
    minutes: int
    trades: int
    quotes: int
    seconds: float
    kernel_seconds: float
    ready_minutes: int
    late_events: int

    def line(self) -> str:
        events = self.trades + self.quotes
        rate = events / self.seconds if self.seconds > 0 else 0.0
        return (
            f"features: {self.minutes} minutes from {self.trades} trades + {self.quotes} quotes "
            f"in {self.seconds:.2f} s ({rate / 1e6:.2f} M events/s end to end, "
            f"{events / max(self.kernel_seconds, 1e-9) / 1e6:.2f} M/s in kernels); "
            f"{self.ready_minutes} minutes signal-ready; {self.late_events} late events dropped"
        )


@dataclass
class Minutes:
    """Bars and features (engine records, ticks and lots) of every stored tick."""

    bars: np.ndarray
    features: np.ndarray
    trades: int
    quotes: int
    kernel_seconds: float
    late_events: int


def compute_minutes(store: Store, settings: Any, start_ms: int | None = None, end_ms: int | None = None,
                    progress: Progress | None = None) -> Minutes:
    """The features-only pass over the stored ticks with ``start_ms <= ts < end_ms``, chunk by chunk.

    A range starts from an empty state, exactly as if the data began at its
    first tick (warm-up included). ``progress(done, total)`` is called after
    each slice with event time covered so far, in ms.

    Raises:
        StoreError: a range holds no ticks.
    """
    rng = store.tick_range(start_ms, end_ms)
    if rng is None and (start_ms is not None or end_ms is not None):
        raise StoreError(f"{store.path}: no ticks {range_text(start_ms, end_ms)}")
    engine = Engine(settings, trading=False)
    parts = []
    n_trades = n_quotes = 0
    kernel = 0.0
    for trades, quotes in store.iter_event_slices(True, start_ms, end_ms):
        n_trades += len(trades)
        n_quotes += len(quotes)
        t0 = time.perf_counter()
        parts.append(engine.feed(trades, quotes))
        kernel += time.perf_counter() - t0
        if progress is not None and rng is not None:
            last = max(int(trades["ts"][-1]) if len(trades) else rng[0], int(quotes["ts"][-1]) if len(quotes) else rng[0])
            progress(last - rng[0], max(1, rng[1] - rng[0]))
    parts.append(engine.finish())
    if engine.late_events:
        log.warning("features: %d events older than their minute were dropped", engine.late_events)
    out = concat(parts)
    return Minutes(out.bars, out.features, n_trades, n_quotes, kernel, engine.late_events)


def write_minute_tables(store: Store, settings: Any, bars: np.ndarray, features: np.ndarray,
                        start_ms: int | None = None, end_ms: int | None = None) -> None:
    """Replace ``bars_1m`` and ``features_1m`` rows with these records, in one transaction.

    Without a range both tables are replaced whole. With one, only the rows
    of the minutes the range touches (``ts_min`` from the minute holding
    ``start_ms`` up to, excluding, ``end_ms``) are deleted first: rows
    outside the range, e.g. from an earlier full run, are kept.
    """
    units = units_of(settings)
    where, args = "", ()
    if start_ms is not None or end_ms is not None:
        lo = -(2**62) if start_ms is None else (start_ms // MINUTE_MS) * MINUTE_MS
        hi = 2**62 if end_ms is None else end_ms
        where, args = "ts_min>=? AND ts_min<?", (lo, hi)
    with store.write():
        store.replace_rows("bars_1m", BARS_COLUMNS, bar_rows(bars, units), where, args)
        store.replace_rows("features_1m", FEATURES_COLUMNS, feature_rows(features, units, settings.base_bin_ticks),
                           where, args)


def compute_features_to_store(store: Store, settings: Any, start_ms: int | None = None, end_ms: int | None = None,
                              progress: Progress | None = None) -> FeatureSummary:
    """(Re)compute ``bars_1m`` and ``features_1m`` from the stored ticks in the range (all when None)."""
    started = time.perf_counter()
    m = compute_minutes(store, settings, start_ms, end_ms, progress)
    write_minute_tables(store, settings, m.bars, m.features, start_ms, end_ms)
    ready = int((m.features["ready"] == READY).sum())
    return FeatureSummary(len(m.bars), m.trades, m.quotes, time.perf_counter() - started, m.kernel_seconds,
                          ready, m.late_events)
