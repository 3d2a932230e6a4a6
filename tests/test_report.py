"""Report figures on a hand-built run with known answers; report files and their determinism."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from engine import report as rp
from engine.backtest import BacktestResult
from engine.config import Settings
from engine.store import Store, instrument_of
from engine.synth import synthesize
from engine.types import (
    ACTION_ENTER_LONG,
    BAR_DTYPE,
    CONFIRM_OF,
    CONFIRM_QIMB,
    EXIT_FLATTEN,
    EXIT_SIGNAL,
    EXIT_STOP,
    EXIT_TARGET,
    EXIT_TIME,
    FEATURE_DTYPE,
    FILL_DTYPE,
    REASON_BREAKIN,
    REASON_DAILY_LOSS_KILL,
    REASON_MANUAL_KILL,
    REASON_TARGET_PASSED,
    SETUP_BREAKIN,
    SETUP_BREAKOUT,
    SETUP_FAILBREAK,
    SIGNAL_DTYPE,
)
from pbdtui.cli import main

T0 = 1_767_571_200_000  # 2026-01-05 00:00 UTC
H = 3_600_000
DAY = 24 * H
MIN = 60_000
# 0.1 BTC per trade: one tick (0.1 USDT) of price is 0.01 USDT of PnL
SETTINGS = Settings(order_qty=0.1, rolling_window_minutes=60)

# (entry time, hold minutes, side, setup, entry px, exit px (ticks), open fee, close fee, funding, exit)
TRIPS = [
    (T0 + 10 * H, 30, 1, SETUP_BREAKIN, 1_000_000, 1_000_200, 0.1, 0.1, 0.0, EXIT_TARGET),  # +2.0 - 0.2 = 1.8
    (T0 + 12 * H, 10, -1, SETUP_BREAKOUT, 1_000_000, 1_000_100, 0.0, 0.0, 0.0, EXIT_STOP),  # -1.0
    (T0 + 14 * H, 60, 1, SETUP_FAILBREAK, 1_000_000, 999_900, 0.0, 0.0, 0.5, EXIT_TIME),  # -1.0 - 0.5 = -1.5
    # 2026-01-06: no trade
    (T0 + 2 * DAY + H, 5, -1, SETUP_BREAKIN, 1_000_000, 999_700, 0.0, 0.0, 0.0, EXIT_TARGET),  # +3.0
    (T0 + 2 * DAY + 2 * H, 20, 1, SETUP_BREAKOUT, 1_000_000, 1_000_000, 0.25, 0.25, 0.0, EXIT_STOP),  # -0.5
]
NETS = [1.8, -1.0, -1.5, 3.0, -0.5]
DAILY = [1.8 - 1.0 - 1.5, 0.0, 3.0 - 0.5]  # 2026-01-05, 06, 07


def _fills() -> np.ndarray:
    f = np.zeros(2 * len(TRIPS), dtype=FILL_DTYPE)
    for i, (ts, hold, side, tag, px_in, px_out, fee_in, fee_out, funding, reason) in enumerate(TRIPS):
        gross = side * (px_out - px_in) * 0.1 * 0.1
        for j, (t, s, px, fee) in enumerate([(ts, side, px_in, fee_in), (ts + hold * MIN, -side, px_out, fee_out)]):
            f[2 * i + j] = (2 * i + j + 1, t - 1, t, s, 100, 0, px, px, 2 * px, fee, 0.0, 0.0, 0.0, tag, 0, 1, 0)
        close = f[2 * i + 1:2 * i + 2]
        close["opening"], close["reason"], close["funding"] = 0, reason, funding
        close["pnl_gross"], close["pnl_realized"] = gross, gross - fee_in - fee_out - funding
    return f


def _result(fills: np.ndarray) -> BacktestResult:
    n = 3 * 1440  # three whole UTC days of minutes
    bars = np.zeros(n, dtype=BAR_DTYPE)
    bars["ts_min"] = T0 + np.arange(n) * MIN
    sigs = np.zeros(n, dtype=SIGNAL_DTYPE)
    sigs["ts_min"] = bars["ts_min"]
    sigs["reason"][100:107] = REASON_DAILY_LOSS_KILL
    sigs["reason"][200:203] = REASON_MANUAL_KILL
    sigs["position"][:432] = 1  # a tenth of the minutes in a position
    feats = np.zeros(n, dtype=FEATURE_DTYPE)
    feats["ts_min"] = bars["ts_min"]
    return BacktestResult(run_id="tick-test", mode="tick", signals=sigs, fills=fills, features=feats, bars=bars,
                          events=12345, seconds=1.0, last_mid2=0, open_position=0, open_entry_px=0)


@pytest.fixture(scope="module")
def rep():
    return rp.report(SETTINGS, _result(_fills()))


def test_fills_fixture_adds_up():
    closes = _fills()[1::2]
    assert closes["pnl_realized"] == pytest.approx(NETS)


def test_headline_figures(rep):
    assert rep["trades"] == 5 and rep["fills"] == 10
    assert rep["net_pnl"] == pytest.approx(1.8)
    assert rep["gross_pnl"] == pytest.approx(3.0)
    assert rep["fees"] == pytest.approx(0.7) and rep["funding"] == pytest.approx(0.5)
    assert rep["win_rate"] == pytest.approx(0.4)
    assert rep["max_drawdown"] == pytest.approx(2.5)  # equity 1.8, 0.8, -0.7, 2.3, 1.8
    assert rep["exposure"] == pytest.approx(0.1)
    assert rep["currency"] == "USDT"


def test_profit_factor_and_expectancy(rep):
    assert rep["gross_wins"] == pytest.approx(4.8) and rep["gross_losses"] == pytest.approx(3.0)
    assert rep["profit_factor"] == pytest.approx(1.6)
    assert rep["expectancy"] == pytest.approx(0.36)
    assert rep["avg_win"] == pytest.approx(2.4) and rep["avg_loss"] == pytest.approx(-1.0)
    # per trade in bps of the entry notional (10 000 USDT): mean of 1.8, -1, -1.5, 3, -0.5 USDT
    assert rep["net_pnl_bps"] == pytest.approx(0.36)


def test_profit_factor_undefined_without_losses_or_trades():
    assert rp.profit_factor(np.array([1.0, 2.0])) == (None, 3.0, 0.0)
    assert rp.profit_factor(np.zeros(0)) == (None, 0.0, 0.0)
    assert rp.profit_factor(np.array([2.0, 0.0, -1.0]))[0] == pytest.approx(2.0)  # a zero trade is not a win


def test_daily_pnl_counts_days_without_trades(rep):
    assert [d["date"] for d in rep["daily"]] == ["2026-01-05", "2026-01-06", "2026-01-07"]
    assert [d["trades"] for d in rep["daily"]] == [3, 0, 2]
    assert [d["net_pnl"] for d in rep["daily"]] == pytest.approx(DAILY)
    assert [d["cumulative"] for d in rep["daily"]] == pytest.approx([-0.7, -0.7, 1.8])


def test_sharpe_and_sortino_of_daily_pnl(rep):
    mean = 0.6  # 1.8 over three days
    sd = math.sqrt(((-0.7 - mean) ** 2 + (0 - mean) ** 2 + (2.5 - mean) ** 2) / 2)
    downside = math.sqrt(0.7 ** 2 / 3)
    assert rep["sharpe_daily"] == pytest.approx(mean / sd * math.sqrt(365), abs=1e-5)
    assert rep["sortino_daily"] == pytest.approx(mean / downside * math.sqrt(365), abs=1e-5)
    assert rp.sharpe_sortino(np.array([1.0])) == (None, None)  # one day: no spread
    assert rp.sharpe_sortino(np.array([1.0, 2.0]))[1] is None  # no losing day: no downside
    assert rp.sharpe_sortino(np.array([1.0, 1.0]))[0] is None  # no variation


def test_hold_times_and_streaks(rep):
    assert rep["avg_hold_minutes"] == pytest.approx(25.0)  # 30, 10, 60, 5, 20
    assert rep["median_hold_minutes"] == pytest.approx(20.0)
    assert rep["max_consecutive_losses"] == 2  # W L L W L
    assert rep["max_consecutive_wins"] == 1
    assert rp.max_streak(np.array([True, True, False, True, True, True])) == 3


def test_long_short_split(rep):
    long, short = rep["by_side"]["long"], rep["by_side"]["short"]
    assert (long["trades"], long["wins"]) == (3, 1) and (short["trades"], short["wins"]) == (2, 1)
    assert long["net_pnl"] == pytest.approx(-0.2) and short["net_pnl"] == pytest.approx(2.0)
    assert long["win_rate"] == pytest.approx(1 / 3, abs=1e-6) and short["win_rate"] == pytest.approx(0.5)
    assert long["fees"] == pytest.approx(0.7) and short["fees"] == 0.0
    assert long["avg_hold_minutes"] == pytest.approx(110 / 3, abs=1e-5)


def test_per_setup_and_per_exit(rep):
    setups = rep["by_setup"]
    assert list(setups) == ["breakin", "breakout", "failbreak"]
    assert [setups[k]["net_pnl"] for k in setups] == pytest.approx([4.8, -1.5, -1.5])
    assert setups["breakin"]["profit_factor"] is None  # two wins, no loss
    assert setups["breakout"]["trades"] == 2 and setups["breakout"]["win_rate"] == 0.0
    exits = rep["by_exit"]
    assert list(exits) == ["stop", "target", "time"]
    assert [exits[k]["trades"] for k in exits] == [2, 2, 1]
    assert [exits[k]["net_pnl"] for k in exits] == pytest.approx([-1.5, 4.8, -1.5])


def test_costs_in_bps_of_filled_notional(rep):
    # five entries at 10 000 USDT, exits at 10 002, 10 001, 9 999, 9 997 and 10 000 USDT
    assert rep["fees_bps"] == pytest.approx(0.7 / 99_999 * 1e4, abs=1e-6)
    assert rep["spread_paid_bps"] == 0.0 and rep["slippage_bps"] == 0.0  # filled at the touch, zero spread


def test_spread_and_slippage_of_hand_built_fills():
    fills = _fills()
    # trip 1's buy: bid 99999.7 / ask 99999.9 (half spread 1 tick), filled at 100000.0 (1 tick of slippage)
    fills["touch_px"][0], fills["mid2"][0] = 999_999, 2 * 999_998
    # trip 1's sell: bid 100020.1 / ask 100020.5 (half spread 2 ticks), filled at 100020.0 (1 tick)
    fills["touch_px"][1], fills["mid2"][1] = 1_000_201, 2 * 1_000_203
    rep = rp.report(SETTINGS, _result(fills))
    tick_usdt = 0.1 * 0.1  # one tick on 0.1 BTC
    assert rep["spread_paid_total"] == pytest.approx(3 * tick_usdt)
    assert rep["slippage_total"] == pytest.approx(2 * tick_usdt)
    assert rep["spread_paid_bps"] == pytest.approx(3 * tick_usdt / 99_999 * 1e4, abs=1e-6)
    assert rep["slippage_bps"] == pytest.approx(2 * tick_usdt / 99_999 * 1e4, abs=1e-6)
    assert (rep["spread_paid_ticks_p50"], rep["spread_paid_ticks_max"]) == (0.0, 2.0)
    assert rep["spread_paid_ticks_p90"] == pytest.approx(1.1)  # 8 zeros, 1, 2


def test_range_settings_alerts_and_units(rep):
    assert rep["data_from"] == "2026-01-05T00:00:00Z" and rep["data_to"] == "2026-01-08T00:00:00Z"
    assert rep["duration_minutes"] == 3 * 1440 and rep["duration"] == "3 d"
    assert rep["settings_changed"] == {"order_qty": [0.001, 0.1], "rolling_window_minutes": [240, 60]}
    assert rep["settings_digest"] == rp.settings_digest(SETTINGS) != rp.settings_digest(Settings())
    assert rep["alerts"]["daily_loss_kill_minutes"] == 7 and rep["alerts"]["manual_kill_minutes"] == 3
    assert rep["units"]["net_pnl"] == "USDT" and rep["units"]["fees_bps"] == "bps of filled notional"
    numeric = {k for k, v in rep.items() if isinstance(v, float) and k != "price_decimals"}
    assert numeric <= set(rep["units"]), numeric - set(rep["units"])


def test_trades_csv_one_row_per_round_trip():
    lines = rp.trades_csv(SETTINGS, _result(_fills())).splitlines()
    assert lines[0] == ("entry_time_utc,exit_time_utc,side,setup,entry_px,exit_px,qty,gross_pnl,fees,funding,"
                        "net_pnl,exit_reason,hold_minutes")
    assert lines[1] == ("2026-01-05T10:00:00.000Z,2026-01-05T10:30:00.000Z,long,breakin,100000.0,100020.0,0.1,"
                        "2.0,0.2,0.0,1.8,target,30.0")
    assert lines[3].split(",")[-3:] == ["-1.5", "time", "60.0"]
    assert len(lines) == 6


def test_open_position_at_the_end_is_not_a_round_trip():
    fills = _fills()[:-1]  # the last entry (fee 0.25) never closes
    rep = rp.report(SETTINGS, _result(fills))
    assert rep["trades"] == 4 and rep["net_pnl"] == pytest.approx(2.3)
    # the open entry's fee is not in the round trips' money: net = gross - fees - funding still holds
    assert (rep["gross_pnl"], rep["fees"], rep["funding"]) == pytest.approx((3.0, 0.2, 0.5))
    assert rep["fees_bps"] == pytest.approx(0.45 / 89_999 * 1e4, abs=1e-6)  # every fill's fee over every fill


def test_text_report_tables_units_and_plot(rep):
    text = rp.text_report(rep)
    assert "{" not in text and "}" not in text  # tables, not dict reprs
    for want in ("2026-01-05T00:00:00Z .. 2026-01-08T00:00:00Z (3 d, ", "money in USDT",
                 f"digest {rep['settings_digest']}", "rolling_window_minutes  240      60",
                 "Long / short", "By setup", "By exit", "Per day (UTC)", "Equity curve"):
        assert want in text, want
    assert any(line.split()[:3] == ["profit", "factor", "1.60"] for line in text.splitlines())
    assert any(line.split()[:4] == ["2026-01-06", "0", "0.0000", "-0.7000"] for line in text.splitlines())
    assert any(line.split()[:2] == ["Sharpe", "(daily"] and line.split()[-1] == "sqrt(365)"
               for line in text.splitlines())
    plot = text.split("Equity curve")[1].splitlines()[1:]
    assert len(plot) == 14 and plot[0].split()[0] == "2.30" and plot[11].split()[0] == "-0.70"
    assert "inf (no losing trade)" in rp.text_report(rp.report(SETTINGS, _result(_fills()[:2])))
    # the break-in trades (two wins, no loss) show the same infinite profit factor in the setup table
    setup_rows = text.split("By setup")[1].split("By exit")[0].splitlines()
    (breakin,) = [line for line in setup_rows if line.split()[:1] == ["breakin"]]
    assert "inf (no losing trade)" in breakin
    (side,) = [line for line in text.split("Long / short")[1].splitlines() if line.split()[:1] == ["short"]]
    assert side.split()[-2] == "3.00"  # short: wins 3.0, losses 1.0


def test_equity_plot_steps_at_the_closing_times():
    # four 30-minute columns: equity 0, 1, 1, -1 (a trade closing on a column's end counts in the next)
    lines = rp.equity_plot([[T0 + 30 * MIN, 1.0], [T0 + 90 * MIN, -1.0]], T0, T0 + 120 * MIN, width=4, height=3)
    assert lines == ["   1.00 ┤ ••│", "   0.00 ┤•│·│", "  -1.00 ┤   •", "        └────",
                     "         2026-01-05 00:00 2026-01-05 02:00"]


# --- files, via the CLI -------------------------------------------------------------


@pytest.fixture(scope="module")
def sim_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("rep") / "sim.db"
    with Store(path, instrument_of(SETTINGS)) as store:
        synthesize(store, SETTINGS, days=0.25, seed=11)
    return path


def _files(folder):
    return {name: (folder / name).read_bytes() for name in ("report.json", "report.txt", "trades.csv", "decisions.log")}


def test_backtest_writes_to_a_default_folder_per_run_id_and_says_so(sim_db, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "a.db"
    shutil.copy(sim_db, db)
    (tmp_path / "config.yaml").write_text("rolling_window_minutes: 60\n")
    assert main(["backtest", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    run_id = out.split(":")[0]
    folder = tmp_path / "backtests" / run_id
    assert f"to backtests/{run_id}" in out
    first = _files(folder)
    rep = json.loads(first["report.json"])
    assert rep["run_id"] == run_id and rep["trades"] > 0
    assert first["trades.csv"].count(b"\n") == rep["trades"] + 1
    # a rerun writes the same bytes; --out writes the same files elsewhere
    assert main(["backtest", "--db", str(db)]) == 0
    assert _files(folder) == first
    assert main(["backtest", "--db", str(db), "--out", "elsewhere"]) == 0
    assert "to elsewhere" in capsys.readouterr().out
    assert _files(tmp_path / "elsewhere") == first


def test_slice_result_keeps_the_round_trips_closed_in_the_window():
    full = _result(_fills())
    cut = T0 + 14 * H + 30 * MIN  # during trip 3 (long, entered 14:00, closed 15:00)
    train = rp.report(SETTINGS, rp.slice_result(full, -(2**62), cut, "train"))
    test = rp.report(SETTINGS, rp.slice_result(full, cut, 2**62, "test"))
    assert train["trades"] == 2 and train["net_pnl"] == pytest.approx(0.8)
    assert train["data_to"] == "2026-01-05T14:30:00Z" and train["open_position"] == 1
    assert test["trades"] == 3 and test["net_pnl"] == pytest.approx(1.0)
    assert test["data_from"] == "2026-01-05T14:30:00Z" and test["open_position"] == 0
    assert [e[0] for e in train["equity_curve"]] == [T0 + 10 * H + 30 * MIN, T0 + 12 * H + 10 * MIN]
    assert train["run_id"] == "tick-test/train"


def test_maker_fees_are_flagged():
    assert rp.report(SETTINGS, _result(_fills()))["warnings"] == []
    rep = rp.report(SETTINGS.replace(fee_model="maker"), _result(_fills()))
    (w,) = rep["warnings"]
    assert "market order (taker" in w and "maker fees cannot hold" in w
    assert f"WARNING    {w}" in rp.text_report(rep)


# --- decision log ----------------------------------------------------------------------


def _log_result():
    """Two minutes: a break-in long entered, then a breakout short skipped (target passed); three exits."""
    res = _result(_fills())
    bars, feats, sigs = res.bars, res.features, res.signals
    for i, (o, h, lo, c) in ((600, (1_000_010, 1_000_020, 999_980, 1_000_005)),
                             (601, (1_000_005, 1_000_030, 1_000_000, 1_000_025))):
        bars["open"][i], bars["high"][i], bars["low"][i], bars["close"][i] = o, h, lo, c
        feats["val"][i], feats["vah"][i], feats["poc2"][i] = 999_990, 1_000_100, 2_000_081  # POC 100004.05
        feats["volume"][i], feats["amb_qty"][i], feats["k"][i] = 1000, 100, 1
    feats["of"][600], feats["qimb"][600] = 250, 0.4  # +0.25 BTC, both confirm the long
    feats["of"][601], feats["qimb"][601], feats["amb_qty"][601] = -10, -0.3, 500  # OF not trusted
    s = sigs[600:601]
    s["action"], s["reason"], s["setup"], s["side"], s["boundary"], s["run_len"] = (
        ACTION_ENTER_LONG, REASON_BREAKIN, SETUP_BREAKIN, 1, 999_990, 0)
    s["confirm"], s["stop"], s["target2"], s["expected_px"] = CONFIRM_OF | CONFIRM_QIMB, 999_978, 2_000_081, 1_000_007
    s = sigs[601:602]
    s["reason"], s["setup"], s["side"], s["boundary"], s["run_len"] = REASON_TARGET_PASSED, SETUP_BREAKOUT, -1, 1_000_100, 4
    s["confirm"], s["stop"], s["target2"], s["expected_px"] = CONFIRM_QIMB, 1_000_102, 2_000_060, 1_000_024
    fills = res.fills
    fills["touch_px"][1], fills["level2"][1] = 1_000_200, 2_000_399  # trip 1 long, target 100019.95
    fills["touch_px"][3], fills["level2"][3] = 1_000_099, 2_000_198  # trip 2 short, stop 100009.8
    return res


def test_decision_log_entry_lines_carry_the_candidate():
    settings = SETTINGS.replace(qimb_breakout_min=0.2)
    log = rp.decision_log(settings, _log_result())
    (enter,) = [line for line in log if " ENTER_LONG " in line]
    assert enter.startswith("2026-01-05 10:00:59.999 ENTER_LONG     reason=BREAKIN setup=breakin long ")
    assert ("O/H/L/C=100001.0/100002.0/99998.0/100000.5 boundary=VAL 99999.0 acceptance=0/3 "
            "confirm=both [OF_1m +0.25 > 0 BTC: yes; qimb +0.400 > 0.1: yes] stop=99997.8 target=100004.05 "
            "expected_fill=100000.7 reward/risk=1.16 | VAH=100010.0") in enter  # 3.35 / 2.9
    (skip,) = [line for line in log if " SKIP_ENTRY " in line]
    assert skip.startswith("2026-01-05 10:01:59.999 SKIP_ENTRY     reason=TARGET_PASSED setup=breakout short ")
    assert ("boundary=VAH 100010.0 acceptance=4/3 confirm=qimb [OF_1m -0.01 <= 0 BTC: no (not trusted: ambiguous "
            "0.500 > 0.35); qimb -0.300 <= -0.2: yes] stop=100010.2 target=100003.0 expected_fill=100002.4 "
            "reward/risk=0.08") in skip


def test_decision_log_exit_lines_say_what_triggered_them():
    log = rp.decision_log(SETTINGS, _log_result())
    closes = [line for line in log if " FILL CLOSE " in line]
    assert len(closes) == 5
    assert closes[0].endswith("exit: target 100019.95 reached: bid 100020.0 >= 100019.95")
    assert closes[1].endswith("exit: stop 100009.9 crossed: ask 100009.9 >= 100009.9")
    assert "exit: time stop after 60.0 minutes (max_hold_minutes=60)" in closes[2]


def test_decision_log_flip_and_flatten_exits_say_when_they_were_decided():
    res = _log_result()
    res.fills["reason"][7], res.fills["ts_submit"][7] = EXIT_SIGNAL, T0 + 2 * DAY + H + 5 * MIN - 1
    res.fills["reason"][9], res.fills["ts_submit"][9] = EXIT_FLATTEN, T0 + 2 * DAY + 2 * H + 20 * MIN - 250
    closes = [line for line in rp.decision_log(SETTINGS, res) if " FILL CLOSE " in line]
    assert closes[3].startswith("2026-01-07 01:05:00.000 FILL CLOSE flip ")
    assert closes[3].endswith("exit: flip: opposite entry signal decided 2026-01-07 01:04:59.999")
    assert closes[4].endswith("exit: operator flatten at 2026-01-07 02:19:59.750")


def test_reward_risk():
    assert rp.reward_risk(expected=100, stop=90, target2=260) == 3.0  # target 130: 30 / 10
    assert rp.reward_risk(expected=100, stop=110, target2=141) == pytest.approx(29.5 / 10)  # short, half tick
    assert rp.reward_risk(expected=100, stop=90, target2=0) is None


def test_acceptance_count_at_the_look_back_cap_is_not_claimed_exact():
    """A run of outside closes longer than the look-back ring is counted up to its cap: the log says ``63+``."""
    from engine.engine import Engine

    n = 100  # every minute closes above VAH: the run grows by one a minute until the ring stops it
    bars = np.zeros(n, dtype=BAR_DTYPE)
    bars["ts_min"] = T0 + np.arange(n) * MIN
    for k in ("open", "high", "low", "close"):
        bars[k] = 1_000_100
    bars["has_quote"], bars["bid_px"], bars["ask_px"], bars["bid_sz"], bars["ask_sz"] = 1, 1_000_099, 1_000_101, 10, 10
    feats = np.zeros(n, dtype=FEATURE_DTYPE)
    bars["volume"] = 100
    feats["ts_min"], feats["va_valid"], feats["vah"], feats["val"], feats["poc2"] = bars["ts_min"], 1, 1_000_000, 999_000, 1_999_000
    feats["volume"], feats["k"], feats["mid2"] = 100, 1, 2_000_200
    sigs = Engine(SETTINGS, hist_bins=16, fifo_size=16).run_bars(bars, feats).signals
    assert sigs["run_len"].max() == rp.RUN_LEN_CAP and (sigs["run_len"] == rp.RUN_LEN_CAP).sum() > 1
    assert rp.acceptance_text(rp.RUN_LEN_CAP - 1, 3) == f"{rp.RUN_LEN_CAP - 1}/3"
    assert rp.acceptance_text(rp.RUN_LEN_CAP, 3) == f"{rp.RUN_LEN_CAP}+/3"
    res = _log_result()
    res.signals["run_len"][601] = rp.RUN_LEN_CAP
    (skip,) = [line for line in rp.decision_log(SETTINGS, res) if " SKIP_ENTRY " in line]
    assert f" acceptance={rp.RUN_LEN_CAP}+/3 " in skip


def test_report_and_decision_log_raise_the_runtime_alert_rules():
    """One set of alert rules: the backtest report counts what the console would have raised."""
    import numpy as np

    from engine.report import raised_alerts
    from engine.types import FEATURE_DTYPE, REASON_FEED_STALE

    feats = np.zeros(5, dtype=FEATURE_DTYPE)
    feats["ts_min"] = np.arange(5) * 60_000
    feats["va_valid"] = 1
    feats["volume"] = 10
    feats["ready"] = [0, REASON_FEED_STALE, REASON_FEED_STALE, 0, REASON_FEED_STALE]
    feats["amb_qty"] = [0, 9, 9, 0, 9]
    kinds = [a.kind for a in raised_alerts(Settings(), feats)]
    assert kinds == ["feed_stale", "ambiguity", "feed_stale", "ambiguity"]
