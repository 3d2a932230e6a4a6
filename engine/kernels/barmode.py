"""Mode 2 backtest: stored minute bars and features instead of ticks.

The setups are the tick engine's own (``strategy.decide`` on the same
look-back ring); only the fill model differs: market orders fill on the
decision minute's close snapshot (bid/ask) stamped at the next minute's open,
and stops and targets are read from each later bar's high and low.

A gap in the stored rows is a segment boundary (within a segment every
minute has a row, SPEC_NOTES "Long gaps"): the look-backs restart there.

``Engine.run_bars`` drives it like the tick loop: the next stored row is
``SI_MIN_ROW``, and a full signal, fill or intent buffer returns its ERR_*
code (checked before a row starts, so a row is never half done) for the
caller to flush and call again.
"""

from __future__ import annotations

from numba import njit

from engine.kernels.features import MINUTE_MS, push_lookback
from engine.kernels.paper import bar_exits, on_quote
from engine.kernels.state import (
    C_FILLS,
    C_INTENTS,
    C_ROWS,
    ERR_FILLS_FULL,
    ERR_INTENTS_FULL,
    ERR_NONE,
    ERR_ROWS_FULL,
    SI_MIN_ROW,
    SI_NBARS,
    SI_Q_ASK,
    SI_Q_BID,
    SI_Q_TS,
    SI_SEG_ROW,
)
from engine.kernels.strategy import decide, on_time, start_segment


@njit(cache=True, nogil=True)
def run_bars(bars, feats, p, st, sigs, fills, intents, counts):
    """Run the stored minutes from row ``SI_MIN_ROW`` on; ERR_NONE or a full buffer's ERR_*."""
    si = st.si
    i = si[SI_MIN_ROW]
    while i < bars.shape[0]:
        n = counts[C_ROWS]
        if n >= sigs.shape[0]:
            return ERR_ROWS_FULL
        if counts[C_FILLS] + 3 > fills.shape[0]:
            return ERR_FILLS_FULL
        if counts[C_INTENTS] + 2 > intents.shape[0]:
            return ERR_INTENTS_FULL
        t = bars["ts_min"][i]
        counts[C_FILLS] = bar_exits(st, p, t, bars["open"][i], bars["high"][i], bars["low"][i], fills,
                                    counts[C_FILLS])
        if bars["has_quote"][i] == 1:
            si[SI_Q_TS] = t + MINUTE_MS - 1
            si[SI_Q_BID] = bars["bid_px"][i]
            si[SI_Q_ASK] = bars["ask_px"][i]
        on_time(si, st.sf, p, t + MINUTE_MS - 1)
        if i > 0 and t - bars["ts_min"][i - 1] > MINUTE_MS:
            si[SI_SEG_ROW] = i
            start_segment(si)
        i_bar = i - si[SI_SEG_ROW]
        push_lookback(st, i_bar, bars["close"][i], bars["high"][i], bars["low"][i], feats["vah"][i],
                      feats["val"][i], feats["poc2"][i], feats["va_valid"][i] == 1)
        si[SI_NBARS] = i_bar + 1
        decide(st, p, t, feats[i:i + 1], sigs[n:n + 1], intents, counts)
        if bars["has_quote"][i] == 1:
            # the outstanding order (if any) fills on this minute's close snapshot
            counts[C_FILLS] = on_quote(si, st.sf, p, t + MINUTE_MS, bars["bid_px"][i], bars["ask_px"][i], fills,
                                       counts[C_FILLS])
        i += 1
        si[SI_MIN_ROW] = i
        counts[C_ROWS] = n + 1
    return ERR_NONE
