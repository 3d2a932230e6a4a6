"""Network faults over a long accelerated live trading run: the table of what was injected and what happened.

``loopback.faultrun.run_faults``: the daemon of ``pbdtui run --live``
(``LiveDriver`` external mode + ``bybit_trader``) trades ``--hours`` of
simulated market served as fast as it reads by the loopback WebSocket venue,
against the loopback REST venue, while both inject faults at rates far above
real life (WebSocket: ``--ws`` specs, in market time; REST: one fault armed
every ``--rest-every`` wall seconds on average per path). Prints faults
injected by kind, outages and alerts, gaps and unflagged minutes, ticks
served/stored/lost/doubled, orders and duplicated orderLinkIds, the largest
exchange position against the largest entry, executions against
``trades_exec``, crashes, mismatches and the time from each REST error or
feed reconnect to the next matched reconciliation (median, max).

    PYTHONPATH=. python bench/bench_faults.py [--hours 3] [--seed 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import emit, loadavg, machine  # noqa: E402
from engine.config import Settings  # noqa: E402
from engine.store import Store, instrument_of  # noqa: E402
from engine.synth import synthesize  # noqa: E402
from loopback.faultrun import FaultPlan, run_faults  # noqa: E402

START = 1_767_571_200_000
# an active strategy (entries every few minutes) so that orders meet the REST faults often
SETTINGS = Settings().replace(rolling_window_minutes=10, min_window_coverage=0.0, cooldown_minutes=0,
                              max_hold_minutes=3, qimb_entry_min=0.0, qimb_breakout_min=0.0, accept_outside_k=2,
                              max_daily_loss=1e9, feed_stale_halt_ms=1500)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=3.0, help="simulated market hours")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--ws", action="append", help="WebSocket fault spec (repeatable; default: the FaultPlan's)")
    ap.add_argument("--rest-every", type=float, default=0.3, help="mean wall s between REST faults (per path)")
    ap.add_argument("--speed", type=float, default=40.0,
                    help="market pace, x real time (0: as fast as the client reads; the trader then has little "
                         "wall time per minute to trade)")
    ap.add_argument("--source", help="a source database to serve (default: a simulated session)")
    ap.add_argument("--json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # the alerts are counted in the report, not printed
    plan = FaultPlan(rest_every_s=args.rest_every, seed=args.seed, speed=args.speed)
    if args.ws:
        plan.ws = args.ws
    with tempfile.TemporaryDirectory(prefix="bench_faults_") as tmp:
        src = Path(args.source) if args.source else Path(tmp) / "src.db"
        t0 = time.perf_counter()
        if not args.source:
            with Store(src, instrument_of(SETTINGS)) as store:
                synthesize(store, SETTINGS, days=args.hours / 24, seed=args.seed, start_ms=START)
        synth_s = time.perf_counter() - t0
        load_before = loadavg()
        report = asyncio.run(run_faults(src, Path(tmp) / "live.db", SETTINGS, plan, settle_timeout=120))
    print(f"machine: {machine()}")
    print(f"load average before / after: {load_before} / {loadavg()}")
    print(f"market: {args.hours:g} h simulated (synthesised in {synth_s:.0f} s), seed {args.seed}; "
          f"ws faults {plan.ws}; a REST fault per path every {plan.rest_every_s:g} s wall on average; "
          f"REST timeout {plan.rest_timeout:g} s, client silence limit {plan.stale_after:g} s")
    print(report.table())
    med, top = report.reconcile_stats()
    result = {"machine": machine(), "load": loadavg(), "hours": args.hours, "plan": asdict(plan),
              **{k: v for k, v in asdict(report).items() if k != "reconcile_s"},
              "reconcile_median_s": round(med, 4), "reconcile_max_s": round(top, 4),
              "duplicated_exposure": report.duplicated_exposure}
    emit("faults", result, args.json)
    ok = (report.crashes == 0 and report.ticks_lost == 0 and report.ticks_doubled == 0 and not report.gaps_unflagged
          and not report.duplicated_exposure and report.final_matched and report.unrecovered == 0
          and report.fills_recorded == report.executions)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
