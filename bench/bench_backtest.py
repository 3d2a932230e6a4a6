"""Backtest and sweep throughput on simulated days.

    python bench/bench_backtest.py [--days 10] [--db PATH] [--workers 2] [--skip-sweep] [--json OUT]

(a) ``pbdtui backtest --db`` (tick mode) in a subprocess: events / wall time of
    the command (interpreter start, numba cache load, reading, the run,
    writing bars/features/signals/trades and the runs row), the command's own
    events/s figure (run_tick only), and peak RSS.
(b) ``pbdtui sweep`` over 16 combinations
    (slippage_ticks_entry=0,1 x fee_model=taker,maker x alpha_bin=0.2,0.3 x
    accept_outside_k=2,3) with --workers processes: wall time, and the peak RSS
    of the largest process.

The database is synthesized (seed 1) in a temp dir unless --db is given; the
backtest writes its rows into it.

Targets: backtest >= 3 M events/s end to end and < 2 GB; the 16-combination
sweep < 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

SWEEP_GRID = ["slippage_ticks_entry=0,1", "fee_model=taker,maker", "alpha_bin=0.2,0.3", "accept_outside_k=2,3"]
COMBINATIONS = math.prod(len(g.split("=", 1)[1].split(",")) for g in SWEEP_GRID)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=10.0, help="days to synthesize (ignored with --db)")
    ap.add_argument("--db", help="reuse this database instead of synthesizing one")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1, help="backtest runs (best is reported)")
    ap.add_argument("--workers", type=int, default=2, help="sweep worker processes")
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--skip-backtest", action="store_true")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args(argv)
    result: dict = {"bench": "backtest", "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                    "machine": _common.machine()}
    with tempfile.TemporaryDirectory(prefix="pbdtui-bench-") as tmp:
        tmpd = Path(tmp)
        cwd = _common.clean_cwd(tmpd)
        if args.db:
            db = Path(args.db)
        else:
            db = tmpd / "bench.db"
            result["synth"] = _common.synth_db(db, args.days, args.seed)
        trades, quotes = _common.db_counts(db)
        events = trades + quotes
        result["data"] = {"trades": trades, "quotes": quotes, "events": events,
                          "db_mb": round(db.stat().st_size / 1e6)}
        if not args.skip_backtest:
            runs = [_common.timed(_common.pbdtui("backtest", "--db", str(db)), cwd=cwd) for _ in range(args.repeat)]
            best = min(runs, key=lambda r: r.wall_s)
            m = re.search(r"(\d+) events in ([\d.]+) s \(([\d.]+) M/s\)", best.stdout)
            result["backtest"] = {
                "wall_s": [round(r.wall_s, 2) for r in runs],
                "events_per_s_wall": round(events / best.wall_s),
                "run_tick_s": float(m.group(2)) if m else None,
                "run_tick_M_events_per_s": float(m.group(3)) if m else None,
                "headline": best.stdout.strip().splitlines()[0] if best.stdout.strip() else "",
                "cpu_s": [r.cpu_s for r in runs],
                "events_per_cpu_s": round(events / best.cpu_s) if best.cpu_s else None,
                "peak_rss_mb": [round(r.max_rss_mb, 1) if r.max_rss_mb else None for r in runs],
                "rss_source": best.rss_source,
                "loadavg_after": best.loadavg_after,
            }
        if not args.skip_sweep:
            grid = [a for g in SWEEP_GRID for a in ("--grid", g)]
            run = _common.timed(_common.pbdtui("sweep", "--db", str(db), *grid, "--out", str(tmpd / "sweep"),
                                               "--workers", str(args.workers)), cwd=cwd)
            per = [float(x) for x in re.findall(r"\s([\d.]+)\s*$", run.stdout, flags=re.M)]
            result["sweep"] = {
                "combinations": COMBINATIONS,
                "workers": args.workers,
                "wall_s": round(run.wall_s, 1),
                "combination_seconds": per,
                # stored events times combinations, per second (minute passes read only quotes, so
                # this is what a sweep covers, not what it reads)
                "stored_events_x_combinations_per_s": round(COMBINATIONS * events / run.wall_s),
                "cpu_s_all_processes": run.cpu_s,
                "largest_process_rss_mb": round(run.max_rss_mb, 1) if run.max_rss_mb else None,
                "rss_source": run.rss_source,
                "table": run.stdout,
                "loadavg_after": run.loadavg_after,
            }
    _common.emit("bench_backtest", result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
