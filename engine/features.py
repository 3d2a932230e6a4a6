"""Batch driver: stored ticks -> ``bars_1m`` and ``features_1m``.

Streams the stored chunks (zero-copy slices) through a features-only
engine, so memory stays bounded by a couple of chunks, and
replaces both tables in one transaction at the end: a failure midway leaves
the previous tables intact.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.engine import Engine, concat
from engine.records import bar_rows, feature_rows, units_of
from engine.store import BARS_COLUMNS, FEATURES_COLUMNS, Store
from engine.types import READY

log = logging.getLogger("pbdtui.features")


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


def compute_minutes(store: Store, settings: Any) -> Minutes:
    """The features-only pass over every stored tick, chunk by chunk."""
    engine = Engine(settings, trading=False)
    parts = []
    n_trades = n_quotes = 0
    kernel = 0.0
    for trades, quotes in store.iter_event_slices():
        n_trades += len(trades)
        n_quotes += len(quotes)
        t0 = time.perf_counter()
        parts.append(engine.feed(trades, quotes))
        kernel += time.perf_counter() - t0
    parts.append(engine.finish())
    if engine.late_events:
        log.warning("features: %d events older than their minute were dropped", engine.late_events)
    out = concat(parts)
    return Minutes(out.bars, out.features, n_trades, n_quotes, kernel, engine.late_events)


def write_minute_tables(store: Store, settings: Any, bars: np.ndarray, features: np.ndarray) -> None:
    """Replace ``bars_1m`` and ``features_1m`` with these records, in one transaction."""
    units = units_of(settings)
    with store.db:
        store.replace_rows("bars_1m", BARS_COLUMNS, bar_rows(bars, units))
        store.replace_rows("features_1m", FEATURES_COLUMNS, feature_rows(features, units, settings.base_bin_ticks))


def compute_features_to_store(store: Store, settings: Any) -> FeatureSummary:
    """(Re)compute ``bars_1m`` and ``features_1m`` from every stored tick."""
    started = time.perf_counter()
    m = compute_minutes(store, settings)
    write_minute_tables(store, settings, m.bars, m.features)
    ready = int((m.features["ready"] == READY).sum())
    return FeatureSummary(len(m.bars), m.trades, m.quotes, time.perf_counter() - started, m.kernel_seconds,
                          ready, m.late_events)
