"""Minute pass: quotes and funding against precomputed minute rows (the sweep's fast path).

For a sweep, combinations that share every feature parameter produce the
same bars and features; only the strategy and execution differ. This loop
runs the tick engine's own ``decide`` / ``on_quote`` / ``on_time`` in the
same order as ``loop.run_events`` (minute close, then the event's on_time,
then the quote), but takes each closed minute from ``bars``/``feats``
instead of recomputing it, and skips trades (fills only ever read quotes).
It gives byte-identical signals and fills to a full tick run with the same
settings (tested), at a fraction of the work.

The stored rows are the whole run's (``Engine.feed_minutes`` holds them);
the next row to decide is ``SI_MIN_ROW`` in the state, so calls resume
like ``loop.run_events``: each call's signals go to its own buffer at
``counts[C_ROWS]``, and a full signal, fill or intent buffer returns its
ERR_* code for the caller to flush and call again.

Segments (SPEC_NOTES, long gaps) are read from ``feats["segment_ts"]``: a
quote at or after a new segment's first event first decides the old
segment's minutes, then starts the new segment the way the tick loop does
(look-backs, quote state, pending entry), so both stay byte-identical.
"""

from __future__ import annotations

from numba import njit

from engine.kernels import strategy as sk
from engine.kernels.features import MINUTE_MS, push_lookback
from engine.kernels.features import on_quote as feature_on_quote
from engine.kernels.loop import BIG_TS
from engine.kernels.paper import on_quote as paper_on_quote
from engine.kernels.state import (
    C_FILLS,
    C_FUNDING,
    C_INTENTS,
    C_QUOTES,
    C_ROWS,
    ERR_FILLS_FULL,
    ERR_INTENTS_FULL,
    ERR_NONE,
    ERR_ROWS_FULL,
    SF_FUNDING_RATE,
    SI_ERROR,
    SI_MIN_ROW,
    SI_NBARS,
    SI_NEXT_SEG_ROW,
    SI_PQ_TS,
    SI_Q_TS,
    SI_SEG_ROW,
)
from engine.kernels.strategy import decide, on_time


@njit(cache=True, nogil=True)
def _next_segment_row(feats, row):
    """First row after ``row`` that starts a new segment (or the row count)."""
    n = feats.shape[0]
    r = row + 1
    while r < n and feats["segment_ts"][r] == feats["segment_ts"][r - 1]:
        r += 1
    return r


@njit(cache=True, nogil=True)
def _begin_segment(st, feats, row):
    """The tick loop's segment start, from the strategy's side (features are stored)."""
    si = st.si
    si[SI_SEG_ROW] = row
    si[SI_Q_TS] = -1
    si[SI_PQ_TS] = -1
    sk.start_segment(si)
    si[SI_NEXT_SEG_ROW] = _next_segment_row(feats, row)


@njit(cache=True, nogil=True)
def _close_rows(st, p, until_min, bars, feats, sigs, intents, counts):
    """Decide on every stored minute before ``until_min`` not yet decided; False when an output buffer is full."""
    si = st.si
    row = si[SI_MIN_ROW]
    if si[SI_NEXT_SEG_ROW] == 0:
        si[SI_NEXT_SEG_ROW] = _next_segment_row(feats, 0)
    while row < bars.shape[0] and bars["ts_min"][row] < until_min:
        n = counts[C_ROWS]
        if n >= sigs.shape[0]:
            si[SI_ERROR] = ERR_ROWS_FULL
            return False
        if counts[C_INTENTS] + 2 > intents.shape[0]:
            si[SI_ERROR] = ERR_INTENTS_FULL
            return False
        if row == si[SI_NEXT_SEG_ROW]:
            _begin_segment(st, feats, row)
        i_bar = row - si[SI_SEG_ROW]
        push_lookback(st, i_bar, bars["close"][row], bars["high"][row], bars["low"][row], feats["vah"][row],
                      feats["val"][row], feats["poc2"][row], feats["va_valid"][row] == 1)
        si[SI_NBARS] = i_bar + 1
        decide(st, p, bars["ts_min"][row], feats[row:row + 1], sigs[n:n + 1], intents, counts)
        row += 1
        si[SI_MIN_ROW] = row
        counts[C_ROWS] = n + 1
    return True


@njit(cache=True, nogil=True)
def quotes_on_minutes(quotes, funding, bars, feats, p, st, sigs, fills, intents, counts):
    """Run quotes and funding (each sorted) against the stored minutes (paper mode).

    ``counts``: C_QUOTES / C_FUNDING into this call's inputs, C_ROWS /
    C_FILLS / C_INTENTS into this call's output buffers; the stored row to
    decide next is ``SI_MIN_ROW``. Returns ERR_NONE, or ERR_FILLS_FULL /
    ERR_ROWS_FULL / ERR_INTENTS_FULL (flush that buffer, call again).
    """
    si = st.si
    sf = st.sf
    iq = counts[C_QUOTES]
    ifu = counts[C_FUNDING]
    nq = quotes.shape[0]
    nfu = funding.shape[0]
    n_rows = bars.shape[0]
    if si[SI_NEXT_SEG_ROW] == 0:
        si[SI_NEXT_SEG_ROW] = _next_segment_row(feats, 0)
    while iq < nq or ifu < nfu:
        q_ts = quotes["ts"][iq] if iq < nq else BIG_TS
        f_ts = funding["ts"][ifu] if ifu < nfu else BIG_TS
        if f_ts <= q_ts:
            # funding records only set the rate, as in loop.run_events
            sf[SF_FUNDING_RATE] = funding["rate"][ifu]
            ifu += 1
            continue
        ts = q_ts
        if counts[C_FILLS] + 3 > fills.shape[0]:
            counts[C_QUOTES] = iq
            counts[C_FUNDING] = ifu
            return ERR_FILLS_FULL
        nxt = si[SI_NEXT_SEG_ROW]
        if nxt < n_rows and si[SI_SEG_ROW] != nxt and ts >= feats["segment_ts"][nxt]:
            # the first quote of a new segment: the old one's minutes first
            if not _close_rows(st, p, bars["ts_min"][nxt], bars, feats, sigs, intents, counts):
                counts[C_QUOTES] = iq
                counts[C_FUNDING] = ifu
                return si[SI_ERROR]
            _begin_segment(st, feats, nxt)
        # test inline first: calling with the state tuple costs 24 refcount updates
        row = si[SI_MIN_ROW]
        if row < n_rows and bars["ts_min"][row] + MINUTE_MS <= ts:
            if not _close_rows(st, p, (ts // MINUTE_MS) * MINUTE_MS, bars, feats, sigs, intents, counts):
                counts[C_QUOTES] = iq
                counts[C_FUNDING] = ifu
                return si[SI_ERROR]
        on_time(si, sf, p, ts)
        bid = quotes["bid_px"][iq]
        ask = quotes["ask_px"][iq]
        feature_on_quote(si, ts, bid, quotes["bid_sz"][iq], ask, quotes["ask_sz"][iq])
        counts[C_FILLS] = paper_on_quote(si, sf, p, ts, bid, ask, fills, counts[C_FILLS])
        iq += 1
    counts[C_QUOTES] = iq
    counts[C_FUNDING] = ifu
    return ERR_NONE


@njit(cache=True, nogil=True)
def minutes_finish(bars, feats, p, st, sigs, intents, counts):
    """Decide on the stored minutes left after the last quote (end of data); ERR_NONE or a full buffer's ERR_*."""
    if not _close_rows(st, p, bars["ts_min"][bars.shape[0] - 1] + MINUTE_MS if bars.shape[0] else 0,
                       bars, feats, sigs, intents, counts):
        return st.si[SI_ERROR]
    return ERR_NONE
