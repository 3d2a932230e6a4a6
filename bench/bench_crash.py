"""Crash safety, the long run: ``pbdtui run --live`` killed with SIGKILL ``--kills`` times (default 100).

The harness is the crash test's (``tests/reliability/crashkit.py``): the
loopback stream and the loopback Bybit REST exchange in this process, the
daemon a real process restarted after every kill, kills at seeded random
instants (most a random 1-4 s after the daemon went live, ``--early``
of them during its start). After each kill: ``pragma integrity_check``;
received trades lost (the daemon's own delivered count, sampled every 50
ms, against the database: the age of the oldest lost one, an upper bound);
the exchange's position protected by its stop until the restart; after
the restart: the start reconciliation matched the exchange, and every
execution before the kill is in ``trades_exec`` exactly once.

    PYTHONPATH=. python bench/bench_crash.py [--kills 100] [--speed 30] [--seed 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import emit, loadavg, machine  # noqa: E402
from tests.reliability.crashkit import (  # noqa: E402
    LOST_BUDGET_MS,
    START,
    Crash,
    Market,
    exec_diff,
    make_source,
    prefill,
)

PREFILL_MINUTES = 12


def _stats(values: list[float]) -> str:
    values = [v for v in values if v == v]
    return f"{statistics.median(values):.2f} / {max(values):.2f}" if values else "--"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--speed", type=float, default=30.0, help="market speed, x real time (default %(default)s)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--early", type=float, default=0.15, help="share of kills during the start (default %(default)s)")
    ap.add_argument("--workdir", default=None, help="keep the database and logs here (default: a temporary folder)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    info = machine()
    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="bench-crash-")
    work = Path(args.workdir or tmp.name)  # type: ignore[union-attr]
    work.mkdir(parents=True, exist_ok=True)
    # market minutes a kill uses: its live time (mean 2.5 s) and the stream while it starts, at --speed
    minutes = PREFILL_MINUTES + 10 + int(args.kills * 3.5 * args.speed / 60)
    t0 = time.perf_counter()
    source = make_source(work / "src.db", minutes, seed=args.seed + 20)
    cut = START + PREFILL_MINUTES * 60_000
    prefill(work / "live.db", source, cut)
    setup_s = time.perf_counter() - t0
    market = Market(source, cut, speed=args.speed, seed=args.seed)
    crash = Crash(market, work, seed=args.seed, live_for=(1.0, 4.0), early_kill=args.early)
    loads = [loadavg()]
    t_kills = 0.0
    try:
        crash.spawn()
        crash.wait_live(timeout=900)
        assert crash.stop() == 0
        t1 = time.perf_counter()
        for i in range(args.kills):
            rec = crash.cycle()
            if (i + 1) % 10 == 0:
                loads.append(loadavg())
                print(f"{i + 1} kills, {time.perf_counter() - t1:.0f} s, load {loads[-1]}; last: {rec}",
                      file=sys.stderr, flush=True)
        t_kills = time.perf_counter() - t1
        crash.spawn()
        crash.after_restart([r for r in crash.records if r.exec_lost < 0], crash.wait_live())
        assert crash.stop() == 0
        final_lost, final_dup = exec_diff(crash.db, market.trade_exec_ids())
        executions = len(market.trade_exec_ids())
        served_out = market.finished()
    finally:
        if crash.proc is not None and crash.proc.poll() is None:
            crash.proc.kill()
        market.close()
    recs = crash.records
    recovered = sum(len(re.findall(r"execution\(s\) of a previous run were not recorded", p.read_text()))
                    for p in crash.logs.glob("*.out"))
    recovered_n = sum(int(n) for p in crash.logs.glob("*.out")
                      for n in re.findall(r"(\d+) execution\(s\) of a previous run were not recorded", p.read_text()))
    rows = {
        "kills": len(recs),
        "killed during the start": sum(r.phase == "starting" for r in recs),
        "kills with a position open on the exchange": sum(r.venue_lots != 0 for r in recs),
        "integrity_check failures": sum(r.integrity != "ok" for r in recs),
        "received trades lost (total)": sum(r.lost_trades for r in recs),
        "oldest lost trade at a kill, max ms (budget 1000)": max(r.lost_max_ms for r in recs),
        "kills over the 1 s budget": sum(r.lost_max_ms > LOST_BUDGET_MS for r in recs),
        "exchange executions": executions,
        "trades_exec lost after restart (sum over kills)": sum(max(0, r.exec_lost) for r in recs),
        "trades_exec duplicated after restart (sum over kills)": sum(max(0, r.exec_dup) for r in recs),
        "trades_exec lost / duplicated at the end": f"{final_lost} / {final_dup}",
        "executions recovered at a restart (restarts / executions)": f"{recovered} / {recovered_n}",
        "unprotected intervals (position without its exchange stop while down)": sum(not r.protected for r in recs),
        "restarts not reconciled with the exchange": sum(r.reconciled_qty != r.venue_lots for r in recs),
        "reconciliation, spawn to start reconciliation, median / max s": _stats([r.reconcile_s for r in recs]),
        "restart, spawn to live (reconciled, feed subscribed), median / max s": _stats([r.restart_s for r in recs]),
        "time per kill cycle, s": f"{t_kills / max(1, len(recs)):.2f}",
    }
    width = max(len(k) for k in rows)
    print(f"\ncrash bench: {len(recs)} kills of pbdtui run --live at {args.speed:g}x, seed {args.seed}; "
          f"session {minutes} min ({'served in full' if served_out else 'not used up'}), setup {setup_s:.1f} s, "
          f"kills {t_kills:.0f} s; load {', '.join(loads)}")
    for k, v in rows.items():
        print(f"  {k:<{width}}  {v}")
    result = {"machine": info, "args": vars(args), "session_minutes": minutes, "setup_s": round(setup_s, 2),
              "kills_s": round(t_kills, 1), "loadavg": loads, "table": rows,
              "records": [r.__dict__ for r in recs]}
    emit("bench_crash", result, args.json)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
