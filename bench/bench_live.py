"""The live path: throughput, minute-close latency and memory of a long accelerated recording.

(a) **Pipeline ceiling**, no network: a simulated session encoded as the
    Bybit frames the venue sends, then decoded (``FrameDecoder``), fed
    (``Runner.feed``, features-only as ``pbdtui collect``) and recorded
    (``Recorder``, a commit every second) in this process: frames per second.
(b) **Minute close**: for every minute of the session, its events are fed
    (not timed), then ``Engine.close_until`` at the minute's end is timed:
    features and signal of the closing minute. Also timed: the feed call of
    the first event after a minute (the frame that completes a decision
    when minutes close on data), from the frame's decode to the decision.
(c) **Long accelerated recording**: ``LiveDriver`` (what ``pbdtui collect``
    runs) fed by the loopback venue at full speed over ``--hours`` of
    simulated market, RSS sampled every few seconds.

    PYTHONPATH=. python bench/bench_live.py [--minutes 120] [--hours 6] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench._common import emit, loadavg, machine  # noqa: E402
from engine.adapters.bybit.frames import FrameDecoder  # noqa: E402
from engine.adapters.bybit.ws import FeedConfig  # noqa: E402
from engine.config import Settings  # noqa: E402
from engine.engine import Engine  # noqa: E402
from engine.runtime.live import LiveDriver, LiveStatus  # noqa: E402
from engine.runtime.recorder import Recorder  # noqa: E402
from engine.runtime.runner import Runner  # noqa: E402
from engine.store import Store, instrument_of  # noqa: E402
from engine.synth import synthesize  # noqa: E402
from loopback.bybit_ws import BybitPublicVenue  # noqa: E402
from loopback.encode import BybitEncoder  # noqa: E402
from loopback.source import StoreSource  # noqa: E402

SETTINGS = Settings()
START = 1_767_571_200_000
MINUTE = 60_000


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 1e6


def _session(path: Path, minutes: float, seed: int = 5) -> None:
    with Store(path, instrument_of(SETTINGS)) as store:
        synthesize(store, SETTINGS, days=minutes / 1440, seed=seed, start_ms=START)


def _frames(db: Path) -> list[str]:
    """The session as the frames the venue sends: one per trade print time, one L1 snapshot per quote."""
    with Store(db, readonly=True) as st:
        tr, qu = st.load_ticks("trade"), st.load_ticks("quote")
    enc = BybitEncoder("BTCUSDT", SETTINGS.tick_size, SETTINGS.qty_step)
    out: list[tuple[int, int, str]] = []
    starts = np.flatnonzero(np.r_[True, tr["ts"][1:] != tr["ts"][:-1]])
    ends = np.r_[starts[1:], len(tr)]
    for a, b in zip(starts, ends, strict=True):
        out.append((int(tr["ts"][a]), 1, enc.trades(tr[a:b])))
    for q in qu:
        ts = int(q["ts"])
        out.append((ts, 0, enc.book("orderbook.1.BTCUSDT", "snapshot", ts, [(int(q["bid_px"]), int(q["bid_sz"]))],
                                    [(int(q["ask_px"]), int(q["ask_sz"]))], ts, ts)))
    out.sort(key=lambda x: (x[0], x[1]))
    return [text for _, _, text in out]


def pipeline(frames: list[str], db: Path, batch: int = 64) -> dict:
    """(a) and the arrival-to-decision part of (b)."""
    dec = FrameDecoder(instrument_of(SETTINGS))
    runner = Runner(SETTINGS, lambda e: None, trading=False)
    rec = Recorder(str(db), SETTINGS, purge_interval=None).start()
    to_decision = []
    started = time.perf_counter()
    cpu0 = time.process_time()
    for k in range(0, len(frames), batch):
        t0 = time.perf_counter()
        dec.decode_many(frames[k:k + batch], 0)
        tr, qu = dec.take_trades(), dec.take_quotes()
        rec.ticks(tr, qu)
        out = runner.feed(tr, qu)
        if len(out.bars):
            rec.minutes(out.bars, out.features, out.signals)
            to_decision.append((time.perf_counter() - t0) * 1e3)
    rec.close()
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu0  # both threads; unlike wall time, not inflated by other processes
    return {"frames": len(frames), "seconds": round(seconds, 3), "frames_per_s": round(len(frames) / seconds),
            "cpu_seconds": round(cpu, 3), "frames_per_cpu_s": round(len(frames) / cpu),
            "batch_frames": batch, "arrival_to_decision_ms": _dist(to_decision)}


def minute_close(db: Path) -> dict:
    with Store(db, readonly=True) as st:
        tr, qu = st.load_ticks("trade"), st.load_ticks("quote")
    eng = Engine(SETTINGS, trading=True)
    first, last = int(tr["ts"][0]) // MINUTE * MINUTE, int(tr["ts"][-1]) // MINUTE * MINUTE
    wall, cpu = [], []
    for m in range(first, last, MINUTE):
        a, b = np.searchsorted(tr["ts"], [m, m + MINUTE])
        c, d = np.searchsorted(qu["ts"], [m, m + MINUTE])
        eng.feed(tr[a:b], qu[c:d])
        t0, c0 = time.perf_counter(), time.thread_time()
        out = eng.close_until(m + MINUTE)
        if len(out.bars) == 1:
            wall.append((time.perf_counter() - t0) * 1e3)
            cpu.append((time.thread_time() - c0) * 1e3)
    # the first close pays one-time costs (first dispatch of the close path, buffer pages)
    return {"minutes": len(wall), "first_close_ms": round(wall[0], 3) if wall else None,
            "close_wall_ms": _dist(wall[1:]), "close_cpu_ms": _dist(cpu[1:])}


def _dist(values: list[float]) -> dict:
    if not values:
        return {}
    v = np.asarray(values)
    return {"n": len(v), "p50": round(float(np.percentile(v, 50)), 3), "p90": round(float(np.percentile(v, 90)), 3),
            "p99": round(float(np.percentile(v, 99)), 3), "max": round(float(v.max()), 3)}


async def long_recording(src: Path, db: Path, sample_s: float = 5.0) -> dict:
    samples = []
    statuses = []
    started = time.monotonic()
    async with BybitPublicVenue(StoreSource(src), speed=0) as venue:
        driver = LiveDriver(SETTINGS, str(db), FeedConfig(url=venue.url), statuses.append, status_interval=sample_s)
        stop = asyncio.Event()
        task = asyncio.create_task(driver.run(stop))
        while not venue.finished.is_set():
            samples.append((round(time.monotonic() - started, 1), round(_rss_mb(), 1),
                            driver.clock.newest))
            await asyncio.sleep(sample_s)
        await asyncio.sleep(1.0)
        stop.set()
        await task
    wall = time.monotonic() - started
    last = [s for s in statuses if isinstance(s, LiveStatus)][-1]
    frames = last.feed.get("frames", 0)
    return {"wall_s": round(wall, 1), "frames": frames, "frames_per_s": round(frames / wall),
            "recorded": last.recorder, "rss_mb_over_time": samples,
            "rss_mb_first_last": [samples[min(2, len(samples) - 1)][1], samples[-1][1]] if samples else []}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=120, help="session for (a) and (b)")
    ap.add_argument("--hours", type=float, default=6, help="session for (c); 0 skips it")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    result: dict = {"machine": machine(), "load_before": loadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src.db"
        _session(src, args.minutes)
        frames = _frames(src)
        pipeline(frames[: len(frames) // 10], Path(tmp) / "warm.db")  # compile and warm caches
        result["pipeline"] = pipeline(frames, Path(tmp) / "rec.db")
        print("pipeline", result["pipeline"], flush=True)
        result["minute_close"] = minute_close(src)
        print("minute close", result["minute_close"], flush=True)
        if args.hours > 0:
            long_src = Path(tmp) / "long.db"
            _session(long_src, args.hours * 60, seed=6)
            result["long_recording"] = asyncio.run(long_recording(long_src, Path(tmp) / "live.db"))
            lr = result["long_recording"]
            print("long recording", {k: v for k, v in lr.items() if k != "rss_mb_over_time"}, flush=True)
    result["load_after"] = loadavg()
    emit("live", result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
