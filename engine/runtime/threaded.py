"""The live driver on a thread of its own, behind the replay driver's interface.

The console runs its driver on a worker thread and talks to it with
``run(sink, cancelled)``, ``send(command)`` and ``stop()``
(``engine.runtime.replay.ReplayDriver``). ``ThreadedLive`` gives the live
driver (asyncio) that same interface: ``run`` starts an event loop on the
calling thread and runs ``LiveDriver.run`` in it; commands from any thread
are handed to that loop (``call_soon_threadsafe``), so every engine call
still happens on one thread; a snapshot of the engine (``TicksFed``) is
published every ``ui_interval`` once the warm start is over (it runs on a
thread of its own and owns the engine meanwhile).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from engine.adapters.bybit import ws
from engine.runtime.events import Alert, ExchangeChanged, FeedHealth, TicksFed
from engine.runtime.live import FeedChanged, LiveDriver, LiveStatus
from engine.runtime.runner import Sink

COMMANDS = ("kill", "flatten", "entries")
# feed statuses shown in the alerts log, with their severity (malformed frames and book resets are
# counted in the status bar instead: one line each would flood the log)
_FEED_SEVERITY = {ws.CONNECTED: "info", ws.SUBSCRIBED: "info", ws.CLOSED: "info", ws.REFUSED: "error",
                  ws.DISCONNECTED: "error", ws.RECONNECTING: "warning", ws.STALE: "error", ws.GAP: "warning",
                  ws.CROSSED: "warning"}
_UP, _DOWN = (ws.SUBSCRIBED, ws.CONNECTED), (ws.DISCONNECTED, ws.RECONNECTING, ws.STALE, ws.CLOSED)


class FeedView:
    """The feed's statuses and health figures in a screen's terms (the live console and ``attach`` share it)."""

    def __init__(self) -> None:
        self.connected = False  # subscribed and not since disconnected

    def status(self, kind: str, detail: str, ts: int) -> Alert | None:
        """A feed status: tracks the connection; the alert to show (None: counted in the status bar only)."""
        if kind in _UP:
            self.connected = True
        elif kind in _DOWN:
            self.connected = False
        severity = _FEED_SEVERITY.get(kind)
        return None if severity is None else Alert(ts=ts, text=f"feed {kind}: {detail}", severity=severity,
                                                   kind=f"feed_{kind}")

    def health(self, feed: dict[str, Any], lag_ms: int, warmup_left: int, quiet_ms: int) -> FeedHealth:
        """A status line's figures (``LiveStatus``) as the status bar's ``FeedHealth``."""
        return FeedHealth(quiet_ms=quiet_ms, lag_ms=lag_ms, reconnects=int(feed.get("reconnects", 0)),
                          gaps=int(feed.get("gaps", 0)), malformed=sum(feed.get("malformed", {}).values()),
                          connected=self.connected, warmup_left=warmup_left)


class ThreadedLive:
    """``LiveDriver`` driven from another thread (the console's worker).

    Args:
        driver: the live driver (its sink is replaced by the one ``run`` gets).
        ui_interval: least wall time between two snapshots, s.
        duration: stop after this many seconds (None: until ``stop``).
    """

    mode = "live"

    def __init__(self, driver: LiveDriver, ui_interval: float = 0.25, duration: float | None = None):
        self.driver = driver
        self.ui_interval = ui_interval
        self.duration = duration
        self._sink: Sink = lambda event: None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stopped = threading.Event()  # set by stop() before the loop exists, too
        self.feed = FeedView()
        self._flattening: asyncio.Task[bool] | None = None  # an exchange flatten in progress

    @property
    def settings(self) -> Any:
        return self.driver.settings

    @property
    def db_path(self) -> Any:
        from pathlib import Path

        return Path(self.driver.db)

    # --- any thread ---------------------------------------------------------------------

    def send(self, command: str, value: float = 0.0) -> None:
        """``kill`` (toggle the kill switch), ``entries`` (toggle the entries pause) or ``flatten``; applied on
        the driver's loop.

        With an exchange (the driver's ``trader``): ``kill`` latches the
        trader's kill switch or, when on, resets it; ``entries`` pauses or
        resumes the trader's new entries (queued ones are not sent while
        paused); ``flatten`` is the trader's flatten (kill, cancel all,
        reduce-only close, flat confirmed by the exchange, retried),
        reported by its alerts.
        """
        if command not in COMMANDS:
            raise ValueError(f"unknown live command {command!r} (live takes {', '.join(COMMANDS)})")
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._apply, command)

    def stop(self) -> None:
        self._stopped.set()
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)

    # --- the driver's thread --------------------------------------------------------------

    def run(self, sink: Sink, cancelled: Callable[[], bool] = lambda: False) -> None:
        """Warm start and stream until stopped, cancelled or ``duration`` has passed."""
        self._sink = sink
        self.driver.sink = self._forward
        asyncio.run(self._main(cancelled))

    async def _main(self, cancelled: Callable[[], bool]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._stopped.is_set():
            return
        publisher = asyncio.create_task(self._publish(cancelled), name="live-publish")
        try:
            await self.driver.run(self._stop, self.duration)
        finally:
            publisher.cancel()
            try:
                await publisher
            except asyncio.CancelledError:
                pass
            self._sink(TicksFed(self.snapshot()) if self._streaming() else Alert(
                ts=-1, kind="stopped", severity="info", text="live session stopped"))

    def _forward(self, event: Any) -> None:
        """The live driver's events, with feed statuses and health figures in the screen's terms."""
        if isinstance(event, FeedChanged):
            st = event.status
            alert = self.feed.status(st.kind, st.detail, st.ts)
            if alert is not None:
                self._sink(alert)
        elif isinstance(event, LiveStatus):
            clock = self.driver.clock
            self._sink(self.feed.health(event.feed, event.lag_ms, event.warmup_left,
                                        clock.quiet_ms() if clock.newest > 0 else -1))
            if event.execution is not None:
                self._sink(ExchangeChanged(event.execution))
        elif not isinstance(event, ws.Ticker):
            self._sink(event)

    def _streaming(self) -> bool:
        # the warm start owns the engine on a thread of its own until the feed exists
        return self.driver.feed is not None

    async def _publish(self, cancelled: Callable[[], bool]) -> None:
        assert self._stop is not None
        while True:
            await asyncio.sleep(self.ui_interval)
            if cancelled():
                self._stop.set()
                return
            if self._streaming():
                self._sink(TicksFed(self.snapshot()))

    def _apply(self, command: str) -> None:
        trader = self.driver.trader
        if not self._streaming() or (trader is not None and not trader.started):
            self._sink(Alert(ts=-1, kind="command", severity="warning",
                             text=f"{command}: not applied during the warm start; press again when it is over"))
            return
        if trader is None:
            self.driver.runner.command(command)
        elif command == "entries":
            trader.pause_entries(not trader.entries_paused)
        elif command == "kill":
            if trader.kill_reasons:
                trader.reset_kill()
            else:
                trader.kill("operator", "console")
        else:
            self._flattening = asyncio.get_running_loop().create_task(trader.flatten(), name="console-flatten")
        self._sink(TicksFed(self.snapshot()))

    def snapshot(self):  # noqa: ANN201 - engine.runtime.events.Snapshot
        """What the screen shows (driver's loop thread)."""
        window = self.settings.rolling_window_minutes
        snap = self.driver.runner.snapshot(warming_up=self.driver.engine.bars_closed < window)
        if self.driver.trader is not None:  # the exchange's orders, with their states there
            snap.orders = tuple(self.driver.trader.orders())
        return snap
