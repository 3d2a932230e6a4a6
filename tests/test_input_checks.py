"""Issue 7: implausible input is refused or counted, never stored, never a traceback.

One test per defect of the issue (items 1-6, 8, 9); the fuzz test is in
``test_fuzz_importers.py`` and the concurrency tests in ``test_concurrency.py``.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from engine import importers
from engine import store as store_module
from engine.config import ConfigError, Settings, load_settings
from engine.importers import import_bybit_book, import_bybit_trades, import_tardis
from engine.store import Instrument, Store, StoreError, instrument_of
from pbdtui.cli import main
from tests.helpers import quotes, random_stream, trades
from tests.test_importers import (
    BYBIT_HEADER,
    QUOTE_HEADER,
    TRADE_HEADER,
    XRP,
    _msg,
    open_store,
    warnings_of,
    write_book_zip,
    write_gz,
)

BTC = Settings()
REPO = Path(__file__).resolve().parents[1]
T0_US = 1_733_011_200_000_000  # 2024-12-01 00:00 UTC in microseconds
T0_S = 1_733_011_200


def tardis_trade(i: int, ts_us: int | str | None = None, price: str = "96000.5", amount: str = "0.002",
                 trade_id: int | None = None) -> str:
    ts = T0_US + i * 1000 if ts_us is None else ts_us
    return f"x,BTCUSDT,{ts},{ts},{i if trade_id is None else trade_id},buy,{price},{amount}"


def tardis_quote(i: int, ts_us: int | None = None, bid: str = "96000.4", ask: str = "96000.5",
                 bid_amount: str = "1.5", ask_amount: str = "2.0") -> str:
    ts = T0_US + i * 1000 if ts_us is None else ts_us
    return f"x,BTCUSDT,{ts},{ts},{ask_amount},{ask},{bid},{bid_amount}"


def bybit_trade(i: int, ts: str | None = None, price: str = "96000.5", size: str = "0.002") -> str:
    t = f"{T0_S + i}.{i % 1000:03d}" if ts is None else ts
    return f"{t},BTCUSDT,Buy,{size},{price},PlusTick,id-{i},1,1,1"


# --- 1. implausible timestamps -----------------------------------------------------------


def test_rows_stamped_1970_2200_or_negative_are_bad_rows_with_the_reason(tmp_path, caplog):
    path = write_gz(tmp_path / "t.csv.gz", [
        TRADE_HEADER,
        *[tardis_trade(i) for i in range(5)],
        tardis_trade(5, ts_us=1_000_000),                 # 7: 1970
        tardis_trade(6, ts_us=7_258_118_400_000_000),     # 8: 2200
        tardis_trade(7, ts_us=-5),                        # 9: negative
        "x,BTCUSDT,1733011200000000,1000,8,buy,96000.5,0.002",  # 10: receive time 1970
    ])
    with caplog.at_level(logging.WARNING, logger="pbdtui.import"), open_store(tmp_path) as store:
        (report,) = import_tardis(store, BTC, trades=path)
        stored = store.load_ticks("trade")
    assert (report.rows_ok, report.rows_bad) == (5, 4)
    assert stored["ts"].min() >= T0_US // 1000
    messages = warnings_of(caplog)
    assert messages[0].endswith(":7: timestamp 1000000 (1970-01-01 00:00:01 UTC) is outside the plausible range "
                                "2015-01-01 .. " + messages[0].split(" .. ")[1])
    assert "(config plausible_from, plausible_until_days)" in messages[0]
    assert ":8: timestamp 7258118400000000 (2200-01-01 00:00:00 UTC) is outside" in messages[1]
    assert ":9: timestamp -5 (1969-12-31 23:59:59 UTC) is outside" in messages[2]
    assert ":10: local_timestamp 1000 (1970-01-01 00:00:00 UTC) is outside" in messages[3]


def test_bybit_trade_rows_outside_the_plausible_range_are_bad(tmp_path, caplog):
    path = write_gz(tmp_path / "b.csv.gz", [BYBIT_HEADER, *[bybit_trade(i) for i in range(4)],
                                            bybit_trade(9, ts="1.5"), bybit_trade(10, ts="7258118400.0")])
    with caplog.at_level(logging.WARNING, logger="pbdtui.import"), open_store(tmp_path) as store:
        report = import_bybit_trades(store, BTC, path)
    assert (report.rows_ok, report.rows_bad) == (4, 2)
    assert "timestamp 1.5 (1970-01-01 00:00:01 UTC) is outside the plausible range" in warnings_of(caplog)[0]


def test_plausible_range_is_configurable(tmp_path):
    late = BTC.replace(plausible_from="2025-01-01")
    path = write_gz(tmp_path / "t.csv.gz", [TRADE_HEADER, tardis_trade(0), tardis_trade(1, ts_us=1_750_000_000_000_000)])
    with open_store(tmp_path) as store:
        (report,) = import_tardis(store, late, trades=path)
    assert (report.rows_ok, report.rows_bad) == (1, 1)
    with pytest.raises(ConfigError, match="plausible_from.*'2015-13-01' is not a date"):
        BTC.replace(plausible_from="2015-13-01")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("plausible_from: 2016-02-29\nplausible_until_days: 0.5\n")  # YAML reads a date: accepted
    assert load_settings(cfg).plausible_from == "2016-02-29"


@pytest.mark.parametrize("fmt, lines, unit", [
    ("tardis", [TRADE_HEADER] + [tardis_trade(i, ts_us=(T0_US // 1000) + i) for i in range(50)], "milliseconds"),
    ("tardis", [TRADE_HEADER] + [tardis_trade(i, ts_us=T0_US * 1000 + i) for i in range(50)], "nanoseconds"),
    ("bybit", [BYBIT_HEADER] + [bybit_trade(i, ts=str(T0_S * 1000 + i)) for i in range(50)], "milliseconds"),
])
def test_a_file_in_the_wrong_time_unit_is_refused_naming_the_unit(tmp_path, fmt, lines, unit):
    path = write_gz(tmp_path / "w.csv.gz", lines)
    with open_store(tmp_path) as store:
        with pytest.raises(ConfigError, match=f"w.csv.gz: .* looks like {unit}, not .*nothing was imported"):
            if fmt == "tardis":
                import_tardis(store, BTC, trades=path)
            else:
                import_bybit_trades(store, BTC, path)
        assert store.count_ticks("trade") == 0


def test_a_book_archive_in_seconds_is_refused(tmp_path):
    msgs = [_msg("snapshot", 0, [("1.0000", "1")], [("1.0001", "1")], u=1)]
    msgs[0]["ts"] = msgs[0]["ts"] // 1000
    path = write_book_zip(tmp_path / "b.data.zip", msgs)
    with open_store(tmp_path, XRP) as store, pytest.raises(ConfigError, match="looks like seconds, not milliseconds"):
        import_bybit_book(store, XRP, path)


def test_a_1970_tick_in_the_store_costs_nothing_end_to_end(tmp_path, capsys):
    """Bounds keep it out of imports; one that slipped in (an old database) must not open a 56-year span."""
    tr, qu = random_stream(1, minutes=30)
    db = str(tmp_path / "old.db")
    with Store(db, Instrument("BTCUSDT", 0.1, 0.001)) as st:
        st.append_ticks("trade", trades([(1000, 300000, 1)]), "x")
        st.append_ticks("trade", tr, "t")
        st.append_ticks("quote", qu, "q")
    started = time.perf_counter()
    assert main(["features", "--db", db]) == 0
    assert main(["backtest", "--db", db, "--out", str(tmp_path / "o")]) == 0
    assert time.perf_counter() - started < 120
    with Store(db, readonly=True) as st:
        assert st.fetch("SELECT COUNT(*) FROM bars_1m")[0][0] <= 32  # a new segment, no minute of the gap


# --- 2. huge prices and sizes --------------------------------------------------------------


def test_huge_prices_and_sizes_are_bad_rows_not_negative_ticks(tmp_path, caplog):
    t_path = write_gz(tmp_path / "t.csv.gz", [TRADE_HEADER, tardis_trade(0), tardis_trade(1, price="1e18"),
                                              tardis_trade(2, amount="1e20"), tardis_trade(3, price="200000000000")])
    q_path = write_gz(tmp_path / "q.csv.gz", [QUOTE_HEADER, tardis_quote(0), tardis_quote(1, bid="1e300"),
                                              tardis_quote(2, ask_amount="1e300")])
    b_path = write_gz(tmp_path / "b.csv.gz", [BYBIT_HEADER, bybit_trade(0), bybit_trade(1, price="1e18")])
    with caplog.at_level(logging.WARNING, logger="pbdtui.import"), open_store(tmp_path) as store:
        t_rep, q_rep = import_tardis(store, BTC, trades=t_path, quotes=q_path)
        b_rep = import_bybit_trades(store, BTC, b_path)
        tr, qu = store.load_ticks("trade"), store.load_ticks("quote")
    assert [(r.rows_ok, r.rows_bad) for r in (t_rep, q_rep, b_rep)] == [(1, 3), (1, 2), (1, 1)]
    assert (tr["px"] > 0).all() and (tr["qty"] > 0).all() and (qu["bid_px"] > 0).all()
    messages = "\n".join(warnings_of(caplog))
    assert "t.csv.gz:3: price 1e18 is too large: at least 1e+12 ticks of 0.1" in messages
    assert "t.csv.gz:4: amount 1e20 is too large: at least 1e+09 lots of 0.001" in messages  # not "below half"
    assert "t.csv.gz:5: price 200000000000 is too large" in messages
    assert "q.csv.gz:3: bid_price 1e300 is too large" in messages
    assert "q.csv.gz:4: ask_amount 1e300 is too large" in messages
    assert "b.csv.gz:3: price 1e18 is too large" in messages


def test_book_levels_with_huge_sizes_prices_or_times_are_bad_messages_and_leave_the_book_sound(tmp_path, caplog):
    huge_ts = _msg("delta", 400, [("0.9999", "2")], [], u=4)
    huge_ts["ts"] = 10**30
    float_ts = _msg("delta", 450, [("0.9999", "2")], [], u=5)
    float_ts["cts"] = 1e300
    path = write_book_zip(tmp_path / "b.data.zip", [
        _msg("snapshot", 100, [("1.0000", "10")], [("1.0001", "5")], u=1),
        _msg("delta", 200, [("0.9999", "1e300")], [], u=2),                # huge size
        _msg("delta", 300, [("1e300", "1")], [], u=3),                     # bid priced 1e300
        huge_ts,                                                           # ts 10**30
        float_ts,                                                          # cts 1e300 (a float)
        _msg("delta", 500, [("1.0000", "12")], [], u=6),                   # still a sound book
        _msg("delta", 600, [("1.0000", "3.5")], [], u=7),                  # off the lot grid
    ])
    with caplog.at_level(logging.WARNING, logger="pbdtui.import"), open_store(tmp_path, XRP) as store:
        report = import_bybit_book(store, XRP, path)
        got = store.load_ticks("quote")
    assert (report.rows_ok, report.rows_bad) == (2, 5)
    assert got["bid_px"].tolist() == [10000, 10000] and got["bid_sz"].tolist() == [10, 12]
    messages = warnings_of(caplog)
    assert messages[0].endswith(":2: size 1e300 in 'b' is too large: at least 1e+09 lots of 1")
    assert messages[1].endswith(":3: price 1e300 in 'b' is too large: at least 1e+12 ticks of 0.0001")
    assert ":4: 'ts' 1000000000000000000000000000000 (a time outside years 1-9999) is outside" in messages[2]
    assert messages[3].endswith(":5: missing or unparsable 'ts'/'cts'")
    assert messages[4].endswith(":7: size 3.5 in 'b' is not a multiple of qty_step 1")


# --- 3. duplicates --------------------------------------------------------------------------


def test_a_file_with_every_trade_written_twice_is_stored_once(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "CHUNK_ROWS", 16)  # duplicates on both sides of chunk cuts
    rows = [tardis_trade(i) for i in range(100)]
    path = write_gz(tmp_path / "t.csv.gz", [TRADE_HEADER] + [r for row in rows for r in (row, row)])
    tail_first = write_gz(tmp_path / "u.csv.gz", [TRADE_HEADER] + rows + rows)  # the copy far from the original
    with open_store(tmp_path) as store:
        (report,) = import_tardis(store, BTC, trades=path)
        assert store.count_ticks("trade") == 100
        (again,) = import_tardis(store, BTC, trades=tail_first)
        got = store.load_ticks("trade")
    assert (report.rows_ok, report.rows_new, report.rows_dup) == (200, 100, 100)
    assert "200 rows, 100 new, 100 duplicates dropped, 0 bad" in report.summary()
    assert (again.rows_new, again.rows_dup) == (0, 200)
    assert got["trade_id"].tolist() == list(range(100)) and int(got["qty"].sum()) == 200


def test_trades_are_deduplicated_across_files_and_formats_but_another_time_is_kept(tmp_path):
    a = write_gz(tmp_path / "a.csv.gz", [TRADE_HEADER] + [tardis_trade(i) for i in range(0, 60)])
    b = write_gz(tmp_path / "b.csv.gz", [TRADE_HEADER] + [tardis_trade(i) for i in range(40, 100)]
                 + [tardis_trade(5, ts_us=T0_US + 5000 + 7000)])  # id 5 again, at another time: another trade
    with open_store(tmp_path) as store:
        import_tardis(store, BTC, trades=a)
        (rep,) = import_tardis(store, BTC, trades=b)
        got = store.load_ticks("trade")
    assert (rep.rows_ok, rep.rows_new, rep.rows_dup) == (61, 41, 20)
    assert len(got) == 101 and len(np.unique(got[["ts", "trade_id"]])) == 101


def test_store_append_drops_trades_already_stored_like_a_live_reconnect(tmp_path):
    tr, _ = random_stream(4, minutes=10)
    with Store(tmp_path / "a.db", Instrument("BTCUSDT", 0.1, 0.001)) as st:
        first = st.append_ticks_counted("trade", tr[:300], "live")
        again = st.append_ticks_counted("trade", tr[250:], "live")  # the reconnect replays 50 trades
        got = st.load_ticks("trade")
    assert (first.new, first.duplicates) == (300, 0)
    assert (again.new, again.duplicates) == (len(tr) - 300, 50)
    assert got.tobytes() == tr.tobytes()


def test_quotes_repeated_exactly_are_stored_once_also_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "CHUNK_ROWS", 4)
    rows = [(T0_US // 1000 + i // 3, 10, 1 + i // 3, 11, 1) for i in range(30)]  # every quote 3 times
    qu = quotes(rows)
    with Store(tmp_path / "a.db", Instrument("BTCUSDT", 0.1, 0.001)) as st:
        done = st.append_ticks_counted("quote", qu, "q")
        got = st.load_ticks("quote")
        other = quotes([(T0_US // 1000, 10, 1, 11, 2)])  # same time, another size: a new quote
        assert st.append_ticks("quote", other, "q") == 1
    assert (done.new, done.duplicates) == (10, 20)
    assert got["bid_sz"].tolist() == list(range(1, 11))


# --- 5. databases that are not databases ------------------------------------------------------


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("argv", [["data", "info"], ["features"], ["backtest"], ["data", "purge"], ["sweep", "--grid",
                                  "slippage_ticks_entry=0,1"], ["demo"]])
def test_a_db_that_is_not_sqlite_is_a_one_line_error(tmp_path, capsys, argv):
    text, gz, folder = tmp_path / "t.db", tmp_path / "g.db", tmp_path / "d.db"
    text.write_text("hello\n")
    gz.write_bytes(gzip.compress(b"SQLite format 3\x00" + bytes(100)))
    folder.mkdir()
    for db, says in ((text, "not a SQLite database (it does not start with 'SQLite format 3')"),
                     (gz, "not a SQLite database but a gzip file (gunzip it first)"),
                     (folder, "is a folder, not a database file")):
        assert main([*argv, "--db", str(db)]) == 2
        assert says in _err(capsys)


def test_import_into_a_db_that_is_not_sqlite_or_in_a_missing_folder(tmp_path, capsys):
    path = write_gz(tmp_path / "t.csv.gz", [TRADE_HEADER, tardis_trade(0)])
    bad = tmp_path / "x.db"
    content = gzip.compress(b"x")
    bad.write_bytes(content)
    for db, says in ((bad, "gzip file"), (tmp_path / "no" / "x.db", "folder")):
        assert main(["data", "import", "--db", str(db), "--format", "tardis", "--trades", str(path)]) == 2
        assert says in _err(capsys)
    assert bad.read_bytes() == content


def test_a_read_only_db_is_a_one_line_error(tmp_path, capsys):
    db = tmp_path / "ro.db"
    tr, qu = random_stream(1, minutes=5)
    with Store(db, Instrument("BTCUSDT", 0.1, 0.001)) as st:
        st.append_ticks("trade", tr, "t")
        st.append_ticks("quote", qu, "q")
    if os.geteuid() == 0:  # root writes through permissions: make the file immutable instead
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(db)]).returncode:
            pytest.skip("running as root without chattr +i: cannot make a read-only file")
    else:
        db.chmod(0o400)
        tmp_path.chmod(0o500)
    try:
        assert main(["data", "info", "--db", str(db)]) == 0  # reading needs no write access
        capsys.readouterr()
        for argv in (["features"], ["data", "purge"], ["backtest"]):
            assert main([*argv, "--db", str(db)]) == 2
            assert "is read-only here" in _err(capsys)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(db)])
        else:
            tmp_path.chmod(0o700)


# --- 6. silent successes ------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["features"], ["data", "purge"], ["data", "info"], ["backtest"],
                                  ["sweep", "--grid", "slippage_ticks_entry=0,1"], ["demo"]])
def test_a_mistyped_db_is_an_error_and_creates_nothing(tmp_path, capsys, argv):
    db = tmp_path / "typo.db"
    assert main([*argv, "--db", str(db)]) == 2
    assert "no such database" in _err(capsys) and not db.exists()


def test_backtest_needs_ticks_trades_and_quotes_and_bar_mode_needs_bars(tmp_path, capsys):
    btc = Instrument("BTCUSDT", 0.1, 0.001)
    tr, qu = random_stream(1, minutes=5)
    empty, no_quotes, no_trades = (str(tmp_path / n) for n in ("e.db", "nq.db", "nt.db"))
    Store(empty, btc).close()
    with Store(no_quotes, btc) as st:
        st.append_ticks("trade", tr, "t")
    with Store(no_trades, btc) as st:
        st.append_ticks("quote", qu, "q")
    cases = [
        (["backtest", "--db", empty], "e.db: no stored ticks: import or synthesize data first"),
        (["features", "--db", empty], "e.db: no stored ticks"),
        (["backtest", "--db", no_quotes], "nq.db: no quotes in the database: orders fill on quotes"),
        (["sweep", "--db", no_quotes, "--grid", "slippage_ticks_entry=0,1"], "no quotes"),
        (["backtest", "--db", no_trades], "nt.db: no trades in the database"),
        (["backtest", "--db", no_quotes, "--mode", "bar"], "no bars_1m rows in the database: run `pbdtui features"),
    ]
    for argv, says in cases:
        assert main(argv) == 2, argv
        assert says in _err(capsys), argv
    assert main(["features", "--db", no_quotes]) == 0  # features without quotes: allowed (qimb stays empty)
    capsys.readouterr()
    assert main(["backtest", "--db", no_quotes, "--mode", "bar"]) == 2
    assert "no quotes in the database: bars_1m has no bid/ask close" in _err(capsys)


def test_an_import_whose_rows_are_all_rejected_fails_and_binds_nothing(tmp_path, capsys):
    eth_prices = write_gz(tmp_path / "t.csv.gz", [TRADE_HEADER] + [tardis_trade(i, price="3000.05") for i in range(3)])
    db = tmp_path / "new.db"
    argv = ["data", "import", "--db", str(db), "--format", "tardis", "--trades", str(eth_prices)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "0 rows, 0 new, 3 bad" in captured.out
    assert captured.err.strip() == (
        f"pbdtui: error: {eth_prices}: no valid rows: all 3 were rejected, the first at line 2: price 3000.05 is "
        "not a multiple of tick_size 0.1 (is --symbol, --tick-size or --qty-step right for this file?); "
        "nothing imported")
    assert not db.exists()  # no database bound to the wrong instrument
    header_only = write_gz(tmp_path / "h.csv.gz", [TRADE_HEADER])
    Store(db).close()  # an existing, unbound database stays unbound
    assert main(["data", "import", "--db", str(db), "--format", "tardis", "--trades", str(header_only)]) == 2
    assert "no data rows after the header; nothing imported" in capsys.readouterr().err
    with Store(db, readonly=True) as st:
        assert st.instrument is None


# --- 8. messages ------------------------------------------------------------------------------


def test_a_cr_only_file_is_named_as_such_without_echoing_it(tmp_path):
    path = tmp_path / "cr.csv"
    path.write_bytes(("\r".join([TRADE_HEADER] + [tardis_trade(i) for i in range(20000)]) + "\r").encode())
    with open_store(tmp_path) as store, pytest.raises(ConfigError) as info:
        import_tardis(store, BTC, trades=path)
    assert "bare CR" in str(info.value) and len(str(info.value)) < 300
    garbage = tmp_path / "g.csv"
    garbage.write_bytes(b"x" * 2_000_000)
    with open_store(tmp_path) as store, pytest.raises(ConfigError) as info:
        import_tardis(store, BTC, trades=garbage)
    assert "wrong header 'xxx" in str(info.value) and "(65536 bytes or more)" in str(info.value)
    assert len(str(info.value)) < 400


def test_a_truncated_zip_is_called_truncated(tmp_path):
    full = write_book_zip(tmp_path / "b.data.zip", [_msg("snapshot", i, [("1.0000", "1")], [("1.0001", "1")], u=i + 1)
                                                    for i in range(200)])
    cut = tmp_path / "cut.data.zip"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with open_store(tmp_path, XRP) as store, pytest.raises(ConfigError, match="cut.data.zip: a zip archive without "
                                                                              "its central directory: .*truncated"):
        import_bybit_book(store, XRP, cut)


def test_with_two_files_the_first_summary_is_printed_before_the_second_fails(tmp_path, capsys):
    good = write_gz(tmp_path / "BTCUSDT2024-12-01.csv.gz", [BYBIT_HEADER, bybit_trade(0), bybit_trade(1)])
    broken = tmp_path / "BTCUSDT2024-12-02.csv.gz"
    broken.write_bytes(gzip.compress(("\n".join([BYBIT_HEADER, bybit_trade(2)]) + "\n").encode())[:-12])
    db = tmp_path / "x.db"
    assert main(["data", "import", "--db", str(db), "--format", "bybit-trades", str(good), str(broken)]) == 2
    captured = capsys.readouterr()
    assert "bybit trades BTCUSDT2024-12-01.csv.gz: 2 rows, 2 new, 0 bad" in captured.out
    assert "BTCUSDT2024-12-02.csv.gz: cannot read" in captured.err
    with Store(db, readonly=True) as st:
        assert st.count_ticks("trade") == 2


# --- 9. privacy ----------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_databases_reports_and_sweep_outputs_are_owner_only_whatever_the_umask(tmp_path, capsys):
    old = os.umask(0)
    try:
        tr, qu = random_stream(2, minutes=20)
        db = tmp_path / "p.db"
        with Store(db, Instrument("BTCUSDT", 0.1, 0.001)) as st:
            st.append_ticks("trade", tr, "t")
            st.append_ticks("quote", qu, "q")
            for suffix in ("", "-wal", "-shm"):
                assert _mode(Path(f"{db}{suffix}")) == 0o600, suffix
        out = tmp_path / "reports" / "run1"
        assert main(["backtest", "--db", str(db), "--out", str(out)]) == 0
        assert main(["sweep", "--db", str(db), "--grid", "slippage_ticks_entry=0,1", "--workers", "1",
                     "--out", str(tmp_path / "sw")]) == 0
        assert main(["backtest", "--db", str(db)]) == 0  # the default ./backtests/<run_id>/
    finally:
        os.umask(old)
    default = next(Path("backtests").iterdir())
    for folder in (out, out.parent, tmp_path / "sw", Path("backtests"), default):
        assert _mode(folder) == 0o700, folder
    for name in ("report.json", "report.txt", "trades.csv", "decisions.log"):
        assert _mode(out / name) == 0o600 and _mode(default / name) == 0o600
    for name in ("sweep.csv", "sweep.json"):
        assert _mode(tmp_path / "sw" / name) == 0o600
    assert _mode(db) == 0o600


def test_an_existing_report_file_is_made_private_when_rewritten(tmp_path):
    from engine.private import write_private_text

    path = tmp_path / "r.txt"
    path.write_text("old")
    path.chmod(0o644)
    write_private_text(path, "new")
    assert _mode(path) == 0o600 and path.read_text() == "new"


def test_the_cache_folder_and_numba_cache_are_owner_only(tmp_path):
    code = ("import os; os.umask(0); import engine.kernels as k; print(os.environ['NUMBA_CACHE_DIR'])")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env |= {"XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    numba_dir = Path(run.stdout.strip())
    assert numba_dir.parent == tmp_path / "cache" / "pbdtui"
    for folder in (tmp_path / "cache", numba_dir.parent, numba_dir):
        assert _mode(folder) == 0o700, folder


def test_demo_cache_folder_is_made_private(tmp_path, monkeypatch):
    from engine.config import Settings
    from engine.synth import cache_dir
    from pbdtui.app import demo_database

    cache = tmp_path / "xdg" / "pbdtui"
    cache.mkdir(parents=True)
    cache.chmod(0o755)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == cache
    path = demo_database(Settings(), seed=3, days=0.01)
    assert path.parent == cache and _mode(cache) == 0o700 and _mode(path) == 0o600


def test_zip_member_error_does_not_escape(tmp_path):
    """A zip whose member is damaged (CRC) is a one-line 'cannot read', not a traceback."""
    path = write_book_zip(tmp_path / "b.data.zip", [_msg("snapshot", 0, [("1.0000", "1")], [("1.0001", "1")], u=1)])
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.infolist()[0]
    start = info.header_offset + 30 + len(info.filename.encode())
    data[start + 5] ^= 0xFF
    path.write_bytes(bytes(data))
    with open_store(tmp_path, XRP) as store, pytest.raises(ConfigError, match="b.data.zip: "):
        import_bybit_book(store, XRP, path)


def test_store_refuses_a_gzip_file_without_touching_it(tmp_path):
    path = tmp_path / "g.db"
    content = gzip.compress(b"abc")
    path.write_bytes(content)
    with pytest.raises(StoreError, match="gzip"):
        Store(path, instrument_of(BTC))
    assert path.read_bytes() == content


def test_importers_module_docstring_states_the_bounds():
    doc = importers.__doc__ or ""
    assert "plausible" in doc and "MAX_PRICE_TICKS" in doc and "duplicate" in doc.lower()


def test_tiny_prices_and_sizes_are_bad_rows_not_zero_ticks(tmp_path, caplog):
    """Found by the fuzz test: 1e-300 is positive and "on the grid", yet 0 ticks or lots."""
    path = write_gz(tmp_path / "b.csv.gz", [BYBIT_HEADER, bybit_trade(0), bybit_trade(1, price="1e-300"),
                                            bybit_trade(2, size="1e-300")])
    book = write_book_zip(tmp_path / "x.data.zip", [
        _msg("snapshot", 100, [("1.0000", "10")], [("1.0001", "5")], u=1),
        _msg("delta", 200, [("1.0000", "1e-300")], [], u=2),  # would have deleted the best bid
    ])
    with caplog.at_level(logging.WARNING, logger="pbdtui.import"), open_store(tmp_path) as store:
        report = import_bybit_trades(store, BTC, path)
        assert (store.load_ticks("trade")["px"] > 0).all()
    with open_store(tmp_path, XRP, "x.db") as store:
        book_report = import_bybit_book(store, XRP, book)
    assert (report.rows_ok, report.rows_bad, book_report.rows_ok, book_report.rows_bad) == (1, 2, 1, 1)
    messages = warnings_of(caplog)
    assert messages[0].endswith(":3: price 1e-300 is below one tick_size 0.1")
    assert messages[1].endswith(":4: size 1e-300 is below one qty_step 0.001")
    assert messages[2].endswith(":2: size 1e-300 in 'b' is below one qty_step 1")
