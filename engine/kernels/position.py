"""The position function: the only writer of position and PnL (ARCHITECTURE.md, "Intents out, fills in").

Every fill enters here, whoever made it: the paper fill model
(``engine.kernels.paper``) inline on the quote stream, an exchange fill or a
reconciliation adjustment through ``Engine.apply_fill`` / ``Engine.reconcile``.
Funding charges enter through ``apply_funding``. Nothing else writes
``SI_POS``, the entry price, realized PnL, fees, funding or the day's PnL
and its kill switch.

The position is a quantity: signed lots (> 0 long, < 0 short), so a partial
fill or a reconciled quantity is representable; the entry price is the
fill-weighted average (``SF_ENTRY_AVG``, float ticks, exact while the
position was opened by one fill, which keeps the paper results identical to
the model where the position was a direction). A fill that reduces the
position realizes its share of the entry fees and funding (the whole of them
when it closes the position, so no rounding is introduced there). A fill
must not cross zero: the caller splits it into a closing and an opening
fill (``Engine.apply_fill`` does; the paper model never crosses).
"""

from __future__ import annotations

from numba import njit

from engine.kernels.params import P_MAX_DAILY_LOSS, P_QTY_STEP, P_TICK
from engine.kernels.state import (
    SF_DAY_PNL,
    SF_ENTRY_AVG,
    SF_FEES,
    SF_FUNDING,
    SF_POS_FEES,
    SF_POS_FUNDING,
    SF_REALIZED,
    SI_ENTRY_PX,
    SI_ENTRY_TS,
    SI_EXIT_SENT,
    SI_KILL_DAILY,
    SI_LAST_EXIT_MIN,
    SI_POS,
    SI_STOP,
    SI_TAG,
    SI_TARGET,
)

MINUTE_MS = 60_000


@njit(cache=True, nogil=True)
def apply_fill(si, sf, p, side, qty, px, fee, ts, tag, stop, target2):
    """Apply one fill of ``qty`` lots at ``px`` ticks on ``side`` (SIDE_BUY 1 / SIDE_SELL -1).

    ``fee`` is in quote currency (positive = paid); ``ts`` the fill's exchange
    time. ``tag``, ``stop`` and ``target2`` (doubled ticks, 0 none) are the
    protective levels of a position this fill opens from flat; an adding fill
    keeps those of the open position. A reducing fill must not exceed the
    position (no crossing of zero).

    Returns:
        (opening, gross, net, funding): opening is True when the fill opens or
        adds; for a reducing fill gross is its price PnL, net the realized PnL
        after its share of the entry fees, its own fee and its share of the
        funding, funding that share.
    """
    pos = si[SI_POS]
    sf[SF_FEES] += fee
    if pos == 0 or (pos > 0) == (side > 0):
        if pos == 0:
            sf[SF_ENTRY_AVG] = px
            si[SI_ENTRY_TS] = ts
            si[SI_TAG] = tag
            si[SI_STOP] = stop
            si[SI_TARGET] = target2
            si[SI_EXIT_SENT] = 0
            sf[SF_POS_FEES] = fee
            sf[SF_POS_FUNDING] = 0.0
            si[SI_POS] = side * qty
        else:
            held = abs(pos)
            sf[SF_ENTRY_AVG] = (sf[SF_ENTRY_AVG] * held + px * qty) / (held + qty)
            sf[SF_POS_FEES] += fee
            si[SI_POS] = pos + side * qty
        si[SI_ENTRY_PX] = int(round(sf[SF_ENTRY_AVG]))
        return True, 0.0, 0.0, 0.0
    held = abs(pos)
    direction = 1 if pos > 0 else -1
    # the same operations, in the same order, as the direction-only model: d * (px - entry) is an
    # exact integer-valued float, so a one-fill round trip gives the same bits as before
    gross = direction * (px - sf[SF_ENTRY_AVG]) * p[P_TICK] * qty * p[P_QTY_STEP]
    if qty >= held:
        fees_part = sf[SF_POS_FEES]
        funding_part = sf[SF_POS_FUNDING]
    else:
        share = qty / held
        fees_part = sf[SF_POS_FEES] * share
        funding_part = sf[SF_POS_FUNDING] * share
    net = gross - fees_part - fee - funding_part
    sf[SF_REALIZED] += net
    sf[SF_DAY_PNL] += net
    si[SI_POS] = pos - direction * qty
    if si[SI_POS] == 0:
        si[SI_STOP] = 0
        si[SI_TARGET] = 0
        si[SI_EXIT_SENT] = 0
        si[SI_LAST_EXIT_MIN] = (ts // MINUTE_MS) * MINUTE_MS
        sf[SF_POS_FEES] = 0.0
        sf[SF_POS_FUNDING] = 0.0
    else:
        sf[SF_POS_FEES] -= fees_part
        sf[SF_POS_FUNDING] -= funding_part
    if sf[SF_DAY_PNL] < -p[P_MAX_DAILY_LOSS]:
        si[SI_KILL_DAILY] = 1
    return False, gross, net, funding_part


@njit(cache=True, nogil=True)
def apply_funding(sf, cost):
    """A funding payment of the open position (quote currency, positive = paid), realized on its close."""
    sf[SF_POS_FUNDING] += cost
    sf[SF_FUNDING] += cost


@njit(cache=True, nogil=True)
def start_risk_day(si, sf):
    """A new risk day: its realized PnL starts at zero and the daily-loss kill switch is released."""
    sf[SF_DAY_PNL] = 0.0
    si[SI_KILL_DAILY] = 0
