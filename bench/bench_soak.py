"""Soak: many hours of simulated market through the live path at full speed, sampled over time.

``loopback.soak.run_soak``: ``ThreadedLive`` around ``LiveDriver`` (paper
trading on the live quotes; the console's and ``pbdtui run``'s path) fed by
the loopback WebSocket venue as fast as it reads, the recorder purging raw
ticks older than ``--retention-hours`` every ``--purge-interval`` wall
seconds. Prints, over time: RSS of the process (daemon and venue), raw tick
rows and the market hours they span, database size (with WAL); and the
minute-close latency (arrival of the closing event to ``MinuteClosed``) of
the first and last 10 % of the minutes.

The market is ``loopback.soak.write_session``'s random walk at
``--per-second`` trades a second (with their quotes): the engine's simulator
is too slow to write 48 hours in a bench's time. Real BTCUSDT prints some
10-30 trades a second, so the default density is a fraction of it; the
pipeline's per-event costs are measured by ``bench_live.py``.

    PYTHONPATH=. python bench/bench_soak.py [--hours 48] [--per-second 3] [--retention-hours 12]
        [--purge-interval 30] [--sample 15] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import emit, loadavg, machine  # noqa: E402
from engine.config import Settings  # noqa: E402
from loopback.soak import run_soak, write_session  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=48.0, help="simulated market hours")
    ap.add_argument("--per-second", type=float, default=3.0, help="trades a second (each with its quote)")
    ap.add_argument("--retention-hours", type=int, default=12, help="raw retention (the real default is 48)")
    ap.add_argument("--purge-interval", type=float, default=30.0, help="wall s between purges (real: 600)")
    ap.add_argument("--sample", type=float, default=15.0, help="wall s between samples")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    settings = Settings().replace(retention_hours=args.retention_hours)
    with tempfile.TemporaryDirectory(prefix="bench_soak_") as tmp:
        t0 = time.perf_counter()
        trades, _ = write_session(Path(tmp) / "src.db", settings, args.hours, args.per_second, args.seed)
        print(f"session: {args.hours:g} h, {trades} trades, written in {time.perf_counter() - t0:.0f} s", flush=True)
        load_before = loadavg()

        def progress(s) -> None:  # noqa: ANN001 - a loopback.soak.Sample
            print(f"  {s.wall_s:7.0f} s wall  {s.market_h:6.2f} h market  RSS {s.rss_mb:7.1f} MB  raw "
                  f"{s.raw_rows:9d} rows over {s.raw_span_h:5.2f} h  db {s.db_mb:7.1f} MB", flush=True)

        report = asyncio.run(run_soak(Path(tmp) / "src.db", Path(tmp) / "live.db", settings,
                                      purge_interval=args.purge_interval, sample_s=args.sample, on_sample=progress))
    print(f"machine: {machine()}")
    print(f"load average before / after: {load_before} / {loadavg()}")
    print(f"retention {args.retention_hours} h purged every {args.purge_interval:g} s wall; {args.per_second:g} "
          f"trades/s; {trades} trades")
    print(report.table())
    warm = [s for s in report.samples if s.market_h >= 1.0]
    result = {"machine": machine(), "load": loadavg(), "hours": args.hours, "per_second": args.per_second,
              "trades": trades, "retention_hours": args.retention_hours, "purge_interval_s": args.purge_interval,
              "wall_s": round(report.wall_s, 1), "minutes": report.minutes, "purged": report.purged,
              "frames": report.frames, "error": report.error,
              "rss_mb_warm_first_max_last": [warm[0].rss_mb, max(s.rss_mb for s in warm), warm[-1].rss_mb]
              if warm else [],
              "raw_span_h_max": max((s.raw_span_h for s in report.samples), default=0.0),
              "db_mb_last": report.samples[-1].db_mb if report.samples else 0.0,
              "close_ms_first_10pct": report.latency(True), "close_ms_last_10pct": report.latency(False),
              "samples": [asdict(s) for s in report.samples]}
    emit("soak", result, args.json)
    return 0 if not report.error else 1


if __name__ == "__main__":
    raise SystemExit(main())
