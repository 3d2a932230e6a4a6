"""Sweep: grid parsing, parallel runs, rows equal to backtest reports, outputs and the CLI."""

from __future__ import annotations

import csv
import json

import pytest

from engine import sweep
from engine.backtest import run_tick, save_result
from engine.config import ConfigError, Settings
from engine.report import report
from engine.store import Store, instrument_of
from engine.synth import synthesize

# a short profile window so a quarter of a day has plenty of ready minutes and trades; no
# daily-loss limit, so which trades happen cannot depend on the PnL (only on quotes)
BASE = Settings(rolling_window_minutes=60, max_daily_loss=1e9)


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("sweep") / "synth.db"
    s = Settings()
    with Store(path, instrument_of(s)) as store:
        synthesize(store, s, days=0.25, seed=3)
    return str(path)


@pytest.fixture(scope="module")
def swept(db, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep_out")
    s = BASE
    grid, combos = sweep.parse_grid(s, ["slippage_ticks_entry=0,1", "fee_model=taker,maker"])
    with Store(db, instrument_of(s)) as store:
        res = sweep.run_sweep(store, grid, combos, workers=2)
    sweep.write_outputs(res, s, out)
    return res, out


# --- grid parsing -------------------------------------------------------------------


def test_parse_grid_product_order_and_yaml_values():
    grid, combos = sweep.parse_grid(Settings(), ["alpha_bin=0.2, 1", "use_qimb=true,false", "target=tp1"])
    assert grid.keys == ("alpha_bin", "use_qimb", "target")
    assert grid.values == ((0.2, 1.0), (True, False), ("tp1",))
    assert [(c.alpha_bin, c.use_qimb) for c in combos] == [(0.2, True), (0.2, False), (1.0, True), (1.0, False)]
    assert grid.combinations()[1] == {"alpha_bin": 0.2, "use_qimb": False, "target": "tp1"}


@pytest.mark.parametrize("spec, key", [
    (["nope=1"], "nope"),
    (["fee_model=taker,bogus"], "fee_model"),
    (["slippage_ticks_entry=0,1", "accept_outside_k=0"], "accept_outside_k"),
    (["slippage_ticks_entry=1.5"], "slippage_ticks_entry"),
    (["cooldown_minutes=1,1"], "cooldown_minutes"),
    (["cooldown_minutes=1", "cooldown_minutes=2"], "cooldown_minutes"),
    (["cooldown_minutes=1,"], "cooldown_minutes"),
    (["tick_size=0.1,0.5"], "tick_size"),
    (["order_qty=0.0015"], "order_qty"),
])
def test_bad_grids_name_the_key(spec, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        sweep.parse_grid(Settings(), spec)


def test_unknown_key_rejected_before_any_work(tmp_path):
    # the database does not even exist: validation comes first
    with pytest.raises(ConfigError, match="'nope'"):
        sweep.run_sweep_cli(Settings(), db=str(tmp_path / "missing.db"), grid=["nope=1"], out=str(tmp_path))
    assert not (tmp_path / "missing.db").exists()


def test_feature_groups():
    _, combos = sweep.parse_grid(Settings(), ["slippage_ticks_entry=0,1", "fee_model=taker,maker",
                                              "alpha_bin=0.2,0.3", "accept_outside_k=2,3"])
    groups = sweep.feature_groups(combos)
    # only alpha_bin changes features: accept_outside_k is a signal key, the rest execution
    assert len(groups) == 2 and all(len(g) == 8 for g in groups)
    assert {combos[g[0]].alpha_bin for g in groups} == {0.2, 0.3}
    for g in groups:
        keys = {sweep.feature_key(combos[i]) for i in g}
        assert len(keys) == 1


# --- runs -----------------------------------------------------------------------------


def test_sweep_rows_equal_backtest_reports(swept, db):
    """A sweep row is exactly the report run_tick gives for the combination's settings."""
    res, _ = swept
    base = BASE
    with Store(db, instrument_of(base), readonly=True) as store:
        for i in (0, 3):
            s = base.replace(**res.combos[i])
            want = report(s, run_tick(store, s))
            want.pop("equity_curve")
            assert res.reports[i] == want


def test_sweep_2x2(swept, db):
    res, out = swept
    assert len(res.reports) == 4
    assert [tuple(c.values()) for c in res.combos] == [(0, "taker"), (0, "maker"), (1, "taker"), (1, "maker")]
    assert res.groups == [[0, 1, 2, 3]]  # slippage and fee model do not change features
    rows = {(c["slippage_ticks_entry"], c["fee_model"]): r for c, r in zip(res.combos, res.reports, strict=True)}
    assert any(r["trades"] > 0 for r in rows.values())
    for fee_model in ("taker", "maker"):
        zero, one = rows[0, fee_model], rows[1, fee_model]
        # the same trades (fills wait for the same quotes); one more tick paid per entry only costs
        assert zero["trades"] == one["trades"]
        assert zero["net_pnl"] > one["net_pnl"] and zero["gross_pnl"] > one["gross_pnl"]
        assert zero["slippage_total"] < one["slippage_total"]
    for slip in (0, 1):
        taker, maker = rows[slip, "taker"], rows[slip, "maker"]
        # taker pays 5 bps per fill, maker earns 1 bps
        assert maker["fees"] < 0 < taker["fees"]
        assert maker["trades"] == taker["trades"] and maker["gross_pnl"] == taker["gross_pnl"]
        assert maker["net_pnl"] > taker["net_pnl"]
    for r in res.reports:
        assert "equity_curve" not in r
        assert r["net_pnl"] == pytest.approx(r["gross_pnl"] - r["fees"] - r["funding"], abs=1e-5)


def test_sweep_writes_runs_rows_only(swept, db):
    res, _ = swept
    with Store(db, readonly=True) as store:
        rows = store.fetch("SELECT run_id, mode, config_json, summary_json FROM runs")
        assert store.fetch("SELECT COUNT(*) FROM signals_1m")[0][0] == 0
        assert store.fetch("SELECT COUNT(*) FROM trades_exec")[0][0] == 0
    by_id = {r[0]: r for r in rows}
    for combo, rep in zip(res.combos, res.reports, strict=True):
        run_id, mode, config_json, summary_json = by_id[rep["run_id"]]
        assert mode == "tick"
        cfg = json.loads(config_json)
        assert all(cfg[k] == v for k, v in combo.items())
        summary = json.loads(summary_json)
        assert summary["sweep"] is True and summary["net_pnl"] == rep["net_pnl"]


def test_sweep_keeps_a_backtest_row_and_replaces_its_own(swept, db):
    res, _ = swept
    s = BASE.replace(cooldown_minutes=7)
    grid, combos = sweep.parse_grid(BASE, ["cooldown_minutes=7"])
    with Store(db, instrument_of(BASE)) as store:
        save_result(store, s, run_tick(store, s))  # what `pbdtui backtest` writes
        before = store.fetch("SELECT summary_json FROM runs WHERE run_id=?", (res.reports[0]["run_id"],))
        again = sweep.run_sweep(store, *sweep.parse_grid(BASE, ["slippage_ticks_entry=0"]), workers=1)
        one = sweep.run_sweep(store, grid, combos, workers=1)
        rows = dict(store.fetch("SELECT run_id, summary_json FROM runs"))
        store.db.execute("DELETE FROM signals_1m; DELETE FROM trades_exec; DELETE FROM runs WHERE run_id=?",
                         (one.reports[0]["run_id"],))
    kept = json.loads(rows[one.reports[0]["run_id"]])
    assert "sweep" not in kept and "equity_curve" in kept
    assert kept["net_pnl"] == one.reports[0]["net_pnl"]
    assert again.reports[0]["run_id"] == res.reports[0]["run_id"]
    assert json.loads(rows[res.reports[0]["run_id"]]) == json.loads(before[0][0])  # replaced, same figures


def test_sweep_outputs(swept):
    res, out = swept
    with open(out / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    assert list(rows[0])[:3] == ["rank", "slippage_ticks_entry", "fee_model"]
    assert "seconds" not in rows[0]
    # rows in rank order: net PnL, best first
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4]
    nets = [float(r["net_pnl"]) for r in rows]
    assert nets == sorted(nets, reverse=True)
    for row, i in zip(rows, res.ranked(), strict=True):
        rep = res.reports[i]
        assert int(row["trades"]) == rep["trades"]
        assert float(row["net_pnl"]) == pytest.approx(rep["net_pnl"])
        assert row["run_id"] == rep["run_id"]
        assert row["fee_model"] == res.combos[i]["fee_model"]
    doc = json.loads((out / "sweep.json").read_text())
    assert len(doc["combinations"]) == 4 and len(doc["timings"]["seconds"]) == 4
    assert doc["rank_by"] == "net_pnl" and sorted(c["rank"] for c in doc["combinations"]) == [1, 2, 3, 4]
    assert [c["index"] for c in sorted(doc["combinations"], key=lambda c: c["rank"])] == res.ranked()
    # the grid has maker fees: one warning, in sweep.json too
    assert len(doc["warnings"]) == 1 and "2 of 4 combination(s): fee_model=maker" in doc["warnings"][0]
    assert "market order (taker" in doc["warnings"][0]
    assert doc["feature_groups"] == [[0, 1, 2, 3]]
    assert all("seconds" not in c["report"] for c in doc["combinations"])
    # the CSV and everything but timings is deterministic
    assert sweep.csv_text(res) == (out / "sweep.csv").read_text()
    table = sweep.table_text(res)
    assert table.splitlines()[0].split()[-1] == "seconds" and len(table.splitlines()) == 6


def test_cli_sweep(db, tmp_path, monkeypatch, capsys):
    from pbdtui.cli import main

    monkeypatch.chdir(tmp_path)  # no ./config.yaml: built-in defaults, like the fixture
    out = tmp_path / "o"
    assert main(["sweep", "--db", db, "--grid", "cooldown_minutes=3", "--out", str(out), "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "cooldown_minutes" in printed and "net_pnl" in printed
    assert (out / "sweep.csv").read_text().count("\n") == 2
    assert main(["sweep", "--db", db, "--grid", "nope=1,2"]) == 2
    assert "'nope'" in capsys.readouterr().err


# --- ranking, warnings, train/test ------------------------------------------------------


def _rep(net, pf=None, losses=1.0, trades=3, drawdown=1.0, sharpe=None):
    return {"net_pnl": net, "profit_factor": pf, "gross_losses": losses, "trades": trades,
            "max_drawdown": drawdown, "sharpe_daily": sharpe}


def test_ranking_orders_by_the_objective_ties_in_combination_order():
    reps = [_rep(1.0, 1.5, drawdown=3.0), _rep(2.0, None, losses=0.0, drawdown=1.0),  # no loss: infinite PF
            _rep(1.0, 3.0, drawdown=1.0), _rep(-1.0, None, trades=0, losses=0.0, drawdown=0.0)]
    assert sweep.ranking(reps, "net_pnl") == [1, 0, 2, 3]  # 0 and 2 tie: combination order
    assert sweep.ranking(reps, "profit_factor") == [1, 2, 0, 3]  # no trades: undefined, last
    assert sweep.ranking(reps, "max_drawdown") == [3, 1, 2, 0]  # smallest first
    assert sweep.ranking(reps, "sharpe") == [0, 1, 2, 3]  # all undefined: combination order
    with pytest.raises(ConfigError, match="'nope'"):
        sweep.ranking(reps, "nope")


def test_maker_warning_only_when_a_combination_uses_maker_fees():
    _, taker = sweep.parse_grid(Settings(), ["slippage_ticks_entry=0,1"])
    assert sweep.sweep_warnings(taker) == []
    _, mixed = sweep.parse_grid(Settings(), ["fee_model=taker,maker", "slippage_ticks_entry=0,1"])
    (w,) = sweep.sweep_warnings(mixed)
    assert w.startswith("2 of 4 combination(s): fee_model=maker") and "maker fees cannot hold" in w


@pytest.fixture(scope="module")
def split(db):
    grid, combos = sweep.parse_grid(BASE, ["cooldown_minutes=0,3"])
    with Store(db, instrument_of(BASE)) as store:
        res = sweep.run_sweep(store, grid, combos, workers=1, split_ms=SPLIT)
    res.rank_by = "expectancy"
    return res


SPLIT = 1_767_571_200_000 + 3 * 3_600_000  # 2026-01-05 03:00 UTC, mid-way through the fixture's data


def test_train_until_splits_each_run_at_the_date(split, db):
    assert split.split_ms == SPLIT
    for full, train, test in zip(split.reports, split.train_reports, split.test_reports, strict=True):
        assert train["data_from"] == "2026-01-05T00:00:00Z" and train["data_to"] == "2026-01-05T03:00:00Z"
        assert test["data_from"] == "2026-01-05T03:00:00Z" and test["data_to"] == full["data_to"]
        assert train["trades"] > 0 and test["trades"] > 0
        # every round trip closes in exactly one period
        assert train["trades"] + test["trades"] == full["trades"]
        assert train["net_pnl"] + test["net_pnl"] == pytest.approx(full["net_pnl"], abs=1e-5)
        assert train["run_id"] == full["run_id"] + "/train" and test["run_id"] == full["run_id"] + "/test"
    # train holds exactly the round trips that closed before the cut (entered before it or not)
    from engine.backtest import run_tick
    from engine.report import round_trips

    s0 = split.combos[0]
    with Store(db, instrument_of(BASE)) as store:
        trips = round_trips(run_tick(store, BASE.replace(**s0)).fills, BASE)
    assert split.train_reports[0]["trades"] == int((trips["exit_ts"] < SPLIT).sum())
    assert split.test_reports[0]["trades"] == int((trips["exit_ts"] >= SPLIT).sum())
    assert split.train_reports[0]["net_pnl"] == pytest.approx(float(trips["net"][trips["exit_ts"] < SPLIT].sum()),
                                                              abs=1e-5)
    # ranked by the train objective
    exp = [split.train_reports[i]["expectancy"] for i in split.ranked()]
    assert exp == sorted(exp, reverse=True)


def test_train_until_outputs_side_by_side(split, settings=BASE):
    header, *rows = sweep.csv_text(split).splitlines()
    cols = header.split(",")
    assert cols[:2] == ["rank", "cooldown_minutes"] and "train_net_pnl" in cols and "test_net_pnl" in cols
    assert cols.index("train_expectancy") < cols.index("test_expectancy")
    first = dict(zip(cols, rows[0].split(","), strict=True))
    best = split.ranked()[0]
    assert float(first["train_net_pnl"]) == pytest.approx(split.train_reports[best]["net_pnl"])
    assert float(first["test_net_pnl"]) == pytest.approx(split.test_reports[best]["net_pnl"])
    table = sweep.table_text(split).splitlines()[0].split()
    assert table[:2] == ["rank", "cooldown_minutes"] and "test_trades" in table and "train_expectancy" in table
    doc = sweep.json_doc(split, settings)
    assert doc["train_until"] == {"ms": SPLIT, "utc": "2026-01-05T03:00:00Z"}
    assert {"train_report", "test_report"} <= set(doc["combinations"][0])


def test_cli_sweep_rank_by_and_train_until(db, tmp_path, monkeypatch, capsys):
    from pbdtui.cli import main

    monkeypatch.chdir(tmp_path)
    args = ["sweep", "--db", db, "--grid", "fee_model=maker", "--workers", "1", "--out", "o"]
    assert main([*args, "--rank-by", "max_drawdown", "--train-until", "2026-01-05T03:00"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("warning: 1 of 1 combination(s): fee_model=maker")
    assert "train: trades closed before 2026-01-05T03:00:00Z" in printed and "ranked by train max_drawdown" in printed and "test_net_pnl" in printed
    doc = json.loads((tmp_path / "o" / "sweep.json").read_text())
    assert doc["rank_by"] == "max_drawdown" and doc["warnings"]
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--rank-by", "luck"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "'luck'" in err and "max_drawdown" in err
    assert main([*args, "--train-until", "2027-01-01"]) == 2
    assert "leaves no data" in capsys.readouterr().err
