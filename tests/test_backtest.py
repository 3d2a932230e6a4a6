"""Backtester on a simulated session in a real SQLite file (spec 12.2 / 12.3)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from engine.backtest import run_backtest
from engine.config import Settings
from engine.store import Store, instrument_of
from engine.synth import synthesize
from engine.types import EXIT_STOP, EXIT_TARGET
from pbdtui.cli import main

SETTINGS = Settings().replace(rolling_window_minutes=60)


@pytest.fixture(scope="module")
def sim_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("bt") / "sim.db"
    with Store(path, instrument_of(SETTINGS)) as store:
        synthesize(store, SETTINGS, days=0.25, seed=11)
    return path


def _copy(sim_db, tmp_path, name):
    dst = tmp_path / name
    shutil.copy(sim_db, dst)
    return dst


def _dump(path, table):
    with Store(path) as st:
        return st.fetch(f"SELECT * FROM {table} ORDER BY 1, 2")


def test_same_input_gives_byte_identical_tables(sim_db, tmp_path):
    a, b = _copy(sim_db, tmp_path, "a.db"), _copy(sim_db, tmp_path, "b.db")
    for path in (a, b):
        with Store(path, instrument_of(SETTINGS)) as st:
            run_backtest(st, SETTINGS)
    for table in ("bars_1m", "features_1m", "signals_1m", "trades_exec", "runs"):
        rows_a, rows_b = _dump(a, table), _dump(b, table)
        assert rows_a == rows_b and len(rows_a) > 0, table
    # and a rerun into the same file replaces its own rows
    with Store(a, instrument_of(SETTINGS)) as st:
        run_backtest(st, SETTINGS)
    assert _dump(a, "trades_exec") == _dump(b, "trades_exec")


def test_fills_never_precede_their_decision_and_pnl_adds_up(sim_db, tmp_path):
    path = _copy(sim_db, tmp_path, "c.db")
    with Store(path, instrument_of(SETTINGS)) as st:
        result, rep = run_backtest(st, SETTINGS)
    f = result.fills
    assert rep["trades"] > 3, "the simulated session should trade"
    market = ~np.isin(f["reason"], [EXIT_STOP, EXIT_TARGET])
    assert (f["ts_fill"][market] > f["ts_submit"][market]).all()
    assert (f["ts_fill"] >= f["ts_submit"]).all()
    # every entry decision is on a minute close
    entries = f[f["opening"] == 1]
    assert ((entries["ts_submit"] + 1) % 60_000 == 0).all()
    # net = gross - fees - funding, trade by trade and in total
    closes = f[f["opening"] == 0]
    assert rep["net_pnl"] == pytest.approx(closes["pnl_realized"].sum(), abs=1e-6)
    assert rep["net_pnl"] == pytest.approx(rep["gross_pnl"] - rep["fees"] - rep["funding"], abs=1e-5)
    # positions alternate open/close, one at a time
    assert list(f["opening"][: 2 * len(closes)]) == [1, 0] * len(closes)


def test_entries_are_explainable_from_stored_tables(sim_db, tmp_path):
    path = _copy(sim_db, tmp_path, "d.db")
    with Store(path, instrument_of(SETTINGS)) as st:
        result, _ = run_backtest(st, SETTINGS)
        rows = st.fetch(
            "SELECT s.ts_min, s.chosen_action, s.reason_code, b.low, b.high, b.close, f.val, f.vah, f.of_1m, "
            "f.qimb_close, f.ambiguous_trade_frac_1m FROM signals_1m s JOIN bars_1m b USING (ts_min) "
            "JOIN features_1m f USING (ts_min) WHERE s.chosen_action LIKE 'ENTER%'")
    assert rows
    for ts, action, reason, low, high, close, val, vah, of, qimb, amb in rows:
        long = action == "ENTER_LONG"
        if reason == "BREAKIN":
            assert (low < val < close <= vah) if long else (high > vah > close >= val)
        elif reason == "BREAKOUT":
            assert close > vah if long else close < val
        elif reason == "FAILBREAK":
            assert (low < val < close) if long else (high > vah > close)
        else:
            pytest.fail(f"entry at {ts} with reason {reason}")
        of_trusted = amb is not None and amb <= SETTINGS.ambiguous_trade_frac_max
        assert (of_trusted and of is not None) or qimb is not None


def test_bar_mode_sees_the_same_setups_as_tick_mode(sim_db, tmp_path):
    path = _copy(sim_db, tmp_path, "e.db")
    with Store(path, instrument_of(SETTINGS)) as st:
        tick, _ = run_backtest(st, SETTINGS, "tick")
        bar, rep = run_backtest(st, SETTINGS, "bar")
    names = ["breakin_long", "breakin_short", "breakout_long", "breakout_short", "failbreak_long",
             "failbreak_short", "acceptance_state"]
    for n in names:
        assert (tick.signals[n] == bar.signals[n]).all(), n
    assert rep["mode"] == "bar" and rep["trades"] > 0


def test_cli_backtest_writes_reports(sim_db, tmp_path, capsys):
    path = _copy(sim_db, tmp_path, "f.db")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("rolling_window_minutes: 60\n")
    out = tmp_path / "out"
    assert main(["backtest", "--db", str(path), "--config", str(cfg), "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert {"net_pnl", "gross_pnl", "win_rate", "max_drawdown", "spread_paid_ticks_p50", "fees", "funding",
            "ambiguous_frac_mean", "exposure", "equity_curve"} <= set(rep)
    assert "net" in capsys.readouterr().out
    assert (out / "report.txt").read_text().startswith("backtest ")
    log = (out / "decisions.log").read_text().splitlines()
    enters = [line for line in log if " ENTER_" in line]
    fills = [line for line in log if " FILL " in line]
    assert len(enters) >= rep["trades"] and len(fills) == rep["fills"]
    assert all("VAH=" in e and "OF_1m=" in e and "qimb=" in e and "ambiguous=" in e for e in enters)
    assert "alerts" in rep and set(rep["alerts"]) >= {"feed_stale_minutes", "ambiguous_spike_minutes"}


def test_slippage_and_fees_only_make_it_worse(sim_db, tmp_path):
    path = _copy(sim_db, tmp_path, "g.db")
    base = SETTINGS.replace(max_daily_loss=1e9)  # no loss limit: the trades cannot depend on PnL
    with Store(path, instrument_of(base)) as st:
        _, free = run_backtest(st, base.replace(slippage_ticks_entry=0, slippage_ticks_exit=0, fee_model="maker"))
        _, paid = run_backtest(st, base)
    assert free["trades"] == paid["trades"] > 0
    assert free["gross_pnl"] > paid["gross_pnl"] and free["net_pnl"] > paid["net_pnl"]
    assert free["fees"] < 0 < paid["fees"]  # maker rebate vs taker fee


def test_minute_pass_on_precomputed_minutes_equals_the_full_tick_run(sim_db, tmp_path):
    from engine.backtest import run_tick, run_tick_on_minutes
    from engine.features import compute_minutes
    from engine.report import report

    path = _copy(sim_db, tmp_path, "h.db")
    variants = [SETTINGS, SETTINGS.replace(slippage_ticks_entry=0, fee_model="maker", accept_outside_k=2,
                                           cooldown_minutes=0, max_hold_minutes=5, funding_rate_default=0.01)]
    with Store(path, instrument_of(SETTINGS)) as st:
        m = compute_minutes(st, SETTINGS)
        bars, feats = m.bars, m.features
        for s in variants:  # execution and signal keys change; feature keys do not
            full = run_tick(st, s)
            fast = run_tick_on_minutes(st, s, bars, feats)
            assert len(full.fills) > 3
            assert fast.signals.tobytes() == full.signals.tobytes()
            assert fast.fills.tobytes() == full.fills.tobytes()
            assert report(s, fast) == report(s, full)


def test_feature_keys_are_exactly_what_feature_params_read():
    from engine.kernels.params import FEATURE_KEYS, FEATURE_PARAM_SLOTS, make_params

    slots = list(FEATURE_PARAM_SLOTS)
    base = make_params(SETTINGS)[slots]
    other = {"alpha_bin": 0.4, "base_bin_ticks": 2, "bin_width_max_ticks": 50, "rebucket_interval_minutes": 5,
             "rebucket_change_pct": 0.5, "max_quote_staleness_ms": 100, "use_tick_rule_fallback": True,
             "va_fraction": 0.6, "rolling_window_minutes": 30, "qimb_ema_span": 3, "bvc_lookback": 20,
             "feed_stale_halt_ms": 1000, "tick_size": 0.5, "min_window_coverage": 0.5,
             # not feature keys:
             "accept_outside_k": 5, "slippage_ticks_entry": 3, "fee_model": "maker", "cooldown_minutes": 9,
             "qimb_entry_min": 0.3, "of_entry_min": 1.0, "target": "tp2", "max_hold_minutes": 7,
             "min_reward_risk": 1.5}
    for key, value in other.items():
        changed = (make_params(SETTINGS.replace(**{key: value}))[slots] != base).any()
        assert changed == (key in FEATURE_KEYS), key


@pytest.fixture(scope="module")
def two_sessions_db(tmp_path_factory):
    """Two simulated sessions 3 days apart: two segments (SPEC_NOTES, long gaps)."""
    path = tmp_path_factory.mktemp("bt2") / "two.db"
    start = 1_767_571_200_000  # 2026-01-05 00:00 UTC
    with Store(path, instrument_of(SETTINGS)) as store:
        synthesize(store, SETTINGS, days=0.2, seed=11, start_ms=start)
        synthesize(store, SETTINGS, days=0.2, seed=12, start_ms=start + 3 * 86_400_000)
    return path


def test_long_gap_makes_no_rows_and_every_pass_agrees_on_the_two_segments(two_sessions_db, tmp_path):
    from engine.backtest import report, run_bar, run_tick, run_tick_on_minutes
    from engine.features import compute_minutes

    path = _copy(two_sessions_db, tmp_path, "g.db")
    s = SETTINGS.replace(cooldown_minutes=0, max_hold_minutes=5)
    with Store(path, instrument_of(s)) as st:
        m = compute_minutes(st, s)
        assert len(m.bars) <= 2 * 0.2 * 1440 + 2  # the 2.8 days between the sessions have no rows
        assert len(set(m.features["segment_ts"].tolist())) == 2
        full = run_tick(st, s)
        fast = run_tick_on_minutes(st, s, m.bars, m.features)
        assert len(full.fills) > 3
        assert full.bars.tobytes() == m.bars.tobytes()
        assert fast.signals.tobytes() == full.signals.tobytes()
        assert fast.fills.tobytes() == full.fills.tobytes()
        assert report(s, fast) == report(s, full)
        # every segment warms up again: the first window of each is not ready
        seg_first = np.nonzero(np.diff(m.features["segment_ts"]))[0] + 1
        assert (m.features["ready"][seg_first[0]:seg_first[0] + 59] == 1).all()
        run_backtest(st, s)  # writes the minute tables the bar mode reads
        bar = run_bar(st, s)
        assert len(bar.signals) == len(full.signals)
