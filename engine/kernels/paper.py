"""The paper fill model: the execution backend that runs inline in the numba loop (paper and backtest mode).

The strategy (``engine.kernels.strategy.decide``) emits an intent and leaves
it as the outstanding order (``SI_PEND_*``), with its stop and target; this
model fills it on the quote stream and holds the stop and target as an
exchange would. Every fill it makes goes through
``engine.kernels.position.apply_fill``, the one writer of position and PnL,
so paper and exchange fills change the position the same way.

SPEC_NOTES "Fills": market orders fill on the first quote strictly after
their decision time, buys at ask + slippage, sells at bid - slippage; a stop
or target triggers on the first quote that crosses it and fills on that
quote with exit slippage. Bar mode (``bar_exits``) reads stops and targets
from a bar's range instead.

Why the outstanding order lives in the state and not in the intent buffer:
the buffer is per call and flushed to the caller, while an order decided at
a minute close fills on a quote that may arrive in a later call.
"""

from __future__ import annotations

from numba import njit

from engine.kernels.params import (
    P_FEE_BPS,
    P_QTY,
    P_QTY_STEP,
    P_SLIP_BPS,
    P_SLIP_ENTRY,
    P_SLIP_EXIT,
    P_TICK,
)
from engine.kernels.position import apply_fill
from engine.kernels.state import (
    SI_FILLS,
    SI_FLATTEN,
    SI_PEND_ACTION,
    SI_PEND_REASON,
    SI_PEND_STOP,
    SI_PEND_TAG,
    SI_PEND_TARGET,
    SI_PEND_TS,
    SI_POS,
    SI_STOP,
    SI_TAG,
    SI_TARGET,
)
from engine.types import (
    ACTION_ENTER_LONG,
    ACTION_EXIT,
    EXIT_FLATTEN,
    EXIT_SIGNAL,
    EXIT_STOP,
    EXIT_TARGET,
    ORDER_MARKET,
    SIDE_BUY,
    SIDE_SELL,
)


@njit(cache=True, nogil=True)
def slip(p, touch_px, ticks_param):
    """Slippage in ticks for an order against ``touch_px`` (bps of the price when set, else fixed ticks)."""
    if p[P_SLIP_BPS] > 0.0:
        return int(round(touch_px * p[P_SLIP_BPS] * 1e-4))
    return int(p[ticks_param])


@njit(cache=True, nogil=True)
def _emit_fill(si, sf, p, fills, nf, ts_submit, ts_fill, side, qty, px, touch, mid2, tag, reason, level2, stop,
               target2):
    """Price the fee, apply the fill to the position and write its record."""
    notional = px * p[P_TICK] * qty * p[P_QTY_STEP]
    fee = notional * p[P_FEE_BPS] * 1e-4
    opening, gross, net, funding = apply_fill(si, sf, p, side, qty, px, fee, ts_fill, tag, stop, target2)
    si[SI_FILLS] += 1
    f = fills[nf:nf + 1]
    f["fill_id"][0] = si[SI_FILLS]
    f["ts_submit"][0] = ts_submit
    f["ts_fill"][0] = ts_fill
    f["side"][0] = side
    f["qty"][0] = qty
    f["order_type"][0] = ORDER_MARKET
    f["px"][0] = px
    f["touch_px"][0] = touch
    f["mid2"][0] = mid2
    f["fee"][0] = fee
    f["tag"][0] = tag
    f["reason"][0] = reason
    f["opening"][0] = 1 if opening else 0
    f["level2"][0] = level2
    f["funding"][0] = funding
    f["pnl_realized"][0] = net
    f["pnl_gross"][0] = gross
    return nf + 1


@njit(cache=True, nogil=True)
def _close_at(si, sf, p, fills, nf, ts_submit, ts, bid, ask, reason, level2):
    """Close the whole open position on the quote (bid, ask) with exit slippage.

    ``level2`` is the stop or target (doubled ticks) that triggered the exit, 0 for other exits.
    """
    mid2 = bid + ask
    qty = abs(si[SI_POS])
    if si[SI_POS] > 0:
        px = bid - slip(p, bid, P_SLIP_EXIT)
        return _emit_fill(si, sf, p, fills, nf, ts_submit, ts, SIDE_SELL, qty, px, bid, mid2, si[SI_TAG], reason,
                          level2, 0, 0)
    px = ask + slip(p, ask, P_SLIP_EXIT)
    return _emit_fill(si, sf, p, fills, nf, ts_submit, ts, SIDE_BUY, qty, px, ask, mid2, si[SI_TAG], reason,
                      level2, 0, 0)


@njit(cache=True, nogil=True)
def _open_at(si, sf, p, fills, nf, ts_submit, ts, bid, ask, direction, tag, stop, target2):
    mid2 = bid + ask
    qty = int(p[P_QTY])
    if direction > 0:
        px = ask + slip(p, ask, P_SLIP_ENTRY)
        return _emit_fill(si, sf, p, fills, nf, ts_submit, ts, SIDE_BUY, qty, px, ask, mid2, tag, 0, 0, stop,
                          target2)
    px = bid - slip(p, bid, P_SLIP_ENTRY)
    return _emit_fill(si, sf, p, fills, nf, ts_submit, ts, SIDE_SELL, qty, px, bid, mid2, tag, 0, 0, stop, target2)


@njit(cache=True, nogil=True)
def on_quote(si, sf, p, ts, bid, ask, fills, nf):
    """Paper execution on one quote: the outstanding order, flatten, stops and targets.

    Returns the new fill count. Takes the scalar vectors, not the state tuple:
    this runs for every quote, and passing the 12-array tuple costs 24 atomic
    reference-count updates.
    """
    if si[SI_FLATTEN] > 0 and ts > si[SI_FLATTEN]:
        if si[SI_POS] != 0:
            nf = _close_at(si, sf, p, fills, nf, si[SI_FLATTEN], ts, bid, ask, EXIT_FLATTEN, 0)
        si[SI_FLATTEN] = 0
        si[SI_PEND_ACTION] = 0
        return nf
    action = si[SI_PEND_ACTION]
    if action != 0 and ts > si[SI_PEND_TS]:
        si[SI_PEND_ACTION] = 0
        if action == ACTION_EXIT:
            if si[SI_POS] != 0:
                nf = _close_at(si, sf, p, fills, nf, si[SI_PEND_TS], ts, bid, ask, si[SI_PEND_REASON], 0)
            return nf
        direction = 1 if action == ACTION_ENTER_LONG else -1
        if si[SI_POS] * direction < 0:
            nf = _close_at(si, sf, p, fills, nf, si[SI_PEND_TS], ts, bid, ask, EXIT_SIGNAL, 0)
        if si[SI_POS] != 0:
            return nf
        nf = _open_at(si, sf, p, fills, nf, si[SI_PEND_TS], ts, bid, ask, direction,
                      si[SI_PEND_TAG], si[SI_PEND_STOP], si[SI_PEND_TARGET])
        # the filling quote may already cross the new stop or target: check it too
    pos = si[SI_POS]
    if pos > 0:
        if bid <= si[SI_STOP]:
            nf = _close_at(si, sf, p, fills, nf, ts, ts, bid, ask, EXIT_STOP, 2 * si[SI_STOP])
        elif si[SI_TARGET] > 0 and 2 * bid >= si[SI_TARGET]:
            nf = _close_at(si, sf, p, fills, nf, ts, ts, bid, ask, EXIT_TARGET, si[SI_TARGET])
    elif pos < 0:
        if si[SI_STOP] > 0 and ask >= si[SI_STOP]:
            nf = _close_at(si, sf, p, fills, nf, ts, ts, bid, ask, EXIT_STOP, 2 * si[SI_STOP])
        elif si[SI_TARGET] > 0 and 2 * ask <= si[SI_TARGET]:
            nf = _close_at(si, sf, p, fills, nf, ts, ts, bid, ask, EXIT_TARGET, si[SI_TARGET])
    return nf


# --- bar mode (spec 9.1 mode 2) -------------------------------------------------


@njit(cache=True, nogil=True)
def _level_exit(st, p, fills, nf, t, level, reason, level2):
    """Close at a price level (bar mode has no quotes): the level is both bid and ask."""
    return _close_at(st.si, st.sf, p, fills, nf, t, t, level, level, reason, level2)


@njit(cache=True, nogil=True)
def bar_exits(st, p, t, open_, high, low, fills, nf):
    """Stops and targets from a bar's range (less exact than the quote stream).

    A stop is assumed hit before a target when both are inside one bar (the
    pessimistic reading); a bar opening beyond the stop fills at the open.
    """
    si = st.si
    pos = si[SI_POS]
    if pos == 0:
        return nf
    stop = si[SI_STOP]
    t2 = si[SI_TARGET]
    if pos > 0:
        if low <= stop:
            return _level_exit(st, p, fills, nf, t, min(open_, stop), EXIT_STOP, 2 * stop)
        if t2 > 0 and 2 * high >= t2:
            return _level_exit(st, p, fills, nf, t, max(open_, (t2 + 1) // 2), EXIT_TARGET, t2)
    else:
        if stop > 0 and high >= stop:
            return _level_exit(st, p, fills, nf, t, max(open_, stop), EXIT_STOP, 2 * stop)
        if t2 > 0 and 2 * low <= t2:
            return _level_exit(st, p, fills, nf, t, min(open_, t2 // 2), EXIT_TARGET, t2)
    return nf
