"""Consecutive time slices of a store's ticks, for paced drivers."""

from __future__ import annotations

import numpy as np

from engine.store import Store
from engine.types import QUOTE_DTYPE, TRADE_DTYPE

MINUTE_MS = 60_000


class TickCursor:
    """Hands out consecutive time slices of a store's ticks, loading ahead in windows.

    ``Store.load_ticks`` reads whole chunks (up to 2**18 ticks each), so
    loading every one-second slice from SQL would re-read the same BLOB
    hundreds of times; the cursor loads ``window_ms`` of event time at once
    and cuts slices from memory.
    """

    def __init__(self, store: Store, start_ms: int, window_ms: int = 10 * MINUTE_MS):
        self.store = store
        self.window_ms = window_ms
        self.loaded_to = start_ms
        self.trades = np.zeros(0, TRADE_DTYPE)
        self.quotes = np.zeros(0, QUOTE_DTYPE)

    def take(self, ts_to: int) -> tuple[np.ndarray, np.ndarray]:
        """Ticks with ts before ``ts_to`` not handed out yet, in ts order."""
        if ts_to > self.loaded_to:
            new_to = max(ts_to, self.loaded_to + self.window_ms)
            more_t = self.store.load_ticks("trade", self.loaded_to, new_to)
            more_q = self.store.load_ticks("quote", self.loaded_to, new_to)
            self.trades = np.concatenate([self.trades, more_t]) if len(self.trades) else more_t
            self.quotes = np.concatenate([self.quotes, more_q]) if len(self.quotes) else more_q
            self.loaded_to = new_to
        i = int(np.searchsorted(self.trades["ts"], ts_to, "left"))
        j = int(np.searchsorted(self.quotes["ts"], ts_to, "left"))
        out = self.trades[:i], self.quotes[:j]
        self.trades, self.quotes = self.trades[i:], self.quotes[j:]
        return out

    def next_ts(self) -> int | None:
        """Exchange time of the next tick not handed out yet, or None at the end of the data."""
        firsts = [int(a["ts"][0]) for a in (self.trades, self.quotes) if len(a)]
        if firsts:
            return min(firsts)
        return self.store.next_tick_ts(self.loaded_to)  # nothing buffered: none before loaded_to
