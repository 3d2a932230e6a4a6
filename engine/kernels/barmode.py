"""Mode 2 backtest: stored minute bars and features instead of ticks.

The setups are the tick engine's own (``strategy.decide`` on the same
look-back ring); only the fill model differs: market orders fill on the
decision minute's close snapshot (bid/ask) stamped at the next minute's open,
and stops and targets are read from each later bar's high and low.

A gap in the stored rows is a segment boundary (within a segment every
minute has a row, SPEC_NOTES "Long gaps"): the look-backs restart there.
"""

from __future__ import annotations

from numba import njit

from engine.kernels.features import MINUTE_MS, push_lookback
from engine.kernels.state import SI_NBARS, SI_Q_ASK, SI_Q_BID, SI_Q_TS, SI_SEG_ROW
from engine.kernels.strategy import bar_exits, decide, on_quote, on_time, start_segment


@njit(cache=True, nogil=True)
def run_bars(bars, feats, p, st, sigs, fills):
    """Run every stored minute; returns the number of fills written."""
    si = st.si
    nf = 0
    for i in range(bars.shape[0]):
        t = bars["ts_min"][i]
        if nf + 3 > fills.shape[0]:
            return -1
        nf = bar_exits(st, p, t, bars["open"][i], bars["high"][i], bars["low"][i], fills, nf)
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
        decide(st, p, t, feats[i:i + 1], sigs[i:i + 1], True)
        if bars["has_quote"][i] == 1:
            # the pending order (if any) fills on this minute's close snapshot
            nf = on_quote(si, st.sf, p, t + MINUTE_MS, bars["bid_px"][i], bars["ask_px"][i], fills, nf)
    return nf
