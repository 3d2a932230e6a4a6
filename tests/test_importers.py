"""Importers: Tardis CSV, Bybit trade archives, Bybit order-book archives.

Hand-written files (gzip CSVs, zips) check parsing, every kind of bad row,
re-import idempotence and the book's L1 derivation; the real recordings of
../shared/data check the formats as exchanges write them (skipped when absent).
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import re
import zipfile
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from engine import importers
from engine import store as store_module
from engine.config import ConfigError, Settings
from engine.importers import import_bybit_book, import_bybit_trades, import_tardis, stable_id
from engine.store import Store, instrument_of
from engine.types import QUOTE_DTYPE, SIDE_BUY, SIDE_SELL, SIDE_UNKNOWN, TRADE_DTYPE
from tests.helpers import shared_file

TRADE_HEADER = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount"
QUOTE_HEADER = "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount"
BYBIT_HEADER = "timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,homeNotional,foreignNotional"

BTC = Settings()  # BTCUSDT, tick 0.1, qty_step 0.001
XRP = Settings().replace(symbol="XRPUSDT", tick_size=0.0001, qty_step=1.0, order_qty=1.0)


def write_gz(path: Path, lines: list[str]) -> Path:
    with gzip.open(path, "wt", newline="") as f:
        f.write("\n".join(lines) + "\n")
    return path


def write_book_zip(path: Path, messages: list[object]) -> Path:
    lines = [m if isinstance(m, str) else json.dumps(m) for m in messages]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(path.name.removesuffix(".zip"), "\n".join(lines) + "\n")
    return path


def open_store(tmp_path: Path, settings: Settings = BTC, name: str = "t.db") -> Store:
    return Store(tmp_path / name, instrument_of(settings))


def chunk_bytes(store: Store, kind: str) -> list[bytes]:
    return [bytes(r[0]) for r in store.fetch("SELECT data FROM tick_chunks WHERE kind=? ORDER BY chunk_id", (kind,))]


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pbdtui.import"]


# --- Tardis ------------------------------------------------------------------------


def test_tardis_trades_parse_times_ticks_lots_sides_and_ids(tmp_path):
    path = write_gz(tmp_path / "t.csv.gz", [
        TRADE_HEADER,
        "binance-futures,BTCUSDT,1680652700452999,1680652700441533,3535186032,sell,28145.10,0.002",
        "binance-futures,BTCUSDT,1680652700453000,1680652700441999,3535186033,buy,28145.2,1.5",
        "binance-futures,BTCUSDT,1680652700453001,1680652700442000,ccc3c1fa-212c-e8b0,unknown,28145,0.001",
        "binance-futures,BTCUSDT,1680652700453002,1680652700442001,99999999999999999999,,.5,2.",
    ])
    with open_store(tmp_path) as store:
        (report,) = import_tardis(store, BTC, trades=path)
        got = store.load_ticks("trade")
    want = np.array([
        (1680652700452, 1680652700441, 281451, 2, SIDE_SELL, 3535186032),
        (1680652700453, 1680652700441, 281452, 1500, SIDE_BUY, 3535186033),
        (1680652700453, 1680652700442, 281450, 1, SIDE_UNKNOWN, stable_id("ccc3c1fa-212c-e8b0")),
        (1680652700453, 1680652700442, 5, 2000, SIDE_UNKNOWN, stable_id("99999999999999999999")),
    ], dtype=TRADE_DTYPE)
    assert got.tobytes() == want.tobytes()
    assert (report.rows_ok, report.rows_bad, report.rows_new, report.kind, report.format) == (4, 0, 4, "trade", "tardis")
    assert report.summary().startswith("tardis trades t.csv.gz: 4 rows, 4 new, 0 bad (")


def test_uuid_ids_are_their_halves_xor_folded_to_63_bits():
    u = "9f4c6bd5-0e1a-5f3b-8d2c-1234567890AB"  # upper-case hex is a UUID too
    assert importers.uuid_id(u) == (0x9F4C6BD50E1A5F3B ^ 0x8D2C1234567890AB) & (2**63 - 1)
    assert importers.trade_id_of(u) == importers.uuid_id(u)
    for not_uuid in ("9f4c6bd5-0e1a-5f3b-8d2c-1234567890A", "9f4c6bd5x0e1a-5f3b-8d2c-1234567890AB",
                     "9f4c6bd5-0e1a-5f3b-8d2c-1234567890AG"):
        assert importers.uuid_id(not_uuid) is None and importers.trade_id_of(not_uuid) == stable_id(not_uuid)


def test_stable_id_is_63_bit_blake2b_of_the_text():
    import hashlib

    digest = hashlib.blake2b(b"abc", digest_size=8).digest()
    assert stable_id("abc") == int.from_bytes(digest, "little") & (2**63 - 1)
    assert stable_id("abc") == stable_id(b"abc") and 0 <= stable_id("abc") < 2**63
    assert stable_id("abc") != stable_id("abd")


def test_tardis_quotes_parse_and_crossed_quote_is_bad(tmp_path, caplog):
    path = write_gz(tmp_path / "q.csv.gz", [
        QUOTE_HEADER,
        "binance-futures,BTCUSDT,1680652700430000,1680652700423575,6.887,28145.20,28145.10,3.868",
        "binance-futures,BTCUSDT,1680652700452000,1680652700442569,6.887,28145.10,28145.20,3.818",
        "binance-futures,BTCUSDT,1680652700462000,1680652700455110,6.907,28145.30,28145.10,3.818",
    ])
    with caplog.at_level(logging.WARNING, logger="pbdtui.import"), open_store(tmp_path) as store:
        (report,) = import_tardis(store, BTC, quotes=path)
        got = store.load_ticks("quote")
    want = np.array([
        (1680652700430, 1680652700423, 281451, 3868, 281452, 6887),
        (1680652700462, 1680652700455, 281451, 3818, 281453, 6907),
    ], dtype=QUOTE_DTYPE)
    assert got.tobytes() == want.tobytes()
    assert (report.rows_ok, report.rows_bad) == (2, 1)
    assert warnings_of(caplog) == [f"{path}:3: crossed quote: bid 281452 >= ask 281451 ticks"]


def test_every_kind_of_bad_row_is_skipped_counted_and_logged_with_its_line(tmp_path, caplog):
    good = "binance-futures,BTCUSDT,1680652700452000,1680652700441533,1,buy,28145.10,0.002"
    rows = [
        TRADE_HEADER,
        good,                                                                          # 2
        "binance-futures,BTCUSDT,1680652700452000,1680652700441533,1,buy,28145.10",    # 3 fields
        "binance-futures,BTCUSDT,1680652700452000,1680652700441533,1,buy,abc,0.002",   # 4 unparsable
        "binance-futures,BTCUSDT,1680652700452000,1680652700441533,1,buy,0,0.002",     # 5 zero price
        "binance-futures,BTCUSDT,1680652700452000,1680652700441533,1,buy,-5.0,0.002",  # 6 negative
        "binance-futures,BTCUSDT,1680652700452000,1680652700441533,1,buy,28145.10,0",  # 7 zero size
        "binance-futures,BTCUSDT,1680652700452000,1680652700441533,1,buy,28145.10,-1",  # 8 negative size
        "binance-futures,BTCUSDT,1680652700452000,1680652700441533,1,buy,NaN,0.002",   # 9 NaN
        "binance-futures,ETHUSDT,1680652700452000,1680652700441533,1,buy,28145.10,0.002",  # 10 symbol
        "binance-futures,BTCUSDT,1680652700452000,1680652700441533,1,buy,28145.13,0.002",  # 11 off grid
        "binance-futures,BTCUSDT,16806527004x2000,1680652700441533,1,buy,28145.10,0.002",  # 12 timestamp
        "binance-futures,BTCUSDT,1680652700452000,1680652700441533,1,buy,28145.10,nan",    # 13 NaN size
        "",                                                                                # 14 blank: ignored
        "binance-futures,BTCUSDT,1680652700452000,1680652700441533,1,buy,28145.10,0.002,x",  # 15 fields
        "binance-futures,BTCUSDT,1680652700452000,1680652700441533,1,buy,inf,0.002",    # 16 inf
        "binance-futures,BTCUSDT,1680652700452000,1680652700441533,1,buy,28145.10,0.0001",  # 17 < step/2
        good.replace(",1,buy,", ",2,buy,"),                                              # 18 (another id)
    ]
    path = write_gz(tmp_path / "bad.csv.gz", rows)
    with caplog.at_level(logging.WARNING, logger="pbdtui.import"), open_store(tmp_path) as store:
        (report,) = import_tardis(store, BTC, trades=path)
        assert store.count_ticks("trade") == 2
    assert (report.rows_ok, report.rows_bad) == (2, 14)
    assert warnings_of(caplog) == [
        f"{path}:3: expected 8 fields, got 7",
        f"{path}:4: unparsable price 'abc'",
        f"{path}:5: non-positive price 0",
        f"{path}:6: non-positive price -5.0",
        f"{path}:7: non-positive amount 0",
        f"{path}:8: non-positive amount -1",
        f"{path}:9: price is 'NaN'",
        f"{path}:10: symbol 'ETHUSDT' is not BTCUSDT",
        f"{path}:11: price 28145.13 is not a multiple of tick_size 0.1",
        f"{path}:12: unparsable timestamp '16806527004x2000'",
        f"{path}:13: amount is 'nan'",
        f"{path}:15: expected 8 fields, got 9",
        f"{path}:16: price is 'inf'",
        f"{path}:17: amount 0.0001 is not a multiple of qty_step 0.001",
    ]


def test_bad_rows_beyond_twenty_are_counted_then_summarised(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(importers, "BLOCK_BYTES", 200)  # spread the rows over many blocks
    rows = [TRADE_HEADER] + [
        f"binance-futures,{'ETHUSDT' if i % 2 else 'BTCUSDT'},{1680652700452000 + i},1680652700441533,{i},buy,28145.10,0.002"
        for i in range(60)
    ]
    path = write_gz(tmp_path / "many.csv.gz", rows)
    with caplog.at_level(logging.WARNING, logger="pbdtui.import"), open_store(tmp_path) as store:
        (report,) = import_tardis(store, BTC, trades=path)
    assert (report.rows_ok, report.rows_bad) == (30, 30)
    messages = warnings_of(caplog)
    assert len(messages) == 21
    # odd i are bad; row i is on line i + 2
    assert messages[:20] == [f"{path}:{i + 2}: symbol 'ETHUSDT' is not BTCUSDT" for i in range(1, 40, 2)]
    assert messages[20] == f"{path}: 30 bad rows in all; only the first 20 were logged"


def test_reimport_inserts_nothing_and_leaves_tables_identical(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "CHUNK_ROWS", 7)
    rng = np.random.default_rng(3)
    trade_rows = [TRADE_HEADER]
    quote_rows = [QUOTE_HEADER]
    for i in range(100):
        ts = 1680652700000000 + i * 997
        px = 281450 + int(rng.integers(-20, 20))
        trade_rows.append(f"x,BTCUSDT,{ts},{ts + 5},{i},buy,{px / 10:.1f},0.00{1 + i % 9}")
        if i % 10 == 3:
            trade_rows.append("x,BTCUSDT,oops")  # bad rows must not shift the chunk cuts
        quote_rows.append(f"x,BTCUSDT,{ts},{ts + 5},1.5,{(px + 1) / 10:.1f},{px / 10:.1f},2.25")
    trades = write_gz(tmp_path / "t.csv.gz", trade_rows)
    quotes = write_gz(tmp_path / "q.csv.gz", quote_rows)
    with open_store(tmp_path) as store:
        monkeypatch.setattr(importers, "BLOCK_BYTES", 300)
        first = import_tardis(store, BTC, trades=trades, quotes=quotes)
        before = chunk_bytes(store, "trade"), chunk_bytes(store, "quote")
        monkeypatch.setattr(importers, "BLOCK_BYTES", 1 << 16)  # other block cuts, same chunks
        second = import_tardis(store, BTC, trades=trades, quotes=quotes)
        after = chunk_bytes(store, "trade"), chunk_bytes(store, "quote")
        imports = store.fetch("SELECT source, format, rows_ok, rows_bad, rows_new FROM imports ORDER BY rowid")
    assert [(r.rows_ok, r.rows_bad, r.rows_new) for r in first] == [(100, 10, 100), (100, 0, 100)]
    assert [(r.rows_ok, r.rows_bad, r.rows_new) for r in second] == [(100, 10, 0), (100, 0, 0)]
    assert before == after
    assert len(before[0]) == math.ceil(100 / 7)
    assert imports[0] == (str(trades), "tardis", 100, 10, 100) and imports[-1][-1] == 0


def test_missing_file_and_wrong_header_raise_config_error_naming_the_path(tmp_path):
    missing = tmp_path / "nope.csv.gz"
    wrong = write_gz(tmp_path / "wrong.csv.gz", [QUOTE_HEADER, "x,BTCUSDT,1,1,1,1,1,1"])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    good = write_gz(tmp_path / "good.csv.gz", [TRADE_HEADER, "x,BTCUSDT,1000,1000,1,buy,1.0,1"])
    with open_store(tmp_path) as store:
        with pytest.raises(ConfigError, match="nope.csv.gz"):
            import_tardis(store, BTC, trades=missing)
        with pytest.raises(ConfigError, match="wrong.csv.gz.*wrong header"):
            import_tardis(store, BTC, trades=wrong)
        with pytest.raises(ConfigError, match="empty.csv"):
            import_tardis(store, BTC, quotes=empty)
        with pytest.raises(ConfigError, match="nope.csv.gz"):  # checked before anything is imported
            import_tardis(store, BTC, trades=good, quotes=missing)
        with pytest.raises(ConfigError, match="nope.csv.gz"):
            import_bybit_trades(store, BTC, missing)
        with pytest.raises(ConfigError, match="nope.csv.gz"):
            import_bybit_book(store, BTC, missing)
        with pytest.raises(ConfigError, match="good.csv.gz.*not a Bybit order-book"):
            import_bybit_book(store, BTC, good)
        assert store.count_ticks("trade") == 0


def test_truncated_gzip_raises_config_error_and_stores_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(importers, "BLOCK_BYTES", 4096)
    monkeypatch.setattr(store_module, "CHUNK_ROWS", 100)  # chunks are written before the file breaks
    rows = [TRADE_HEADER] + [f"x,BTCUSDT,{1680652700452000 + i * 1000},1,{i},buy,28145.1,0.002" for i in range(20000)]
    full = write_gz(tmp_path / "full.csv.gz", rows).read_bytes()
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(full[: len(full) // 2])
    with open_store(tmp_path) as store:
        with pytest.raises(ConfigError, match="cut.csv.gz"):
            import_tardis(store, BTC, trades=cut)
        assert store.count_ticks("trade") == 0


def test_plain_csv_with_crlf_and_multi_member_gzip(tmp_path):
    rows = [TRADE_HEADER] + [f"x,BTCUSDT,{1680652700452000 + i * 1000},1680652700441533,{i},buy,28145.1,0.002"
                             for i in range(6)]
    plain = tmp_path / "crlf.csv"
    plain.write_bytes(("\r\n".join(rows) + "\r\n").encode())
    multi = tmp_path / "multi.csv.gz"
    multi.write_bytes(gzip.compress(("\n".join(rows[:4]) + "\n").encode())
                      + gzip.compress(("\n".join(rows[4:]) + "\n").encode()))
    with open_store(tmp_path) as store:
        (a,) = import_tardis(store, BTC, trades=plain)
        first = store.load_ticks("trade")
    with open_store(tmp_path, name="m.db") as store:
        (b,) = import_tardis(store, BTC, trades=multi)
        second = store.load_ticks("trade")
    assert (a.rows_ok, a.rows_bad, b.rows_ok, b.rows_bad) == (6, 0, 6, 0)
    assert first.tobytes() == second.tobytes()
    assert first["trade_id"].tolist() == list(range(6))


@hsettings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.just(3), st.integers(1, 5), st.just(0)), min_size=1, max_size=40), st.booleans())
def test_split_block_matches_python_split(field_counts, crlf):
    """Lines of random field counts (0 = blank line): the good ones split like str.split."""
    eol = "\r\n" if crlf else "\n"
    lines = [",".join(f"f{i}x{j}" for j in range(n)) for i, n in enumerate(field_counts)]
    data = (eol.join(lines) + eol).encode()
    fields, groups, line_nos = importers._split_block(data, 2, 3)
    assert line_nos.tolist() == [2 + i for i in range(len(lines))]
    good = [i for i, n in enumerate(field_counts) if n == 3]
    wrong = [i for i, n in enumerate(field_counts) if n not in (0, 3)]
    assert fields.line_nos.tolist() == [2 + i for i in good]
    assert [[fields.text(r, k) for k in range(3)] for r in range(fields.n)] == [lines[i].split(",") for i in good]
    assert sorted(i for rows, _ in groups for i in rows.tolist()) == wrong


# --- the vectorised scanner against Python's parsers ------------------------------------


def _fields_of(texts: list[str]) -> importers._Fields:
    data = ("\n".join(f"{t},x" for t in texts) + "\n").encode()
    fields, groups, _ = importers._split_block(data, 2, 2)
    assert not groups
    return fields


_decimal_text = st.one_of(
    st.from_regex(r"\A[0-9]{0,12}(\.[0-9]{0,8})?\Z"),
    st.from_regex(r"\A[0-9]{14,20}\Z"),
    st.sampled_from(["1e-05", "-1.5", "+2", " 7", "nan", "inf", "1_0", "", ".", "1.2.3", "0x10"]),
)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_decimal_text, min_size=1, max_size=40))
def test_scanner_decimals_equal_python_float(texts):
    values, bad = _fields_of(texts).decimal(0)
    for text, value, is_bad in zip(texts, values.tolist(), bad.tolist(), strict=True):
        try:
            want = float(text) if "_" not in text else None
        except ValueError:
            want = None
        if want is None:
            assert is_bad, text
        else:
            assert not is_bad and (value == want or (math.isnan(want) and math.isnan(value))), text


@hsettings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.from_regex(r"\A[0-9]{1,11}(\.[0-9]{0,9})?\Z"),
                          st.sampled_from(["1733011200.1234", "1.7330112001e9", "abc", "-1.0005"])),
                min_size=1, max_size=30))
def test_scanner_seconds_to_ms_is_exact_floor(texts):
    values, bad = _fields_of(texts).seconds_ms(0)
    for text, value, is_bad in zip(texts, values.tolist(), bad.tolist(), strict=True):
        if text == "abc":
            assert is_bad
        else:
            assert not is_bad and value == int((Decimal(text) * 1000).to_integral_value(rounding=ROUND_FLOOR)), text


@hsettings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.integers(-(2**63), 2**63 - 1).map(str), st.integers(2**63, 2**70).map(str),
                          st.text("abcdef0123456789-", max_size=40), st.uuids().map(str)), min_size=1, max_size=30))
def test_scanner_trade_ids_are_integers_or_hashes(texts):
    ids = _fields_of(texts).trade_ids(0)
    for text, got in zip(texts, ids.tolist(), strict=True):
        assert got == importers.trade_id_of(text)
        if re.fullmatch(r"-?[0-9]+", text) and -(2**63) <= int(text) < 2**63:
            assert got == int(text)
        elif re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text):
            hexes = text.replace("-", "")
            assert got == (int(hexes[:16], 16) ^ int(hexes[16:], 16)) & (2**63 - 1)
        else:
            assert got == stable_id(text)


# --- Bybit trade archives -------------------------------------------------------------


def test_bybit_descending_archive_is_sorted_stably_with_exact_ms(tmp_path):
    path = write_gz(tmp_path / "BTCUSDT2024-12-01.csv.gz", [
        BYBIT_HEADER,
        "1733011200.9999,BTCUSDT,Buy,0.010,96000.5,ZeroPlusTick,id-e,960.005,0.01,960.005",
        "1733011200.123,BTCUSDT,Sell,0.001,96000.4,MinusTick,id-d,96.0004,0.001,96.0004",
        "1733011200.1234,BTCUSDT,Buy,0.002,96000.4,ZeroMinusTick,id-c,192.0008,0.002,192.0008",
        "1733011200.1,BTCUSDT,Sell,0.003,96000.3,MinusTick,id-b,288.0009,0.003,288.0009",
        "1733011200,BTCUSDT,Buy,0.004,96000.3,PlusTick,id-a,384.0012,0.004,384.0012",
    ])
    with open_store(tmp_path) as store:
        report = import_bybit_trades(store, BTC, path)
        got = store.load_ticks("trade")
    assert (report.rows_ok, report.rows_bad, report.format, report.kind) == (5, 0, "bybit-trades", "trade")
    assert got["ts"].tolist() == [1733011200000, 1733011200100, 1733011200123, 1733011200123, 1733011200999]
    assert (got["local_ts"] == got["ts"]).all()
    # equal ts keep file order: id-d came before id-c in the file
    assert got["trade_id"].tolist() == [stable_id(f"id-{c}") for c in "abdce"]
    assert got["side"].tolist() == [SIDE_BUY, SIDE_SELL, SIDE_SELL, SIDE_BUY, SIDE_BUY]
    assert got["px"].tolist() == [960003, 960003, 960004, 960004, 960005]
    assert got["qty"].tolist() == [4, 3, 1, 2, 10]
    assert report.summary().startswith("bybit trades BTCUSDT2024-12-01.csv.gz: 5 rows, 5 new, 0 bad")


def test_bybit_newer_archive_with_rpi_column_and_bad_rows(tmp_path, caplog):
    path = write_gz(tmp_path / "BTCUSDT2025-06-01.csv.gz", [
        BYBIT_HEADER + ",RPI",
        "1748736000.5,BTCUSDT,Buy,0.001,105000.1,PlusTick,u1,105.0001,0.001,105.0001,0",
        "1748736000.6,ETHUSDT,Buy,0.001,2500.1,PlusTick,u2,2.5001,0.001,2.5001,0",
        "1748736000.7,BTCUSDT,Sell,0.001,105000.1,ZeroMinusTick,u3,105.0001,0.001,105.0001",
        "17487x6000.8,BTCUSDT,Sell,0.001,105000.1,ZeroMinusTick,u4,105.0001,0.001,105.0001,1",
        "1748736000.9,BTCUSDT,Sell,0.000,105000.1,ZeroMinusTick,u5,0,0,0,1",
        "1748736001.0,BTCUSDT,Sell,0.002,105000.0,ZeroMinusTick,u6,210.0,0.002,210.0,1",
    ])
    with caplog.at_level(logging.WARNING, logger="pbdtui.import"), open_store(tmp_path) as store:
        report = import_bybit_trades(store, BTC, path)
        got = store.load_ticks("trade")
    assert (report.rows_ok, report.rows_bad) == (2, 4)
    assert got["ts"].tolist() == [1748736000500, 1748736001000]
    assert warnings_of(caplog) == [
        f"{path}:3: symbol 'ETHUSDT' is not BTCUSDT",
        f"{path}:4: expected 11 fields, got 10",
        f"{path}:5: unparsable timestamp '17487x6000.8'",
        f"{path}:6: non-positive size 0.000",
    ]


def test_bybit_header_without_needed_columns_is_rejected(tmp_path):
    path = write_gz(tmp_path / "x.csv.gz", ["timestamp,symbol,side,size", "1,BTCUSDT,Buy,1"])
    with open_store(tmp_path) as store, pytest.raises(ConfigError, match=r"x.csv.gz.*missing price, trdMatchID"):
        import_bybit_trades(store, BTC, path)


# --- Bybit order-book archives -------------------------------------------------------------


BOOK_T0 = 1_733_011_200_000  # 2024-12-01: hand-made messages give times relative to it


def _msg(kind: str, ts: int, bids: list, asks: list, u: int, cts: int | None = None, symbol: str = "XRPUSDT") -> dict:
    m: dict = {"topic": f"orderbook.500.{symbol}", "type": kind, "ts": BOOK_T0 + ts,
               "data": {"s": symbol, "b": [[p, s] for p, s in bids], "a": [[p, s] for p, s in asks], "u": u, "seq": u}}
    if cts is not None:
        m["cts"] = BOOK_T0 + cts
    return m


def test_book_l1_follows_snapshot_deltas_deletions_and_skips_crossed_books(tmp_path, caplog):
    messages = [
        _msg("snapshot", 1000, [("1.0000", "10"), ("0.9999", "20"), ("0.9998", "30")],
             [("1.0001", "5"), ("1.0002", "6")], u=100, cts=990),                       # 1 -> L1
        _msg("delta", 1100, [("0.9997", "7")], [("1.0003", "8")], u=101, cts=1090),      # 2 below top: nothing
        _msg("delta", 1200, [("1.0000", "0")], [], u=102, cts=1190),                    # 3 best bid deleted
        _msg("delta", 1300, [("0.9999", "25")], [], u=103),                             # 4 size change, no cts
        "{not json",                                                                    # 5 bad JSON
        _msg("delta", 1500, [("1.0001", "3")], [], u=104, cts=1490),                    # 6 crossed (bid == ask)
        _msg("delta", 1600, [], [("1.0001", "0")], u=105, cts=1590),                    # 7 uncrossed again
        _msg("delta", 1700, [], [("1.0002", "0"), ("1.0003", "0")], u=106, cts=1690),   # 8 empty ask side
        _msg("delta", 1800, [], [("1.0005", "9")], u=107, cts=1790),                    # 9 asks back
        _msg("delta", 1900, [("1.00005", "1")], [], u=108, cts=1890),                   # 10 off the grid
        _msg("delta", 2000, [("2.0000", "1")], [], u=109, cts=1990, symbol="BTCUSDT"),  # 11 other symbol
        _msg("delta", 2100, [("0.5000", "4"), ("0.5001", "4")], [("0.5003", "2")], u=1, cts=2090),  # 12 reset
        _msg("delta", 2200, [], [("0.5002", "1")], u=2, cts=2190),                      # 13
        "",                                                                             # 14 blank
        _msg("delta", 2300, [], [("0.5002", "1")], u=3, cts=2290),                      # 15 same L1: nothing
    ]
    path = write_book_zip(tmp_path / "2024-12-01_XRPUSDT_ob500.data.zip", messages)
    with caplog.at_level(logging.WARNING, logger="pbdtui.import"), open_store(tmp_path, XRP) as store:
        report = import_bybit_book(store, XRP, path)
        got = store.load_ticks("quote")
    want = np.array([
        (990, 1000, 10000, 10, 10001, 5),
        (1190, 1200, 9999, 20, 10001, 5),
        (1300, 1300, 9999, 25, 10001, 5),
        (1590, 1600, 10001, 3, 10002, 6),
        (1790, 1800, 10001, 3, 10005, 9),
        (2090, 2100, 5001, 4, 5003, 2),
        (2190, 2200, 5001, 4, 5002, 1),
    ], dtype=QUOTE_DTYPE)
    want["ts"] += BOOK_T0
    want["local_ts"] += BOOK_T0
    assert got.tobytes() == want.tobytes()
    assert (report.rows_ok, report.rows_bad, report.kind, report.format) == (7, 5, "quote", "bybit-book")
    assert warnings_of(caplog) == [
        f"{path}:5: bad JSON",
        f"{path}:6: crossed book: best bid 10001 >= best ask 10001 ticks",
        f"{path}:8: empty book side: asks",
        f"{path}:10: price 1.00005 in 'b' is not a multiple of tick_size 0.0001",
        f"{path}:11: symbol 'BTCUSDT' is not XRPUSDT",
    ]


def test_book_delta_before_snapshot_is_bad(tmp_path):
    path = write_book_zip(tmp_path / "b.data.zip", [
        _msg("delta", 1000, [("1.0000", "1")], [("1.0001", "1")], u=5),
        _msg("snapshot", 1100, [("1.0000", "1")], [("1.0001", "1")], u=6),
    ])
    with open_store(tmp_path, XRP) as store:
        report = import_bybit_book(store, XRP, path)
    assert (report.rows_ok, report.rows_bad) == (1, 1)


def _naive_l1(bids: dict, asks: dict):
    if not bids or not asks:
        return None
    b, a = max(bids), min(asks)
    return None if b >= a else (b, bids[b], a, asks[a])


@hsettings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 40), st.integers(0, 3)), min_size=1, max_size=120))
def test_book_heap_matches_a_naive_book(ops):
    """Random deltas (many at the top of the book) against max()/min() over dicts."""
    side_bid, side_ask = importers._BookSide(True), importers._BookSide(False)
    side_bid.reset([18, 19, 20], [1, 1, 1])
    side_ask.reset([21, 22, 23], [1, 1, 1])
    bids, asks = {18: 1, 19: 1, 20: 1}, {21: 1, 22: 1, 23: 1}
    for is_bid, price, lots in ops:
        book, naive = (side_bid, bids) if is_bid else (side_ask, asks)
        book.update([price], [lots])
        if lots:
            naive[price] = lots
        else:
            naive.pop(price, None)
        assert book.best() == (max(naive) if is_bid and naive else min(naive) if naive else None)
        assert book.levels == naive


# --- real recordings --------------------------------------------------------------------


@pytest.mark.realdata
@pytest.mark.parametrize("day", ["2023-04-04", "2024-07-18"])
def test_real_binance_tardis_windows_import_every_line(tmp_path, day):
    trades = shared_file(f"binance_usdm_btcusdt/{day}_trades.csv.gz")
    quotes = shared_file(f"binance_usdm_btcusdt/{day}_quotes.csv.gz")
    lines = {p: sum(1 for _ in gzip.open(p, "rb")) - 1 for p in (trades, quotes)}
    with open_store(tmp_path) as store:
        tr_report, qu_report = import_tardis(store, BTC, trades=trades, quotes=quotes)
        tr, qu = store.load_ticks("trade"), store.load_ticks("quote")
    assert (tr_report.rows_ok, tr_report.rows_bad, tr_report.rows_new) == (lines[trades], 0, lines[trades])
    # Binance repeats its best bid/offer within a millisecond: those quotes are equal once times are
    # in ms (exact repetitions, dropped), and only those
    with gzip.open(quotes, "rt") as f:
        f.readline()
        keys = [r.split(",") for r in f.read().splitlines()]
    distinct = len({(int(k[2]) // 1000, int(k[3]) // 1000, *k[4:]) for k in keys})
    assert (qu_report.rows_ok, qu_report.rows_bad, qu_report.rows_new) == (lines[quotes], 0, distinct)
    assert qu_report.rows_dup == lines[quotes] - distinct > 0
    assert len(tr) == lines[trades] and len(qu) == distinct
    assert set(np.unique(tr["side"]).tolist()) == {SIDE_BUY, SIDE_SELL}
    assert (qu["bid_px"] < qu["ask_px"]).all() and (tr["qty"] > 0).all()
    # the first trade row, checked by hand against the file
    with gzip.open(trades, "rt") as f:
        f.readline()
        first = f.readline().strip().split(",")
    row = tr[tr["trade_id"] == int(first[4])][0]
    assert row["ts"] == int(first[2]) // 1000 and row["px"] == round(float(first[6]) / 0.1)
    assert row["qty"] == round(float(first[7]) / 0.001)


@pytest.mark.realdata
def test_real_bitmex_tardis_sample_hashes_uuid_ids_and_other_symbols_are_bad(tmp_path):
    path = shared_file("tardis_samples/bitmex_trades_XBTUSD.csv")
    xbt = Settings().replace(symbol="XBTUSD", tick_size=0.5, qty_step=1.0, order_qty=1.0)
    with open_store(tmp_path, xbt) as store:
        (report,) = import_tardis(store, xbt, trades=path)
        got = store.load_ticks("trade")
    rows = [line.split(",") for line in path.read_text().splitlines()[1:]]
    assert (report.rows_ok, report.rows_bad) == (len(rows), 0)
    assert got["trade_id"].tolist() == [importers.uuid_id(r[4]) for r in rows]  # UUIDs, folded
    assert got["qty"].tolist() == [int(r[7]) for r in rows]
    with open_store(tmp_path, BTC, "btc.db") as store:
        (report,) = import_tardis(store, BTC, trades=path)
    assert (report.rows_ok, report.rows_bad) == (0, len(rows))


@pytest.mark.realdata
def test_real_xrp_book_archive_gives_uncrossed_quotes_matching_a_naive_replay(tmp_path):
    path = shared_file("bybit_v5/2024-12-01_XRPUSDT_ob500.data.zip")
    with open_store(tmp_path, XRP) as store:
        report = import_bybit_book(store, XRP, path)
        again = import_bybit_book(store, XRP, path)
        got = store.load_ticks("quote")
    assert report.rows_ok > 0 and report.rows_bad == 0 and again.rows_new == 0
    assert (got["bid_px"] < got["ask_px"]).all() and (got["bid_sz"] > 0).all() and (got["ask_sz"] > 0).all()
    # naive replay: dicts rebuilt per message, best levels by max()/min()
    want, bids, asks, last = [], {}, {}, None
    with zipfile.ZipFile(path) as zf:
        for raw in zf.open(zf.namelist()[0]):
            m = json.loads(raw)
            if m["type"] == "snapshot":
                bids, asks = {}, {}
            for book, key in ((bids, "b"), (asks, "a")):
                for p, s in m["data"][key]:
                    t, q = round(float(p) / 0.0001), round(float(s))
                    if q:
                        book[t] = q
                    else:
                        book.pop(t, None)
            l1 = _naive_l1(bids, asks)
            if l1 is not None and l1 != last:
                last = l1
                want.append((m.get("cts", m["ts"]), m["ts"], *l1))
    assert got.tolist() == want


# --- CLI --------------------------------------------------------------------------------


def test_cli_imports_tardis_files_and_returns_2_for_a_missing_file(tmp_path, monkeypatch, capsys):
    from pbdtui.cli import main

    monkeypatch.chdir(tmp_path)  # no ./config.yaml: built-in BTCUSDT defaults
    trades = write_gz(tmp_path / "t.csv.gz", [TRADE_HEADER, "x,BTCUSDT,1680652700452000,1680652700441533,1,buy,28145.1,0.002"])
    quotes = write_gz(tmp_path / "q.csv.gz", [QUOTE_HEADER, "x,BTCUSDT,1680652700452000,1680652700441533,1,28145.2,28145.1,2"])
    db = tmp_path / "cli.db"
    argv = ["data", "import", "--db", str(db), "--format", "tardis", "--trades", str(trades), "--quotes", str(quotes)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "tardis trades t.csv.gz: 1 rows, 1 new, 0 bad" in out
    assert "tardis quotes q.csv.gz: 1 rows, 1 new, 0 bad" in out
    assert main(["data", "import", "--db", str(db), "--format", "tardis", "--trades", str(tmp_path / "gone.csv.gz")]) == 2
    assert "gone.csv.gz" in capsys.readouterr().err
