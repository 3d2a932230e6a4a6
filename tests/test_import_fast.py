"""The Bybit trade import's fast path and its streamed writes give what the general path gives.

``engine.kernels.csvscan.bybit_trades`` converts a block in one pass when
every line is a good row, and the importer then writes the file's chunks
as it reads them while the file is in time order (a savepoint it rolls
back at the first row out of order). Each test imports the same file twice,
once with the fast path switched off (every block on the general path, the
one the fuzz tests check row by row), and compares the stored ticks, the
counts and the rows reported bad.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from engine import importers
from engine import store as store_module
from engine.config import ConfigError, Settings
from engine.store import Store, instrument_of

BTC = Settings()
HEADER = "timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,homeNotional,foreignNotional,RPI"
T0_S = 1_733_011_200  # 2024-12-01
UUID = "{:08x}-0e1a-5f3b-8d2c-{:012x}"


def _import(path: Path, db: Path, fast: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    """(report, stored trades, logged bad-row messages) of importing ``path`` into a fresh ``db``."""
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(importers, "_bybit_trade_fast", lambda *args: (lambda buf: None))
        m.setattr(importers, "MAX_LOGGED", 10**9)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="pbdtui.import"), Store(db, instrument_of(BTC)) as st:
            try:
                report = importers.import_bybit_trades(st, BTC, path)
                counts: object = (report.rows_ok, report.rows_bad, report.rows_new, report.rows_dup)
            except ConfigError as exc:  # a refused file (wrong time unit): refused both ways, nothing stored
                counts = str(exc)
            ticks = st.load_ticks("trade")
            chunks = st.fetch("SELECT ts_first, ts_last, n, digest FROM tick_chunks ORDER BY chunk_id")
        logged = [r.getMessage() for r in caplog.records]
    return counts, ticks, chunks, logged


def _same_both_ways(tmp_path, lines: list[str], monkeypatch, caplog, crlf: bool = False):
    path = tmp_path / "BTCUSDT2024-12-01.csv.gz"
    end = "\r\n" if crlf else "\n"
    with gzip.open(path, "wt", newline="") as fh:
        fh.write(end.join([HEADER, *lines]) + end)
    fast = _import(path, tmp_path / "fast.db", True, monkeypatch, caplog)
    general = _import(path, tmp_path / "general.db", False, monkeypatch, caplog)
    assert fast[0] == general[0]
    assert np.array_equal(fast[1], general[1])
    assert fast[2] == general[2]  # the same chunks, byte for byte (digests)
    assert fast[3] == general[3]
    for suffix in ("", "-wal", "-shm"):
        for name in ("fast.db", "general.db"):
            (tmp_path / (name + suffix)).unlink(missing_ok=True)
    return fast


_decimal = st.one_of(
    st.builds(lambda a, b: f"{a}.{b}", st.integers(0, 120_000), st.sampled_from(["", "0", "5", "50", "10", "05", "55"])),
    st.builds(str, st.integers(0, 200_000)),
    st.sampled_from(["0.001", "0.0010", "1e-3", " 0.002", "0.002 ", "0", "0.0", "-0.001", "96000.55", "1e300",
                     "nan", "", "00.001", "999999999999.9", "1234567890123456", ".5", "5."]),
)
_time = st.one_of(
    st.builds(lambda s, f: f"{T0_S + s}.{f}", st.integers(0, 86_400), st.sampled_from(["", "1", "1234", "123456", "9999"])),
    st.builds(lambda s: str(T0_S + s), st.integers(0, 86_400)),
    st.sampled_from(["1733011200000", "17330112000000000", "x", "1733011200.1.2", "-1733011200", "0"]),
)
_row = st.tuples(
    _time, st.sampled_from(["BTCUSDT", "BTCUSDT", "BTCUSDT", "ETHUSDT", "btcusdt", "BTCUSDT "]),
    st.sampled_from(["Buy", "Sell", "Buy", "Sell", "buy", "", "Buyer"]), _decimal, _decimal,
    st.one_of(st.builds(lambda a, b: UUID.format(a, b), st.integers(0, 2**32 - 1), st.integers(0, 2**48 - 1)),
              st.sampled_from(["12345", "0E1A5F3B-0E1A-5F3B-8D2C-1234567890AB", "not-a-uuid", "", "-5",
                               "0e1a5f3b-0e1a-5f3b-8d2c-1234567890ag"])),
    st.sampled_from(["", ",x", "", ""]),  # a field too many now and then
)


def _zeros(text: str, pad: int) -> str:
    return text + "0" * pad if "." in text else text


_good_row = st.tuples(  # every way a good row may be written: the fast path takes blocks of these
    st.builds(lambda s, f: f"{T0_S + s}{f}", st.integers(0, 86_400),
              st.sampled_from(["", ".", ".0", ".1", ".1234", ".999", ".123456", ".000001"])),
    st.just("BTCUSDT"),
    st.sampled_from(["Buy", "Sell", "Buy", "Sell", "buy", "", "Buyer", "Sel"]),  # other sides: unknown, not bad
    st.builds(lambda lots, pad: _zeros(f"{lots / 1000:g}" if lots % 1000 else str(lots // 1000), pad),
              st.integers(1, 5_000_000), st.integers(0, 3)),
    st.builds(lambda ticks, pad, lead: lead + _zeros(f"{ticks // 10}.{ticks % 10}", pad),
              st.integers(1, 2_000_000), st.integers(0, 3), st.sampled_from(["", "", "0"])),
    st.builds(lambda a, b, upper: UUID.format(a, b).upper() if upper else UUID.format(a, b),
              st.integers(0, 2**32 - 1), st.integers(0, 2**48 - 1), st.booleans()),
    st.just(""),
)


@seed(13)
@hsettings(max_examples=40, deadline=None, derandomize=True, database=None,
           suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(rows=st.lists(_good_row, min_size=1, max_size=60),
       bad=st.lists(st.tuples(st.integers(0, 59), _row), max_size=2), crlf=st.booleans())
def test_fast_path_stores_and_reports_what_the_general_path_does(tmp_path, monkeypatch, caplog, rows, bad, crlf):
    """Good rows in every spelling, now and then one or two of any kind among them (then the block
    goes the general way); CRLF or LF."""
    rows = list(rows)
    for at, row in bad:
        rows.insert(at % (len(rows) + 1), row)
    lines = [f"{t},{sym},{side},{size},{px},PlusTick,{tid},1,1,1,0{extra}" for t, sym, side, size, px, tid, extra in rows]
    _same_both_ways(tmp_path, lines, monkeypatch, caplog, crlf)


def _good_rows(n: int, seed_: int, step_ms: int = 37) -> list[str]:
    rng = np.random.default_rng(seed_)
    px = 950_000 + np.cumsum(rng.integers(-3, 4, n))
    return [f"{T0_S + i * step_ms // 1000}.{i * step_ms % 1000:03d},BTCUSDT,{'Buy' if i % 3 else 'Sell'},"
            f"{int(rng.integers(1, 900)) / 1000:g},{px[i] / 10:.1f},ZeroPlusTick,{UUID.format(seed_, i)},1,1,1,0"
            for i in range(n)]


@pytest.mark.parametrize("where", ["in order", "late disorder", "bad row late"])
def test_streamed_chunks_equal_the_sorted_file(tmp_path, monkeypatch, caplog, where):
    """Many blocks and chunks (both made small): a file in order is written as read; a row out of order
    after several chunks were written rolls them back and the sorted file is stored; either way the
    chunks equal the general path's, which sorts the whole file first."""
    monkeypatch.setattr(importers, "BLOCK_BYTES", 4096)
    monkeypatch.setattr(store_module, "CHUNK_ROWS", 256)
    lines = _good_rows(3000, 5)
    if where == "late disorder":
        lines[2500], lines[2501] = lines[2501], lines[2500]
        lines.insert(2700, lines[10])  # an early row again (a duplicate of an already written one)
    elif where == "bad row late":
        lines[2800] = lines[2800].replace("BTCUSDT", "ETHUSDT")
    fast = _same_both_ways(tmp_path, lines, monkeypatch, caplog)
    counts, ticks, chunks, logged = fast
    assert len(chunks) >= 10 and np.all(np.diff(ticks["ts"]) >= 0)
    assert counts[0] + counts[1] == len(lines)
    assert (counts[1], len(logged)) == ((1, 1) if where == "bad row late" else (0, 0))


@pytest.mark.parametrize("prefetch", [False, True])
@given(lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30),
       block=st.integers(1, 64), final_newline=st.booleans())
@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_blocks_are_whole_lines_that_join_back_to_the_text(monkeypatch, prefetch, lines, block, final_newline):
    """Blocks are views of the reads, a line cut by a read's end joined on its own: every line once, in order."""
    import io

    monkeypatch.setattr(importers, "BLOCK_BYTES", block)
    monkeypatch.setattr(importers, "PREFETCH", prefetch)
    text = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    got = [bytes(b) for b in importers._blocks(io.BytesIO(text))]
    assert all(b.endswith(b"\n") and len(b) > 0 for b in got)
    assert b"".join(got) == (text if not text or text.endswith(b"\n") else text + b"\n")
