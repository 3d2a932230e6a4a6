"""What a backtest reports: figures, text report, trades CSV, decision log.

``report`` turns a ``BacktestResult`` (fills, signals, features, bars) into
plain JSON-able figures (``report.json``); ``text_report`` prints them with
their units, as aligned tables and a terminal equity plot (``report.txt``);
``trades_csv`` lists every round trip (``trades.csv``); ``decision_log``
explains every decision, fill and alert (spec 11, ``decisions.log``). Kept
apart from ``engine.backtest``, which only runs the engine. Every output is
a function of the result and the settings alone (no wall clock, no run
time), so the same input and config write the same bytes.

Conventions (the issue left these open):

* Units: money in the quote currency (USDT), rates as fractions in JSON
  (0.25) and as % in the text, costs in bps of the filled notional
  (``fee / (price * size) * 1e4`` summed over fills), hold times in
  minutes. ``report()["units"]`` names the unit of every figure.
* A round trip is an opening fill and the closing fill after it. Money
  figures are those of the round trips, so net = gross - fees - funding; a
  position still open at the end is left out of them (its entry fee counts
  only in ``fees_bps``, a rate over every fill). A *win* has
  net PnL > 0; everything else (net <= 0) counts as a loss, for the win rate,
  the average loss, the profit factor and the losing streaks alike.
* Profit factor = sum of winning trades' net PnL / |sum of losing trades'
  net PnL|. ``None`` when it is undefined: no trades, or no losing trade
  (then ``gross_losses`` is 0 and the factor is infinite; the sweep ranks
  such a run above every finite one).
* Daily PnL: net PnL of the round trips closed in each UTC calendar day
  (closing fill time), for every day from the first to the last minute of
  data, days without a closed trade counted as 0. Sharpe = mean / standard
  deviation (ddof=1) * sqrt(365); Sortino = mean / downside deviation *
  sqrt(365), the downside deviation being sqrt(mean(min(pnl, 0)^2)) over all
  days (target 0). sqrt(365), not sqrt(252): crypto trades every day. Both
  are ``None`` with fewer than 2 days, or when their denominator is 0. They
  are ratios of USDT figures (no capital base is assumed), so they do not
  depend on the order size.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.kernels.state import LB_SIZE
from engine.records import Units, units_of
from engine.runtime.alerts import AlertRules
from engine.runtime.events import Alert
from engine.timerange import duration_text, iso_text, utc_text
from engine.types import (
    ACTION_ENTER_LONG,
    ACTION_ENTER_SHORT,
    ACTION_NAMES,
    CONFIRM_OF,
    CONFIRM_QIMB,
    EXIT_FLATTEN,
    EXIT_NAMES,
    EXIT_SIGNAL,
    EXIT_STOP,
    EXIT_TARGET,
    EXIT_TIME,
    REASON_DAILY_LOSS_KILL,
    REASON_FEED_STALE,
    REASON_INSUFFICIENT_HISTORY,
    REASON_MANUAL_KILL,
    REASON_NAMES,
    REASON_NO_PROFILE,
    REASON_NO_QUOTE,
    REASON_REWARD_RISK,
    REASON_TARGET_PASSED,
    SETUP_BREAKIN,
    SETUP_BREAKOUT,
    SETUP_NAMES,
    SIDE_BUY,
)

if TYPE_CHECKING:
    from engine.backtest import BacktestResult

# readiness failures worth an alert when they start (spec 11: stale data, VA failure, loss limit)
_ALERT_REASONS = {REASON_FEED_STALE, REASON_NO_PROFILE, REASON_NO_QUOTE, REASON_DAILY_LOSS_KILL,
                  REASON_MANUAL_KILL, REASON_INSUFFICIENT_HISTORY}
# entries not taken although a confirmed setup fired: logged with the candidate's detail
_SKIP_REASONS = {REASON_TARGET_PASSED, REASON_REWARD_RISK}

# The strategy counts closes beyond a boundary back through its look-back ring
# (kernels.strategy._run_length), so a count of LB_SIZE - 1 means "at least that many".
RUN_LEN_CAP = LB_SIZE - 1
MINUTE_MS = 60_000
DAY_MS = 86_400_000
ANNUALISATION_DAYS = 365  # crypto trades every calendar day

# One round trip per row, prices in ticks (converted only at the edges).
TRIP_DTYPE = np.dtype([
    ("entry_ts", "i8"),  # opening fill time, ms UTC
    ("exit_ts", "i8"),  # closing fill time, ms UTC
    ("side", "i8"),  # +1 long, -1 short
    ("tag", "i8"),  # SETUP_*
    ("entry_px", "i8"),  # ticks
    ("exit_px", "i8"),  # ticks
    ("qty", "i8"),  # lots
    ("entry_notional", "f8"),  # quote currency
    ("gross", "f8"),  # price PnL, quote currency
    ("fees", "f8"),  # both fills' fees
    ("funding", "f8"),
    ("net", "f8"),  # gross - fees - funding
    ("reason", "i8"),  # EXIT_*
])


def quote_currency(settings: Any) -> str:
    """The currency PnL is counted in (linear perpetuals settle in their quote currency)."""
    for ccy in ("USDT", "USDC", "USD"):
        if settings.symbol.endswith(ccy):
            return ccy
    return "quote currency"


def round_trips(fills: np.ndarray, settings: Any) -> np.ndarray:
    """Pair each opening fill with the closing fill after it (a position still open at the end is left out)."""
    out = np.zeros(int((fills["opening"] == 0).sum()), dtype=TRIP_DTYPE)
    n = 0
    entry = None
    for f in fills:
        if int(f["opening"]):
            entry = f
            continue
        if entry is None:  # a close without its entry cannot come from one run; skip rather than guess
            continue
        t = out[n:n + 1]
        t["entry_ts"] = entry["ts_fill"]
        t["exit_ts"] = f["ts_fill"]
        t["side"] = 1 if int(entry["side"]) == SIDE_BUY else -1
        t["tag"] = entry["tag"]
        t["entry_px"] = entry["px"]
        t["exit_px"] = f["px"]
        t["qty"] = entry["qty"]
        t["entry_notional"] = int(entry["px"]) * settings.tick_size * int(entry["qty"]) * settings.qty_step
        t["gross"] = f["pnl_gross"]
        t["fees"] = float(entry["fee"]) + float(f["fee"])
        t["funding"] = f["funding"]
        t["net"] = f["pnl_realized"]
        t["reason"] = f["reason"]
        n += 1
        entry = None
    return out[:n]


def _pct(values: np.ndarray, q: float) -> float | None:
    return None if len(values) == 0 else float(np.percentile(values, q))


def _r(x: float | None, nd: int = 6) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), nd)


def settings_digest(settings: Any) -> str:
    """Short digest of every setting (same settings, same digest)."""
    blob = json.dumps(dataclasses.asdict(settings), sort_keys=True)
    return hashlib.blake2b(blob.encode(), digest_size=6).hexdigest()


def settings_changed(settings: Any) -> dict[str, list[Any]]:
    """Keys whose value differs from the built-in defaults: key -> [default, used]."""
    default = dataclasses.asdict(type(settings)())
    return {k: [default[k], v] for k, v in sorted(dataclasses.asdict(settings).items()) if default[k] != v}


def profit_factor(net: np.ndarray) -> tuple[float | None, float, float]:
    """(profit factor, sum of wins, |sum of losses|); the factor is None without trades or without losses."""
    wins = float(net[net > 0].sum())
    losses = float(-net[net <= 0].sum())
    if len(net) == 0 or losses == 0.0:
        return None, wins, losses
    return wins / losses, wins, losses


def daily_pnl(trips: np.ndarray, first_ts: int, last_ts: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Per UTC day from ``first_ts``'s day to ``last_ts``'s: (dates, net PnL, trades closed), zeros included."""
    if len(trips):
        first_ts = min(first_ts, int(trips["exit_ts"].min()))
        last_ts = max(last_ts, int(trips["exit_ts"].max()))
    d0, d1 = first_ts // DAY_MS, last_ts // DAY_MS
    n = int(d1 - d0 + 1)
    pnl = np.zeros(n)
    count = np.zeros(n, dtype=np.int64)
    idx = (trips["exit_ts"] // DAY_MS - d0).astype(np.int64)
    np.add.at(pnl, idx, trips["net"])
    np.add.at(count, idx, 1)
    return [utc_text(int((d0 + i) * DAY_MS))[:10] for i in range(n)], pnl, count


def sharpe_sortino(daily: np.ndarray) -> tuple[float | None, float | None]:
    """Annualised (sqrt(365)) Sharpe and Sortino of daily PnL; None with < 2 days or a zero denominator."""
    if len(daily) < 2:
        return None, None
    mean = float(daily.mean())
    sd = float(daily.std(ddof=1))
    down = math.sqrt(float((np.minimum(daily, 0.0) ** 2).mean()))
    scale = math.sqrt(ANNUALISATION_DAYS)
    return (mean / sd * scale if sd > 0 else None), (mean / down * scale if down > 0 else None)


def max_streak(losing: np.ndarray) -> int:
    """Longest run of True in ``losing`` (trades in closing order)."""
    best = run = 0
    for x in losing:
        run = run + 1 if x else 0
        best = max(best, run)
    return best


def _group(trips: np.ndarray, sel: np.ndarray) -> dict[str, Any]:
    """Figures of the round trips selected by ``sel``."""
    t = trips[sel]
    net = t["net"]
    pf, gross_wins, gross_losses = profit_factor(net)
    hold = (t["exit_ts"] - t["entry_ts"]) / MINUTE_MS
    return {
        "trades": int(len(t)),
        "wins": int((net > 0).sum()),
        "win_rate": _r(float((net > 0).mean())) if len(t) else None,
        "gross_pnl": _r(float(t["gross"].sum())),
        "fees": _r(float(t["fees"].sum())),
        "net_pnl": _r(float(net.sum())),
        "expectancy": _r(float(net.mean())) if len(t) else None,
        "profit_factor": _r(pf),
        "gross_wins": _r(gross_wins),
        "gross_losses": _r(gross_losses),
        "avg_hold_minutes": _r(float(hold.mean())) if len(t) else None,
    }


# unit of every figure in report.json ("" for counts and labels)
_UNITS = {
    "gross_pnl": "{ccy}", "net_pnl": "{ccy}", "fees": "{ccy}", "funding": "{ccy}",
    "expectancy": "{ccy} per trade", "avg_win": "{ccy}", "avg_loss": "{ccy}", "max_drawdown": "{ccy}",
    "gross_wins": "{ccy}", "gross_losses": "{ccy}", "spread_paid_total": "{ccy}", "spread_paid_mean": "{ccy} per fill",
    "slippage_total": "{ccy}", "unrealized_at_end": "{ccy}", "daily_pnl_mean": "{ccy} per day",
    "daily_pnl_std": "{ccy} per day",
    "fees_bps": "bps of filled notional", "spread_paid_bps": "bps of filled notional",
    "slippage_bps": "bps of filled notional", "net_pnl_bps": "bps of entry notional per trade",
    "spread_paid_ticks_p50": "ticks per fill", "spread_paid_ticks_p90": "ticks per fill",
    "spread_paid_ticks_max": "ticks per fill",
    "win_rate": "fraction (0-1)", "exposure": "fraction of minutes (0-1)",
    "ambiguous_frac_mean": "fraction of volume (0-1)", "ambiguous_frac_p95": "fraction of volume (0-1)",
    "ambiguous_minutes_over_max": "fraction of minutes (0-1)",
    "sharpe_daily": "annualised, sqrt(365)", "sortino_daily": "annualised, sqrt(365)",
    "profit_factor": "ratio", "avg_hold_minutes": "minutes", "median_hold_minutes": "minutes",
    "duration_minutes": "minutes", "data_from": "UTC", "data_from_ms": "ms UTC", "data_to_ms": "ms UTC", "data_to": "UTC (end of the last minute)",
}


def report(settings: Any, result: BacktestResult) -> dict[str, Any]:
    """Every figure of a run (plain JSON-able values, deterministic); see the module doc for conventions."""
    u: Units = units_of(settings)
    ccy = quote_currency(settings)
    fills = result.fills
    trips = round_trips(fills, settings)
    net = trips["net"]
    gross = trips["gross"]
    wins = net[net > 0]
    losses = net[net <= 0]
    equity = np.cumsum(net)
    peak = np.maximum.accumulate(np.concatenate([[0.0], equity]))[1:] if len(equity) else np.zeros(0)
    drawdown = float((peak - equity).max()) if len(equity) else 0.0
    side = np.where(fills["side"] == SIDE_BUY, 1, -1)
    half_spread = (fills["touch_px"] * 2 - fills["mid2"]) * side / 2.0 * settings.tick_size  # price units
    lots = fills["qty"] * settings.qty_step
    spread_cost = half_spread * lots
    slippage = (fills["px"] - fills["touch_px"]) * side * settings.tick_size * lots
    notional = float((fills["px"] * settings.tick_size * lots).sum())

    def bps(x: float) -> float | None:
        return _r(x / notional * 1e4) if notional > 0 else None

    # exposure: share of minutes with an open position
    exposure = float((result.signals["position"] != 0).mean()) if len(result.signals) else 0.0
    feats = result.features
    vol = feats["volume"].astype(float)
    amb = np.where(vol > 0, feats["amb_qty"] / np.where(vol > 0, vol, 1), np.nan)
    amb = amb[~np.isnan(amb)]
    unreal = 0.0
    if result.open_position != 0 and result.last_mid2 > 0:
        unreal = (result.open_position * (result.last_mid2 / 2.0 - result.open_entry_px) * settings.tick_size
                  * settings.order_qty)
    actions = result.signals["action"]
    reasons = result.signals["reason"]
    ready = feats["ready"] if len(feats) else np.zeros(0, dtype=np.int64)
    raised: dict[str, int] = {}
    for alert in raised_alerts(settings, feats):
        raised[alert.kind] = raised.get(alert.kind, 0) + 1
    alerts = {
        "feed_stale_minutes": int((ready == REASON_FEED_STALE).sum()),
        "no_profile_minutes": int((ready == REASON_NO_PROFILE).sum()),
        "insufficient_history_minutes": int((ready == REASON_INSUFFICIENT_HISTORY).sum()),
        "ambiguous_spike_minutes": int((amb > settings.ambiguous_trade_frac_max).sum()),
        "daily_loss_kill_minutes": int((reasons == REASON_DAILY_LOSS_KILL).sum()),
        "manual_kill_minutes": int((reasons == REASON_MANUAL_KILL).sum()),
    }
    # the data range: the minutes the run covered
    minutes = result.bars["ts_min"] if len(result.bars) else result.signals["ts_min"]
    first = int(minutes[0]) if len(minutes) else 0
    last_end = int(minutes[-1]) + MINUTE_MS if len(minutes) else 0
    dates, day_pnl, day_trades = daily_pnl(trips, first, last_end - 1) if len(minutes) else ([], np.zeros(0), [])
    sharpe, sortino = sharpe_sortino(day_pnl)
    pf, gross_wins, gross_losses = profit_factor(net)
    hold = (trips["exit_ts"] - trips["entry_ts"]) / MINUTE_MS
    cum = np.cumsum(day_pnl)
    return {
        "alerts": alerts,
        "alerts_raised": dict(sorted(raised.items())),  # by rule: how often it started
        "run_id": result.run_id,
        "mode": result.mode,
        "currency": ccy,
        "warnings": [w for w in (fee_warning(settings),) if w],
        "units": {k: v.format(ccy=ccy) for k, v in sorted(_UNITS.items())},
        "data_from": iso_text(first) if len(minutes) else None,
        "data_to": iso_text(last_end) if len(minutes) else None,
        "data_from_ms": first,
        "data_to_ms": last_end,
        "duration_minutes": int((last_end - first) // MINUTE_MS),
        "duration": duration_text(last_end - first),
        "settings_digest": settings_digest(settings),
        "settings_changed": settings_changed(settings),
        "minutes": int(len(result.signals)),
        "events": int(result.events),
        "trades": int(len(trips)),
        "fills": int(len(fills)),
        "gross_pnl": _r(float(gross.sum())),
        "net_pnl": _r(float(net.sum())),
        "fees": _r(float(trips["fees"].sum())),
        "funding": _r(float(trips["funding"].sum())),
        "expectancy": _r(float(net.mean())) if len(net) else None,
        "net_pnl_bps": _r(float((net / trips["entry_notional"]).mean() * 1e4)) if len(net) else None,
        "win_rate": _r(float(len(wins) / len(net))) if len(net) else None,
        "avg_win": _r(float(wins.mean())) if len(wins) else None,
        "avg_loss": _r(float(losses.mean())) if len(losses) else None,
        "profit_factor": _r(pf),
        "gross_wins": _r(gross_wins),
        "gross_losses": _r(gross_losses),
        "max_consecutive_losses": max_streak(net <= 0),
        "max_consecutive_wins": max_streak(net > 0),
        "max_drawdown": _r(drawdown),
        "sharpe_daily": _r(sharpe),
        "sortino_daily": _r(sortino),
        "daily_pnl_mean": _r(float(day_pnl.mean())) if len(day_pnl) else None,
        "daily_pnl_std": _r(float(day_pnl.std(ddof=1))) if len(day_pnl) > 1 else None,
        "avg_hold_minutes": _r(float(hold.mean())) if len(hold) else None,
        "median_hold_minutes": _r(float(np.median(hold))) if len(hold) else None,
        "fees_bps": bps(float(fills["fee"].sum())),
        "spread_paid_total": _r(float(spread_cost.sum())),
        "spread_paid_mean": _r(float(spread_cost.mean())) if len(fills) else None,
        "spread_paid_bps": bps(float(spread_cost.sum())),
        "spread_paid_ticks_p50": _r(_pct(half_spread / settings.tick_size, 50)),
        "spread_paid_ticks_p90": _r(_pct(half_spread / settings.tick_size, 90)),
        "spread_paid_ticks_max": _r(float((half_spread / settings.tick_size).max())) if len(fills) else None,
        "slippage_total": _r(float(slippage.sum())),
        "slippage_bps": bps(float(slippage.sum())),
        "ambiguous_frac_mean": _r(float(amb.mean())) if len(amb) else None,
        "ambiguous_frac_p95": _r(_pct(amb, 95)),
        "ambiguous_minutes_over_max": _r(float((amb > settings.ambiguous_trade_frac_max).mean())) if len(amb) else None,
        "exposure": _r(exposure),
        "open_position": int(result.open_position),
        "unrealized_at_end": _r(unreal),
        "entries_signalled": int(((actions == 1) | (actions == 2)).sum()),
        "daily": [{"date": d, "trades": int(n), "net_pnl": _r(float(p)), "cumulative": _r(float(c))}
                  for d, n, p, c in zip(dates, day_trades, day_pnl, cum, strict=True)],
        "by_side": {"long": _group(trips, trips["side"] > 0), "short": _group(trips, trips["side"] < 0)},
        "by_setup": {SETUP_NAMES[tag]: _group(trips, trips["tag"] == tag)
                     for tag in sorted(set(int(x) for x in trips["tag"]))},
        "by_exit": {EXIT_NAMES[code]: _group(trips, trips["reason"] == code)
                    for code in sorted(set(int(x) for x in trips["reason"]))},
        "equity_curve": [[int(ts), _r(float(e))] for ts, e in zip(trips["exit_ts"], equity, strict=True)],
        "price_decimals": u.px_dec,
    }


TRADES_CSV_COLUMNS = ("entry_time_utc", "exit_time_utc", "side", "setup", "entry_px", "exit_px", "qty",
                      "gross_pnl", "fees", "funding", "net_pnl", "exit_reason", "hold_minutes")


def trades_csv(settings: Any, result: BacktestResult) -> str:
    """``trades.csv``: one row per round trip (money in the quote currency, times UTC to the ms)."""
    u = units_of(settings)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(TRADES_CSV_COLUMNS)
    for t in round_trips(result.fills, settings):
        w.writerow([iso_text(int(t["entry_ts"]), True), iso_text(int(t["exit_ts"]), True), "long" if t["side"] > 0 else "short",
                    SETUP_NAMES[int(t["tag"])], u.px(t["entry_px"]), u.px(t["exit_px"]), u.qty(t["qty"]),
                    _r(float(t["gross"])), _r(float(t["fees"])), _r(float(t["funding"])), _r(float(t["net"])),
                    EXIT_NAMES[int(t["reason"])], _r((int(t["exit_ts"]) - int(t["entry_ts"])) / MINUTE_MS, 3)])
    return buf.getvalue()


def _signed(x: float) -> str:
    return f"{x + 0.0:g}"  # + 0.0: a negated zero threshold prints as 0, not -0


def _confirmation(settings: Any, u: Units, s: np.void, f: np.void) -> str:
    """Which confirmation passed for the candidate, each test with its threshold (SPEC_NOTES, Signals)."""
    setup, side, bits = int(s["setup"]), int(s["side"]), int(s["confirm"])
    if setup == SETUP_BREAKIN:
        op, of_t, q_t = (">", "<")[side < 0], settings.of_entry_min, settings.qimb_entry_min
    elif setup == SETUP_BREAKOUT:
        op, of_t, q_t = (">=", "<=")[side < 0], settings.of_breakout_min, settings.qimb_breakout_min
    else:  # failed breakout: the thresholds are stated for the short side (of_fail_min <= 0 leans sell)
        op, of_t, q_t = (">=", "<=")[side < 0], settings.of_fail_min, settings.qimb_fail_min
        side = -side
    of_t, q_t = of_t * side, q_t * side
    vol = int(f["volume"])
    amb = int(f["amb_qty"]) / vol if vol else float("nan")
    of_text = f"OF_1m {u.qty(f['of']):+g} {op} {_signed(of_t)} BTC: {'yes' if bits & CONFIRM_OF else 'no'}"
    if not (vol > 0 and amb <= settings.ambiguous_trade_frac_max):
        of_text += " (not trusted: " + ("no trades" if not vol else
                                        f"ambiguous {amb:.3f} > {settings.ambiguous_trade_frac_max}") + ")"
    qimb = float(f["qimb"])
    if not settings.use_qimb:
        q_text = "qimb off"
    elif math.isnan(qimb):
        q_text = "qimb undefined: no"
    else:
        q_text = f"qimb {qimb:+.3f} {op} {_signed(q_t)}: {'yes' if bits & CONFIRM_QIMB else 'no'}"
    name = {CONFIRM_OF: "OF", CONFIRM_QIMB: "qimb", CONFIRM_OF | CONFIRM_QIMB: "both"}.get(bits, "none")
    return f"confirm={name} [{of_text}; {q_text}]"


def reward_risk(expected: int, stop: int, target2: int) -> float | None:
    """|target - expected fill| / |expected fill - stop|; None without a target, an expected fill or a risk."""
    if target2 == 0 or expected == 0 or expected == stop:
        return None
    return abs(target2 - 2 * expected) / (2 * abs(expected - stop))


def acceptance_text(run_len: int, k: int) -> str:
    """``closes beyond the boundary / accept_outside_k``; ``63+/3`` when the count reached the ring's cap."""
    return f"{RUN_LEN_CAP}+/{k}" if run_len >= RUN_LEN_CAP else f"{run_len}/{k}"


def _candidate(settings: Any, u: Units, s: np.void, f: np.void, bar: np.void | None) -> str:
    """The entry candidate of a minute: its bar, boundary, acceptance, confirmation, stop, target, reward/risk."""
    side, boundary = int(s["side"]), int(s["boundary"])
    edge = "VAL" if boundary == int(f["val"]) else ("VAH" if boundary == int(f["vah"]) else "edge")
    ohlc = "n/a" if bar is None else "/".join(str(u.px(bar[k])) for k in ("open", "high", "low", "close"))
    target2, expected, stop = int(s["target2"]), int(s["expected_px"]), int(s["stop"])
    rr = reward_risk(expected, stop, target2)
    acceptance = acceptance_text(int(s["run_len"]), settings.accept_outside_k)
    return (f"setup={SETUP_NAMES[int(s['setup'])]} {'long' if side > 0 else 'short'} O/H/L/C={ohlc} "
            f"boundary={edge} {u.px(boundary)} acceptance={acceptance} "
            f"{_confirmation(settings, u, s, f)} stop={u.px(stop)} "
            f"target={u.px2(target2) if target2 else 'none'} expected_fill={u.px(expected) if expected else 'n/a'} "
            f"reward/risk={'n/a' if rr is None else f'{rr:.2f}'}")


def _exit_cause(settings: Any, u: Units, x: np.void, entry: np.void | None) -> str:
    """What triggered a closing fill, from the fill's own record."""
    reason = int(x["reason"])
    long = int(x["side"]) != SIDE_BUY  # a sell closes a long
    touch = u.px(x["touch_px"])
    level = u.px2(x["level2"])
    if reason == EXIT_STOP:
        return (f"stop {level} crossed: bid {touch} <= {level}" if long else
                f"stop {level} crossed: ask {touch} >= {level}")
    if reason == EXIT_TARGET:
        return (f"target {level} reached: bid {touch} >= {level}" if long else
                f"target {level} reached: ask {touch} <= {level}")
    if reason == EXIT_TIME:
        held = (int(x["ts_submit"]) - int(entry["ts_fill"])) / MINUTE_MS if entry is not None else float("nan")
        return f"time stop after {held:.1f} minutes (max_hold_minutes={settings.max_hold_minutes})"
    if reason == EXIT_SIGNAL:
        return f"flip: opposite entry signal decided {utc_text(int(x['ts_submit']), True)}"
    if reason == EXIT_FLATTEN:
        return f"operator flatten at {utc_text(int(x['ts_submit']), True)}"
    return EXIT_NAMES.get(reason, str(reason)) or "exit"


def raised_alerts(settings: Any, feats: np.ndarray) -> list[Alert]:
    """The alerts ``engine.runtime.alerts.AlertRules`` raises over these minutes (one set of rules)."""
    rules = AlertRules(settings)
    out: list[Alert] = []
    names = feats.dtype.names
    for row in feats:
        out += [e for e in rules.minute({n: row[n].item() for n in names}) if isinstance(e, Alert)]
    return out


def decision_log(settings: Any, result: BacktestResult) -> list[str]:
    """Spec 11: every decision with its feature snapshot, every fill, every risk event and alert.

    Entry lines (ENTER_* and the entries skipped for TARGET_PASSED or
    REWARD_RISK, as SKIP_ENTRY) carry the trigger minute's bar, the boundary,
    the acceptance count (closes beyond the boundary / accept_outside_k,
    ``63+`` where the count reached the look-back ring's cap),
    which confirmation passed with its thresholds, stop, target, expected
    fill and reward/risk; closing fills say what triggered them.
    """
    u = units_of(settings)
    feats = result.features
    by_min = {int(f["ts_min"]): i for i, f in enumerate(feats)}
    bar_at = {int(b["ts_min"]): i for i, b in enumerate(result.bars)}
    events: list[tuple[int, int, str]] = []
    prev_reason = -1
    for s in result.signals:
        t = int(s["ts_min"])
        f = feats[by_min[t]] if t in by_min else None
        reason = int(s["reason"])
        action = int(s["action"])
        skipped = reason in _SKIP_REASONS
        if f is not None and (action != 0 or skipped or reason != prev_reason and reason in _ALERT_REASONS):
            vol = int(f["volume"])
            amb = int(f["amb_qty"]) / vol if vol else float("nan")
            snap = (f"VAH={u.px(f['vah'])} VAL={u.px(f['val'])} POC={u.px2(f['poc2'])} "
                    f"bin_width={u.px(int(f['k']) * settings.base_bin_ticks)} OF_1m={u.qty(f['of'])} "
                    f"qimb={float(f['qimb']):.3f} ambiguous={amb:.3f}")
            kind = ACTION_NAMES[action] if action else ("SKIP_ENTRY" if skipped else f"ALERT {REASON_NAMES[reason]}")
            detail = ""
            if int(s["side"]) != 0 and action in (ACTION_ENTER_LONG, ACTION_ENTER_SHORT) or skipped:
                bar = result.bars[bar_at[t]] if t in bar_at else None
                detail = _candidate(settings, u, s, f, bar) + " | "
                if reason == REASON_REWARD_RISK:
                    detail = f"min_reward_risk={settings.min_reward_risk} " + detail
            events.append((t + 59_999, 0, f"{kind:<14} reason={REASON_NAMES[reason]} {detail}{snap}"))
        prev_reason = reason
    # the runtime's alert rules, as the console and `pbdtui collect` raise them (edge-triggered)
    for alert in raised_alerts(settings, feats):
        events.append((alert.ts - 1, 1, f"ALERT {alert.kind}: {alert.text}"))
    entry = None
    for x in result.fills:
        side = "BUY" if int(x["side"]) == 1 else "SELL"
        slip = abs(int(x["px"]) - int(x["touch_px"]))
        what = "OPEN" if int(x["opening"]) else f"CLOSE {EXIT_NAMES[int(x['reason'])]}"
        tail = ""
        if not int(x["opening"]):
            tail = (f" pnl_net={float(x['pnl_realized']):.6f} funding={float(x['funding']):.6f} "
                    f"exit: {_exit_cause(settings, u, x, entry)}")
        events.append((int(x["ts_fill"]), 2, f"FILL {what:<14} {side} {u.qty(x['qty'])} @ {u.px(x['px'])} "
                                             f"submitted {utc_text(int(x['ts_submit']), True)} fee={float(x['fee']):.6f} "
                                             f"slippage={u.px(slip)} setup={SETUP_NAMES[int(x['tag'])]}{tail}"))
        entry = x if int(x["opening"]) else None
    events.sort(key=lambda e: (e[0], e[1]))
    return [f"{utc_text(ts, True)} {text}" for ts, _, text in events]


# --- text ------------------------------------------------------------------------


def _money(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _pct_text(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.1f} %"


def _num(x: float | None, nd: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


def _pf_text(pf: float | None, wins: float | None, losses: float | None) -> str:
    if pf is not None:
        return f"{pf:.2f}"
    return "inf (no losing trade)" if (wins or 0.0) > 0 and not losses else "n/a"


def table(header: list[str], rows: list[list[str]], align: str = "", indent: str = "  ") -> list[str]:
    """Aligned text table; ``align`` has one letter per column, ``l`` or ``r`` (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return indent + "  ".join(c.ljust(w) if a == "l" else c.rjust(w)
                                  for c, w, a in zip(cells, widths, align, strict=True)).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _group_rows(groups: dict[str, dict[str, Any]]) -> list[list[str]]:
    return [[name, str(g["trades"]), str(g["wins"]), _pct_text(g["win_rate"]), _money(g["gross_pnl"]),
             _money(g["fees"]), _money(g["net_pnl"]), _money(g["expectancy"]),
             _pf_text(g["profit_factor"], g["gross_wins"], g["gross_losses"]), _num(g["avg_hold_minutes"], 1)]
            for name, g in groups.items()]


def equity_plot(curve: list[list[float]], t0: int, t1: int, width: int = 64, height: int = 12) -> list[str]:
    """Net equity of closed trades over the run's time range, as text.

    Column c shows the equity after the last trade closed before the end of
    its slice of ``[t0, t1)``; a jump between columns is drawn as a vertical
    stroke. Own renderer, not a plotting library: the output must be the same
    bytes on every machine and terminal size.
    """
    if t1 <= t0:
        return []
    ts = [int(p[0]) for p in curve]
    eq = [float(p[1]) for p in curve]
    values = []
    j = 0
    cur = 0.0
    for c in range(width):
        end = t0 + (t1 - t0) * (c + 1) // width
        while j < len(ts) and ts[j] < end:
            cur = eq[j]
            j += 1
        values.append(cur)
    lo, hi = min(0.0, *values), max(0.0, *values)
    span = hi - lo or 1.0

    def row(v: float) -> int:
        return int(round((hi - v) / span * (height - 1)))

    grid = [[" "] * width for _ in range(height)]
    zero = row(0.0)
    for c in range(width):
        grid[zero][c] = "·"
    prev = zero
    for c, v in enumerate(values):
        r = row(v)
        for k in range(min(r, prev), max(r, prev) + 1):
            grid[k][c] = "│"
        grid[r][c] = "•"
        prev = r
    labels = {0: f"{hi:.2f}", height - 1: f"{lo:.2f}", zero: "0.00"}
    lw = max(len(s) for s in labels.values())
    lines = [f"  {labels.get(i, ''):>{lw}} ┤{''.join(g)}".rstrip() for i, g in enumerate(grid)]
    lines.append(f"  {'':>{lw}} └{'─' * width}")
    start, stop = utc_text(t0)[:16], utc_text(t1)[:16]
    lines.append(f"  {'':>{lw}}  {start}{' ' * max(1, width - len(start) - len(stop))}{stop}")
    return lines


def text_report(rep: dict[str, Any]) -> str:
    """``report.txt``: the figures with their units, tables and the equity plot."""
    ccy = rep["currency"]
    lines = [f"backtest {rep['run_id']} ({rep['mode']} mode)",
             f"  data       {rep['data_from']} .. {rep['data_to']} ({rep['duration']}, {rep['minutes']} minutes, "
             f"{rep['events']} events)",
             f"  settings   digest {rep['settings_digest']}; "
             + ("all defaults" if not rep["settings_changed"] else
                f"{len(rep['settings_changed'])} changed from defaults (below)"),
             f"  units      money in {ccy}; rates in %; costs in bps of filled notional; times UTC",
             *(f"  WARNING    {w}" for w in rep["warnings"]), ""]
    if rep["settings_changed"]:
        lines += ["Settings changed from defaults",
                  *table(["key", "default", "used"], [[k, str(d), str(v)] for k, (d, v) in rep["settings_changed"].items()],
                         align="lll"), ""]
    summary = [
        ("trades", str(rep["trades"]), ""),
        ("net PnL", _money(rep["net_pnl"]), ccy),
        ("gross PnL", _money(rep["gross_pnl"]), ccy),
        ("fees", _money(rep["fees"]), ccy),
        ("funding", _money(rep["funding"]), ccy),
        ("win rate", _pct_text(rep["win_rate"]), ""),
        ("expectancy", _money(rep["expectancy"]), f"{ccy} per trade"),
        ("net per trade", _num(rep["net_pnl_bps"]), "bps of entry notional"),
        ("average win", _money(rep["avg_win"]), ccy),
        ("average loss", _money(rep["avg_loss"]), ccy),
        ("profit factor", _pf_text(rep["profit_factor"], rep["gross_wins"], rep["gross_losses"]), ""),
        ("max drawdown", _money(rep["max_drawdown"]), ccy),
        ("max consecutive losses", str(rep["max_consecutive_losses"]), "trades"),
        ("Sharpe (daily PnL)", _num(rep["sharpe_daily"]), "annualised, sqrt(365)"),
        ("Sortino (daily PnL)", _num(rep["sortino_daily"]), "annualised, sqrt(365)"),
        ("average hold", _num(rep["avg_hold_minutes"], 1), "minutes"),
        ("median hold", _num(rep["median_hold_minutes"], 1), "minutes"),
        ("fees", _num(rep["fees_bps"]), "bps of filled notional"),
        ("spread paid", _num(rep["spread_paid_bps"]), "bps of filled notional"),
        ("spread paid", f"{_money(rep['spread_paid_total'])}", ccy),
        ("half spread p50 / p90", f"{_num(rep['spread_paid_ticks_p50'])} / {_num(rep['spread_paid_ticks_p90'])}",
         "ticks per fill"),
        ("slippage", _num(rep["slippage_bps"]), "bps of filled notional"),
        ("ambiguous volume mean / p95", f"{_pct_text(rep['ambiguous_frac_mean'])} / "
                                        f"{_pct_text(rep['ambiguous_frac_p95'])}", ""),
        ("exposure", _pct_text(rep["exposure"]), "of minutes in a position"),
        ("open at end", str(rep["open_position"]), f"unrealized {_money(rep['unrealized_at_end'])} {ccy}"),
    ]
    lines += ["Summary", *table(["figure", "value", "unit"], [list(r) for r in summary], align="lrl"), ""]
    head = ["", "trades", "wins", "win rate", f"gross {ccy}", f"fees {ccy}", f"net {ccy}",
            f"per trade {ccy}", "profit factor", "avg hold min"]
    lines += ["Long / short", *table(["side", *head[1:]], _group_rows(rep["by_side"])), ""]
    lines += ["By setup", *table(["setup", *head[1:]], _group_rows(rep["by_setup"])), ""]
    lines += ["By exit", *table(["exit", *head[1:]], _group_rows(rep["by_exit"])), ""]
    lines += ["Per day (UTC)", *table(["date", "trades", f"net {ccy}", f"cumulative {ccy}"],
                                      [[d["date"], str(d["trades"]), _money(d["net_pnl"]), _money(d["cumulative"])]
                                       for d in rep["daily"]]), ""]
    lines += ["Alerts", *table(["alert", "minutes"], [[k.removesuffix("_minutes"), str(v)]
                                                      for k, v in rep["alerts"].items()]), ""]
    if rep.get("alerts_raised"):
        lines += ["Alerts raised (the console's rules: each time a condition started)",
                  *table(["rule", "times"], [[k, str(v)] for k, v in rep["alerts_raised"].items()]), ""]
    if rep["data_from"] is not None:
        lines += [f"Equity curve (net {ccy} of closed trades)",
                  *equity_plot(rep["equity_curve"], rep["data_from_ms"], rep["data_to_ms"])]
    return "\n".join(lines) + "\n"


def headline(rep: dict[str, Any]) -> str:
    ccy = rep["currency"]
    return (f"{rep['run_id']}: {rep['data_from']} .. {rep['data_to']} ({rep['duration']}), {rep['trades']} trades, "
            f"net {_money(rep['net_pnl'])} {ccy} (gross {_money(rep['gross_pnl'])}, fees {_money(rep['fees'])}, "
            f"funding {_money(rep['funding'])}), win rate {_pct_text(rep['win_rate'])}, "
            f"profit factor {_pf_text(rep['profit_factor'], rep['gross_wins'], rep['gross_losses'])}, "
            f"max drawdown {_money(rep['max_drawdown'])} {ccy}, exposure {_pct_text(rep['exposure'])}")


def fee_warning(settings: Any) -> str | None:
    """Why maker fees cannot hold: every paper fill is a market order, which pays the taker fee."""
    if settings.fee_model != "maker":
        return None
    return (f"fee_model=maker charges maker_fee_bps={settings.maker_fee_bps} but the engine fills every entry "
            f"and exit with a market order (taker, taker_fee_bps={settings.taker_fee_bps}): maker fees cannot "
            "hold for these fills, so fees and net PnL are too optimistic")


def slice_result(result: BacktestResult, start_ms: int, end_ms: int, label: str) -> BacktestResult:
    """The part of a run in ``[start_ms, end_ms)``: its minutes, and the round trips closed in it.

    A round trip belongs to the window its closing fill is in (PnL is
    realised on the close, as in the daily PnL). A position still open at
    the window's end (entered before it, closed after) is the window's open
    position, valued at the mid of its last minute's close snapshot.
    ``events`` is 0: ticks are counted per run, not per window.
    """

    def minutes(a: np.ndarray) -> np.ndarray:
        return a[(a["ts_min"] >= start_ms) & (a["ts_min"] < end_ms)]

    fills = result.fills
    keep = np.zeros(len(fills), dtype=bool)
    open_pos, open_px = 0, 0
    i = 0
    while i < len(fills):
        if int(fills["opening"][i]) and i + 1 < len(fills) and not int(fills["opening"][i + 1]):
            t_in, t_out = int(fills["ts_fill"][i]), int(fills["ts_fill"][i + 1])
            keep[i:i + 2] = start_ms <= t_out < end_ms
            if t_in < end_ms <= t_out:
                open_pos = 1 if int(fills["side"][i]) == SIDE_BUY else -1
                open_px = int(fills["px"][i])
            i += 2
        else:  # an entry never closed: the run's own open position, if the run ends in this window
            i += 1
    bars = minutes(result.bars)
    ends_here = len(result.bars) and start_ms <= int(result.bars["ts_min"][-1]) < end_ms
    if ends_here:
        open_pos, open_px, mid2 = result.open_position, result.open_entry_px, result.last_mid2
    else:
        mid2 = int(bars["bid_px"][-1] + bars["ask_px"][-1]) if len(bars) else 0
    return dataclasses.replace(result, run_id=f"{result.run_id}/{label}", signals=minutes(result.signals),
                      fills=fills[keep], features=minutes(result.features), bars=bars, events=0,
                      last_mid2=mid2, open_position=open_pos, open_entry_px=open_px)
