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

from engine.engine import Engine
from engine.records import bar_rows, feature_rows, units_of
from engine.store import BARS_COLUMNS, FEATURES_COLUMNS, Store

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


def compute_features_to_store(store: Store, settings: Any) -> FeatureSummary:
    """(Re)compute ``bars_1m`` and ``features_1m`` from every stored tick."""
    started = time.perf_counter()
    engine = Engine(settings, trading=False)
    units = units_of(settings)
    bars: list[tuple] = []
    feats: list[tuple] = []
    n_trades = n_quotes = 0
    kernel = 0.0
    ready = 0
    for trades, quotes in store.iter_event_slices():
        n_trades += len(trades)
        n_quotes += len(quotes)
        t0 = time.perf_counter()
        out = engine.feed(trades, quotes)
        kernel += time.perf_counter() - t0
        bars += bar_rows(out.bars, units)
        feats += feature_rows(out.features, units, settings.base_bin_ticks)
        ready += int((out.features["ready"] == 0).sum())
    out = engine.finish()
    bars += bar_rows(out.bars, units)
    feats += feature_rows(out.features, units, settings.base_bin_ticks)
    ready += int((out.features["ready"] == 0).sum())
    with store.db:
        store.replace_rows("bars_1m", BARS_COLUMNS, bars)
        store.replace_rows("features_1m", FEATURES_COLUMNS, feats)
    if engine.late_events:
        log.warning("features: %d events older than their minute were dropped", engine.late_events)
    return FeatureSummary(len(bars), n_trades, n_quotes, time.perf_counter() - started, kernel, ready,
                          engine.late_events)
