"""The live path: throughput, minute-close latency and memory of a long accelerated recording.

(a) **Pipeline ceiling**, no network: a simulated session encoded as the
    Bybit frames the venue sends, then decoded (``FrameDecoder.decode_many``),
    fed (``Runner.feed``, features-only as ``pbdtui collect``) and recorded
    (``Recorder``, a commit every second) in this process, ``--batch``
    frames per step (the live client decodes together the frames that
    arrived while it handled the previous ones, up to 4096, and releases
    rows to the engine every 4096 rows or 50 ms): frames per second.
(b) **Minute close**: for every minute of the session, its events are fed
    (not timed), then ``Engine.close_until`` at the minute's end is timed:
    features and signal of the closing minute. Also timed: the feed call of
    the first event after a minute (the frame that completes a decision
    when minutes close on data), from the frame's decode to the decision.
(d) **Live client on loopback** (``--loopback``): the frames of (a), written
    as fast as the socket takes them by a ``websockets`` server in another
    process (after the subscribe acks; frames pre-encoded), through
    ``BybitPublicFeed`` + ``LiveDriver`` + ``Recorder`` (what ``pbdtui
    collect`` runs): from connecting to every frame received, and to the
    last row committed (read back from the database); ``streaming``: from
    the last subscribe ack (the data follows it) to every frame received,
    without the start (warm start, kernel loading, handshake).
(c) **Long accelerated recording**: ``LiveDriver`` (what ``pbdtui collect``
    runs) fed by the loopback venue at full speed over ``--hours`` of
    simulated market, RSS sampled every few seconds.

    PYTHONPATH=. python bench/bench_live.py [--minutes 120] [--hours 6] [--batch 1024 --batch 64] [--loopback]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
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
from engine.runtime.live import FeedChanged, LiveDriver, LiveStatus  # noqa: E402
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


def pipeline(frames: list[str], db: Path, batch: int = 1024) -> dict:
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


def _ws_frames(texts: list[str]) -> bytes:
    """Unmasked WebSocket text frames (server to client, RFC 6455 section 5.2), end to end."""
    out = bytearray()
    for text in texts:
        data = text.encode()
        n = len(data)
        out += bytes((0x81, n)) if n < 126 else bytes((0x81, 126)) + n.to_bytes(2, "big") if n < 65536 else \
            bytes((0x81, 127)) + n.to_bytes(8, "big")
        out += data
    return bytes(out)


async def _serve(path: str) -> None:
    """(d)'s sender: acks the subscriptions, then writes every line of ``path`` as a frame, pre-encoded.

    The frames are written to the socket as prepared bytes (1 MB at a time)
    rather than one ``send`` each, so the sender is not what is measured.
    """
    from websockets.asyncio.server import serve

    blob = _ws_frames(Path(path).read_text().splitlines())

    async def handler(ws) -> None:  # noqa: ANN001 - a websockets ServerConnection
        for _ in range(3):
            req = json.loads(await ws.recv())
            await ws.send(json.dumps({"success": True, "ret_msg": "", "conn_id": "bench", "req_id": req["req_id"],
                                      "op": "subscribe"}))
        transport = ws.transport
        for k in range(0, len(blob), 1 << 20):
            transport.write(blob[k:k + (1 << 20)])
            while transport.get_write_buffer_size() > 4 << 20:
                await asyncio.sleep(0.001)
        await ws.wait_closed()

    # no protocol pings: one would land inside a frame that two writes split
    async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
        print(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.Future()


async def client_on_loopback(frames: list[str], tmp: Path, batch: int = 4096) -> dict:
    """(d): the live client fed by a sender process on 127.0.0.1, decoding at most ``batch`` frames at once."""
    path = tmp / "frames.txt"
    path.write_text("\n".join(frames))
    sender = subprocess.Popen([sys.executable, __file__, "--serve", str(path)], stdout=subprocess.PIPE, text=True)
    try:
        url = sender.stdout.readline().strip()
        statuses: list = []
        subscribed: list[float] = []  # perf_counter when the last ack came: the data follows it

        def sink(event) -> None:  # noqa: ANN001 - any runtime event
            statuses.append(event)
            if isinstance(event, FeedChanged) and event.status.kind == "subscribed":
                subscribed.append(time.perf_counter())

        db = tmp / f"client{batch}.db"
        driver = LiveDriver(SETTINGS, str(db), FeedConfig(url=url, max_batch_frames=batch), sink,
                            status_interval=3600)
        stop = asyncio.Event()
        started, cpu0 = time.perf_counter(), time.process_time()
        task = asyncio.create_task(driver.run(stop))
        while getattr(driver, "feed", None) is None or driver.feed.counters().frames < len(frames) + 3:
            if task.done():
                raise RuntimeError(f"driver stopped early: {task.exception()!r}")
            if getattr(driver, "feed", None) is not None and driver.feed.counters().reconnects:
                raise RuntimeError("the client reconnected: the measurement is void")
            await asyncio.sleep(0.01)
        received = time.perf_counter() - started
        deadline = time.monotonic() + 120
        while driver.feed.backlog() and time.monotonic() < deadline:  # the reorder grace, then the last batches
            await asyncio.sleep(0.01)
        stop.set()
        await task
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu0
    finally:
        sender.terminate()
        sender.wait()
    last = [s for s in statuses if isinstance(s, LiveStatus)][-1]
    streaming = started + received - subscribed[-1]
    with Store(db, readonly=True) as st:  # what was committed, read back
        committed = {"trades": len(st.load_ticks("trade")), "quotes": len(st.load_ticks("quote"))}
    return {"frames": len(frames), "max_batch_frames": batch, "received_s": round(received, 3), "frames_per_s_received": round(len(frames) / received),
            "start_s": round(subscribed[-1] - started, 3), "streaming_s": round(streaming, 3),
            "frames_per_s_streaming": round(len(frames) / streaming),
            "seconds_to_committed": round(seconds, 3), "frames_per_s": round(len(frames) / seconds),
            "client_cpu_seconds": round(cpu, 3), "frames_per_client_cpu_s": round(len(frames) / cpu),
            "committed": committed, "committed_all": committed == {k: last.feed[k] for k in ("trades", "quotes")},
            "feed": {k: v for k, v in last.feed.items()
                                             if k in ("frames", "batches", "trades", "quotes", "reconnects", "duplicates")}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=120, help="session for (a) and (b)")
    ap.add_argument("--hours", type=float, default=6, help="session for (c); 0 skips it")
    ap.add_argument("--batch", type=int, action="append", default=None,
                    help="frames per decode_many/feed/record step in (a), repeatable (default 1024 and 64)")
    ap.add_argument("--loopback", action="store_true", help="also run (d): the client's default batch, then --batch")
    ap.add_argument("--serve", default=None, help=argparse.SUPPRESS)  # (d)'s sender process
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve))
        return 0
    result: dict = {"machine": machine(), "load_before": loadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src.db"
        _session(src, args.minutes)
        frames = _frames(src)
        pipeline(frames[: len(frames) // 10], Path(tmp) / "warm.db")  # compile and warm caches
        for k, batch in enumerate(args.batch or [1024, 64]):
            key = "pipeline" if k == 0 else f"pipeline_batch_{batch}"
            result[key] = pipeline(frames, Path(tmp) / f"rec{k}.db", batch)
            print(key, result[key], flush=True)
        if args.loopback:
            for k, batch in enumerate([4096, *(args.batch or [1024, 64])]):  # 4096: the client's default
                key = "client_on_loopback" if k == 0 else f"client_on_loopback_batch_{batch}"
                result[key] = asyncio.run(client_on_loopback(frames, Path(tmp), batch))
                print(key, result[key], flush=True)
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
