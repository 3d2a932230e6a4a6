"""CPU cost of each step of importing a Bybit trade archive, per million rows.

    python bench/bench_import_steps.py FILE.csv.gz

FILE is a Bybit trade archive (``bench/bench_download.py --dir D`` writes
them under ``D/serve/BTCUSDT``). One 4 MiB block of its text is split and
parsed 10 times per step and timed in CPU seconds (``process_time``: on a
shared machine wall time mostly measures the neighbours), then scaled to
1 M rows. Inflate is timed on the whole file with zlib and with ISA-L
(``engine.gz``). Run it with ``PYTHONPATH`` at another tree to compare.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import time
import zlib

from isal import isal_zlib

from engine import importers
from engine.config import Settings

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
    }
    out = {"file": os.path.basename(path), "rows": rows, "load_average": os.getloadavg(),
           "cpu_s_per_1M_rows": {name: round(cpu_per_block(fn) * per_million, 3) for name, fn in steps.items()}}
    out["inflate_cpu_s_per_1M_rows"] = {name: round(inflate_seconds(m, raw) * 1e6 / rows, 3)
                                        for name, m in (("zlib", zlib), ("isal", isal_zlib))}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
