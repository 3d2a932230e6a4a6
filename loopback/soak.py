"""A long accelerated session through the live path, sampled over time: memory, raw rows, database size, latency.

``write_session(path, settings, hours, per_second, seed)`` writes a simple
simulated market (a random walk of trades, each with the L1 quote around
it) to a store quickly: the engine's own simulator (``engine.synth``) makes
a richer session but takes tens of seconds per market hour, too slow for
48 hours; the soak is about the pipeline over time, not about the strategy.

``run_soak(source, db, settings, ...)`` runs the live path of the console
and ``pbdtui run`` (``ThreadedLive`` around ``LiveDriver``, paper trading on
the live quotes, the recorder with its raw retention purge every
``purge_interval`` wall seconds) against the loopback WebSocket venue
serving ``source`` as fast as the client reads, and samples every
``sample_s`` wall seconds: the process's RSS (daemon and venue share the
process; the venue streams its source chunk by chunk), the raw tick rows
and the market time they span, the database size (with its WAL), the market
time reached. Each minute close is timed from the arrival of the event that
closed it to the ``MinuteClosed`` event at the sink (the engine's feed and
close of that batch on the driver's thread).

Test and benchmark tooling: the engine never imports it.
"""

from __future__ import annotations

import asyncio
import os
import resource
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw
import numpy as np

from engine.adapters.bybit.ws import FeedConfig
from engine.runtime.events import MinuteClosed
from engine.runtime.live import LiveDriver
from engine.runtime.threaded import ThreadedLive
from engine.store import Store, instrument_of
from engine.types import QUOTE_DTYPE, SIDE_BUY, SIDE_SELL, TRADE_DTYPE
from loopback.bybit_ws import BybitPublicVenue
from loopback.source import StoreSource

HOUR_MS = 3_600_000


def write_session(path: str | Path, settings: Any, hours: float, per_second: float, seed: int,
                  start_ms: int = 1_767_571_200_000, price: float = 96_000.0) -> tuple[int, int]:
    """A random-walk session of ``hours`` with ``per_second`` trades a second on average; (trades, quotes)."""
    rng = np.random.default_rng(seed)
    tick = settings.tick_size
    px0 = round(price / tick)
    n_total = trades_total = 0
    with Store(path, instrument_of(settings)) as store:
        for h in range(int(np.ceil(hours))):
            span = int(min(1.0, hours - h) * HOUR_MS)
            n = rng.poisson(per_second * span / 1000)
            ts = np.sort(rng.integers(0, span, n)) + start_ms + h * HOUR_MS
            steps = rng.choice([-1, 0, 0, 1], n)
            px = px0 + np.cumsum(steps)
            px0 = int(px[-1]) if n else px0
            side = np.where(steps >= 0, SIDE_BUY, SIDE_SELL)
            tr = np.zeros(n, TRADE_DTYPE)
            tr["ts"], tr["local_ts"], tr["px"] = ts, ts, px
            tr["qty"] = rng.integers(1, 50, n)
            tr["side"] = side
            tr["trade_id"] = np.arange(n_total, n_total + n) + 1
            qu = np.zeros(n, QUOTE_DTYPE)
            qu["ts"], qu["local_ts"] = ts, ts
            qu["bid_px"] = np.where(side == SIDE_BUY, px - 1, px)
            qu["ask_px"] = qu["bid_px"] + 1
            qu["bid_sz"] = rng.integers(1, 2000, n)
            qu["ask_sz"] = rng.integers(1, 2000, n)
            store.append_ticks("trade", tr, "soak")
            store.append_ticks("quote", qu[np.r_[True, np.diff(ts) > 0]], "soak")
            n_total += n
            trades_total += n
    return trades_total, trades_total


@dataclass
class Sample:
    wall_s: float
    market_h: float  # market hours since the first served event
    rss_mb: float
    raw_rows: int  # trade + quote rows in tick_chunks
    raw_span_h: float  # market hours the raw rows span
    db_mb: float  # database + WAL
    raw_from_h: float = 0.0  # market hours of the oldest raw row
    purged_to_h: float = 0.0  # market hours of the recorder's last purge cutoff, read before the rows


@dataclass
class SoakReport:
    samples: list[Sample] = field(default_factory=list)
    close_ms: list[tuple[float, float]] = field(default_factory=list)  # (market hours, ms) per minute close
    minutes: int = 0
    purged: int = 0
    wall_s: float = 0.0
    frames: int = 0
    error: str = ""

    def latency(self, first: bool, share: float = 0.1) -> dict[str, float]:
        """p50/p99/max ms of the first or last ``share`` of the minute closes."""
        values = [ms for _, ms in self.close_ms]
        k = max(1, int(len(values) * share))
        part = np.asarray(values[:k] if first else values[-k:], dtype=float)
        if not len(part):
            return {}
        return {"n": int(len(part)), "p50": round(float(np.percentile(part, 50)), 3),
                "p99": round(float(np.percentile(part, 99)), 3), "max": round(float(part.max()), 3)}

    def table(self) -> str:
        out = [f"{'wall s':>8} {'market h':>9} {'RSS MB':>8} {'raw rows':>10} {'raw span h':>11} {'db MB':>8} "
               f"{'raw from h':>11} {'purged to h':>12}"]
        for s in self.samples:
            out.append(f"{s.wall_s:8.0f} {s.market_h:9.2f} {s.rss_mb:8.1f} {s.raw_rows:10d} {s.raw_span_h:11.2f} "
                       f"{s.db_mb:8.1f} {s.raw_from_h:11.3f} {s.purged_to_h:12.3f}")
        out.append(f"minutes closed {self.minutes}, raw rows purged {self.purged}, frames {self.frames}, "
                   f"wall {self.wall_s:.0f} s")
        out.append(f"minute close ms, first 10%: {self.latency(True)}; last 10%: {self.latency(False)}")
        return "\n".join(out)


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 1e6


def _raw(db: str) -> tuple[int, float, int, int]:
    """(rows, market hours spanned, oldest ts, newest ts) of the raw ticks, on a connection of its own (WAL)."""
    if not os.path.exists(db):
        return 0, 0.0, 0, 0
    conn = apsw.Connection(db, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        conn.setbusytimeout(5000)
        row = conn.execute("SELECT COALESCE(SUM(n), 0), MIN(ts_first), MAX(ts_last) FROM tick_chunks").fetchone()
    except apsw.SQLError:  # the writer has not created its tables yet
        return 0, 0.0, 0, 0
    finally:
        conn.close()
    rows, lo, hi = row
    return int(rows), ((hi - lo) / HOUR_MS if lo is not None else 0.0), int(lo or 0), int(hi or 0)


def _db_mb(db: str) -> float:
    return sum(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p)) / 1e6


async def run_soak(source: str | Path, db: str | Path, settings: Any, purge_interval: float = 5.0,
                   sample_s: float = 5.0, on_sample: Any = None) -> SoakReport:
    """The session of ``source`` through ``ThreadedLive`` (paper trading) as fast as it reads (see the module doc)."""
    report = SoakReport()
    db = str(db)
    started = time.monotonic()
    async with BybitPublicVenue(StoreSource(source), speed=0, record=False) as venue:
        config = FeedConfig(url=venue.url, stale_after=30.0, backoff_initial=0.05, backoff_max=0.5, seed=1)
        closes: list[tuple[float, float]] = report.close_ms
        session = _raw(str(source))
        first_ts: list[int] = [session[2]]  # market hours count from the session's first tick

        def sink(event: Any) -> None:
            if isinstance(event, MinuteClosed):
                clock = driver.clock
                if clock.newest > 0:
                    closes.append(((clock.newest - first_ts[0]) / HOUR_MS, (clock._wall() - clock._at) * 1000.0))

        driver = LiveDriver(settings, db, config, sink, trading=True, run_id="soak", status_interval=5.0,
                            purge_interval=purge_interval)
        live = ThreadedLive(driver, ui_interval=1.0)
        thread = threading.Thread(target=live.run, args=(sink,), name="soak-live", daemon=True)
        thread.start()

        async def sample() -> None:
            # the database is read in a thread: a read that waits for the writer must not stall the venue's loop
            purged_to = driver.recorder.purged_to  # before the rows: a purge in between only drops more
            rows, span, oldest, _ = await asyncio.to_thread(_raw, db)
            newest = driver.clock.newest
            market_h = (newest - first_ts[0]) / HOUR_MS if first_ts and newest > 0 else 0.0
            s = Sample(round(time.monotonic() - started, 1), round(market_h, 3), round(rss_mb(), 1), rows,
                       round(span, 3), round(await asyncio.to_thread(_db_mb, db), 2),
                       round((oldest - first_ts[0]) / HOUR_MS, 3) if rows else 0.0,
                       round(max(0, purged_to - first_ts[0]) / HOUR_MS, 3) if purged_to else 0.0)
            report.samples.append(s)
            if on_sample is not None:
                on_sample(s)

        try:
            while not venue.finished.is_set() and thread.is_alive():
                await sample()
                try:
                    await asyncio.wait_for(venue.finished.wait(), sample_s)
                except TimeoutError:
                    pass
            # the last frames are in flight: wait until the driver has taken them (its clock reaches the
            # session's last tick), or, should some never arrive, until its clock has stood still for 10 s
            # then until a purge ran after the last tick stored (when purges run at all)
            end_ts = session[3]
            last, still = -1, time.monotonic()
            purge_target = end_ts - 1000 - int(settings.retention_hours * HOUR_MS) if purge_interval else 0
            while thread.is_alive() and (driver.clock.newest < end_ts - 1000
                                         or driver.recorder.purged_to < purge_target):
                if driver.clock.newest != last:
                    last, still = driver.clock.newest, time.monotonic()
                elif time.monotonic() - still > 10.0:
                    break
                await asyncio.sleep(0.25)
            await sample()
        finally:
            live.stop()
            await asyncio.to_thread(thread.join, 120)
    if thread.is_alive():
        report.error = "the live driver did not stop"
    report.wall_s = time.monotonic() - started
    report.minutes = driver.recorder.counters["minutes"]
    report.purged = driver.recorder.counters["purged"]
    report.frames = driver.feed.counters().frames if driver.feed is not None else 0
    return report
