"""Store: columnar chunks round-trip, re-import dedup, purge keeps derived tables, instrument binding."""

from __future__ import annotations

import numpy as np
import pytest

from engine.store import Instrument, Store, StoreError
from tests.helpers import quotes, random_stream

BTC = Instrument("BTCUSDT", 0.1, 0.001)
HOUR = 3_600_000


def test_ticks_round_trip_and_reappend_is_ignored(tmp_path):
    tr, qu = random_stream(1, minutes=30)
    with Store(tmp_path / "a.db", BTC) as st:
        assert st.append_ticks("trade", tr, "t") == len(tr)
        assert st.append_ticks("quote", qu, "q") == len(qu)
        assert st.append_ticks("trade", tr, "t") == 0  # same bytes: nothing new
        assert st.load_ticks("trade").tobytes() == tr.tobytes()
        assert st.load_ticks("quote").tobytes() == qu.tobytes()
        mid = int(tr["ts"][len(tr) // 2])
        part = st.load_ticks("trade", mid, None)
        assert (part["ts"] >= mid).all() and len(part) == (tr["ts"] >= mid).sum()
        assert st.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_windows_cover_every_tick_once(tmp_path):
    tr, qu = random_stream(2, minutes=130)
    with Store(tmp_path / "a.db", BTC) as st:
        st.append_ticks("trade", tr, "t")
        st.append_ticks("quote", qu, "q")
        got = list(st.iter_windows(HOUR))
    assert sum(len(t) for _, t, _ in got) == len(tr) and sum(len(q) for _, _, q in got) == len(qu)


def test_purge_drops_old_raw_ticks_and_keeps_derived_tables(tmp_path):
    rows = [(i * 30 * 60_000, 100, 5, 101, 5) for i in range(200)]  # 100 hours of quotes
    qu = quotes(rows)
    with Store(tmp_path / "a.db", BTC) as st:
        st.append_ticks("quote", qu, "q")
        st.insert_rows("bars_1m", ("ts_min", "close"), [(0, 1.0), (60_000, 2.0)])
        dropped, cutoff = st.purge_raw(48 * HOUR)
        left = st.load_ticks("quote")
        assert cutoff == int(qu["ts"][-1]) - 48 * HOUR
        assert (left["ts"] >= cutoff).all() and len(left) + dropped == len(qu)
        assert len(left) == (qu["ts"] >= cutoff).sum()
        assert st.fetch("SELECT COUNT(*) FROM bars_1m")[0][0] == 2


def test_store_refuses_other_instrument(tmp_path):
    Store(tmp_path / "a.db", BTC).close()
    with pytest.raises(StoreError, match="tick_size"):
        Store(tmp_path / "a.db", Instrument("BTCUSDT", 0.5, 0.001))


def test_corrupt_chunk_is_reported_not_misread(tmp_path):
    tr, _ = random_stream(3, minutes=3)
    with Store(tmp_path / "a.db", BTC) as st:
        st.append_ticks("trade", tr, "t")
        st.db.execute("UPDATE tick_chunks SET data = substr(data, 1, 10)")
        with pytest.raises(StoreError, match="corrupt"):
            st.load_ticks("trade")


def test_unsorted_records_are_stored_sorted_stably(tmp_path):
    qu = quotes([(5, 1, 1, 2, 1), (3, 1, 2, 2, 1), (3, 1, 3, 2, 1)])
    with Store(tmp_path / "a.db", BTC) as st:
        st.append_ticks("quote", qu, "q")
        got = st.load_ticks("quote")
    assert list(got["ts"]) == [3, 3, 5] and list(got["bid_sz"]) == [2, 3, 1]
    assert np.all(np.diff(got["ts"]) >= 0)


def test_reimport_after_purge_brings_nothing_back(tmp_path):
    rows = [(i * 30 * 60_000, 100, 5, 101, 5) for i in range(200)]
    qu = quotes(rows)
    with Store(tmp_path / "a.db", BTC) as st:
        st.append_ticks("quote", qu, "q")
        st.purge_raw(48 * HOUR)
        left = st.load_ticks("quote")
        assert st.append_ticks("quote", qu, "q") == 0
        assert st.load_ticks("quote").tobytes() == left.tobytes()


def test_import_log_keeps_every_import(tmp_path):
    with Store(tmp_path / "a.db", BTC) as st:
        st.log_import("f.csv", "tardis", 10, 0, 10)
        st.log_import("f.csv", "tardis", 10, 0, 0)
        assert [r[0] for r in st.fetch("SELECT rows_new FROM imports ORDER BY seq")] == [10, 0]


def test_missing_import_file_leaves_no_database(tmp_path, capsys):
    from pbdtui.cli import main

    db = tmp_path / "x.db"
    assert main(["data", "import", "--db", str(db), "--format", "tardis", "--trades", str(tmp_path / "no.csv.gz")]) == 2
    assert not db.exists() and "no such file" in capsys.readouterr().err
    for fmt in ("tardis", "bybit-trades", "bybit-book"):  # no file given at all
        assert main(["data", "import", "--db", str(db), "--format", fmt]) == 2
        assert not db.exists() and "needs" in capsys.readouterr().err
