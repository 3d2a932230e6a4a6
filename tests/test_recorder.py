"""The recorder: batches committed by one writer thread, minutes appended, small chunks compacted."""

from __future__ import annotations

import numpy as np

from engine.config import Settings
from engine.engine import Engine
from engine.runtime.recorder import Recorder, compact_chunks
from engine.store import Store
from tests.helpers import random_stream

SETTINGS = Settings().replace(rolling_window_minutes=5)


def test_many_small_batches_are_stored_whole_and_compacted_into_few_chunks(tmp_path):
    tr, qu = random_stream(3, minutes=20, trades_per_min=30, quotes_per_min=40)
    db = tmp_path / "rec.db"
    rec = Recorder(str(db), SETTINGS, commit_interval=0.0, purge_interval=None, compact_interval=1e9).start()
    eng = Engine(SETTINGS, trading=False)
    cuts = np.linspace(0, len(tr), 80).astype(int)
    qcuts = np.searchsorted(qu["ts"], tr["ts"][np.minimum(cuts, len(tr) - 1)])
    qcuts[-1] = len(qu)
    for k in range(len(cuts) - 1):
        t, q = tr[cuts[k]:cuts[k + 1]], qu[qcuts[k]:qcuts[k + 1]]
        rec.ticks(t, q)
        out = eng.feed(t, q)
        rec.minutes(out.bars, out.features, out.signals)
        assert rec.flush()  # a commit per batch: the worst case for chunk counts
    rec.close()
    # 79 commits made 158 chunks; closing compacted all but the last two minutes' (the live edge)
    assert rec.counters["compacted"] >= 120
    with Store(db) as st:
        before = st.fetch("SELECT COUNT(*) FROM tick_chunks")[0][0]
        assert before <= 158 - 120
        removed = compact_chunks(st, "trade", 2**62, min_chunks=2) + compact_chunks(st, "quote", 2**62, min_chunks=2)
        after = st.fetch("SELECT COUNT(*) FROM tick_chunks")[0][0]
        assert removed == before - after and after == 2
        assert st.load_ticks("trade").tobytes() == tr.tobytes()
        assert st.load_ticks("quote").tobytes() == qu.tobytes()
        minutes = st.fetch("SELECT COUNT(*) FROM bars_1m")[0][0]
    assert minutes == eng.bars_closed == 19  # the open 20th minute is not closed yet
    assert rec.counters["trades"] == len(tr) and rec.counters["commit_errors"] == 0


def test_a_failed_commit_keeps_the_batch_and_retries(tmp_path):
    tr, qu = random_stream(4, minutes=3)
    db = tmp_path / "busy.db"
    rec = Recorder(str(db), SETTINGS, commit_interval=0.05, purge_interval=None, busy_timeout_ms=50).start()
    with Store(db) as blocker:
        blocker.db.execute("BEGIN EXCLUSIVE")  # another writer holds the lock
        rec.ticks(tr, qu)
        assert not rec.flush(timeout=0.5)  # cannot commit yet
        blocker.db.execute("COMMIT")
    assert rec.flush(timeout=20)
    rec.close()
    assert rec.counters["commit_errors"] >= 1  # failed while locked, kept, then committed
    with Store(db, readonly=True) as st:
        assert st.count_ticks("trade") == len(tr) and st.count_ticks("quote") == len(qu)


def test_a_gap_flags_its_minutes_stored_before_it_and_those_that_close_after_it(tmp_path):
    """The gap is known while its minutes are partly stored, partly still open: both kinds end flagged
    (the engine holds one gap, and a later one can replace it before this one's minutes close)."""
    tr, qu = random_stream(5, minutes=8, trades_per_min=30, quotes_per_min=40)
    db = tmp_path / "gap.db"
    rec = Recorder(str(db), SETTINGS, commit_interval=0.0, purge_interval=None, compact_interval=1e9).start()
    eng = Engine(SETTINGS, trading=False)
    t0 = int(tr["ts"][0]) // 60_000 * 60_000

    def minutes(lo: int, hi: int) -> None:  # the ticks of minutes [lo, hi) through the engine to the recorder
        window = [a[(a["ts"] >= t0 + lo * 60_000) & (a["ts"] < t0 + hi * 60_000)] for a in (tr, qu)]
        out = eng.feed(*window)
        rec.minutes(out.bars, out.features, out.signals)
        assert rec.flush()

    minutes(0, 3)  # minutes 0-1 stored, 2 open
    rec.flag_gap(t0 + 90_000, t0 + 4 * 60_000 + 10)  # minutes 1-4: 1 stored, 2 open, 3-4 to come
    assert rec.flush()
    for lo in (3, 5, 7):  # the later minutes come in separate commits, with no further word of the gap
        minutes(lo, lo + 2)
    rec.close()
    with Store(db, readonly=True) as st:
        rows = st.fetch("SELECT ts_min, feed_gap FROM features_1m ORDER BY ts_min")
    flagged = [(ts - t0) // 60_000 for ts, gap in rows if gap]
    assert len(rows) >= 6 and flagged == [1, 2, 3, 4]
