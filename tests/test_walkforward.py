"""Walk-forward: rolling train/test windows over a small simulated database."""

from __future__ import annotations

import json
import stat

import pytest

from engine import sweep, walkforward
from engine.config import ConfigError, Settings
from engine.store import Store, instrument_of
from engine.synth import synthesize
from pbdtui.cli import main

# as in test_sweep: a short profile window so a quarter of a day trades; no daily-loss limit
BASE = Settings(rolling_window_minutes=60, max_daily_loss=1e9)
HOUR = 3_600_000
T0 = 1_767_571_200_000  # 2026-01-05 00:00 UTC, synth's default start
GRID = ["cooldown_minutes=0,5"]


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("wf") / "synth.db"
    with Store(path, instrument_of(BASE)) as store:
        synthesize(store, BASE, days=0.25, seed=3)
    return str(path)


@pytest.fixture(scope="module")
def doc(db):
    grid, combos = sweep.parse_grid(BASE, GRID)
    with Store(db, instrument_of(BASE)) as store:
        return walkforward.run_walkforward(store, grid, combos, train_days=0.125, test_days=0.0625, workers=2)


def test_windows_roll_by_the_test_length_and_the_last_is_cut_at_the_end():
    assert walkforward.windows_of(0, 10, 4, 3) == [((0, 4), (4, 7)), ((3, 7), (7, 10))]
    assert walkforward.windows_of(0, 11, 4, 3) == [((0, 4), (4, 7)), ((3, 7), (7, 10)), ((6, 10), (10, 11))]
    assert walkforward.windows_of(0, 4, 4, 3) == []


def test_stitch_chains_round_trips_for_the_drawdown_and_sums_wins_and_losses():
    a = {"trades": 2, "net_pnl": 1.0, "gross_wins": 3.0, "gross_losses": 1.0, "equity_curve": [[1, 3.0], [2, 1.0]]}
    b = {"trades": 2, "net_pnl": -1.5, "gross_wins": 0.0, "gross_losses": 1.5, "equity_curve": [[3, -1.0], [4, -1.5]]}
    got = walkforward.stitch([a, b], days=2.0)
    # round trips +3, -2, -1, -0.5: peak 3, trough -0.5
    assert got == {"trades": 4, "net_pnl": -0.5, "profit_factor": 1.2, "gross_wins": 3.0, "gross_losses": 2.5,
                   "max_drawdown": 3.5, "days": 2.0, "net_pnl_per_day": -0.25}
    assert walkforward.stitch([{"trades": 0, "net_pnl": 0.0}], 1.0)["profit_factor"] is None


def test_each_window_trades_on_test_the_combination_best_on_train(doc, db):
    wins = doc["windows"]
    assert [(w["train"]["from_ms"], w["test"]["from_ms"], w["test"]["to_ms"]) for w in wins] == [
        (T0, T0 + 3 * HOUR, T0 + 9 * HOUR // 2), (T0 + 3 * HOUR // 2, T0 + 9 * HOUR // 2, doc["data_range"][1] + 1)]
    # oracle for window 1: the plain --train-until sweep over the same range, ranked by train net PnL
    grid, combos = sweep.parse_grid(BASE, GRID)
    with Store(db, instrument_of(BASE)) as store:
        res = sweep.run_sweep(store, grid, combos, workers=2, start_ms=T0 + 3 * HOUR // 2, end_ms=doc["data_range"][1] + 1,
                              split_ms=T0 + 9 * HOUR // 2)  # end: the whole data, as the last window
    best = sweep.ranking(res.train_reports, "net_pnl")[0]
    assert wins[1]["chosen"] == best and wins[1]["params"] == res.combos[best]
    assert wins[1]["train_report"]["net_pnl"] == max(r["net_pnl"] for r in res.train_reports)
    assert wins[1]["test_report"]["net_pnl"] == res.test_reports[best]["net_pnl"]
    oos = doc["summary"]["out_of_sample"]
    assert oos["trades"] == sum(w["test_report"]["trades"] for w in wins)
    assert oos["net_pnl"] == pytest.approx(sum(w["test_report"]["net_pnl"] for w in wins))
    assert oos["days"] == pytest.approx(0.125)
    assert doc["summary"]["in_sample"]["trades"] > 0


def test_cli_writes_owner_only_files_equal_to_the_engine_run(doc, db, tmp_path, capsys):
    # the same settings through a config file: the same windows, choices and figures (deterministic)
    (tmp_path / "config.yaml").write_text("rolling_window_minutes: 60\nmax_daily_loss: 1.0e9\n")
    out = tmp_path / "wf"
    rc = main(["walkforward", "--db", db, "--grid", GRID[0], "--train-days", "0.125", "--test-days", "0.0625",
               "--workers", "2", "--out", str(out), "--config", str(tmp_path / "config.yaml")])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "out of sample" in printed and "in sample" in printed
    got = json.loads((out / "walkforward.json").read_text())
    got.pop("timings")
    got.pop("base_settings")
    assert got == json.loads(json.dumps({k: v for k, v in doc.items() if k != "timings"}))
    assert stat.S_IMODE((out / "walkforward.json").stat().st_mode) == 0o600
    assert (out / "walkforward.csv").read_text() == walkforward.csv_text(doc)
    assert (out / "walkforward.csv").read_text().splitlines()[0].startswith(
        "window,train_from,train_to,test_from,test_to,cooldown_minutes,train_trades,")


def test_bad_inputs_are_refused_before_any_run(db):
    grid, combos = sweep.parse_grid(BASE, GRID)
    with Store(db, instrument_of(BASE)) as store:
        with pytest.raises(ConfigError, match="shorter than one training window"):
            walkforward.run_walkforward(store, grid, combos, train_days=1, test_days=1)
        with pytest.raises(ConfigError, match="unknown objective"):
            walkforward.run_walkforward(store, grid, combos, 0.1, 0.1, objective="luck")
