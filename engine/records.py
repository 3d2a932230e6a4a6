"""Kernel records (ticks, lots) to store rows (price units, spec column names).

This is the only place where ticks become prices for the derived tables, so
every table prints prices the same way: ``round(ticks * tick_size, d)`` with
``d`` the decimals of half a tick (bin centres can fall on half ticks).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from engine.types import (
    ACTION_NAMES,
    EXIT_NAMES,
    ORDER_TYPE_NAMES,
    REASON_NAMES,
    SETUP_NAMES,
    SHAPE_NAMES,
    SIDE_BUY,
)
from engine.units import decimals_of


class Units:
    """Price and size conversions of one instrument."""

    def __init__(self, tick_size: float, qty_step: float):
        self.tick = tick_size
        self.step = qty_step
        self.px_dec = decimals_of(tick_size / 2)
        self.qty_dec = decimals_of(qty_step)

    def px(self, ticks: float) -> float:
        return round(float(ticks) * self.tick, self.px_dec)

    def px2(self, doubled_ticks: float) -> float:
        """Price of a doubled tick count (bin centres, mids)."""
        return round(float(doubled_ticks) * self.tick / 2.0, self.px_dec + 1)

    def qty(self, lots: float) -> float:
        return round(float(lots) * self.step, self.qty_dec)


def units_of(settings: Any) -> Units:
    return Units(settings.tick_size, settings.qty_step)


def _none(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def bar_rows(bars: np.ndarray, u: Units) -> list[tuple]:
    rows = []
    for b in bars:
        vol = int(b["volume"])
        has_q = bool(b["has_quote"])
        # not on the price grid: stored unrounded (rounding would only add error)
        vwap = float(b["pxqty"]) / vol * u.tick if vol > 0 else None
        rows.append((
            int(b["ts_min"]), u.px(b["open"]), u.px(b["high"]), u.px(b["low"]), u.px(b["close"]),
            u.qty(vol), vwap,
            u.px(b["bid_px"]) if has_q else None, u.px(b["ask_px"]) if has_q else None,
            u.qty(b["bid_sz"]) if has_q else None, u.qty(b["ask_sz"]) if has_q else None,
            int(b["n_trades"]),
        ))
    return rows


def feature_rows(feats: np.ndarray, u: Units, base_bin_ticks: int) -> list[tuple]:
    rows = []
    for f in feats:
        vol = int(f["volume"])
        valid = bool(f["va_valid"])
        mid2 = int(f["mid2"])
        den = int(f["agree_den"])
        rows.append((
            int(f["ts_min"]),
            u.px2(mid2) if mid2 > 0 else None,
            _none(f["sigma"]),
            u.px(int(f["k"]) * base_bin_ticks),
            u.px2(f["poc2"]) if valid else None,
            u.px(f["vah"]) if valid else None,
            u.px(f["val"]) if valid else None,
            _none(f["va_coverage"]) if valid else None,
            u.qty(f["of"]),
            (int(f["of"]) / vol) if vol > 0 else None,
            _none(f["qimb"]),
            _none(f["qimb_ema"]),
            (int(f["amb_qty"]) / vol) if vol > 0 else None,
            (int(f["agree_qty"]) / den) if den > 0 else None,
            float(f["bvc_buy_frac"]),
            float(f["bvc_net"]) * u.step,
            REASON_NAMES[int(f["ready"])],
            int(f["feed_gap"]),
            u.px2(f["dev_poc2"]) if f["dev_valid"] else None,
            u.px(f["dev_vah"]) if f["dev_valid"] else None,
            u.px(f["dev_val"]) if f["dev_valid"] else None,
            u.px2(f["pd_poc2"]) if f["pd_valid"] else None,
            u.px(f["pd_vah"]) if f["pd_valid"] else None,
            u.px(f["pd_val"]) if f["pd_valid"] else None,
            SHAPE_NAMES[int(f["shape"])] or None,
            _none(f["shape_poc_pos"]),
            _none(f["shape_skew"]),
            _none(f["shape_va_frac"]),
            _none(f["shape_valley"]),
            int(f["npoc_n"]),
            u.px2(f["npoc_above2"]) if f["npoc_above2"] else None,
            u.px2(f["npoc_below2"]) if f["npoc_below2"] else None,
            u.px2(f["roll_poc2"]) if f["roll_valid"] else None,
            u.px(f["roll_vah"]) if f["roll_valid"] else None,
            u.px(f["roll_val"]) if f["roll_valid"] else None,
        ))
    return rows


def signal_rows(sigs: np.ndarray, run_id: str) -> list[tuple]:
    return [
        (
            run_id, int(s["ts_min"]),
            int(s["breakin_long"]), int(s["breakin_short"]),
            int(s["breakout_long"]), int(s["breakout_short"]),
            int(s["failbreak_long"]), int(s["failbreak_short"]),
            int(s["acceptance_state"]), ACTION_NAMES[int(s["action"])], REASON_NAMES[int(s["reason"])],
            int(s["position"]),
        )
        for s in sigs
    ]


def fill_rows(fills: np.ndarray, u: Units, run_id: str, exec_id: str | None = None) -> list[tuple]:
    """``trades_exec`` rows; ``exec_id``: the exchange execution the fills came from (live), None otherwise."""
    rows = []
    for f in fills:
        side = int(f["side"])
        slippage = (int(f["px"]) - int(f["touch_px"])) * (1 if side == SIDE_BUY else -1)
        # half the spread of the filling quote, paid by crossing it (price units per unit)
        spread_paid = (int(f["touch_px"]) * 2 - int(f["mid2"])) * (1 if side == SIDE_BUY else -1)
        rows.append((
            run_id, int(f["fill_id"]), int(f["ts_submit"]), int(f["ts_fill"]),
            "BUY" if side == SIDE_BUY else "SELL", u.qty(f["qty"]), ORDER_TYPE_NAMES[int(f["order_type"])],
            u.px(f["px"]), float(f["fee"]), float(f["funding"]),
            float(f["pnl_realized"]), None, SETUP_NAMES[int(f["tag"])], EXIT_NAMES[int(f["reason"])],
            u.px(slippage), u.px2(spread_paid), exec_id,
        ))
    return rows

