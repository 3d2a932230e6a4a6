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


# --- time ranges ----------------------------------------------------------------------


def _chunked_store(path, tr, qu, pieces: int = 5) -> Store:
    """A store whose ticks sit in several chunks per kind (one append per piece)."""
    st = Store(path, BTC)
    for arr, kind in ((tr, "trade"), (qu, "quote")):
        for part in np.array_split(arr, pieces):
            st.append_ticks(kind, part, kind)
    return st


def _bounds_to_try(tr, qu):
    ts = np.concatenate([tr["ts"], qu["ts"]])
    lo, hi = int(ts.min()), int(ts.max())
    picks = [None, lo, lo + 1, hi, hi + 1, lo - 10, hi + 10]
    picks += [int(x) for x in np.random.default_rng(5).integers(lo, hi, 8)]
    picks += [int(tr["ts"][len(tr) // 5]), int(tr["ts"][len(tr) // 5]) + 1]  # exactly on a chunk start
    return [(a, b) for a in picks for b in picks if a is None or b is None or a < b]


def test_range_reads_exactly_the_ticks_inside_it(tmp_path):
    tr, qu = random_stream(7, minutes=90, gap_minutes=tuple(range(40, 52)))
    with _chunked_store(tmp_path / "a.db", tr, qu) as st:
        assert len(st.chunk_index("trade")) == 5
        for a, b in _bounds_to_try(tr, qu):
            lo, hi = -(2**62) if a is None else a, 2**62 if b is None else b
            want_t = tr[(tr["ts"] >= lo) & (tr["ts"] < hi)]
            want_q = qu[(qu["ts"] >= lo) & (qu["ts"] < hi)]
            parts = list(st.iter_event_slices(True, a, b))
            got_t = np.concatenate([p[0] for p in parts]) if parts else tr[:0]
            got_q = np.concatenate([p[1] for p in parts]) if parts else qu[:0]
            assert got_t.tobytes() == want_t.tobytes() and got_q.tobytes() == want_q.tobytes(), (a, b)
            assert all(len(t) + len(q) > 0 for t, q in parts)  # no empty slices
            both = np.concatenate([want_t["ts"], want_q["ts"]])
            assert st.tick_range(a, b) == ((int(both.min()), int(both.max())) if len(both) else None), (a, b)
            assert st.count_ticks("trade", a, b) == len(want_t) and st.count_ticks("quote", a, b) == len(want_q)


def test_range_in_a_gap_inside_one_chunk_is_empty(tmp_path):
    tr, qu = random_stream(8, minutes=30, gap_minutes=tuple(range(10, 20)))
    with Store(tmp_path / "a.db", BTC) as st:  # one chunk per kind, with a 10-minute hole inside
        st.append_ticks("trade", tr, "t")
        st.append_ticks("quote", qu, "q")
        hole = (int(tr["ts"][0]) // 60_000 * 60_000 + 11 * 60_000, int(tr["ts"][0]) // 60_000 * 60_000 + 18 * 60_000)
        assert st.tick_range(*hole) is None and list(st.iter_event_slices(True, *hole)) == []
        assert st.count_ticks("trade", *hole) == 0


def test_overlapping_chunks_fall_back_to_windows_and_respect_the_range(tmp_path):
    tr, qu = random_stream(9, minutes=60)
    with Store(tmp_path / "a.db", BTC) as st:
        st.append_ticks("trade", tr[0::2], "even")  # two chunks covering the same time
        st.append_ticks("trade", tr[1::2], "odd")
        st.append_ticks("quote", qu, "q")
        lo, hi = int(tr["ts"][100]), int(tr["ts"][-100])
        parts = list(st.iter_event_slices(True, lo, hi))
        got = np.concatenate([p[0] for p in parts])
        want = tr[(tr["ts"] >= lo) & (tr["ts"] < hi)]
        assert sorted(got["trade_id"].tolist()) == sorted(want["trade_id"].tolist())
        assert np.all(np.diff(got["ts"]) >= 0)


def test_purge_plan_is_what_the_purge_removes(tmp_path):
    tr, qu = random_stream(10, minutes=120)
    with _chunked_store(tmp_path / "a.db", tr, qu) as st:
        keep = 50 * 60_000
        plan = st.plan_purge(keep)
        assert st.count_ticks("trade") == len(tr)  # planning changed nothing
        cutoff = max(int(tr["ts"][-1]), int(qu["ts"][-1])) - keep
        assert plan.cutoff == cutoff
        assert plan.rows == {"trade": int((tr["ts"] < cutoff).sum()), "quote": int((qu["ts"] < cutoff).sum())}
        old = np.concatenate([tr["ts"][tr["ts"] < cutoff], qu["ts"][qu["ts"] < cutoff]])
        assert (plan.first_ts, plan.last_ts) == (int(old.min()), int(old.max()))
        dropped, _ = st.purge_raw(keep)
        assert dropped == sum(plan.rows.values())
        assert st.plan_purge(keep).rows == {"trade": 0, "quote": 0}


def test_background_checkpoint_copies_each_commit_behind_the_writer_and_keeps_the_wal_bounded(tmp_path):
    """A bulk writer's commits are checkpointed on a thread of their own; past its bound the WAL starts
    over instead of growing with the import (it held the whole import before the bound waited for a
    full checkpoint), a reader sees every commit, and the file closes whole."""
    import os

    from engine.store import ARCHIVE_PAGE_SIZE, TRADE_DTYPE

    path = tmp_path / "bulk.db"
    rows = 1 << 16
    commit_bytes = rows * TRADE_DTYPE.itemsize  # 3 MB a commit, 120 MB in all
    walls = []
    with Store(path, BTC, page_size=ARCHIVE_PAGE_SIZE, background_checkpoint=True) as st:
        assert st.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0  # the commit itself does not copy
        st._checkpointer.wait_bytes = 4 * commit_bytes  # the default, 2x SQLite's 1000 pages, is 131 MB
        reader = Store(path, readonly=True)
        for k in range(40):
            tr = np.zeros(rows, TRADE_DTYPE)
            tr["ts"] = np.arange(rows) + k * rows
            tr["trade_id"] = tr["ts"] + 1
            tr["px"], tr["qty"], tr["side"] = 600_000, 1, 1
            with st.write():
                st.append_ticks("trade", tr, f"f{k}")
            walls.append(os.path.getsize(str(path) + "-wal"))  # the file keeps its largest size
            assert reader.count_ticks("trade") == (k + 1) * rows
        reader.close()
        assert st._checkpointer.waits > 0
    # a commit adds 1.1 commit_bytes of WAL: without starting over it ends at 44. With the bound it stays
    # at 7-8 (the bound, the commits the last count missed, the one that waited, the one that started over)
    assert max(walls) <= 12 * commit_bytes, str([round(w / commit_bytes, 1) for w in walls])
    assert not os.path.exists(str(path) + "-wal")  # the close checkpointed the rest
    with Store(path, readonly=True) as st:
        assert st.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert st.count_ticks("trade") == 40 * rows


def test_a_busy_answer_while_opening_is_waited_out(tmp_path, monkeypatch):
    """SQLite answers busy at once, without the busy handler, while another process's last connection
    cleans up its WAL on close: opening tries again instead of failing "database is locked"."""
    import apsw

    with Store(tmp_path / "a.db", BTC):
        pass
    real = Store._bind
    busy = [3]

    def bind(self, *args):
        if busy[0]:
            busy[0] -= 1
            raise apsw.BusyError("database is locked")
        return real(self, *args)

    monkeypatch.setattr(Store, "_bind", bind)
    with Store(tmp_path / "a.db", BTC) as st:
        assert st.instrument == BTC and busy == [0]
    busy[0] = 10**9  # busy for good: an error naming the file once the wait is over
    with pytest.raises(StoreError, match="a.db: not a usable database: database is locked"):
        Store(tmp_path / "a.db", BTC, wait_ms=50)
