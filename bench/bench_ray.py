"""Sweep on Ray vs the local process pool: wall time for 1 and 2 workers, and Ray's per-task overhead.

    python bench/bench_ray.py [--days 1] [--db P] [--combos 64] [--json OUT]

Synthesizes --days (seed 1) into --db (a temporary file by default) unless
that file exists already, then runs the same grid
(64 combinations in 2 feature groups: alpha_bin x cooldown_minutes x
accept_outside_k x slippage_ticks_entry x fee_model) through
``engine.sweep.run_sweep`` with ``backend="local"`` and ``backend="ray"`` at
1 and 2 workers, in this process. Ray's start (``ray.init``) is timed
separately and not counted in the sweep's time. Ray's workers run at
``--ray-niceness`` (0, as in the instance a sweep starts itself; Ray's own
default is 15). Per-task overhead: the mean
round trip of 200 empty Ray tasks, and (ray - local) / combinations.

Target (issue 13): 64 combinations on Ray with 2 CPUs within 15 % of the local pool.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

GRID = ["alpha_bin=0.2,0.3", "cooldown_minutes=0,3,5,10", "accept_outside_k=2,3", "slippage_ticks_entry=0,1",
        "fee_model=taker,maker"]


def main() -> None:
    import ray

    from engine import sweep
    from engine.config import Settings
    from engine.store import Store, instrument_of
    from engine.synth import synthesize

    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--db", default=None)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--json", default=None)
    ap.add_argument("--ray-niceness", type=int, default=0,
                    help="Ray workers' niceness (0: what a sweep's own instance uses; 15: Ray's default)")
    args = ap.parse_args()
    settings = Settings()
    db = args.db or str(Path(tempfile.mkdtemp(prefix="bench_ray_")) / "synth.db")
    if not Path(db).exists():
        with Store(db, instrument_of(settings)) as store:
            synthesize(store, settings, days=args.days, seed=1)
    grid, combos = sweep.parse_grid(settings, GRID)
    with Store(db, instrument_of(settings)) as store:
        ticks = {kind: store.count_ticks(kind) for kind in ("trade", "quote")}
    out: dict = {"days": args.days, "combinations": len(combos), "ticks": ticks, "load_average_start": os.getloadavg(),
                 "ray_niceness": args.ray_niceness, "runs": []}
    for workers in (int(w) for w in args.workers.split(",")):
        with Store(db, instrument_of(settings)) as store:
            t = time.perf_counter()
            local = sweep.run_sweep(store, grid, combos, workers=workers)
            local_s = time.perf_counter() - t
            t = time.perf_counter()
            sweep.ray_init_local(workers, args.ray_niceness)
            init_s = time.perf_counter() - t

            @ray.remote(num_cpus=1)
            def empty() -> int:
                return 0

            ray.get([empty.remote() for _ in range(workers * 4)])  # workers up
            t = time.perf_counter()
            for _ in range(200):
                ray.get(empty.remote())
            task_ms = (time.perf_counter() - t) / 200 * 1e3
            t = time.perf_counter()
            on_ray = sweep.run_sweep(store, grid, combos, workers=workers, backend="ray")
            ray_s = time.perf_counter() - t
            ray.shutdown()
        same = local.reports == on_ray.reports
        out["runs"].append({"workers": workers, "local_seconds": round(local_s, 2), "ray_seconds": round(ray_s, 2),
                            "ray_over_local": round(ray_s / local_s, 3), "ray_init_seconds": round(init_s, 2),
                            "empty_task_round_trip_ms": round(task_ms, 2),
                            "overhead_per_combination_ms": round((ray_s - local_s) / len(combos) * 1e3, 1),
                            "reports_identical": same, "load_average": os.getloadavg()})
        print(json.dumps(out["runs"][-1]), flush=True)
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
