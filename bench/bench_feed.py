"""Bybit public feed throughput: (a) frame decoding, (b) loopback venue + client end to end.

(a) ``FrameDecoder.decode`` over BTCUSDT frames as the live client receives
them (``publicTrade``, ``orderbook.1`` snapshot/delta, ``tickers`` deltas),
encoded by the loopback venue from a generated session, plus the real
BTCUSDT frames of ``../shared/data/bybit_v5/linear_capture.jsonl`` when
present; arrays built with ``take_*`` inside the timing. Best of
``--repeat``.

(b) ``BybitPublicFeed`` against ``BybitPublicVenue`` on 127.0.0.1 at full
speed (both in this process, one core for both): frames delivered per wall
second until the client has everything.

Target: decode >= 100,000 frames/s.

    PYTHONPATH=. python bench/bench_feed.py [--minutes 30] [--repeat 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench._common import loadavg, machine  # noqa: E402
from engine.adapters.bybit.frames import FrameDecoder  # noqa: E402
from engine.adapters.bybit.ws import BybitPublicFeed, FeedConfig, Ticks  # noqa: E402
from engine.store import Instrument  # noqa: E402
from engine.types import FUNDING_DTYPE  # noqa: E402
from loopback.bybit_ws import BybitPublicVenue  # noqa: E402
from loopback.source import ArraySource  # noqa: E402
from tests.helpers import random_stream  # noqa: E402

BTC = Instrument("BTCUSDT", 0.1, 0.001)
START = 1_767_571_200_000
CAPTURE = Path(__file__).resolve().parents[2] / "shared" / "data" / "bybit_v5" / "linear_capture.jsonl"


def make_session(minutes: int) -> ArraySource:
    trades, quotes = random_stream(1, minutes, start_ms=START, price=650_000, trades_per_min=900,
                                   quotes_per_min=3000)
    trades["trade_id"] = START + np.arange(len(trades))
    funding = np.array([(START, 0.0001)], dtype=FUNDING_DTYPE)
    return ArraySource(BTC, trades, quotes, funding)


async def record_frames(src: ArraySource) -> list[str]:
    """The frames the venue sends one client for ``src`` (a plain websockets reader)."""
    from websockets.asyncio.client import connect

    async with BybitPublicVenue(src, speed=0) as venue:
        texts: list[str] = []
        async with connect(venue.url, compression=None, max_queue=None) as ws:
            for topic in ("publicTrade.BTCUSDT", "orderbook.1.BTCUSDT", "tickers.BTCUSDT"):
                await ws.send(json.dumps({"op": "subscribe", "req_id": topic, "args": [topic]}))

            async def read() -> None:
                async for text in ws:
                    texts.append(text)  # type: ignore[arg-type]

            reader = asyncio.get_running_loop().create_task(read())
            await venue.finished.wait()
            while len(texts) < venue.stats.frames_sent:
                await asyncio.sleep(0.001)
            reader.cancel()
            return [t for t in texts if '"topic"' in t]


def time_decode(frames: list[str], repeat: int) -> dict:
    best = float("inf")
    rows = 0
    for _ in range(repeat):
        dec = FrameDecoder(BTC)
        t0 = time.perf_counter()
        for k, text in enumerate(frames):
            dec.decode(text, 1_767_571_200_000 + k)
            if k % 256 == 255:
                dec.take_trades()
                dec.take_quotes()
                dec.take_funding()
        dec.take_trades()
        dec.take_quotes()
        dec.take_funding()
        best = min(best, time.perf_counter() - t0)
        rows = dec.stats.trades + dec.stats.quotes
        assert dec.stats.malformed_total == 0, dec.stats.malformed
    return {"frames": len(frames), "rows": rows, "seconds": round(best, 4),
            "frames_per_s": round(len(frames) / best), "bytes": sum(len(f) for f in frames)}


async def time_end_to_end(src: ArraySource) -> dict:
    async with BybitPublicVenue(src, speed=0) as venue:
        feed = BybitPublicFeed(BTC, FeedConfig(url=venue.url, grace_ms=200, stale_after=30))
        rows = 0
        t0 = time.perf_counter()

        async def consume() -> None:
            nonlocal rows
            async for ev in feed:
                if isinstance(ev, Ticks):
                    rows += len(ev.trades) + len(ev.quotes)

        task = asyncio.get_running_loop().create_task(consume())
        await venue.finished.wait()
        while feed.counters().frames < venue.stats.frames_sent:
            await asyncio.sleep(0.001)
        seconds = time.perf_counter() - t0
        await feed.close()
        await task
        frames = feed.counters().frames
    return {"frames": frames, "rows": rows, "seconds": round(seconds, 3), "frames_per_s": round(frames / seconds)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=int, default=30, help="generated session length")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    out: dict = {"machine": machine()}
    src = make_session(args.minutes)
    out["session"] = {"minutes": args.minutes, "trades": len(src.trades), "quotes": len(src.quotes)}
    frames = asyncio.run(record_frames(src))
    out["decode_generated"] = time_decode(frames, args.repeat)
    if CAPTURE.exists():
        real = [json.loads(line).get("raw", "") for line in CAPTURE.open()]
        btc = [t for t in real if '.BTCUSDT"' in t and "kline" not in t and '"topic"' in t]
        out["decode_real_capture_btcusdt"] = time_decode(btc * 50, args.repeat)
    out["end_to_end_loopback"] = asyncio.run(time_end_to_end(src))
    out["loadavg_at_end"] = loadavg()
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
