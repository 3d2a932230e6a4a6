"""The engine step: merge trades, quotes and funding in time order and run them.

``run_events`` is the one loop every driver calls (backtest with whole
windows, replay with paced slices, live with a few events at a time). A
minute closes when the first event of a later minute arrives, through
``close_now``, which the live driver also calls when the wall clock passes a
minute's end: both paths run the same close routine.

Order at equal ms: funding, then quotes, then trades. No feature depends on
it (a trade only sees quotes strictly earlier than itself), and fills only
see quotes strictly after a decision.

Funding records only set the rate: they are not market events, so they
neither close minutes nor end a gap (a rate published during an outage
must not create minute rows inside it). Risk-day rolls and funding charges
happen on the next trade or quote, as they do for every event.

Long gaps (SPEC_NOTES, Bars): a trade or quote more than a window after the
previous one first closes the old segment's minutes, then starts a new
segment (``features.start_segment`` and ``strategy.start_segment``), so no
rows are made inside the gap and nothing is allocated in proportion to it.
"""

from __future__ import annotations

from numba import njit

from engine.kernels import features as fk
from engine.kernels import strategy as sk
from engine.kernels.features import MINUTE_MS, close_minute, fifo_room, on_trade
from engine.kernels.features import on_quote as feature_on_quote
from engine.kernels.paper import on_quote as paper_on_quote
from engine.kernels.params import P_WINDOW
from engine.kernels.state import (  # noqa: F401 - the counts slots are re-exported for the drivers
    C_FILLS,
    C_FUNDING,
    C_INTENTS,
    C_QUOTES,
    C_ROWS,
    C_TRADES,
    ERR_FIFO_FULL,
    ERR_FILLS_FULL,
    ERR_INTENTS_FULL,
    ERR_NONE,
    ERR_ROWS_FULL,
    N_COUNTS,
    SF_FUNDING_RATE,
    SI_CUR_MIN,
    SI_ERROR,
    SI_LAST_EVENT_TS,
    SI_LATE,
    SI_MODE,
    SI_SEG_TS,
)
from engine.kernels.strategy import decide, on_time, watch_quote
from engine.types import MODE_EXTERNAL, MODE_PAPER, MODE_SIGNALS

BIG_TS = 2**62


@njit(cache=True, nogil=True)
def _close_through(st, p, until_min, bars, feats, sigs, fills, intents, counts):
    """Close every open minute before ``until_min``. False if the FIFO or an output buffer is full."""
    si = st.si
    while si[SI_CUR_MIN] < until_min:
        if not fifo_room(st):
            si[SI_ERROR] = ERR_FIFO_FULL
            return False
        n = counts[C_ROWS]
        if n >= bars.shape[0]:
            si[SI_ERROR] = ERR_ROWS_FULL
            return False
        if counts[C_INTENTS] + 2 > intents.shape[0]:  # a decision emits at most two (a flip)
            si[SI_ERROR] = ERR_INTENTS_FULL
            return False
        t = si[SI_CUR_MIN]
        if close_minute(st, p, t, bars, feats, n):
            decide(st, p, t, feats[n:n + 1], sigs[n:n + 1], intents, counts)
            counts[C_ROWS] = n + 1
        si[SI_CUR_MIN] = t + MINUTE_MS
    return True


@njit(cache=True, nogil=True)
def run_events(trades, quotes, funding, p, st, bars, feats, sigs, fills, intents, counts):
    """Process all events not yet consumed (``counts`` holds resume positions).

    Returns ERR_NONE, or an ERR_* code with ``counts`` pointing at the first
    unprocessed event of each input so the caller can fix the state (grow the
    FIFO, flush a full buffer) and call again.

    The engine mode (``SI_MODE``) decides the execution side: signals mode
    runs features and signals only; paper mode fills intents inline with the
    paper model (``engine.kernels.paper``); external mode only publishes
    intents (and exit intents when a stop or target is crossed), and the
    position changes by the exchange's fills through ``Engine.apply_fill``.
    """
    # the state tuple is unpacked once: passing it to per-event calls would cost
    # 24 atomic reference-count updates each
    si = st.si
    sf = st.sf
    hist = st.hist
    mhist = st.mhist
    hside = st.hside
    mside = st.mside
    touched = st.touched
    mode = si[SI_MODE]  # switched only between calls (Engine.set_mode)
    trading = mode != MODE_SIGNALS
    paper = mode == MODE_PAPER
    external = mode == MODE_EXTERNAL
    it = counts[C_TRADES]
    iq = counts[C_QUOTES]
    ifu = counts[C_FUNDING]
    nt = trades.shape[0]
    nq = quotes.shape[0]
    nfu = funding.shape[0]
    window_ms = int(p[P_WINDOW]) * MINUTE_MS
    while it < nt or iq < nq or ifu < nfu:
        t_ts = trades["ts"][it] if it < nt else BIG_TS
        q_ts = quotes["ts"][iq] if iq < nq else BIG_TS
        f_ts = funding["ts"][ifu] if ifu < nfu else BIG_TS
        if f_ts <= q_ts and f_ts <= t_ts:
            # a rate stamped at a settlement applies to that settlement: the charge
            # happens on the next trade or quote, after this
            sf[SF_FUNDING_RATE] = funding["rate"][ifu]
            ifu += 1
            continue
        if q_ts <= t_ts:
            kind = 1
            ts = q_ts
        else:
            kind = 0
            ts = t_ts
        minute = (ts // MINUTE_MS) * MINUTE_MS
        if si[SI_CUR_MIN] < 0:
            si[SI_CUR_MIN] = minute
            si[SI_SEG_TS] = ts
        elif minute < si[SI_CUR_MIN]:
            # older than the open minute: its minute is already closed
            si[SI_LATE] += 1
            if kind == 0:
                it += 1
            else:
                iq += 1
            continue
        elif ts - si[SI_LAST_EVENT_TS] > window_ms:
            # a long gap: close what the old segment has, then start afresh
            last_min = (si[SI_LAST_EVENT_TS] // MINUTE_MS) * MINUTE_MS
            if not _close_through(st, p, last_min + MINUTE_MS, bars, feats, sigs, fills, intents, counts):
                counts[C_TRADES] = it
                counts[C_QUOTES] = iq
                counts[C_FUNDING] = ifu
                return si[SI_ERROR]
            fk.start_segment(st, ts)
            sk.start_segment(si)
            si[SI_CUR_MIN] = minute
        elif minute > si[SI_CUR_MIN]:
            if not _close_through(st, p, minute, bars, feats, sigs, fills, intents, counts):
                counts[C_TRADES] = it
                counts[C_QUOTES] = iq
                counts[C_FUNDING] = ifu
                return si[SI_ERROR]
        if trading:
            on_time(si, sf, p, ts)
        if kind == 0:
            if not on_trade(si, sf, hist, mhist, hside, mside, touched, p, ts, trades["px"][it], trades["qty"][it],
                            trades["side"][it]):
                counts[C_TRADES] = it
                counts[C_QUOTES] = iq
                counts[C_FUNDING] = ifu
                return si[SI_ERROR]
            it += 1
        else:
            bid = quotes["bid_px"][iq]
            ask = quotes["ask_px"][iq]
            if paper and counts[C_FILLS] + 3 > fills.shape[0]:
                counts[C_TRADES] = it
                counts[C_QUOTES] = iq
                counts[C_FUNDING] = ifu
                return ERR_FILLS_FULL
            if external and counts[C_INTENTS] + 1 > intents.shape[0]:
                counts[C_TRADES] = it
                counts[C_QUOTES] = iq
                counts[C_FUNDING] = ifu
                return ERR_INTENTS_FULL
            feature_on_quote(si, ts, bid, quotes["bid_sz"][iq], ask, quotes["ask_sz"][iq])
            if paper:
                counts[C_FILLS] = paper_on_quote(si, sf, p, ts, bid, ask, fills, counts[C_FILLS])
            elif external:
                watch_quote(si, p, ts, bid, ask, intents, counts)
            iq += 1
        si[SI_LAST_EVENT_TS] = ts
    counts[C_TRADES] = it
    counts[C_QUOTES] = iq
    counts[C_FUNDING] = ifu
    return ERR_NONE


@njit(cache=True, nogil=True)
def close_now(st, p, until_ts, bars, feats, sigs, fills, intents, counts):
    """Close every minute that ends before ``until_ts`` (end of data, or wall clock live).

    Never past a window after the newest event: an event later than that starts
    a new segment, so those minutes would be rows inside a long gap.
    """
    si = st.si
    if si[SI_CUR_MIN] < 0:
        return ERR_NONE
    until_min = (until_ts // MINUTE_MS) * MINUTE_MS
    horizon = ((si[SI_LAST_EVENT_TS] + int(p[P_WINDOW]) * MINUTE_MS) // MINUTE_MS) * MINUTE_MS
    if until_min > horizon:
        until_min = horizon
    if not _close_through(st, p, until_min, bars, feats, sigs, fills, intents, counts):
        return si[SI_ERROR]
    return ERR_NONE


MAX_ROWS_PER_BUFFER = 1 << 12  # a UTC day is 1440 rows; more flushes and goes on


def rows_needed(st, first_ts: int, last_ts: int) -> int:
    """Minute rows to allocate for events in [first_ts, last_ts].

    The span bound, capped: a call that needs more (a span with long gaps
    makes no rows inside them) returns ERR_ROWS_FULL and the caller flushes,
    so memory follows the data, never the time span.
    """
    cur = int(st.si[SI_CUR_MIN])
    start = first_ts if cur < 0 else cur
    return min(MAX_ROWS_PER_BUFFER, max(0, (last_ts // MINUTE_MS) - (start // MINUTE_MS)) + 2)

