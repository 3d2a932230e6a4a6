"""What the loopback venue serves: a store's ticks (or arrays) as one timeline of market items.

The timeline merges trades, L1 quotes and funding rates in exchange time
(at equal ms: funding, then the quote, then trades, as the engine orders
them). Trades of one millisecond go out as one ``publicTrade`` frame (at
most 1024, as Bybit splits them); a quote equal to the previous one is
skipped (Bybit's L1 stream pushes only changes); every second of exchange
time a ticker item carries mark/last price. Items carry the market state
at their time (current L1 and its time, last trade price, funding rate),
so a connection that subscribes mid-stream gets snapshots that fit the
frames that follow it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.store import Instrument, Store, StoreError
from engine.types import FUNDING_DTYPE, QUOTE_DTYPE, TRADE_DTYPE

MAX_TRADES_PER_FRAME = 1024
TICKER_EVERY_MS = 1000

TRADE, QUOTE, FUNDING, TICK = "T", "Q", "F", "K"


class Item:
    """One market event of the timeline and the state after it."""

    __slots__ = ("kind", "ts", "trades", "l1", "l1_ts", "last_px", "rate", "text")

    def __init__(self, kind: str, ts: int, trades: np.ndarray | None, l1: tuple[int, int, int, int] | None,
                 l1_ts: int, last_px: int | None, rate: float | None):
        self.kind = kind
        self.ts = ts
        self.trades = trades  # TRADE rows of a TRADE item
        self.l1 = l1  # L1 after this item (the quote itself for a QUOTE item)
        self.l1_ts = l1_ts  # exchange time of that L1
        self.last_px = last_px
        self.rate = rate  # funding rate in force
        self.text = ""  # the frame, encoded once by the venue (trades, ticker deltas)


@dataclass
class ArraySource:
    """Ticks held in memory (tests)."""

    instrument: Instrument
    trades: np.ndarray
    quotes: np.ndarray
    funding: np.ndarray

    def slices(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        yield np.sort(self.trades, order="ts", kind="stable"), np.sort(self.quotes, order="ts", kind="stable")


class StoreSource:
    """A store's ticks, chunk by chunk (memory bounded by a chunk), optionally a time range.

    Args:
        path: the database (opened read-only; its own instrument is served).
        start_ms, end_ms: serve ticks with ``start_ms <= ts < end_ms`` only.
    """

    def __init__(self, path: str | os.PathLike[str], start_ms: int | None = None, end_ms: int | None = None):
        self.path = str(path)
        if not Path(self.path).is_file():
            raise FileNotFoundError(f"{self.path}: no such file")
        self.store = Store(self.path, readonly=True)
        if self.store.instrument is None:
            self.store.close()
            raise StoreError(f"{self.path}: holds no ticks (no instrument recorded)")
        self.instrument = self.store.instrument
        self.start_ms, self.end_ms = start_ms, end_ms
        funding = self.store.load_funding()
        if end_ms is not None:
            funding = funding[funding["ts"] < end_ms]
        if start_ms is not None:  # an earlier rate would also start the venue's pacing hours early
            funding = funding[funding["ts"] >= start_ms]
        self.funding = funding

    def slices(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        lo = -(1 << 62) if self.start_ms is None else self.start_ms
        hi = 1 << 62 if self.end_ms is None else self.end_ms
        for trades, quotes in self.store.iter_event_slices():
            t, q = trades["ts"], quotes["ts"]
            trades = trades[(t >= lo) & (t < hi)]
            quotes = quotes[(q >= lo) & (q < hi)]
            if len(trades) or len(quotes):
                yield trades, quotes

    def close(self) -> None:
        self.store.close()


def timeline(source: Any) -> Iterator[Item]:
    """The merged items of ``source`` (``slices()`` in ts order, ``funding``, ``instrument``)."""
    funding = np.asarray(source.funding, dtype=FUNDING_DTYPE)
    f_ts, f_rate = funding["ts"].tolist(), funding["rate"].tolist()
    nf, fi = len(f_ts), 0
    rate: float | None = f_rate[0] if nf else None
    l1: tuple[int, int, int, int] | None = None
    l1_ts = 0
    last_px: int | None = None
    next_tick: int | None = None
    for trades, quotes in source.slices():
        trades = np.asarray(trades, dtype=TRADE_DTYPE)
        quotes = np.asarray(quotes, dtype=QUOTE_DTYPE)
        tts = trades["ts"].tolist()
        tpx = trades["px"].tolist()
        qts = quotes["ts"].tolist()
        qrows = list(zip(quotes["bid_px"].tolist(), quotes["bid_sz"].tolist(), quotes["ask_px"].tolist(),
                         quotes["ask_sz"].tolist(), strict=True))
        nt, nq = len(tts), len(qts)
        i = j = 0
        while i < nt or j < nq:
            take_quote = j < nq and (i >= nt or qts[j] <= tts[i])
            ts = qts[j] if take_quote else tts[i]
            while fi < nf and f_ts[fi] <= ts:
                rate = f_rate[fi]
                yield Item(FUNDING, f_ts[fi], None, l1, l1_ts, last_px, rate)
                fi += 1
            if next_tick is None:
                next_tick = (ts // TICKER_EVERY_MS + 1) * TICKER_EVERY_MS
            elif ts >= next_tick and l1 is not None:
                yield Item(TICK, next_tick, None, l1, l1_ts, last_px, rate)
                next_tick = (ts // TICKER_EVERY_MS + 1) * TICKER_EVERY_MS
            if take_quote:
                q = qrows[j]
                j += 1
                if q == l1:
                    continue
                l1, l1_ts = q, ts
                yield Item(QUOTE, ts, None, l1, l1_ts, last_px, rate)
            else:
                k = i + 1
                while k < nt and tts[k] == ts and k - i < MAX_TRADES_PER_FRAME:
                    k += 1
                last_px = tpx[k - 1]
                yield Item(TRADE, ts, trades[i:k], l1, l1_ts, last_px, rate)
                i = k
    while fi < nf:
        rate = f_rate[fi]
        yield Item(FUNDING, f_ts[fi], None, l1, l1_ts, last_px, rate)
        fi += 1


def synth_database(settings: Any, days: float, seed: int, directory: Path | None = None,
                   log: Any = None) -> Path:
    """A simulated session's database, reused when complete, else generated (``engine.synth``)."""
    from engine.synth import session_database

    return session_database(settings, f"exchange-sim-{days:g}d-{seed}", days, seed, directory, log)
