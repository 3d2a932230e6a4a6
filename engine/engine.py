"""The engine object every driver uses: state, parameters, feeding, commands.

It wraps the numba loop (``engine.kernels.loop``): allocates outputs for each
call, grows the minute FIFO when a burst needs it, and hands back copies of
the rows a call produced. Drivers differ only in where events come from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.kernels import loop
from engine.kernels.params import make_params
from engine.kernels.state import (
    ERR_FIFO_FULL,
    ERR_FILLS_FULL,
    ERR_NONE,
    ERR_PRICE_RANGE,
    ERR_ROWS_FULL,
    SF_DAY_PNL,
    SF_FEES,
    SF_FUNDING,
    SF_REALIZED,
    SI_CUR_MIN,
    SI_ENTRY_PX,
    SI_ENTRY_TS,
    SI_ERROR,
    SI_GAP_FROM,
    SI_GAP_TO,
    SI_HI,
    SI_KILL_DAILY,
    SI_KILL_MANUAL,
    SI_LAST_EVENT_TS,
    SI_LATE,
    SI_LO,
    SI_NBARS,
    SI_OFFSET,
    SI_POS,
    SI_Q_ASK,
    SI_Q_BID,
    SI_STOP,
    SI_TAG,
    SI_TARGET,
    EngineState,
    grow_fifo,
    new_state,
)
from engine.kernels.strategy import request_flatten
from engine.types import (
    BAR_DTYPE,
    FEATURE_DTYPE,
    FILL_DTYPE,
    FUNDING_DTYPE,
    QUOTE_DTYPE,
    SIGNAL_DTYPE,
    TRADE_DTYPE,
)

_EMPTY_TRADES = np.zeros(0, dtype=TRADE_DTYPE)
_EMPTY_QUOTES = np.zeros(0, dtype=QUOTE_DTYPE)
_EMPTY_FUNDING = np.zeros(0, dtype=FUNDING_DTYPE)


class EngineError(RuntimeError):
    """The engine cannot go on with this input (e.g. prices outside its range)."""


@dataclass
class StepOutput:
    """Rows produced by one call, in minute order (copies, safe to keep)."""

    bars: np.ndarray
    features: np.ndarray
    signals: np.ndarray
    fills: np.ndarray


@dataclass(frozen=True)
class PositionView:
    """A small copy of the position and risk state for screens and reports."""

    position: int
    entry_px: int
    entry_ts: int
    stop: int
    target2: int
    tag: int
    realized: float
    fees: float
    funding: float
    day_pnl: float
    kill_daily: bool
    kill_manual: bool
    bid: int
    ask: int


class Engine:
    """One instrument's engine.

    Args:
        settings: a Settings (or anything with its attributes).
        trading: run signals and paper execution (False: features only).
    """

    def __init__(self, settings: Any, trading: bool = True, hist_bins: int = 1 << 20):
        self.settings = settings
        self.params = make_params(settings, trading=trading)
        self.state: EngineState = new_state(settings.rolling_window_minutes, settings.bvc_lookback, hist_bins=hist_bins)

    # --- feeding ----------------------------------------------------------------

    def feed(self, trades: np.ndarray | None = None, quotes: np.ndarray | None = None,
             funding: np.ndarray | None = None) -> StepOutput:
        """Run events (each array sorted by ts) through the engine."""
        trades = _EMPTY_TRADES if trades is None else trades
        quotes = _EMPTY_QUOTES if quotes is None else quotes
        funding = _EMPTY_FUNDING if funding is None else funding
        _check(trades, TRADE_DTYPE, "trades")
        _check(quotes, QUOTE_DTYPE, "quotes")
        _check(funding, FUNDING_DTYPE, "funding")
        last = max(
            int(trades["ts"][-1]) if len(trades) else -1,
            int(quotes["ts"][-1]) if len(quotes) else -1,
            int(funding["ts"][-1]) if len(funding) else -1,
        )
        if last < 0:
            return self._empty()
        first = min(int(a["ts"][0]) for a in (trades, quotes, funding) if len(a))
        outs = self._alloc(loop.rows_needed(self.state, first, last))
        counts = np.zeros(loop.N_COUNTS, dtype=np.int64)
        parts = []
        while True:
            err = loop.run_events(trades, quotes, funding, self.params, self.state, *outs, counts)
            if err == ERR_NONE:
                break
            if err in (ERR_FILLS_FULL, ERR_ROWS_FULL):
                # hand back what is done, then go on with fresh buffers
                parts.append(self._collect(outs, counts))
                outs = self._alloc(loop.rows_needed(self.state, first, last))
                counts[loop.C_ROWS] = 0
                counts[loop.C_FILLS] = 0
                self.state.si[SI_ERROR] = ERR_NONE
                continue
            self._recover(err)
        parts.append(self._collect(outs, counts))
        return parts[0] if len(parts) == 1 else concat(parts)

    def close_until(self, ts: int) -> StepOutput:
        """Close every minute that ended before ``ts`` (end of data, or the live clock).

        Minutes more than a window after the newest event are not closed: they
        would be rows inside a long gap (SPEC_NOTES, Bars).
        """
        outs = self._alloc(loop.rows_needed(self.state, ts, ts))
        counts = np.zeros(loop.N_COUNTS, dtype=np.int64)
        parts = []
        while True:
            err = loop.close_now(self.state, self.params, ts, *outs, counts)
            if err == ERR_NONE:
                break
            if err == ERR_ROWS_FULL:
                parts.append(self._collect(outs, counts))
                outs = self._alloc(loop.rows_needed(self.state, ts, ts))
                counts[loop.C_ROWS] = 0
                self.state.si[SI_ERROR] = ERR_NONE
                continue
            self._recover(err)
        parts.append(self._collect(outs, counts))
        return parts[0] if len(parts) == 1 else concat(parts)

    def finish(self) -> StepOutput:
        """Close the minute of the newest event if it is still open (end of a finite stream).

        A minute the live clock has already moved past is not closed again,
        and no empty minute after the last event is made.
        """
        cur = int(self.state.si[SI_CUR_MIN])
        last_min = self.last_event_ts // loop.MINUTE_MS * loop.MINUTE_MS
        if cur < 0 or cur > last_min:
            return self._empty()
        return self.close_until(last_min + loop.MINUTE_MS)

    # --- operator commands ------------------------------------------------------

    def set_kill_switch(self, on: bool) -> None:
        """Manual kill switch: no new entries while on (exits still run)."""
        self.state.si[SI_KILL_MANUAL] = 1 if on else 0

    def mark_feed_gap(self, from_ts: int, to_ts: int = 2**62) -> None:
        """The live feed had no data from ``from_ts`` to ``to_ts`` (exchange ms; open-ended by default).

        Every minute the interval touches and that has not closed yet is
        marked (``feed_gap``), counts as a minute without data for readiness,
        and is not entered on (FEED_GAP). Call it when the disconnection or
        stall is detected (open-ended), and again with its end on reconnect.
        """
        self.state.si[SI_GAP_FROM] = int(from_ts)
        self.state.si[SI_GAP_TO] = int(to_ts)

    def flatten(self, ts: int | None = None) -> None:
        """Close any position on the first quote after ``ts`` (default: the newest event)."""
        when = int(self.state.si[SI_LAST_EVENT_TS]) if ts is None else int(ts)
        request_flatten(self.state.si, when)

    # --- views ------------------------------------------------------------------

    def position(self) -> PositionView:
        si, sf = self.state.si, self.state.sf
        return PositionView(
            position=int(si[SI_POS]), entry_px=int(si[SI_ENTRY_PX]), entry_ts=int(si[SI_ENTRY_TS]),
            stop=int(si[SI_STOP]), target2=int(si[SI_TARGET]), tag=int(si[SI_TAG]),
            realized=float(sf[SF_REALIZED]), fees=float(sf[SF_FEES]), funding=float(sf[SF_FUNDING]),
            day_pnl=float(sf[SF_DAY_PNL]), kill_daily=bool(si[SI_KILL_DAILY]),
            kill_manual=bool(si[SI_KILL_MANUAL]), bid=int(si[SI_Q_BID]), ask=int(si[SI_Q_ASK]),
        )

    @property
    def bars_closed(self) -> int:
        return int(self.state.si[SI_NBARS])

    @property
    def late_events(self) -> int:
        return int(self.state.si[SI_LATE])

    @property
    def last_event_ts(self) -> int:
        return int(self.state.si[SI_LAST_EVENT_TS])

    def profile(self) -> tuple[np.ndarray, np.ndarray]:
        """(base bins, volumes in lots) of the rolling profile, for display."""
        si = self.state.si
        lo, hi, off = int(si[SI_LO]), int(si[SI_HI]), int(si[SI_OFFSET])
        if lo > hi:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        vols = self.state.hist[lo - off:hi - off + 1].copy()
        return np.arange(lo, hi + 1, dtype=np.int64), vols

    # --- internals --------------------------------------------------------------

    def _alloc(self, rows: int) -> tuple[np.ndarray, ...]:
        return (
            np.zeros(rows, dtype=BAR_DTYPE),
            np.zeros(rows, dtype=FEATURE_DTYPE),
            np.zeros(rows, dtype=SIGNAL_DTYPE),
            np.zeros(rows * 4 + 16, dtype=FILL_DTYPE),
        )

    def _recover(self, err: int) -> None:
        if err == ERR_FIFO_FULL:
            self.state = grow_fifo(self.state)
            return
        if err == ERR_PRICE_RANGE:
            raise EngineError(
                "prices in the rolling window span more base bins than the histogram holds "
                f"({len(self.state.hist)}); raise base_bin_ticks or check the tick_size of the data"
            )
        raise EngineError(f"engine error code {err}")

    def _collect(self, outs: tuple[np.ndarray, ...], counts: np.ndarray) -> StepOutput:
        n = int(counts[loop.C_ROWS])
        nf = int(counts[loop.C_FILLS])
        return StepOutput(outs[0][:n].copy(), outs[1][:n].copy(), outs[2][:n].copy(), outs[3][:nf].copy())

    def _empty(self) -> StepOutput:
        return StepOutput(*(a[:0] for a in self._alloc(0)))


def _check(arr: np.ndarray, dtype: np.dtype, name: str) -> None:
    if arr.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, not {arr.dtype}")


def concat(outputs: list[StepOutput]) -> StepOutput:
    """Join the outputs of consecutive calls."""
    if not outputs:
        return StepOutput(np.zeros(0, BAR_DTYPE), np.zeros(0, FEATURE_DTYPE), np.zeros(0, SIGNAL_DTYPE),
                          np.zeros(0, FILL_DTYPE))
    return StepOutput(*(np.concatenate([getattr(o, f) for o in outputs])
                        for f in ("bars", "features", "signals", "fills")))
