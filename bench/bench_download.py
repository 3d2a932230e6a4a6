"""``pbdtui data download --import`` throughput from a loopback archive server.

    python bench/bench_download.py [--days 2] [--rows 1000000] [--dir DIR] [--json OUT]

Writes --days Bybit trade archives (``BTCUSDT<date>.csv.gz``, --rows rows
each, 11 columns with RPI, UUID trade ids as in the real files) into DIR,
serves DIR with ``http.server`` on 127.0.0.1, then runs
``pbdtui data download --from .. --to .. --base-url .. --cache .. --import --db ..``
in a subprocess into an empty cache and a fresh database, and reports
rows/s of the whole command (download + verify + import), of the download
part and of the import part (from the command's own summary line), and the command's CPU seconds
(user + sys, from ``getrusage``) with the load average, since the machine is shared.

Target (issue 13): >= 1 M rows/s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import gzip
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

HEADER = "timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,homeNotional,foreignNotional,RPI"


def write_archive(path: Path, date: str, rows: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t0 = int(np.datetime64(date, "s").astype(np.int64))
    ts = t0 + np.sort(rng.integers(0, 86_400 * 10_000, rows)) / 10_000
    px = 950_000 + np.cumsum(rng.integers(-2, 3, rows))
    lots = rng.integers(1, 200, rows)
    ids = rng.integers(0, 2**62, (rows, 2))
    side = np.where(rng.random(rows) < 0.5, "Buy", "Sell")
    lines = [HEADER]
    for i in range(rows):
        p, q = px[i] / 10, lots[i] / 1000
        a, b = int(ids[i, 0]), int(ids[i, 1])
        lines.append(f"{ts[i]:.4f},BTCUSDT,{side[i]},{q:g},{p:.1f},ZeroPlusTick,"
                     f"{a >> 30 & 0xFFFFFFFF:08x}-{a & 0xFFFF:04x}-5{b >> 50 & 0xFFF:03x}-8{b >> 38 & 0xFFF:03x}-"
                     f"{b & 0xFFFFFFFFFFFF:012x},{p * q * 1e8:.6e},{q:g},{p * q:.6g},0")
    with gzip.open(path, "wt", compresslevel=6) as fh:
        fh.write("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    folder = Path(args.dir or tempfile.mkdtemp(prefix="bench_download_"))
    serve = folder / "serve" / "BTCUSDT"
    serve.mkdir(parents=True, exist_ok=True)
    first = dt.date(2024, 12, 1)
    days = [(first + dt.timedelta(days=i)).isoformat() for i in range(args.days)]
    for i, day in enumerate(days):
        path = serve / f"BTCUSDT{day}.csv.gz"
        if not path.exists():
            write_archive(path, day, args.rows, i + 1)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(folder / "serve"))
    handler.log_message = lambda *a: None  # type: ignore[method-assign]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    run = Path(tempfile.mkdtemp(prefix="bench_download_run_"))
    cmd = [sys.executable, "-m", "pbdtui.cli", "data", "download", "--from", days[0], "--to", days[-1],
           "--base-url", f"http://127.0.0.1:{httpd.server_address[1]}", "--cache", str(run / "cache"),
           "--import", "--db", str(run / "bench.db")]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=run, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    httpd.shutdown()
    if proc.returncode != 0:
        raise SystemExit(proc.stdout + proc.stderr)
    rows = args.rows * args.days
    dl_seconds = sum(float(m) for m in re.findall(r"downloaded \S+ \([\d.]+ MB, ([\d.]+) s", proc.stdout))
    imp = [float(m) for m in re.findall(r"\(([\d.]+) s, [\d.]+[kM] rows/s\)", proc.stdout)]
    result = {
        "rows": rows, "days": args.days,
        "bytes": sum((serve / f"BTCUSDT{d}.csv.gz").stat().st_size for d in days),
        "wall_seconds": round(wall, 2), "rows_per_s_end_to_end": round(rows / wall),
        "command_cpu_seconds": round(cpu, 2), "rows_per_cpu_s": round(rows / cpu),
        "load_average": list(os.getloadavg()),
        "download_verify_seconds": round(dl_seconds, 2),
        "import_seconds": round(sum(imp), 2), "rows_per_s_import": round(rows / max(sum(imp), 1e-9)),
        "stdout": proc.stdout.splitlines(),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
