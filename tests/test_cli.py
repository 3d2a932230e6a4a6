"""The command line: time ranges, data info, purge, --symbol, --version, help, progress, compile notice."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import time

import numpy as np
import pytest

from engine import importers, instruments
from engine.backtest import run_tick
from engine.config import ConfigError, Settings
from engine.features import compute_minutes
from engine.info import event_gaps
from engine.kernel_cache import EVENTS, uncompiled
from engine.store import Store, instrument_of
from engine.timerange import parse_range, parse_utc
from pbdtui.cli import COMPILE_NOTICE, build_parser, main
from pbdtui.progress import progress
from tests.helpers import shared_file

DAY = 86_400_000
JAN5 = 1_767_571_200_000  # 2026-01-05 00:00 UTC, synth's default start
CONFIG = "rolling_window_minutes: 60\nmax_daily_loss: 1000000000\n"
SETTINGS = Settings(rolling_window_minutes=60, max_daily_loss=1e9)


def _stderr_lines(err: str) -> list[str]:
    """stderr without the one-line compile notice (printed on a cold numba cache, TTY or not)."""
    return [line for line in err.splitlines() if COMPILE_NOTICE not in line]


@pytest.fixture(scope="module")
def cfg(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    path.write_text(CONFIG)
    return str(path)


@pytest.fixture(scope="module")
def sim(tmp_path_factory, cfg) -> str:
    """0.3 simulated days (00:00-07:12 UTC on 2026-01-05), made through the CLI."""
    path = tmp_path_factory.mktemp("sim") / "sim.db"
    assert main(["data", "synth", "--db", str(path), "--days", "0.3", "--seed", "4", "--config", cfg]) == 0
    return str(path)


def _copy(src: str, tmp_path, name: str) -> str:
    dst = tmp_path / name
    shutil.copy(src, dst)
    return str(dst)


# --- --from / --to ------------------------------------------------------------------------


@pytest.mark.parametrize("text, end, want", [
    ("2026-01-05", False, JAN5),
    ("2026-01-05", True, JAN5 + DAY),  # a bare --to date: the whole day
    ("2026-01-05T10:00", False, JAN5 + 10 * 3_600_000),
    ("2026-01-05T10:00", True, JAN5 + 10 * 3_600_000),  # a time is exact, also as an end
    ("2026-01-05 10:00:00", False, JAN5 + 10 * 3_600_000),
    ("2026-01-05T10:00:30Z", False, JAN5 + 10 * 3_600_000 + 30_000),
    ("2026-01-05T10:00:30.25Z", False, JAN5 + 10 * 3_600_000 + 30_250),
    ("2024-02-29", False, 1_709_164_800_000),
])
def test_utc_times_parse_to_exact_ms(text, end, want):
    assert parse_utc(text, "--to" if end else "--from", end=end) == want


@pytest.mark.parametrize("text", ["2026-13-01", "2026-02-30", "2025-02-29", "05/01/2026", "2026-01-05T24:00",
                                  "2026-01-05T10:60", "2026-01-05+02:00", "2026-01-05T10:00+02:00", "", "yesterday",
                                  "2026-1-5", "1767571200000"])
def test_bad_times_are_one_line_errors_naming_the_flag(text, sim, capsys):
    assert main(["features", "--db", sim, "--from", text]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--from" in err and repr(text) in err
    assert main(["backtest", "--db", sim, "--to", text]) == 2
    assert "--to" in capsys.readouterr().err


def test_from_must_be_before_to(sim, capsys):
    assert parse_range("2026-01-05", "2026-01-05") == (JAN5, JAN5 + DAY)
    with pytest.raises(ConfigError, match="--from '2026-01-06' is not before --to '2026-01-05'"):
        parse_range("2026-01-06", "2026-01-05")
    assert main(["backtest", "--db", sim, "--from", "2026-01-05T10:00", "--to", "2026-01-05T09:00"]) == 2
    assert "is not before" in capsys.readouterr().err


def test_empty_range_is_a_clear_error(sim, capsys):
    for cmd in (["features"], ["backtest"], ["backtest", "--mode", "bar"], ["sweep", "--grid", "cooldown_minutes=3"]):
        assert main([*cmd, "--db", sim, "--from", "2026-02-01", "--to", "2026-02-02"]) == 2, cmd
        err = capsys.readouterr().err
        assert "no " in err and "between 2026-02-01 00:00:00 and 2026-02-03 00:00:00 UTC" in err, err


def test_features_range_replaces_only_its_own_minutes(sim, cfg, tmp_path, capsys):
    db = _copy(sim, tmp_path, "f.db")
    assert main(["features", "--db", db, "--config", cfg]) == 0
    with Store(db) as st:
        full = st.fetch("SELECT * FROM bars_1m ORDER BY ts_min")
        full_feats = st.fetch("SELECT * FROM features_1m ORDER BY ts_min")
    lo, hi = JAN5 + 2 * 3_600_000, JAN5 + 3 * 3_600_000
    assert main(["features", "--db", db, "--config", cfg, "--from", "2026-01-05T02:00", "--to", "2026-01-05 03:00:00"]) == 0
    assert "60 minutes" in capsys.readouterr().out
    with Store(db) as st:
        now = st.fetch("SELECT * FROM bars_1m ORDER BY ts_min")
        now_feats = st.fetch("SELECT * FROM features_1m ORDER BY ts_min")
    outside = [r for r in full if not lo <= r[0] < hi]
    assert [r for r in now if not lo <= r[0] < hi] == outside and len(outside) == len(full) - 60
    assert [r for r in now_feats if not lo <= r[0] < hi] == [r for r in full_feats if not lo <= r[0] < hi]
    inside = [r for r in now if lo <= r[0] < hi]
    assert len(inside) == 60 and len(now) == len(full)
    # the range starts from an empty state: its rows are those of a database holding only that hour
    with Store(db) as st:
        m = compute_minutes(st, SETTINGS, lo, hi)
    assert [int(t) for t in m.bars["ts_min"]] == [r[0] for r in inside]
    assert [r[4] for r in inside] == pytest.approx([int(c) * 0.1 for c in m.bars["close"]])


def _only_range(src: str, dst, lo: int, hi: int) -> None:
    """A database holding only the ticks (and funding) of [lo, hi) of ``src``."""
    with Store(src) as a, Store(dst, a.instrument) as b:
        for kind in ("trade", "quote"):
            b.append_ticks(kind, a.load_ticks(kind, lo, hi), "copy")
        funding = a.load_funding()
        b.append_funding(funding[funding["ts"] >= lo])


def test_backtest_range_equals_a_database_holding_only_that_range(sim, tmp_path):
    lo, hi = JAN5 + 90 * 60_000 + 1234, JAN5 + 6 * 3_600_000 + 30_000  # bounds inside minutes and chunks
    _only_range(sim, tmp_path / "only.db", lo, hi)
    with Store(sim) as st:
        ranged = run_tick(st, SETTINGS, start_ms=lo, end_ms=hi)
        whole = run_tick(st, SETTINGS)
    with Store(tmp_path / "only.db") as st:
        only = run_tick(st, SETTINGS)
    assert len(ranged.fills) > 0, "the range should trade"
    assert ranged.signals.tobytes() == only.signals.tobytes()
    assert ranged.fills.tobytes() == only.fills.tobytes()
    assert ranged.bars.tobytes() == only.bars.tobytes()
    assert ranged.events == only.events
    assert ranged.run_id == only.run_id != whole.run_id  # the id holds the effective data range
    assert ranged.bars["ts_min"][0] >= lo // 60_000 * 60_000 and ranged.bars["ts_min"][-1] < hi
    assert (ranged.fills["ts_fill"] >= lo).all() and (ranged.fills["ts_fill"] < hi).all()


def test_backtest_cli_range_writes_rows_inside_it_only(sim, cfg, tmp_path, capsys):
    db = _copy(sim, tmp_path, "b.db")
    out = tmp_path / "out"
    args = ["--db", db, "--config", cfg, "--from", "2026-01-05T01:30", "--to", "2026-01-05T06:00"]
    assert main(["backtest", *args, "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    lo, hi = JAN5 + 90 * 60_000, JAN5 + 6 * 3_600_000
    with Store(db) as st:
        sig = st.fetch("SELECT MIN(ts_min), MAX(ts_min), COUNT(*) FROM signals_1m WHERE run_id=?", (rep["run_id"],))[0]
        fills = st.fetch("SELECT ts_ms_fill FROM trades_exec WHERE run_id=?", (rep["run_id"],))
    assert lo <= sig[0] and sig[1] < hi and sig[2] == rep["minutes"] == 270
    assert fills and all(lo <= f <= hi + 60_000 for (f,) in fills)
    assert _stderr_lines(capsys.readouterr().err) == []  # not a terminal: no progress output
    # bar mode reads only the minute rows inside the range
    assert main(["backtest", "--mode", "bar", *args]) == 0
    with Store(db) as st:
        run_id = st.fetch("SELECT run_id FROM runs WHERE mode='bar'")[0][0]
        got = st.fetch("SELECT MIN(ts_min), MAX(ts_min), COUNT(*) FROM signals_1m WHERE run_id=?", (run_id,))[0]
    assert got == (lo, hi - 60_000, 270)


def test_sweep_range_gives_the_backtest_figures_of_that_range(sim, cfg, tmp_path, capsys):
    db = _copy(sim, tmp_path, "s.db")
    rng = ["--from", "2026-01-05T01:00", "--to", "2026-01-05T05:00"]
    assert main(["backtest", "--db", db, "--config", cfg, *rng, "--out", str(tmp_path / "bt")]) == 0
    bt = json.loads((tmp_path / "bt" / "report.json").read_text())
    assert main(["sweep", "--db", db, "--config", cfg, *rng, "--grid", "cooldown_minutes=3",
                 "--workers", "1", "--out", str(tmp_path / "sw")]) == 0
    doc = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    row = doc["combinations"][0]["report"]
    assert row["run_id"] == bt["run_id"] and row["net_pnl"] == bt["net_pnl"] and row["trades"] == bt["trades"]
    lo, hi = doc["data_range"]
    assert JAN5 + 3_600_000 <= lo and hi < JAN5 + 5 * 3_600_000
    assert _stderr_lines(capsys.readouterr().err) == []


# --- data info --------------------------------------------------------------------------------


def test_data_info_describes_a_synth_database(sim, cfg, tmp_path, capsys):
    db = _copy(sim, tmp_path, "i.db")
    assert main(["features", "--db", db, "--config", cfg]) == 0
    capsys.readouterr()
    assert main(["data", "info", "--db", db]) == 0
    text = capsys.readouterr().out
    with Store(db) as st:
        n_trades, n_quotes = st.count_ticks("trade"), st.count_ticks("quote")
        first, last = st.tick_range()
    assert "instrument  BTCUSDT  tick_size 0.1  qty_step 0.001" in text
    assert f"{'trades':<12}{n_trades:>12} rows" in text and f"{'quotes':<12}{n_quotes:>12} rows" in text
    assert "2026-01-05 00:00:00" in text and "2026-01-05 07:11:59" in text
    assert "bars_1m      " in text and "432 rows  2026-01-05 00:00:00 .. 2026-01-05 07:11:00" in text
    assert "gaps (at least a whole minute without a trade or quote): none" in text
    assert main(["data", "info", "--db", db, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["raw"]["trade"]["rows"] == n_trades and doc["raw"]["quote"]["rows"] == n_quotes
    assert min(doc["raw"]["trade"]["first_ts"], doc["raw"]["quote"]["first_ts"]) == first
    assert doc["derived"]["bars_1m"]["rows"] == doc["derived"]["features_1m"]["rows"] == 432
    assert doc["instrument"] == {"symbol": "BTCUSDT", "tick_size": 0.1, "qty_step": 0.001}
    assert doc["gaps"]["count"] == 0 and doc["file"]["page_count"] * doc["file"]["page_size"] == doc["file"]["bytes"]
    assert doc["imports"]["count"] == 0 and doc["funding"]["rows"] == 1


def test_data_info_lists_the_gap_between_two_real_windows_fast(tmp_path, capsys):
    base = "binance_usdm_btcusdt/"
    db = str(tmp_path / "two.db")
    for day in ("2023-04-04", "2024-07-18"):
        assert main(["data", "import", "--db", db, "--format", "tardis",
                     "--trades", str(shared_file(f"{base}{day}_trades.csv.gz")),
                     "--quotes", str(shared_file(f"{base}{day}_quotes.csv.gz"))]) == 0
    capsys.readouterr()
    started = time.perf_counter()
    assert main(["data", "info", "--db", db, "--json"]) == 0
    seconds = time.perf_counter() - started
    doc = json.loads(capsys.readouterr().out)
    longest = doc["gaps"]["longest"][0]
    assert (longest["start"], longest["end"]) == ("2023-04-05 00:07:00", "2024-07-18 23:57:00")
    assert longest["minutes"] == 678_230 and longest["segment_break"]  # 471 days less 10 minutes
    assert seconds < 5, "data info must not walk the 15 months minute by minute"
    # every gap against a naive computation over the minutes that hold events
    with Store(db) as st:
        ts = np.concatenate([st.load_ticks("trade")["ts"], st.load_ticks("quote")["ts"]])
        gaps = event_gaps(st)
    minutes = np.unique(ts // 60_000)
    holes = [(int(a + 1) * 60_000, int(b) * 60_000) for a, b in zip(minutes[:-1], minutes[1:], strict=True) if b - a > 1]
    assert [(g.start_ms, g.end_ms) for g in gaps] == holes
    assert main(["data", "info", "--db", db]) == 0
    text = capsys.readouterr().out
    assert "2023-04-05 00:07:00 .. 2024-07-18 23:57:00  470 d 23 h 50 min" in text and "imports: 4" in text


def test_data_info_never_creates_a_database(tmp_path, capsys):
    db = tmp_path / "none.db"
    assert main(["data", "info", "--db", str(db)]) == 2
    assert not db.exists() and "no such database" in capsys.readouterr().err
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 100)
    assert main(["data", "info", "--db", str(junk)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "junk.db" in err


# --- purge --------------------------------------------------------------------------------------


def _md5(path) -> str:
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def test_purge_dry_run_changes_nothing_and_the_real_purge_shrinks_the_file(sim, tmp_path, capsys):
    db = _copy(sim, tmp_path, "p.db")
    before = _md5(db)
    assert main(["data", "purge", "--db", db, "--keep-hours", "2", "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert _md5(db) == before and not (tmp_path / "p.db-wal").exists()
    with Store(db) as st:
        plan = st.plan_purge(2 * 3_600_000)
        last = st.tick_range()[1]
        size = st.file_bytes()
    assert "would remove" in dry and f"{plan.rows['trade']} trades + {plan.rows['quote']} quotes" in dry
    assert "2026-01-05 07:11:59" in dry and "cutoff 2026-01-05 05:11:59" in dry
    assert "from 2026-01-05 00:00:00.000 to 2026-01-05 05:11:59" in dry
    assert main(["data", "purge", "--db", db, "--keep-hours", "2"]) == 0
    out = capsys.readouterr().out
    assert "removed" in out and "given back to the disk" in out
    with Store(db) as st:
        assert st.count_ticks("trade") + st.count_ticks("quote") > 0
        assert st.tick_range()[0] >= last - 2 * 3_600_000
        after = st.file_bytes()
    assert after < size * 0.45, (size, after)  # 5 of 7.2 hours gone, and the file really shrank


# --- --symbol ------------------------------------------------------------------------------------


def test_symbol_imports_the_real_xrp_archive(tmp_path, cfg, capsys):
    archive = str(shared_file("bybit_v5/2024-12-01_XRPUSDT_ob500.data.zip"))
    db = tmp_path / "xrp.db"
    assert main(["data", "import", "--db", str(db), "--format", "bybit-book", archive]) == 2
    assert "pass --symbol XRPUSDT" in capsys.readouterr().err and not db.exists()
    assert main(["data", "import", "--db", str(db), "--symbol", "xrpusdt", "--format", "bybit-book", archive]) == 0
    assert "48 rows, 48 new, 0 bad" in capsys.readouterr().out
    with Store(db) as st:
        assert (st.instrument.symbol, st.instrument.tick_size, st.instrument.qty_step) == ("XRPUSDT", 0.0001, 1.0)
        q = st.load_ticks("quote")
    assert (int(q["bid_px"][0]), int(q["bid_sz"][0])) == (19531, 6203)  # 1.9531 for 6203 XRP, from the first snapshot
    # later commands follow the database's own instrument without --symbol
    assert main(["data", "info", "--db", str(db)]) == 0
    assert "XRPUSDT  tick_size 0.0001  qty_step 1" in capsys.readouterr().out
    assert main(["features", "--db", str(db)]) == 2  # a book archive alone: quotes, no trades to build bars
    err = capsys.readouterr().err
    assert "holds XRPUSDT" in err and "xrp.db: no trades in the database" in err
    # a contradicting --symbol is refused, saying which one the database holds
    assert main(["features", "--db", str(db), "--symbol", "BTCUSDT"]) == 2
    assert "holds XRPUSDT" in capsys.readouterr().err
    # trading commands need an order size that fits the lot step
    assert main(["backtest", "--db", str(db), "--config", cfg]) == 2
    assert "order_qty 0.001 is not a whole number of XRPUSDT lots" in capsys.readouterr().err
    xrp_cfg = tmp_path / "xrp.yaml"
    xrp_cfg.write_text(CONFIG + "order_qty: 10\n")
    assert main(["backtest", "--db", str(db), "--symbol", "XRPUSDT", "--config", str(xrp_cfg)]) == 2
    assert "no trades in the database" in capsys.readouterr().err  # not a silent "0 trades"


def test_unknown_symbols_need_both_sizes(tmp_path, capsys):
    with pytest.raises(ConfigError, match="known: BTCUSDT"):
        instruments.resolve("PEPEUSDT")
    spec = instruments.resolve("PEPEUSDT", tick_size=1e-7, qty_step=100.0)
    assert (spec.symbol, spec.tick_size, spec.qty_step) == ("PEPEUSDT", 1e-7, 100.0)
    assert instruments.resolve("SOLUSDT", tick_size=0.001).tick_size == 0.001
    with pytest.raises(ConfigError, match="order_qty 0.001 is not a whole number of ETHUSDT lots"):
        instruments.apply(Settings(), instruments.resolve("ETHUSDT"), trading=True)
    s = instruments.apply(Settings(), instruments.resolve("ETHUSDT"), trading=False)  # order size unused: the minimum
    assert (s.symbol, s.tick_size, s.qty_step, s.instrument, s.order_qty) == ("ETHUSDT", 0.01, 0.01, "ETHUSDT_PERP", 0.01)
    s = instruments.apply(Settings(order_qty=0.05), instruments.resolve("ETHUSDT"), trading=True)
    assert s.order_qty == 0.05
    assert main(["data", "info", "--db", str(tmp_path / "x.db"), "--symbol", "PEPEUSDT"]) == 2
    assert main(["data", "import", "--db", str(tmp_path / "x.db"), "--symbol", "PEPEUSDT", "--format", "tardis",
                 "--trades", "x.csv"]) == 2
    err = capsys.readouterr().err
    assert "unknown instrument" in err and "XRPUSDT (tick 0.0001, step 1)" in err
    assert not (tmp_path / "x.db").exists()


# --- --version, --help -----------------------------------------------------------------------------


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"pbdtui {version('pbdtui')}\n"


def _parsers(parser: argparse.ArgumentParser, path: str = "pbdtui"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                assert helps.get(name), f"{path} {name}: no help line in the command list"
                yield from _parsers(sub, f"{path} {name}")


def test_every_flag_has_help_and_every_command_an_example():
    seen = []
    for path, parser in _parsers(build_parser()):
        seen.append(path)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help.strip(), f"{path} {action.option_strings or action.dest}: no help"
        assert parser.epilog and "example" in parser.epilog, f"{path}: no example"
        examples = [line.strip() for line in parser.epilog.splitlines() if line.strip().startswith("pbdtui ")]
        assert examples, f"{path}: the example is not a command line"
        parser.format_help()  # every %(default)s expands
    assert {"pbdtui data info", "pbdtui data purge", "pbdtui backtest", "pbdtui sweep", "pbdtui demo"} <= set(seen)


@pytest.mark.parametrize("argv, words", [
    (["backtest"], "required: --db"),
    (["backtest", "--db", "x.db", "--mode", "fast"], "'fast'"),
    (["sweep", "--db", "x.db", "--grid", "cooldown_minutes=1", "--rank-by", "nonsense"], "'nonsense'"),
    (["sweep", "--db", "x.db", "--grid", "cooldown_minutes=1", "--workers", "two"], "'two'"),
    (["bogus"], "'bogus'"),
])
def test_command_line_mistakes_are_one_line_errors_with_status_2(argv, words, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and words in err, err
    assert err.startswith(f"pbdtui {argv[0]}: error: " if argv[0] != "bogus" else "pbdtui: error: ")
    assert err.rstrip().endswith("--help)")


def test_rank_by_choices_are_the_sweep_objectives():
    from engine.sweep import OBJECTIVES
    from pbdtui.cli import RANK_BY

    assert RANK_BY == tuple(OBJECTIVES)


def test_help_ends_with_the_example(capsys):
    with pytest.raises(SystemExit):
        main(["backtest", "--help"])
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1].strip().startswith("pbdtui backtest --db")
    assert "a bare date means the end of that day" in " ".join(out.split())


# --- progress and the compile notice -------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_on_a_terminal_and_nothing_elsewhere():
    term = _Terminal()
    with progress("sweep", "combinations", stream=term) as update:
        assert update is not None
        update(1, 4)
        update(4, 4)
        update(4, 4)  # after the end: ignored
    assert "sweep" in term.getvalue() and "100%" in term.getvalue() and "4/4 combinations" in term.getvalue()
    pipe = io.StringIO()
    with progress("sweep", stream=pipe) as update:
        assert update is None
    assert pipe.getvalue() == ""


def test_long_commands_print_no_progress_when_stderr_is_not_a_terminal(sim, cfg, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the backtest writes its report folder under ./backtests
    db = str(tmp_path / "q.db")
    assert main(["data", "synth", "--db", db, "--days", "0.05", "--config", cfg]) == 0
    assert main(["features", "--db", db, "--config", cfg]) == 0
    assert main(["backtest", "--db", db, "--config", cfg]) == 0
    base = "binance_usdm_btcusdt/2023-04-04_"
    assert main(["data", "import", "--db", str(tmp_path / "r.db"), "--format", "tardis",
                 "--trades", str(shared_file(base + "trades.csv.gz"))]) == 0
    captured = capsys.readouterr()
    assert _stderr_lines(captured.err) == []
    assert "\r" not in captured.out and "━" not in captured.out  # no bar, no carriage returns


def test_import_reports_bytes_read_up_to_the_file_size(tmp_path):
    path = shared_file("binance_usdm_btcusdt/2024-07-18_quotes.csv.gz")
    calls = []
    with Store(tmp_path / "a.db", instrument_of(Settings())) as st:
        importers.import_tardis(st, Settings(), quotes=path, progress=lambda _p: lambda d, t: calls.append((d, t)))
    size = path.stat().st_size
    assert calls and all(t == size for _, t in calls) and calls[-1][0] == size
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_cold_kernel_cache_is_detected(tmp_path):
    empty = tmp_path / "cache"
    assert uncompiled(EVENTS, empty) == list(EVENTS)  # no directory yet
    (empty / "kernels_abc").mkdir(parents=True)
    (empty / "kernels_abc" / "features.on_trade-182.py311.nbi").write_bytes(b"")
    assert uncompiled(EVENTS, empty) == ["loop.run_events"]
    (empty / "kernels_abc" / "loop.run_events-63.py311.nbi").write_bytes(b"")
    assert uncompiled(EVENTS, empty) == []


def test_console_replay_feeds_only_the_range(sim):
    import threading

    from engine.runtime import ReplayDriver
    from engine.runtime.events import ReplayFinished

    lo, hi = JAN5 + 3_600_000 + 500, JAN5 + 2 * 3_600_000
    driver = ReplayDriver(SETTINGS, sim, warmup_minutes=10_000, start_ms=lo, end_ms=hi)  # all at full speed
    finished = []

    def post(message) -> None:
        if isinstance(message, ReplayFinished):
            finished.append(message)

    thread = threading.Thread(target=driver.run, args=(post,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not finished and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    driver.stop()
    thread.join(10)
    with Store(sim) as st:
        first, last = st.tick_range(lo, hi)
        m = compute_minutes(st, SETTINGS, lo, hi)
    assert finished and (driver.first_ts, driver.end_ts) == (first, last + 1)
    assert finished[0].minutes == len(m.bars) == 60
    assert driver.engine.last_event_ts == last


def test_collect_records_from_the_exchange_sim_and_stops_after_its_duration(tmp_path):
    """`pbdtui exchange-sim` and `pbdtui collect` as a user runs them, in two processes."""
    import subprocess
    import sys

    src = tmp_path / "src.db"
    assert main(["data", "synth", "--db", str(src), "--days", "0.01", "--seed", "4"]) == 0
    sim = subprocess.Popen([sys.executable, "-m", "pbdtui.cli", "exchange-sim", "--db", str(src), "--speed", "60"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = sim.stdout.readline().strip()
        assert url.startswith("ws://127.0.0.1:") and url.endswith("/v5/public/linear")
        run = subprocess.run([sys.executable, "-m", "pbdtui.cli", "collect", "--db", str(tmp_path / "live.db"),
                              "--ws-url", url, "--duration", "10"], capture_output=True, text=True, timeout=120)
    finally:
        sim.terminate()
        sim.wait(10)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("collecting BTCUSDT from ws://127.0.0.1")
    assert any("feed subscribed: publicTrade.BTCUSDT" in line for line in lines), lines
    assert any(" | minute " in line and " | reconnects 0 | gaps 0 |" in line for line in lines), lines
    assert lines[-1].startswith("stopped: recorded ") and " trades" in lines[-1], lines
    with Store(tmp_path / "live.db", readonly=True) as st:
        assert st.count_ticks("trade") > 0  # how many a loaded machine gets through in 10 s varies


def test_backtest_and_sweep_refuse_an_out_that_is_a_file_before_any_work(sim, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("x")
    for cmd in (["backtest"], ["sweep", "--grid", "cooldown_minutes=3"]):
        assert main([*cmd, "--db", sim, "--out", str(taken)]) == 2
        err = capsys.readouterr().err
        assert err == f"pbdtui: error: --out {taken}: exists and is not a directory\n"


def test_backtest_of_a_database_without_ticks_is_an_error_not_an_empty_report(tmp_path, capsys):
    db = tmp_path / "empty.db"
    with Store(db, instrument_of(SETTINGS)):
        pass
    assert main(["backtest", "--db", str(db)]) == 2
    assert "no stored ticks" in capsys.readouterr().err
    assert not (tmp_path / "backtests").exists()


def test_replay_needs_a_database_and_takes_a_range_and_a_speed(tmp_path, capsys):
    args = build_parser().parse_args(["replay", "--db", "x.db", "--from", "2026-01-05 08:00",
                                      "--to", "2026-01-05", "--speed", "300"])
    assert (args.command, args.db, args.start, args.end, args.speed) == ("replay", "x.db", "2026-01-05 08:00",
                                                                         "2026-01-05", 300.0)
    assert main(["replay", "--db", str(tmp_path / "missing.db")]) == 2
    assert "missing.db" in capsys.readouterr().err


def test_bare_pbdtui_outside_a_terminal_prints_the_help(capsys):
    # in a terminal it opens the demo and says so; a script or a pipe gets the commands instead
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "replay" in out and "demo" in out
