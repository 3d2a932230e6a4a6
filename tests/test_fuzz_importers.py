"""Fuzz every importer with mutated rows (hypothesis, fixed seed: the same cases on every run).

Each case writes a valid file, mutates some of its lines (fields swapped
for junk, huge, negative, non-finite or wrong-unit values, fields added or
dropped, lines doubled, blank or broken), imports it into a fresh SQLite
file and checks:

- no exception escapes except ``ConfigError`` (a refused file, one line);
- every stored row is valid: time in the plausible range, price and size
  positive and within the bounds, quotes uncrossed;
- every rejected row is counted and logged once with its line number, and
  only mutated lines are rejected (CSV: rows_ok + rows_bad = data lines);
- the store holds exactly ``rows_new`` rows.

About 40 cases of 80 rows per format: some 13,000 rows a run, a few seconds.
The Bybit frame decoder (``engine.adapters.bybit.frames``, shared by the
live feed and the book importer) gets mutated frames the same way.
"""

from __future__ import annotations

import gzip
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, seed
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from engine import importers
from engine.config import ConfigError, Settings, plausible_range_ms
from engine.importers import (
    MAX_PRICE_TICKS,
    MAX_SIZE_LOTS,
    import_bybit_book,
    import_bybit_trades,
    import_tardis,
)
from engine.store import Store, instrument_of

BTC = Settings()
XRP = Settings().replace(symbol="XRPUSDT", tick_size=0.0001, qty_step=1.0, order_qty=1.0)
ROWS = 80
T0_US = 1_733_011_200_000_000
FUZZ = hsettings(max_examples=40, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

JUNK = ["", "nan", "NaN", "inf", "-inf", "-1", "0", "-0", "0.0", "1e18", "1e300", "-1e300", "1e-300", "1e20",
        "9" * 25, "abc", "0x10", " 5", "5 ", "+3", "1_000", "1.2.3", ".", "\u00e9", "\"\"", "1733011200000",
        "1733011200", "1733011200000000000", "7258118400000000", "-1733011200000000", "99999999999999999999",
        "28145.13", "0.0001", "0.0015", "3.5", "96000.55", "1e3", "BTCUSDT", "ETHUSDT", "buy", "Sell"]

_line_mutation = st.one_of(
    st.tuples(st.just("field"), st.integers(0, 10), st.sampled_from(JUNK)),
    st.tuples(st.just("field"), st.integers(0, 10), st.text(max_size=8)),
    st.tuples(st.sampled_from(["double", "drop_field", "add_field", "blank", "cut", "swap_next"]),
              st.integers(0, 10), st.just("")),
)
_mutations = st.dictionaries(st.integers(0, ROWS - 1), _line_mutation, max_size=30)


def _mutate(lines: list[str], mutations: dict[int, tuple[str, int, str]]) -> tuple[list[str], set[int]]:
    """Apply ``mutations`` (row index -> what) to data lines; returns the lines and the mutated line numbers.

    Line numbers count the header as 1. A doubled row counts as mutated in both places.
    """
    out: list[str] = []
    touched: set[int] = set()
    rows = list(lines)
    for i, row in enumerate(rows):
        m = mutations.get(i)
        if m is None:
            out.append(row)
            continue
        kind, k, value = m
        fields = row.split(",")
        if kind == "field":
            fields[k % len(fields)] = value.replace("\n", " ").replace("\r", " ")
            row = ",".join(fields)
        elif kind == "drop_field":
            del fields[k % len(fields)]
            row = ",".join(fields)
        elif kind == "add_field":
            row = row + ",x"
        elif kind == "blank":
            row = ""
        elif kind == "cut":
            row = row[: k % max(1, len(row))]
        elif kind == "swap_next" and i + 1 < len(rows):
            rows[i + 1], row = row, rows[i + 1]
            touched.add(len(out) + 3)
        if kind == "double":
            touched.add(len(out) + 2)
            out.append(row)
        touched.add(len(out) + 2)
        out.append(row)
    return out, touched


class _Log(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        head = text.split(": ", 1)[0]
        if head.rsplit(":", 1)[-1].isdigit():
            self.lines.append(int(head.rsplit(":", 1)[-1]))


def _run(settings: Settings, write, do_import):
    """Import a file written by ``write(dir)`` into a fresh store; returns (report or None, store contents, log)."""
    handler = _Log()
    logger = logging.getLogger("pbdtui.import")
    logger.addHandler(handler)
    old_max = importers.MAX_LOGGED
    importers.MAX_LOGGED = 10**9  # every bad row logged with its place
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = write(Path(tmp))
            with Store(Path(tmp) / "f.db", instrument_of(settings)) as store:
                try:
                    report = do_import(store, path)
                except ConfigError as exc:  # a refused file: one line, nothing stored
                    assert "\n" not in str(exc) and len(str(exc)) < 1000
                    assert store.tick_range() is None
                    return None, None, handler.lines
                ticks = store.load_ticks(report.kind)
    finally:
        importers.MAX_LOGGED = old_max
        logger.removeHandler(handler)
    return report, ticks, handler.lines


def _check_stored(settings: Settings, kind: str, ticks: np.ndarray) -> None:
    lo, hi = plausible_range_ms(settings, 2**50)
    assert ((ticks["ts"] >= lo) & (ticks["ts"] <= hi)).all()
    assert ((ticks["local_ts"] >= lo) & (ticks["local_ts"] <= hi)).all()
    if kind == "trade":
        assert ((ticks["px"] > 0) & (ticks["px"] < MAX_PRICE_TICKS)).all()
        assert ((ticks["qty"] > 0) & (ticks["qty"] < MAX_SIZE_LOTS)).all()
    else:
        for f in ("bid_px", "ask_px"):
            assert ((ticks[f] > 0) & (ticks[f] < MAX_PRICE_TICKS)).all()
        for f in ("bid_sz", "ask_sz"):
            assert ((ticks[f] > 0) & (ticks[f] < MAX_SIZE_LOTS)).all()
        assert (ticks["bid_px"] < ticks["ask_px"]).all()


def _check_csv(settings: Settings, kind: str, lines: list[str], touched: set[int], result) -> None:
    report, ticks, logged = result
    if report is None:
        return
    data_lines = sum(1 for line in lines if line.strip())
    assert report.rows_ok + report.rows_bad == data_lines
    assert sorted(logged) == sorted(set(logged)) and len(logged) == report.rows_bad
    assert set(logged) <= touched, "an untouched (valid) line was rejected"
    assert len(ticks) == report.rows_new
    _check_stored(settings, kind, ticks)


def _gz(name: str, header: str, lines: list[str]):
    def write(tmp: Path) -> Path:
        path = tmp / name
        with gzip.open(path, "wt", newline="") as f:
            f.write(header + "\n" + "\n".join(lines) + "\n")
        return path

    return write


@seed(7)
@FUZZ
@given(_mutations)
def test_fuzz_tardis_trades(mutations):
    base = [f"x,BTCUSDT,{T0_US + i * 997},{T0_US + i * 997 + 5},{i},{'buy' if i % 2 else 'sell'},"
            f"{96000 + i % 7}.{i % 10},0.00{1 + i % 9}" for i in range(ROWS)]
    lines, touched = _mutate(base, mutations)
    result = _run(BTC, _gz("t.csv.gz", ",".join(importers.TARDIS_TRADE_COLUMNS), lines),
                  lambda store, path: import_tardis(store, BTC, trades=path)[0])
    _check_csv(BTC, "trade", lines, touched, result)


@seed(8)
@FUZZ
@given(_mutations)
def test_fuzz_tardis_quotes(mutations):
    base = [f"x,BTCUSDT,{T0_US + i * 991},{T0_US + i * 991 + 3},{1 + i % 5}.5,{96001 + i % 3}.0,"
            f"{96000 + i % 3}.9,0.{1 + i % 8}" for i in range(ROWS)]
    lines, touched = _mutate(base, mutations)
    result = _run(BTC, _gz("q.csv.gz", ",".join(importers.TARDIS_QUOTE_COLUMNS), lines),
                  lambda store, path: import_tardis(store, BTC, quotes=path)[0])
    _check_csv(BTC, "quote", lines, touched, result)


@seed(9)
@FUZZ
@given(_mutations)
def test_fuzz_bybit_trades(mutations):
    header = "timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,homeNotional,foreignNotional"
    base = [f"{T0_US // 10**6 + ROWS - i}.{i:04d},BTCUSDT,{'Buy' if i % 2 else 'Sell'},0.00{1 + i % 9},"
            f"{96000 + i % 7}.{i % 10},PlusTick,{i:08x}-0e1a-5f3b-8d2c-1234567890ab,1,1,1" for i in range(ROWS)]
    lines, touched = _mutate(base, mutations)
    result = _run(BTC, _gz("BTCUSDT2024-12-01.csv.gz", header, lines),
                  lambda store, path: import_bybit_trades(store, BTC, path))
    _check_csv(BTC, "trade", lines, touched, result)


_book_mutation = st.one_of(
    st.tuples(st.sampled_from(["price", "size"]), st.integers(0, 5), st.sampled_from(JUNK + [None, 1e300, -5, [], {}])),
    st.tuples(st.sampled_from(["ts", "cts", "type", "data", "topic", "s", "u"]), st.just(0),
              st.sampled_from([None, "", "x", 10**30, -(10**30), 1e300, 1.5, True, [], {}, "1733011200000",
                               1733011200, 1733011200000000, "delta", "snapshot"])),
    st.tuples(st.sampled_from(["cut", "blank", "double", "garbage"]), st.integers(0, 200), st.just(None)),
)


@seed(10)
@FUZZ
@given(st.dictionaries(st.integers(0, ROWS - 1), _book_mutation, max_size=30))
def test_fuzz_bybit_book(mutations):
    t0 = T0_US // 1000
    messages = []
    for i in range(ROWS):
        kind = "snapshot" if i == 0 else "delta"
        bids = [[f"1.{(1000 + i % 5 - k):04d}", str(10 + k + i % 3)] for k in range(3)]
        asks = [[f"1.{(1006 + i % 4 + k):04d}", str(5 + k)] for k in range(3)]
        messages.append({"topic": "orderbook.500.XRPUSDT", "type": kind, "ts": t0 + i * 100, "cts": t0 + i * 100 - 3,
                         "data": {"s": "XRPUSDT", "b": bids, "a": asks, "u": i + 1, "seq": i + 1}})
    lines = []
    for i, msg in enumerate(messages):
        m = mutations.get(i)
        text = json.dumps(msg)
        if m is not None:
            what, k, value = m
            if what in ("price", "size"):
                levels = msg["data"]["b" if k % 2 else "a"]
                levels[k % len(levels)][0 if what == "price" else 1] = value
            elif what in ("ts", "cts", "type", "topic"):
                msg[what] = value
            elif what in ("data", "s", "u"):
                if what == "data":
                    msg["data"] = value
                else:
                    msg["data"][what] = value
            text = json.dumps(msg)
            if what == "cut":
                text = text[: k % len(text)]
            elif what == "blank":
                text = ""
            elif what == "garbage":
                text = "\x00\xff not json " * (k % 4)
            elif what == "double":
                lines.append(text)
        lines.append(text)

    def write(tmp: Path) -> Path:
        path = tmp / "2024-12-01_XRPUSDT_ob500.data"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
        return path

    report, ticks, logged = _run(XRP, write, lambda store, path: import_bybit_book(store, XRP, path))
    if report is None:
        return
    assert sorted(logged) == sorted(set(logged)) and len(logged) == report.rows_bad
    assert all(2 <= n <= len(lines) for n in logged[1:]) and all(1 <= n <= len(lines) for n in logged)
    assert report.rows_bad <= sum(1 for line in lines if line.strip())
    assert len(ticks) == report.rows_new
    _check_stored(XRP, "quote", ticks)


_frame_value = st.sampled_from(JUNK + [None, 1e300, -5, 0, True, [], {}, 10**30, "1e-300", "0.0015"])


@seed(11)
@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["trade", "book"]), st.sampled_from(["p", "v", "T", "S", "i", "s",
                                                                             "ts", "cts", "b", "a", "type", "none"]),
                          _frame_value), min_size=1, max_size=60))
def test_fuzz_bybit_frame_decoder(edits):
    """The live decoder (shared with the book importer): mutated frames never raise, rows stay valid."""
    from engine.adapters.bybit import frames
    from engine.store import Instrument

    t0 = T0_US // 1000
    dec = frames.FrameDecoder(Instrument("BTCUSDT", 0.1, 0.001))
    for n, (kind, key, value) in enumerate(edits):
        if kind == "trade":
            item = {"T": t0 + n, "s": "BTCUSDT", "S": "Buy", "v": "0.002", "p": f"96000.{n % 10}", "i": f"id-{n}"}
            if key in item:
                item[key] = value
            msg = {"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": t0 + n, "data": [item]}
        else:
            msg = {"topic": "orderbook.50.BTCUSDT", "type": "snapshot" if n == 0 else "delta", "ts": t0 + n,
                   "cts": t0 + n - 1, "data": {"s": "BTCUSDT", "b": [["96000.0", "1.5"], ["95999.9", "2"]],
                                               "a": [["96000.1", "0.7"]], "u": n + 1, "seq": n + 1}}
            if key in ("ts", "cts", "type"):
                msg[key] = value
            elif key in ("b", "a"):
                msg["data"][key] = [[value, "1"]] if n % 2 else [["96000.0", value]]
        dec.decode(json.dumps(msg, default=str), t0 + n)
    tr, qu = dec.take_trades(), dec.take_quotes()
    for arr in (tr, qu):
        assert ((arr["ts"] >= frames.TS_MIN_MS) & (arr["ts"] <= frames.TS_MAX_MS)).all()
    assert ((tr["px"] > 0) & (tr["px"] < MAX_PRICE_TICKS) & (tr["qty"] > 0) & (tr["qty"] < MAX_SIZE_LOTS)).all()
    assert ((qu["bid_px"] > 0) & (qu["bid_px"] < qu["ask_px"]) & (qu["ask_px"] < MAX_PRICE_TICKS)).all()
    assert ((qu["bid_sz"] > 0) & (qu["bid_sz"] < MAX_SIZE_LOTS) & (qu["ask_sz"] > 0)
            & (qu["ask_sz"] < MAX_SIZE_LOTS)).all()
