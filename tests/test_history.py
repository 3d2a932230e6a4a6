"""Long history in one store: a window reads only its chunks; the 48 h retention is for live databases only."""

from __future__ import annotations

import gzip

import pytest

from engine import store as store_mod
from engine.backtest import run_tick
from engine.config import Settings
from engine.runtime.recorder import Recorder
from engine.store import ARCHIVE, LIVE, Store
from engine.synth import synthesize
from pbdtui.cli import main
from tests.helpers import random_stream

SETTINGS = Settings().replace(rolling_window_minutes=5)
INSTRUMENT = store_mod.instrument_of(SETTINGS)
HOUR = 3_600_000
DAYS = 3


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """Three days of ticks stored in chunks of 256 rows: some 250 chunks, as weeks would be at full size."""
    db = tmp_path_factory.mktemp("history") / "h.db"
    tr, qu = random_stream(7, minutes=DAYS * 24 * 60, trades_per_min=6, quotes_per_min=9)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(store_mod, "CHUNK_ROWS", 256)
        with Store(db, INSTRUMENT) as st:
            for day in range(DAYS):  # one append per day, as one archive file a day would be
                lo, hi = tr["ts"][0] + day * 24 * HOUR, tr["ts"][0] + (day + 1) * 24 * HOUR
                st.append_ticks("trade", tr[(tr["ts"] >= lo) & (tr["ts"] < hi)], f"day{day}")
                st.append_ticks("quote", qu[(qu["ts"] >= lo) & (qu["ts"] < hi)], f"day{day}")
    return db, tr, qu


def test_a_backtest_window_reads_only_the_chunks_it_overlaps(history, monkeypatch):
    db, tr, qu = history
    lo = int(tr["ts"][0]) + 30 * HOUR + 123  # 2 h in the middle of day 2, bounds inside chunks
    hi = lo + 2 * HOUR
    read: list[tuple[str, int]] = []
    real = Store.read_chunk

    def counting(self, kind, chunk_id):
        read.append((kind, chunk_id))
        return real(self, kind, chunk_id)

    monkeypatch.setattr(Store, "read_chunk", counting)
    monkeypatch.setattr(Store, "load_ticks", lambda *a, **k: pytest.fail("a window must not load whole days"))
    with Store(db, INSTRUMENT) as st:
        total = st.fetch("SELECT COUNT(*) FROM tick_chunks")[0][0]
        needed = {(kind, c) for kind in ("trade", "quote") for c, _, _ in st.chunk_index(kind, lo, hi)}
        result = run_tick(st, SETTINGS, start_ms=lo, end_ms=hi)
    assert total > 200 and len(needed) < total / 10
    assert set(read) <= needed  # straddling chunks may be read twice (range, then events), never others
    in_window = int(((tr["ts"] >= lo) & (tr["ts"] < hi)).sum() + ((qu["ts"] >= lo) & (qu["ts"] < hi)).sum())
    assert result.events == in_window


def test_the_window_query_uses_the_time_index(history):
    db, _, _ = history
    with Store(db, INSTRUMENT) as st:
        plan = " ".join(str(row) for row in st.fetch(
            "EXPLAIN QUERY PLAN SELECT chunk_id, ts_first, ts_last FROM tick_chunks WHERE kind=? AND ts_last>=? "
            "AND ts_first<? ORDER BY ts_first, chunk_id", ("trade", 0, 1)))
    assert "tick_chunks_kind_ts" in plan


def _ticks(st: Store) -> int:
    return st.count_ticks("trade") + st.count_ticks("quote")


def _run_recorder(db, tr, qu) -> Recorder:
    rec = Recorder(str(db), SETTINGS, commit_interval=0.0, purge_interval=0.0, compact_interval=1e9).start()
    rec.ticks(tr, qu)
    assert rec.flush()
    rec.close()  # its last pass commits and purges (purge_interval 0: every pass)
    return rec


def test_the_recorder_marks_a_new_database_live_and_purges_it_to_retention_hours(tmp_path):
    tr, qu = random_stream(3, minutes=72 * 60, trades_per_min=1, quotes_per_min=1)
    db = tmp_path / "live.db"
    rec = _run_recorder(db, tr, qu)
    with Store(db) as st:
        assert st.meta(store_mod.RETENTION_KEY) == LIVE and st.retention() == LIVE
        first, last = st.tick_range()
    assert rec.counters["purged"] > 0
    assert last - first <= SETTINGS.retention_hours * HOUR
    assert last == max(int(tr["ts"][-1]), int(qu["ts"][-1]))


def test_the_recorder_keeps_the_history_of_an_archive_database(tmp_path):
    db = tmp_path / "archive.db"
    with Store(db, INSTRUMENT) as st:
        synthesize(st, SETTINGS, days=0.1, seed=3)  # any history built on purpose is an archive
        assert st.retention() == ARCHIVE
        before = _ticks(st)
        start = st.tick_range()[1] + 1
    tr, qu = random_stream(4, minutes=72 * 60, start_ms=start // 60_000 * 60_000 + 60_000, trades_per_min=1,
                           quotes_per_min=1, price=900_000)
    rec = _run_recorder(db, tr, qu)
    assert rec.counters["purged"] == 0
    with Store(db) as st:
        assert st.retention() == ARCHIVE
        assert _ticks(st) == before + len(tr) + len(qu)


def _imported(tmp_path, name: str) -> tuple[str, int]:
    """A database made by ``pbdtui data import`` of a Bybit trade file spanning 72 h (a trade a minute)."""
    path = tmp_path / f"{name}.csv.gz"
    t0 = 1_733_011_200  # 2024-12-01, seconds
    rows = [f"{t0 + 60 * i}.5,BTCUSDT,{'Buy' if i % 2 else 'Sell'},0.001,{96000 + i % 7}.5,{i}" for i in range(72 * 60)]
    path.write_bytes(gzip.compress(("timestamp,symbol,side,size,price,trdMatchID\n" + "\n".join(rows) + "\n").encode()))
    db = str(tmp_path / f"{name}.db")
    assert main(["data", "import", "--db", db, "--format", "bybit-trades", str(path)]) == 0
    return db, len(rows)


def test_an_imported_database_is_an_archive_and_purge_needs_keep_hours(tmp_path, capsys):
    db, n = _imported(tmp_path, "imp")
    with Store(db) as st:
        assert st.meta(store_mod.RETENTION_KEY) == ARCHIVE and _ticks(st) == n
    capsys.readouterr()
    assert main(["data", "purge", "--db", db]) == 2
    err = capsys.readouterr().err
    assert "is an archive database" in err and "--keep-hours" in err
    with Store(db) as st:
        assert _ticks(st) == n
    assert main(["data", "purge", "--db", db, "--keep-hours", "48"]) == 0  # asked for explicitly: done
    with Store(db) as st:
        assert 0 < _ticks(st) < n


def test_data_retention_shows_and_changes_the_setting(tmp_path, capsys):
    db, n = _imported(tmp_path, "r")
    capsys.readouterr()
    assert main(["data", "retention", "--db", db]) == 0
    assert "archive database" in capsys.readouterr().out
    assert main(["data", "info", "--db", db]) == 0
    assert "retention   archive: raw ticks are kept" in capsys.readouterr().out
    assert main(["data", "retention", "--db", db, "live"]) == 0
    assert "live database" in capsys.readouterr().out
    assert main(["data", "purge", "--db", db]) == 0  # now the config's retention_hours applies
    with Store(db) as st:
        assert st.retention() == LIVE and 0 < _ticks(st) < n


def test_an_old_database_without_the_setting_is_judged_by_its_imports(tmp_path):
    tr, qu = random_stream(1, minutes=10)
    plain, imported = tmp_path / "plain.db", tmp_path / "imported.db"
    for db in (plain, imported):
        with Store(db, INSTRUMENT) as st:
            st.append_ticks("trade", tr, "x")
            if db == imported:
                st.log_import("x.csv.gz", "tardis", len(tr), 0, len(tr))
            assert st.meta(store_mod.RETENTION_KEY) is None
            assert not st.claim_retention(LIVE)  # it holds ticks: nobody decides for it afterwards
    with Store(plain) as st, Store(imported) as st2:
        assert st.retention() == LIVE and st2.retention() == ARCHIVE
    with Store(plain) as st, pytest.raises(store_mod.StoreError, match="retention must be one of"):
        st.set_retention("forever")
