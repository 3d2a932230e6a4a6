"""CPU cost of each step of importing a Bybit trade archive, per million rows.

    python bench/bench_import_steps.py FILE.csv.gz

FILE is a Bybit trade archive (``bench/bench_download.py --dir D`` writes
them under ``D/serve/BTCUSDT``). One 4 MiB block of its text is split and
parsed 10 times per step and timed in CPU seconds (``process_time``: on a
shared machine wall time mostly measures the neighbours), then scaled to
1 M rows. Inflate is timed on the whole file with zlib and with ISA-L
(``engine.gz``). Storing is timed apart: 2**20 trades (4 chunks) through
``Store.append_ticks_counted``, four times, into a fresh database with
SQLite's 4 KB pages and with the archives' 64 KB, and the duplicate check
of one chunk. Run it with ``PYTHONPATH`` at another tree to compare.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import tempfile
import time
import zlib

import numpy as np
from isal import isal_zlib

from engine import importers
from engine import store as store_mod
from engine.config import Settings
from engine.types import TRADE_DTYPE

COLUMNS = {"timestamp": 0, "symbol": 1, "side": 2, "size": 3, "price": 4, "trdMatchID": 6}


def cpu_per_block(fn, reps: int = 10) -> float:
    fn()  # warm (numba's cache load, first allocations)
    started = time.process_time()
    for _ in range(reps):
        fn()
    return (time.process_time() - started) / reps


def inflate_seconds(module, raw: bytes) -> float:
    started = time.process_time()
    d = module.decompressobj(16 + zlib.MAX_WBITS)
    for i in range(0, len(raw), 1 << 20):
        d.decompress(raw[i:i + (1 << 20)])
    return time.process_time() - started


def store_seconds(page_size: int | None = None) -> dict[str, float]:
    n = 1 << 20
    rng = np.random.default_rng(1)
    rec = np.zeros(n, TRADE_DTYPE)
    rec["ts"] = 1_733_011_200_000 + np.sort(rng.integers(0, 86_400_000, n))
    rec["local_ts"] = rec["ts"]
    rec["trade_id"] = rng.integers(0, 2**62, n)
    rec["px"], rec["qty"], rec["side"] = 950_000, 5, 1
    keys = store_mod._dedup_keys("trade", rec[:store_mod.CHUNK_ROWS])
    repeated = cpu_per_block(lambda: store_mod._repeated(keys))
    with tempfile.TemporaryDirectory() as folder:
        with store_mod.Store(os.path.join(folder, "s.db"), store_mod.instrument_of(Settings()),
                             page_size=page_size) as st:
            st.append_ticks_counted("trade", rec[:1000], "warm")  # the kernels' cache load
            appends = []
            for k in range(4):  # four files' worth, each its own transaction: checkpoints included
                more = rec.copy()
                more["ts"] += (k + 1) * 86_400_000
                started = time.process_time()
                st.append_ticks_counted("trade", more, "bench")
                appends.append(time.process_time() - started)
            append = sum(appends) / len(appends)
    return {"append_1M": round(append * 1e6 / n, 3), "duplicate_check_1M": round(repeated * 1e6 / len(keys), 3)}


def main() -> None:
    path = sys.argv[1]
    raw = open(path, "rb").read()
    text = gzip.decompress(raw)
    rows = text.count(b"\n") - 1
    body = text[text.index(b"\n") + 1:]
    block = body[: body.rfind(b"\n", 0, 1 << 22) + 1]
    per_million = 1e6 / block.count(b"\n")
    settings = Settings()
    parse = importers._bybit_trade_parser(importers._Checks(settings), settings, COLUMNS)
    fields, _, _ = importers._split_block(block, 2, 11, tuple(sorted(COLUMNS.values())))
    steps = {
        "split": lambda: importers._split_block(block, 2, 11, tuple(sorted(COLUMNS.values()))),
        "timestamp": lambda: fields.seconds_ms(0),
        "price": lambda: fields.decimal(4),
        "trade_ids": lambda: fields.trade_ids(6),
        "symbol": lambda: fields.equals(1, b"BTCUSDT"),
        "parse_all_checks": lambda: parse(fields),
        "split_and_parse": lambda: parse(importers._split_block(block, 2, 11, tuple(sorted(COLUMNS.values())))[0]),
        "one_pass_kernel_all_checks": lambda: fast(np.frombuffer(block, dtype=np.uint8)),
    }
    fast = importers._bybit_trade_fast(importers._Checks(settings), settings, COLUMNS, 11)
    assert np.array_equal(fast(np.frombuffer(block, dtype=np.uint8)), parse(fields)[0])  # the same records
    out = {"file": os.path.basename(path), "rows": rows, "load_average": os.getloadavg(),
           "cpu_s_per_1M_rows": {name: round(cpu_per_block(fn) * per_million, 3) for name, fn in steps.items()}}
    out["inflate_cpu_s_per_1M_rows"] = {name: round(inflate_seconds(m, raw) * 1e6 / rows, 3)
                                        for name, m in (("zlib", zlib), ("isal", isal_zlib))}
    out["store_cpu_s_per_1M_rows"] = {"4 KB pages": store_seconds(),
                                      "64 KB pages (archives)": store_seconds(store_mod.ARCHIVE_PAGE_SIZE)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
