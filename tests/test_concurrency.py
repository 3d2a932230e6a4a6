"""Two writers and a reader on one database, as real processes on a real SQLite file.

Writers take the write lock up front (``BEGIN IMMEDIATE``) and wait for each
other; readers (WAL) never wait for a writer and never hold one up.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from engine.store import Instrument, Store
from tests.helpers import random_stream

REPO = Path(__file__).resolve().parents[1]
BTC = Instrument("BTCUSDT", 0.1, 0.001)
HEADER = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount"
T0_US = 1_733_011_200_000_000


def _trade_file(path: Path, start_id: int, rows: int) -> Path:
    ids = np.arange(start_id, start_id + rows)
    ts = T0_US + ids * 1000
    body = "\n".join(f"x,BTCUSDT,{t},{t},{i},buy,96000.{i % 10},0.00{1 + i % 9}" for t, i in zip(ts.tolist(),
                                                                                            ids.tolist(), strict=True))
    with gzip.open(path, "wt", compresslevel=1) as f:
        f.write(HEADER + "\n" + body + "\n")
    return path


def _cli(*argv: str) -> subprocess.Popen[str]:
    env = os.environ | {"PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "pbdtui.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


_READER = """
import sys, time
from engine.store import Store
import os
db, done = sys.argv[1], sys.argv[2]
reads = 0
while True:
    last = os.path.exists(done)  # the writers have finished: one more read, then stop
    try:
        with Store(db, readonly=True) as st:
            st.count_ticks("trade")
            reads += 1
    except Exception as exc:  # a reader must never fail while others write
        if "no such database" not in str(exc) and "no pbdtui tables" not in str(exc):
            raise
    if last:
        break
    time.sleep(0.02)
print(reads)
"""


def test_two_importers_and_a_reader_on_one_new_database(tmp_path):
    a = _trade_file(tmp_path / "a.csv.gz", 0, 200_000)
    b = _trade_file(tmp_path / "b.csv.gz", 200_000, 200_000)
    db = str(tmp_path / "both.db")
    done = tmp_path / "writers-done"
    reader = subprocess.Popen([sys.executable, "-c", _READER, db, str(done)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=os.environ | {"PYTHONPATH": str(REPO)})
    writers = [_cli("data", "import", "--db", db, "--format", "tardis", "--trades", str(p)) for p in (a, b)]
    results = [w.communicate(timeout=300) for w in writers]
    done.touch()  # the reader reads until the writers are done (a fixed time is too short on a loaded machine)
    for w, (out, err) in zip(writers, results, strict=True):
        assert w.returncode == 0, err
        assert "200000 rows, 200000 new, 0 bad" in out
    out, err = reader.communicate(timeout=300)
    assert reader.returncode == 0, err
    assert int(out) > 0
    with Store(db, readonly=True) as st:
        assert st.count_ticks("trade") == 400_000
        assert len(np.unique(st.load_ticks("trade")["trade_id"])) == 400_000


def test_a_second_writer_waits_for_the_first_instead_of_failing(tmp_path):
    """The first writer commits while the second waits: a deferred transaction would fail on its stale snapshot."""
    db = tmp_path / "w.db"
    tr, _ = random_stream(1, minutes=5)
    path = _trade_file(tmp_path / "t.csv.gz", 0, 1000)
    with Store(db, BTC) as first:
        with first.write():
            proc = _cli("data", "import", "--db", str(db), "--format", "tardis", "--trades", str(path))
            # the second says it is waiting for the lock (after a second of waiting): an event, not a sleep
            seen = []
            for line in proc.stderr:
                seen.append(line)
                if "another process is writing to this database; waiting" in line:
                    break
            assert proc.poll() is None, "".join(seen)  # still waiting, not dead
            first.append_ticks("trade", tr, "first")
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, "".join(seen) + err
    assert "1000 rows, 1000 new, 0 bad" in out
    with Store(db, readonly=True) as st:
        assert st.count_ticks("trade") == len(tr) + 1000


def test_readers_never_wait_for_a_writer_and_never_hold_one_up(tmp_path):
    db = tmp_path / "r.db"
    tr, qu = random_stream(2, minutes=5)
    with Store(db, BTC) as st:
        st.append_ticks("trade", tr, "t")
        st.append_ticks("quote", qu, "q")
    path = _trade_file(tmp_path / "t.csv.gz", 10**9, 1000)
    with Store(db, readonly=True) as reader:
        reader.db.execute("BEGIN")  # a long read transaction (a report, the console)
        assert reader.count_ticks("trade") == len(tr)
        started = time.monotonic()
        proc = _cli("data", "import", "--db", str(db), "--format", "tardis", "--trades", str(path))
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "waiting" not in err and time.monotonic() - started < 60
        assert reader.count_ticks("trade") == len(tr)  # its snapshot is stable
        reader.db.execute("COMMIT")
        assert reader.count_ticks("trade") == len(tr) + 1000
    with Store(db, BTC) as writer, writer.write():  # and a reader goes on while a writer holds the lock
        info = _cli("data", "info", "--db", str(db))
        out, err = info.communicate(timeout=120)
        assert info.returncode == 0, err
        assert "trades" in out
