"""``pbdtui exchange-sim``: the loopback Bybit public WebSocket from the command line.

Prints ``ws://127.0.0.1:PORT/v5/public/linear`` on its first line (flushed)
as soon as the port is bound, then serves until Ctrl-C or SIGTERM. A
simulated session is generated (or taken from the cache) after the URL is
printed, so a client may connect at once: the market starts when the data
is ready. Progress and a summary at the end go to stderr.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from engine.store import Instrument, instrument_of
from loopback.bybit_ws import BybitPublicVenue
from loopback.faults import Fault
from loopback.source import StoreSource, synth_database


class DeferredSource:
    """A source whose data is made ready (in a thread) only when the venue's market starts.

    Used for a simulated session: generating it can take a while, and the
    URL must be printed before that.
    """

    def __init__(self, instrument: Instrument, make: Any):
        self.instrument = instrument
        self._make = make
        self._inner: StoreSource | None = None

    async def prepare(self) -> None:
        if self._inner is None:
            self._inner = await asyncio.to_thread(self._make)
            if self._inner.instrument != self.instrument:
                raise ValueError(f"session instrument {self._inner.instrument} is not {self.instrument}")

    @property
    def funding(self) -> Any:
        assert self._inner is not None
        return self._inner.funding

    def slices(self) -> Any:
        assert self._inner is not None
        return self._inner.slices()


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_exchange_sim(settings: Any, db: str | None, synth_days: float | None, seed: int, speed: float,
                     port: int, faults: list[Fault], out: TextIO | None = None) -> int:
    """Serve until interrupted; returns the exit status."""
    out = sys.stdout if out is None else out
    if db is not None:
        source: Any = StoreSource(db)
    else:
        days = 1.0 if synth_days is None else synth_days
        if not days > 0:
            raise ValueError(f"--synth-days must be positive, got {days}")
        source = DeferredSource(instrument_of(settings),
                                lambda: StoreSource(synth_database(settings, days, seed, log=_say)))
    return asyncio.run(_serve(source, speed, port, faults, out))


async def _serve(source: Any, speed: float, port: int, faults: list[Fault], out: TextIO) -> int:
    venue = BybitPublicVenue(source, speed=speed, faults=faults, port=port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    async with venue:
        print(venue.url, file=out, flush=True)
        pace = "as fast as clients read" if speed <= 0 else f"{speed:g}x real time"
        _say(f"exchange-sim: serving {source.instrument.symbol} at {pace}"
             + (f", faults: {', '.join(f.spec for f in faults)}" if faults else "")
             + (f", from {Path(source.path).name}" if isinstance(source, StoreSource) else ""))
        done = loop.create_task(venue.finished.wait())
        stopped = loop.create_task(stop.wait())
        await asyncio.wait({done, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if done.done() and not stop.is_set():
            _say("exchange-sim: the session has been served in full; still answering (Ctrl-C to stop)")
            await stopped
        done.cancel()
    s = venue.stats
    _say(f"exchange-sim: {s.connections} connection(s), {s.data_frames} data frames, {s.trades_served} trades, "
         f"{s.quotes_served} quotes served in {time.monotonic() - started:.1f} s; faults {s.faults or 'none'}")
    return 0
