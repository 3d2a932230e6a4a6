"""Tardis CSV import throughput: ``pbdtui data import --format tardis`` rows/s and peak RSS.

    python bench/bench_import.py [--rows 2000000] [--dir DIR] [--numeric-ids] [--repeat 2] [--json OUT]

Writes a Tardis-format trades CSV.gz and quotes CSV.gz of --rows rows each,
built from synthesized ticks (so prices, sizes and timestamps look like the
real feed; trade ids are UUID strings as in Tardis' Bybit files unless
--numeric-ids), then imports both into a fresh database in a subprocess and
reports rows/s (rows of both files / wall time of the command) and peak RSS.
Files are kept in --dir when given (and reused when already there).

Target: >= 500k rows/s.
"""

from __future__ import annotations

import argparse
import gzip
import math
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

TRADES_PER_DAY = 1.2e6  # the synthesizer's average


def _price(ticks: np.ndarray) -> list[str]:  # tick 0.1
    return [f"{t // 10}.{t % 10}" for t in ticks.tolist()]


def _size(lots: np.ndarray) -> list[str]:  # lot 0.001
    return [f"{q // 1000}.{q % 1000:03d}".rstrip("0").rstrip(".") for q in lots.tolist()]


def write_files(folder: Path, rows: int, numeric_ids: bool, seed: int) -> tuple[Path, Path, dict]:
    from engine.store import Store

    trades_path = folder / f"bybit_trades_{rows}{'_num' if numeric_ids else ''}.csv.gz"
    quotes_path = folder / f"bybit_quotes_{rows}.csv.gz"
    info: dict = {}
    if trades_path.exists() and quotes_path.exists():
        info["reused_files"] = True
        return trades_path, quotes_path, info
    db = folder / "source.db"
    if not db.exists():
        info["synth"] = _common.synth_db(db, math.ceil(rows / TRADES_PER_DAY * 10 + 1) / 10, seed)
    with Store(db, readonly=True) as store:
        tr = store.load_ticks("trade")[:rows]
        qu = store.load_ticks("quote")[:rows]
    if len(tr) < rows:
        raise SystemExit(f"only {len(tr)} synthesized trades for {rows} rows")
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    ts_us = tr["ts"] * 1000 + rng.integers(0, 1000, len(tr))
    ts_us.sort()  # ms order is kept; the sub-ms digits only make the text realistic
    local_us = ts_us + rng.integers(2_000, 60_000, len(tr))
    if numeric_ids:
        ids = [str(i) for i in tr["trade_id"].tolist()]
    else:
        raw = rng.bytes(16 * len(tr))
        ids = [str(uuid.UUID(bytes=raw[i:i + 16])) for i in range(0, len(raw), 16)]
    side = np.where(tr["side"] > 0, "buy", "sell").tolist()
    lines = [
        f"bybit,BTCUSDT,{a},{b},{c},{d},{e},{f}\n"
        for a, b, c, d, e, f in zip(ts_us.tolist(), local_us.tolist(), ids, side, _price(tr["px"]),
                                    _size(tr["qty"]), strict=True)
    ]
    with gzip.open(trades_path, "wt", compresslevel=6) as fh:
        fh.write("exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n")
        fh.writelines(lines)
    del lines, ids
    q_us = np.sort(qu["ts"] * 1000 + rng.integers(0, 1000, len(qu)))
    q_local = q_us + rng.integers(2_000, 60_000, len(qu))
    lines = [
        f"bybit,BTCUSDT,{a},{b},{c},{d},{e},{f}\n"
        for a, b, c, d, e, f in zip(q_us.tolist(), q_local.tolist(), _size(qu["ask_sz"]), _price(qu["ask_px"]),
                                    _price(qu["bid_px"]), _size(qu["bid_sz"]), strict=True)
    ]
    with gzip.open(quotes_path, "wt", compresslevel=6) as fh:
        fh.write("exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount\n")
        fh.writelines(lines)
    info["write_s"] = round(time.perf_counter() - t0, 1)
    return trades_path, quotes_path, info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000, help="rows per file")
    ap.add_argument("--dir", help="keep (and reuse) the generated files here")
    ap.add_argument("--numeric-ids", action="store_true", help="integer trade ids instead of UUIDs")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args(argv)
    result: dict = {"bench": "import", "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": _common.machine()}
    with tempfile.TemporaryDirectory(prefix="pbdtui-bench-") as tmp:
        tmpd = Path(tmp)
        folder = Path(args.dir) if args.dir else tmpd
        folder.mkdir(parents=True, exist_ok=True)
        trades_path, quotes_path, info = write_files(folder, args.rows, args.numeric_ids, args.seed)
        result["files"] = {"trades": trades_path.name, "trades_mb": round(trades_path.stat().st_size / 1e6, 1),
                           "quotes": quotes_path.name, "quotes_mb": round(quotes_path.stat().st_size / 1e6, 1),
                           "rows_each": args.rows, "trade_ids": "numeric" if args.numeric_ids else "uuid", **info}
        runs = []
        for i in range(args.repeat):
            db = tmpd / f"import{i}.db"
            runs.append(_common.timed(_common.pbdtui("data", "import", "--db", str(db), "--format", "tardis",
                                                     "--trades", str(trades_path), "--quotes", str(quotes_path)),
                                      cwd=_common.clean_cwd(tmpd)))
            db.unlink()
    best = min(runs, key=lambda r: r.wall_s)
    per_file = re.findall(r"(\w+)s \S+: (\d+) rows, (\d+) new, (\d+) bad \(([\d.]+) s, (\S+) rows/s\)", best.stdout)
    result["import"] = {
        "rows": 2 * args.rows,
        "wall_s": [round(r.wall_s, 2) for r in runs],
        "rows_per_s_wall": round(2 * args.rows / best.wall_s),
        "per_file": [{"kind": k, "rows": int(n), "new": int(new), "bad": int(bad), "seconds": float(s), "rate": rate}
                     for k, n, new, bad, s, rate in per_file] or best.stdout.strip(),
        "cpu_s": [r.cpu_s for r in runs],
        "rows_per_cpu_s": round(2 * args.rows / best.cpu_s) if best.cpu_s else None,
        "peak_rss_mb": [round(r.max_rss_mb, 1) if r.max_rss_mb else None for r in runs],
        "rss_source": best.rss_source,
        "loadavg_after": best.loadavg_after,
    }
    _common.emit("bench_import", result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
