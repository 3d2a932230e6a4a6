"""``pbdtui demo``: the console on a simulated market and exchange, offline, through the live path.

A simulated session (generated once into the cache, ``engine.synth``) is
split in two: its first ``window + 10`` minutes become the history of a
fresh demo database (the warm start), and the rest is served by the
loopback Bybit venue (``loopback.bybit_ws``, a real WebSocket server on
127.0.0.1, on a thread of its own) at ``speed`` x real time. Orders go to
the loopback Bybit REST exchange (``loopback.bybit_rest``: a real HTTP
server on 127.0.0.1 that checks pybit's signatures, fills market orders at
the stream's quotes and holds the stops), with a key made up for the
session. The console trades it exactly as ``pbdtui run --live`` trades
Bybit: feed client, live clock, engine in external mode, ``LiveTrader``
(orders, fills, reconciliation, kill switch, flatten confirmed by the
exchange), recorder.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

from engine.store import Store, instrument_of

MINUTE_MS = 60_000
HISTORY_EXTRA_MINUTES = 10  # history past the window: the console opens on a ready profile


class VenueThread:
    """The loopback venue serving ``source`` on a daemon thread with its own event loop."""

    def __init__(self, source: Any, speed: float):
        self.source = source
        self.speed = speed
        self.url = ""
        self.finished = threading.Event()  # the whole session has been served
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.venue: Any = None  # the BybitPublicVenue, once serving
        self._thread = threading.Thread(target=self._run, name="demo-venue", daemon=True)

    def start(self, timeout: float = 30.0) -> str:
        """Start serving; returns the ws:// URL."""
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise RuntimeError(f"the demo's loopback venue did not start: {self._error}")
        return self.url

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        from loopback.bybit_ws import BybitPublicVenue

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with BybitPublicVenue(self.source, speed=self.speed) as venue:
            self.url = venue.url
            self.venue = venue
            self._ready.set()
            done = asyncio.create_task(venue.finished.wait())
            stop = asyncio.create_task(self._stop.wait())
            await asyncio.wait({done, stop}, return_when=asyncio.FIRST_COMPLETED)
            if done.done():
                self.finished.set()
                await stop
            done.cancel()


def streamed_minutes(settings: Any, days: float) -> float:
    """Minutes of a ``days`` session left to stream after the warm-start history (<= 0: none)."""
    return days * 1440 - settings.rolling_window_minutes - HISTORY_EXTRA_MINUTES


def demo_live_database(session: Path, settings: Any, path: Path) -> int:
    """A fresh ``path`` holding the session's first ``window + 10`` minutes; returns where the rest starts."""
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)
    with Store(session, instrument_of(settings), readonly=True) as src, Store(path, instrument_of(settings)) as dst:
        span = src.tick_range()
        if span is None:
            raise ValueError(f"{session}: no ticks")
        cut = span[0] + (settings.rolling_window_minutes + HISTORY_EXTRA_MINUTES) * MINUTE_MS
        dst.append_ticks("trade", src.load_ticks("trade", ts_to=cut), "demo history")
        dst.append_ticks("quote", src.load_ticks("quote", ts_to=cut), "demo history")
        funding = src.load_funding()
        dst.append_funding(funding[funding["ts"] < cut])
    return cut


def run_live_demo(settings: Any, seed: int = 7, speed: float = 30.0, days: float | None = None) -> int:
    """``pbdtui demo``: a simulated market and exchange on loopback, traded through the live path in the console."""
    import secrets
    import sys

    from engine.adapters.bybit.ws import FeedConfig
    from engine.engine import client_prefix
    from engine.runtime.live import LiveDriver
    from engine.runtime.threaded import ThreadedLive
    from engine.runtime.trading import bybit_trader
    from engine.synth import cache_dir
    from loopback.bybit_rest import BybitRestVenue
    from loopback.source import StoreSource
    from pbdtui.app import DEMO_DAYS, PbdApp, demo_database, run_console, say_summary

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    session = demo_database(settings, seed=seed, days=DEMO_DAYS if days is None else days, log=say)
    live_db = cache_dir() / f"demo-{seed}-live.{os.getpid()}.db"
    cut = demo_live_database(session, settings, live_db)
    stream = VenueThread(StoreSource(session, start_ms=cut), speed)
    key, secret = f"demo-{secrets.token_hex(4)}", secrets.token_hex(16)  # the loopback exchange's own account
    exchange = None
    app: Any = None
    try:
        url = stream.start()
        exchange = BybitRestVenue(api_key=key, api_secret=secret, symbol=settings.symbol,
                                  quote=stream.venue.quote, market_clock=stream.venue.market_ms).start()
        start_ms = int(time.time() * 1000)
        driver = LiveDriver(settings, str(live_db), FeedConfig(url=url), lambda event: None, mode="external",
                            run_id=f"demo-{start_ms // 1000}", client_prefix=client_prefix(start_ms),
                            status_interval=1.0)
        bybit_trader(settings, driver, exchange.url, key, secret, poll_interval=0.5)
        app = PbdApp(settings, ThreadedLive(driver), mode="DEMO", network="loopback",
                     note=f"demo: a simulated market (loopback venue, {speed:g}x) and exchange (loopback Bybit "
                          "REST); offline, nothing real")
        code = run_console(app)
        say_summary(app)
    finally:
        if exchange is not None:
            lots = exchange.position()[0]
            say(f"pbdtui: the demo exchange's position at the end: {lots:g} "
                + ("(flat)" if lots == 0 else "(open: the demo's exchange closes with it)"))
            exchange.stop()
        stream.stop()
        for p in (live_db, Path(f"{live_db}-wal"), Path(f"{live_db}-shm")):
            p.unlink(missing_ok=True)
    if app.error is not None:
        say(f"pbdtui: error: demo stopped: {app.error}")
        return 1
    return int(code or 0)
