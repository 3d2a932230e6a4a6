"""What a backtest reports: figures, text report, decision log.

``report`` turns a ``BacktestResult`` (fills, signals, features) into plain
JSON-able figures; ``text_report`` and ``headline`` print them;
``decision_log`` explains every decision, fill and alert (spec 11).
Kept apart from ``engine.backtest``, which only runs the engine.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.records import Units, units_of
from engine.types import (
    ACTION_NAMES,
    EXIT_NAMES,
    REASON_FEED_STALE,
    REASON_KILL_SWITCH,
    REASON_NAMES,
    REASON_NO_PROFILE,
    REASON_NO_QUOTE,
    SETUP_NAMES,
)

if TYPE_CHECKING:
    from engine.backtest import BacktestResult

# readiness failures worth an alert when they start (spec 11: stale data, VA failure, loss limit)
_ALERT_REASONS = {REASON_FEED_STALE, REASON_NO_PROFILE, REASON_NO_QUOTE, REASON_KILL_SWITCH}

def _pct(values: np.ndarray, q: float) -> float | None:
    return None if len(values) == 0 else float(np.percentile(values, q))


def _r(x: float | None, nd: int = 6) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), nd)


def report(settings: Any, result: BacktestResult) -> dict[str, Any]:
    """Headline and detailed figures of a run (plain JSON-able values, deterministic)."""
    u: Units = units_of(settings)
    fills = result.fills
    closes = fills[fills["opening"] == 0]
    net = closes["pnl_realized"].astype(float)
    gross = closes["pnl_gross"].astype(float)
    wins = net[net > 0]
    losses = net[net <= 0]
    equity = np.cumsum(net)
    peak = np.maximum.accumulate(np.concatenate([[0.0], equity]))[1:] if len(equity) else np.zeros(0)
    drawdown = float((peak - equity).max()) if len(equity) else 0.0
    side = np.where(fills["side"] == 1, 1, -1)
    half_spread = (fills["touch_px"] * 2 - fills["mid2"]) * side / 2.0 * settings.tick_size  # price units
    qty = settings.order_qty
    spread_cost = half_spread * qty
    slippage = (fills["px"] - fills["touch_px"]) * side * settings.tick_size * qty
    # exposure: share of minutes with an open position
    exposure = float((result.signals["position"] != 0).mean()) if len(result.signals) else 0.0
    feats = result.features
    vol = feats["volume"].astype(float)
    amb = np.where(vol > 0, feats["amb_qty"] / np.where(vol > 0, vol, 1), np.nan)
    amb = amb[~np.isnan(amb)]
    unreal = 0.0
    if result.open_position != 0 and result.last_mid2 > 0:
        unreal = result.open_position * (result.last_mid2 / 2.0 - result.open_entry_px) * settings.tick_size * qty
    by_setup: dict[str, dict[str, float]] = {}
    for tag in sorted(set(int(x) for x in closes["tag"])):
        sel = net[closes["tag"] == tag]
        by_setup[SETUP_NAMES[tag]] = {"trades": int(len(sel)), "net_pnl": _r(float(sel.sum())),
                                      "win_rate": _r(float((sel > 0).mean()))}
    exits: dict[str, int] = {}
    for code in closes["reason"]:
        exits[EXIT_NAMES[int(code)]] = exits.get(EXIT_NAMES[int(code)], 0) + 1
    actions = result.signals["action"]
    reasons = result.signals["reason"]
    ready = feats["ready"] if len(feats) else np.zeros(0, dtype=np.int64)
    alerts = {
        "feed_stale_minutes": int((ready == REASON_FEED_STALE).sum()),
        "no_profile_minutes": int((ready == REASON_NO_PROFILE).sum()),
        "ambiguous_spike_minutes": int((amb > settings.ambiguous_trade_frac_max).sum()),
        "kill_switch_minutes": int((reasons == REASON_KILL_SWITCH).sum()),
    }
    return {
        "alerts": alerts,
        "run_id": result.run_id,
        "mode": result.mode,
        "minutes": int(len(result.signals)),
        "events": int(result.events),
        "trades": int(len(closes)),
        "fills": int(len(fills)),
        "gross_pnl": _r(float(gross.sum())),
        "net_pnl": _r(float(net.sum())),
        "fees": _r(float(fills["fee"].sum())),
        "funding": _r(float(closes["funding"].sum())),
        "pnl_per_trade": _r(float(net.mean())) if len(net) else None,
        "win_rate": _r(float(len(wins) / len(net))) if len(net) else None,
        "avg_win": _r(float(wins.mean())) if len(wins) else None,
        "avg_loss": _r(float(losses.mean())) if len(losses) else None,
        "max_drawdown": _r(drawdown),
        "spread_paid_total": _r(float(spread_cost.sum())),
        "spread_paid_mean": _r(float(spread_cost.mean())) if len(fills) else None,
        "spread_paid_ticks_p50": _r(_pct(half_spread / settings.tick_size, 50)),
        "spread_paid_ticks_p90": _r(_pct(half_spread / settings.tick_size, 90)),
        "spread_paid_ticks_max": _r(float((half_spread / settings.tick_size).max())) if len(fills) else None,
        "slippage_total": _r(float(slippage.sum())),
        "ambiguous_frac_mean": _r(float(amb.mean())) if len(amb) else None,
        "ambiguous_frac_p95": _r(_pct(amb, 95)),
        "ambiguous_minutes_over_max": _r(float((amb > settings.ambiguous_trade_frac_max).mean())) if len(amb) else None,
        "exposure": _r(exposure),
        "open_position": int(result.open_position),
        "unrealized_at_end": _r(unreal),
        "entries_signalled": int(((actions == 1) | (actions == 2)).sum()),
        "by_setup": by_setup,
        "exits": dict(sorted(exits.items())),
        "equity_curve": [[int(ts), _r(float(e))] for ts, e in zip(closes["ts_fill"], equity, strict=True)],
        "price_decimals": u.px_dec,
    }


def _utc(ts_ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts_ms / 1000)) + f".{ts_ms % 1000:03d}"


def decision_log(settings: Any, result: BacktestResult) -> list[str]:
    """Spec 11: every decision with its feature snapshot, every fill, every risk event and alert."""
    u = units_of(settings)
    feats = result.features
    by_min = {int(f["ts_min"]): i for i, f in enumerate(feats)}
    events: list[tuple[int, int, str]] = []
    prev_reason = -1
    for s in result.signals:
        t = int(s["ts_min"])
        f = feats[by_min[t]] if t in by_min else None
        reason = int(s["reason"])
        action = int(s["action"])
        if f is not None and (action != 0 or reason != prev_reason and reason in _ALERT_REASONS):
            vol = int(f["volume"])
            amb = int(f["amb_qty"]) / vol if vol else float("nan")
            snap = (f"VAH={u.px(f['vah'])} VAL={u.px(f['val'])} POC={u.px2(f['poc2'])} "
                    f"bin_width={u.px(int(f['k']) * settings.base_bin_ticks)} OF_1m={u.qty(f['of'])} "
                    f"qimb={float(f['qimb']):.3f} ambiguous={amb:.3f}")
            kind = ACTION_NAMES[action] if action else f"ALERT {REASON_NAMES[reason]}"
            events.append((t + 59_999, 0, f"{kind:<14} reason={REASON_NAMES[reason]} {snap}"))
        prev_reason = reason
        if f is not None and int(f["volume"]) and int(f["amb_qty"]) / int(f["volume"]) > settings.ambiguous_trade_frac_max:
            events.append((t + 59_999, 1, f"ALERT ambiguous_trade_frac_1m {int(f['amb_qty']) / int(f['volume']):.3f} "
                                          f"> {settings.ambiguous_trade_frac_max}"))
    for x in result.fills:
        side = "BUY" if int(x["side"]) == 1 else "SELL"
        slip = abs(int(x["px"]) - int(x["touch_px"]))
        what = "OPEN" if int(x["opening"]) else f"CLOSE {EXIT_NAMES[int(x['reason'])]}"
        tail = "" if int(x["opening"]) else f" pnl_net={float(x['pnl_realized']):.6f} funding={float(x['funding']):.6f}"
        events.append((int(x["ts_fill"]), 2, f"FILL {what:<14} {side} {u.qty(x['qty'])} @ {u.px(x['px'])} "
                                             f"submitted {_utc(int(x['ts_submit']))} fee={float(x['fee']):.6f} "
                                             f"slippage={u.px(slip)} setup={SETUP_NAMES[int(x['tag'])]}{tail}"))
    events.sort(key=lambda e: (e[0], e[1]))
    return [f"{_utc(ts)} {text}" for ts, _, text in events]


def text_report(rep: dict[str, Any]) -> str:
    lines = [f"backtest {rep['run_id']} ({rep['mode']} mode): {rep['minutes']} minutes, {rep['events']} events"]
    for key in ("trades", "gross_pnl", "net_pnl", "fees", "funding", "pnl_per_trade", "win_rate", "avg_win",
                "avg_loss", "max_drawdown", "spread_paid_total", "spread_paid_ticks_p50", "spread_paid_ticks_p90",
                "slippage_total", "ambiguous_frac_mean", "ambiguous_frac_p95", "exposure", "unrealized_at_end"):
        lines.append(f"  {key:<24} {rep[key]}")
    lines.append("  by setup:")
    for name, fig in rep["by_setup"].items():
        lines.append(f"    {name:<12} {fig}")
    lines.append(f"  exits: {rep['exits']}")
    lines.append(f"  alerts: {rep['alerts']}")
    curve = rep["equity_curve"]
    if curve:
        lines.append("  equity curve: " + _sparkline([e for _, e in curve]))
    return "\n".join(lines) + "\n"


def _sparkline(values: list[float], width: int = 60) -> str:
    if not values:
        return ""
    step = max(1, len(values) // width)
    pts = values[::step]
    lo, hi = min(pts), max(pts)
    bars = "▁▂▃▄▅▆▇█"
    span = hi - lo or 1.0
    return "".join(bars[int((v - lo) / span * (len(bars) - 1))] for v in pts) + f"  [{lo:.2f} .. {hi:.2f}]"


def headline(rep: dict[str, Any]) -> str:
    return (f"{rep['run_id']}: {rep['trades']} trades, net {rep['net_pnl']} (gross {rep['gross_pnl']}, "
            f"fees {rep['fees']}, funding {rep['funding']}), win rate {rep['win_rate']}, "
            f"max drawdown {rep['max_drawdown']}, exposure {rep['exposure']}")
