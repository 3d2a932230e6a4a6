"""The engine step: merge trades, quotes and funding in time order and run them.

``run_events`` is the one loop every driver calls (backtest with whole
windows, replay with paced slices, live with a few events at a time). A
minute closes when the first event of a later minute arrives, through
``close_now``, which the live driver also calls when the wall clock passes a
minute's end: both paths run the same close routine.

Order at equal ms: funding, then quotes, then trades. No feature depends on
it (a trade only sees quotes strictly earlier than itself), and fills only
see quotes strictly after a decision.
"""

from __future__ import annotations

from numba import njit

from engine.kernels.features import MINUTE_MS, close_minute, fifo_room, on_trade
from engine.kernels.features import on_quote as feature_on_quote
from engine.kernels.params import P_TRADING
from engine.kernels.state import (
    ERR_FIFO_FULL,
    ERR_FILLS_FULL,
    ERR_NONE,
    SF_FUNDING_RATE,
    SI_CUR_MIN,
    SI_ERROR,
    SI_LAST_EVENT_TS,
    SI_LATE,
)
from engine.kernels.strategy import decide, on_time
from engine.kernels.strategy import on_quote as strategy_on_quote

# counts[] slots: inputs consumed (for resuming after an error) and rows written
C_TRADES = 0
C_QUOTES = 1
C_FUNDING = 2
C_ROWS = 3  # bar / feature / signal rows written
C_FILLS = 4
N_COUNTS = 5

BIG_TS = 2**62


@njit(cache=True, nogil=True)
def _close_through(st, p, until_min, bars, feats, sigs, fills, counts):
    """Close every open minute before ``until_min``. False if the FIFO is full."""
    si = st.si
    trading = p[P_TRADING] != 0.0
    while si[SI_CUR_MIN] < until_min:
        if not fifo_room(st):
            si[SI_ERROR] = ERR_FIFO_FULL
            return False
        n = counts[C_ROWS]
        t = si[SI_CUR_MIN]
        if close_minute(st, p, t, bars, feats, n):
            decide(st, p, t, feats[n:n + 1], sigs[n:n + 1], trading)
            counts[C_ROWS] = n + 1
        si[SI_CUR_MIN] = t + MINUTE_MS
    return True


@njit(cache=True, nogil=True)
def run_events(trades, quotes, funding, p, st, bars, feats, sigs, fills, counts):
    """Process all events not yet consumed (``counts`` holds resume positions).

    Returns ERR_NONE, or an ERR_* code with ``counts`` pointing at the first
    unprocessed event of each input so the caller can fix the state (grow the
    FIFO) and call again.
    """
    # the state tuple is unpacked once: passing it to per-event calls would cost
    # 24 atomic reference-count updates each
    si = st.si
    sf = st.sf
    hist = st.hist
    mhist = st.mhist
    touched = st.touched
    trading = p[P_TRADING] != 0.0
    it = counts[C_TRADES]
    iq = counts[C_QUOTES]
    ifu = counts[C_FUNDING]
    nt = trades.shape[0]
    nq = quotes.shape[0]
    nfu = funding.shape[0]
    while it < nt or iq < nq or ifu < nfu:
        t_ts = trades["ts"][it] if it < nt else BIG_TS
        q_ts = quotes["ts"][iq] if iq < nq else BIG_TS
        f_ts = funding["ts"][ifu] if ifu < nfu else BIG_TS
        if f_ts <= q_ts and f_ts <= t_ts:
            kind = 2
            ts = f_ts
        elif q_ts <= t_ts:
            kind = 1
            ts = q_ts
        else:
            kind = 0
            ts = t_ts
        minute = (ts // MINUTE_MS) * MINUTE_MS
        if si[SI_CUR_MIN] < 0:
            si[SI_CUR_MIN] = minute
        elif minute < si[SI_CUR_MIN]:
            # older than the open minute: its minute is already closed
            si[SI_LATE] += 1
            if kind == 0:
                it += 1
            elif kind == 1:
                iq += 1
            else:
                ifu += 1
            continue
        elif minute > si[SI_CUR_MIN]:
            if not _close_through(st, p, minute, bars, feats, sigs, fills, counts):
                counts[C_TRADES] = it
                counts[C_QUOTES] = iq
                counts[C_FUNDING] = ifu
                return si[SI_ERROR]
        if kind == 2:
            # a rate stamped at a settlement applies to that settlement: set it before on_time charges
            sf[SF_FUNDING_RATE] = funding["rate"][ifu]
        if trading:
            on_time(si, sf, p, ts)
        if kind == 0:
            if not on_trade(si, sf, hist, mhist, touched, p, ts, trades["px"][it], trades["qty"][it],
                            trades["side"][it]):
                counts[C_TRADES] = it
                counts[C_QUOTES] = iq
                counts[C_FUNDING] = ifu
                return si[SI_ERROR]
            it += 1
        elif kind == 1:
            bid = quotes["bid_px"][iq]
            ask = quotes["ask_px"][iq]
            if trading and counts[C_FILLS] + 3 > fills.shape[0]:
                counts[C_TRADES] = it
                counts[C_QUOTES] = iq
                counts[C_FUNDING] = ifu
                return ERR_FILLS_FULL
            feature_on_quote(si, ts, bid, quotes["bid_sz"][iq], ask, quotes["ask_sz"][iq])
            if trading:
                counts[C_FILLS] = strategy_on_quote(si, sf, p, ts, bid, ask, fills, counts[C_FILLS])
            iq += 1
        else:
            ifu += 1
        si[SI_LAST_EVENT_TS] = ts
    counts[C_TRADES] = it
    counts[C_QUOTES] = iq
    counts[C_FUNDING] = ifu
    return ERR_NONE


@njit(cache=True, nogil=True)
def close_now(st, p, until_ts, bars, feats, sigs, fills, counts):
    """Close every minute that ends before ``until_ts`` (end of data, or wall clock live)."""
    si = st.si
    if si[SI_CUR_MIN] < 0:
        return ERR_NONE
    until_min = (until_ts // MINUTE_MS) * MINUTE_MS
    if not _close_through(st, p, until_min, bars, feats, sigs, fills, counts):
        return si[SI_ERROR]
    return ERR_NONE


def rows_needed(st, first_ts: int, last_ts: int) -> int:
    """Upper bound of minute rows a call can close for events in [first_ts, last_ts]."""
    cur = int(st.si[SI_CUR_MIN])
    start = first_ts if cur < 0 else cur
    return max(0, (last_ts // MINUTE_MS) - (start // MINUTE_MS)) + 2

