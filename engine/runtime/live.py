"""The live driver: Bybit's public stream through the runtime, recorded as it goes.

``LiveDriver.run`` (asyncio) does, in order:

1. **Warm start.** Every stored tick of the database is replayed through
   the engine (signals only), so the rolling window, look-backs, sigma and
   acceptance continue where the last run stopped; the minute rows it makes
   are written again (``INSERT OR REPLACE``, the same values), so the tables
   equal those of an uninterrupted run. With no history the warm-up starts
   from the first live tick and the status says how many minutes are left.
2. **The feed.** ``engine.adapters.bybit.ws.BybitPublicFeed`` delivers rows
   in exchange-time order (its reorder buffer); each batch goes to the
   recorder the moment it is delivered (``on_rows``: a kill -9 loses at most
   the last commit interval of received rows, even while the engine lags)
   and is then fed to the engine. Late rows (behind the watermark) are
   recorded and counted by the engine, which drops them (its late policy).
3. **The live clock** (``engine.runtime.clock.LiveClock``): every
   ``tick_interval`` the minutes that ended more than ``close_grace_ms``
   before "now" are closed, so a minute closes when the feed goes quiet,
   exactly as the batch close would (tested).
4. **Feed health.** A disconnection or stall marks the minutes from the last
   event on as a feed gap (``Engine.mark_feed_gap``; FEED_GAP, and not
   counted as data), closed at the first event after it; the downtime
   between the last stored tick and the first live one is a gap too.
   Minutes the live clock closed during a silent stall before it was
   detected (a stall is only seen after the client's silence limit) are
   flagged in the store when the gap's span is known (``Recorder.flag_gap``). No
   frame for ``feed_stale_halt_ms`` raises an alert.

Events go to the sink: the runner's (minutes, fills, alerts) and
``FeedChanged``/``LiveStatus`` here.

Live execution (engine mode "external") is ``engine.runtime.trading.LiveTrader``,
attached as ``trader``: it sees every event first (intents, feed health),
is started after the warm start (instrument rules, start reconciliation)
and runs beside the feed; its fills are recorded through ``record_fills``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.adapters.bybit.ws import BybitPublicFeed, FeedConfig, FeedStatus, Ticks
from engine.runtime.clock import LiveClock
from engine.runtime.events import Alert
from engine.runtime.recorder import Recorder
from engine.runtime.runner import Runner, Sink
from engine.store import Store, StoreError, instrument_of
from engine.types import BAR_DTYPE, FEATURE_DTYPE, SIGNAL_DTYPE

MINUTE_MS = 60_000
_EMPTY_BARS = np.zeros(0, BAR_DTYPE)
_EMPTY_FEATURES = np.zeros(0, FEATURE_DTYPE)
_EMPTY_SIGNALS = np.zeros(0, SIGNAL_DTYPE)
# feed statuses after which the data may have a hole until the next event
_OUTAGE = ("disconnected", "stale", "reconnecting")


@dataclass
class FeedChanged:
    """A status of the feed itself (connected, subscribed, refused, gap, stale, malformed, ...)."""

    status: FeedStatus


@dataclass
class LiveStatus:
    """Periodic health figures for a status line."""

    wall_ms: int
    minute: int  # ts_min of the newest closed minute (-1: none)
    last_px: int  # ticks (-1: none)
    ready: int  # readiness code of the newest closed minute (-1: none)
    warmup_left: int  # minutes until the window is full (0: full)
    lag_ms: int  # receive time minus exchange time of the newest trade or quote
    close_lag_ms: list[int]  # live-clock time minus minute end at each close since the last status
    feed: dict[str, Any] = field(default_factory=dict)  # FeedCounters.as_dict()
    recorder: dict[str, int] = field(default_factory=dict)
    late_events: int = 0
    position: Any = None  # PositionView (paper trading)
    execution: dict[str, Any] | None = None  # LiveTrader.status() (live trading)


class LiveDriver:
    """One symbol's live feed, engine and recorder.

    Args:
        settings: engine settings (instrument, window, ...).
        db: the database recorded into (and warm-started from).
        feed_config: the feed client's settings (URL, timeouts, grace).
        sink: receives every event.
        trading: paper execution on the live quotes after the warm start (False: signals and
            features only, ``pbdtui collect``); the warm start always runs in signals mode, so
            history is never paper-traded.
        mode: the engine mode after the warm start ("signals", "paper", "external"); overrides ``trading``.
        client_prefix: the engine's client order id prefix, unique per start (``engine.engine.client_prefix``).
        run_id: ``signals_1m.run_id`` of the recorded minutes.
        close_grace_ms: event time a minute is kept open after its end (the feed's reorder grace plus transit).
        tick_interval: seconds between live-clock closes and health checks.
        status_interval: seconds between ``LiveStatus`` events.
        commit_interval: seconds between the recorder's commits of received ticks. A kill -9 may lose
            at most one second of received ticks; a tick also waits in the feed's reorder buffer
            before it reaches the recorder, and a commit takes time on a loaded machine, so the
            interval is a quarter of that (with 1 s, kills at 60x on a loaded 2-core machine lost up to 1.9 s of received
            ticks; with 0.25 s, at most 0.7 s: ``bench/bench_crash.py``).
        purge_interval: wall seconds between the recorder's raw retention purges (None: never).
    """

    def __init__(self, settings: Any, db: str, feed_config: FeedConfig, sink: Sink, trading: bool = False,
                 run_id: str = "collect", close_grace_ms: int = 1_000, tick_interval: float = 0.25,
                 status_interval: float = 5.0, commit_interval: float = 0.25, mode: str | None = None,
                 client_prefix: str = "bt", purge_interval: float | None = 600.0):
        self.settings = settings
        self.db = str(db)
        self.feed_config = feed_config
        self.sink = sink
        self.runner = Runner(settings, self._on_event, trading=trading, mode=mode, client_prefix=client_prefix)
        self.clock = LiveClock()
        self.recorder = Recorder(self.db, settings, run_id=run_id, commit_interval=commit_interval,
                                 purge_interval=purge_interval)
        self.close_grace_ms = close_grace_ms
        self.tick_interval = tick_interval
        self.status_interval = status_interval
        self.feed: BybitPublicFeed | None = None
        self.last_stored_ts = -1
        self._outage_from = -1  # exchange ms the current outage started (-1: none)
        self._lag_ms = 0
        self._close_lags: deque[int] = deque(maxlen=10_000)
        self._stale_alerted = False
        self._ready = -1
        self._last_minute = -1
        self.trader: Any = None  # engine.runtime.trading.LiveTrader, which sets itself here

    @property
    def engine(self):  # noqa: ANN201 - the runner's Engine
        return self.runner.engine

    def _on_event(self, event: Any) -> None:
        if self.trader is not None:
            self.trader.on_event(event)
        self.sink(event)

    def record_fills(self, fills: np.ndarray, exec_id: str | None = None) -> None:
        """Exchange fills (FILL_DTYPE records the runner made from execution ``exec_id``) to ``trades_exec``."""
        if len(fills):
            self.recorder.minutes(_EMPTY_BARS, _EMPTY_FEATURES, _EMPTY_SIGNALS, fills, exec_id)

    def recorded_executions(self) -> tuple[dict[str, int], int]:
        """The exchange executions already in ``trades_exec`` (execId -> fill time) and where to look for others.

        A restart recovers the executions a killed run made but never recorded:
        those after the newest recorded one or, when none was ever recorded (the
        first run died before its first commit), those since the first stored
        tick, at most 7 days back from the newest (Bybit's execution window).
        Returns ``({}, -1)`` for a new database.
        """
        if not _exists(self.db):
            return {}, -1
        with Store(self.db, instrument_of(self.settings), readonly=True) as store:
            recorded: dict[str, int] = {}
            if "exec_id" in {r[1] for r in store.fetch("PRAGMA table_info(trades_exec)")}:
                recorded = {e: int(t or 0) for e, t in store.fetch(
                    "SELECT exec_id, ts_ms_fill FROM trades_exec WHERE exec_id IS NOT NULL")}
            if recorded:
                return recorded, max(recorded.values())
            span = store.tick_range()
        return {}, -1 if span is None else max(span[0], span[1] - 7 * 86_400_000 + 60_000)

    # --- warm start -------------------------------------------------------------------------

    def warm_start(self) -> int:
        """Replay every stored tick through the engine in signals mode; returns the minutes rebuilt.

        The history is never traded: the engine runs it in signals mode and
        goes back to its own mode (paper or external) afterwards.
        """
        mode = self.engine.mode
        self.engine.set_mode("signals")
        try:
            minutes = self._replay_stored() if _exists(self.db) else 0
            # the live clock's kernel is loaded (or, after an install, compiled: seconds) here, off the event
            # loop, not at its first tick once live; closing through the newest event's own minute closes nothing
            out = self.engine.close_until(self.engine.last_event_ts)
            self.recorder.minutes(out.bars, out.features, out.signals)
            return minutes + len(out.bars)
        finally:
            self.engine.set_mode(mode)

    def _replay_stored(self) -> int:
        try:
            store = Store(self.db, instrument_of(self.settings), readonly=True)
        except StoreError:
            raise
        with store:
            funding = store.load_funding()
            f_next = 0
            minutes = 0
            for trades, quotes in store.iter_event_slices():
                last = max(int(trades["ts"][-1]) if len(trades) else -1, int(quotes["ts"][-1]) if len(quotes) else -1)
                f_end = int(np.searchsorted(funding["ts"], last, "right"))
                out = self.engine.feed(trades, quotes, funding[f_next:f_end])
                f_next = f_end
                self.recorder.minutes(out.bars, out.features, out.signals)  # signals mode: no fills
                minutes += len(out.bars)
                if len(trades):
                    self.runner.last_px = int(trades["px"][-1])
            self.last_stored_ts = self.engine.last_event_ts if minutes or self.engine.last_event_ts > 0 else -1
        return minutes

    # --- the loop -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, duration: float | None = None) -> None:
        """Warm start, then stream until ``stop`` is set or ``duration`` seconds pass; commits on the way out."""
        self.recorder.start()
        try:
            rebuilt = await asyncio.to_thread(self.warm_start)
            if rebuilt:
                self.sink(Alert(ts=self.engine.last_event_ts, kind="warm_start", severity="info",
                                text=f"warm start: {rebuilt} minutes rebuilt from the stored ticks"))
            if self.trader is not None:
                await self.trader.start()
            self.feed = BybitPublicFeed(instrument_of(self.settings), self.feed_config, on_rows=self._record_ticks)
            deadline = None if duration is None else time.monotonic() + duration
            async with self.feed:
                consumer = asyncio.create_task(self._consume(), name="live-consume")
                ticker = asyncio.create_task(self._tick(), name="live-clock")
                waiter = asyncio.create_task(stop.wait(), name="live-stop")
                tasks = [consumer, ticker, waiter]
                if self.trader is not None:
                    tasks.append(asyncio.create_task(self.trader.run(), name="live-execution"))
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                done, _ = await asyncio.wait({consumer, waiter}, timeout=timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                if consumer in done and consumer.exception() is not None:
                    raise consumer.exception()  # type: ignore[misc]
            # what the clock has closed is recorded; the open minute stays open (it may not be complete)
            self._record(self.runner.close_until(self.clock.now_ms() - self.close_grace_ms))
            self.sink(self.status())
        finally:
            if self.trader is not None:
                await asyncio.to_thread(self.trader.close)
            await asyncio.to_thread(self.recorder.close)

    async def _consume(self) -> None:
        assert self.feed is not None
        async for event in self.feed:
            if isinstance(event, Ticks):
                self._on_ticks(event)
            elif isinstance(event, FeedStatus):
                self._on_status(event)
                self._on_event(FeedChanged(event))
            else:  # Ticker: mark price, funding; funding rows also come in Ticks
                self.sink(event)

    def _record_ticks(self, batch: Ticks) -> None:
        """Rows as the feed delivers them, to the recorder (before they queue for the engine: see the feed's ``on_rows``)."""
        if len(batch.trades) or len(batch.quotes) or len(batch.funding):
            self.recorder.ticks(batch.trades, batch.quotes, batch.funding)

    def _on_ticks(self, batch: Ticks) -> None:
        trades, quotes, funding = batch.trades, batch.quotes, batch.funding
        newest = max(int(trades["ts"][-1]) if len(trades) else -1, int(quotes["ts"][-1]) if len(quotes) else -1)
        if newest < 0 and not len(funding):
            return
        first = min([int(a["ts"][0]) for a in (trades, quotes) if len(a)], default=newest)
        if self.last_stored_ts > 0 and first >= 0:
            # the downtime between the last stored tick and the first live one is a gap, unless it is
            # no longer than the market's own quiet spells (the stale threshold)
            if first - self.last_stored_ts > self.settings.feed_stale_halt_ms:
                self.engine.mark_feed_gap(self.last_stored_ts, first)
            self.last_stored_ts = -1
        if self._outage_from >= 0 and first >= 0:
            self.engine.mark_feed_gap(self._outage_from, first)
            self.recorder.flag_gap(self._outage_from, first)
            self._outage_from = -1
        if newest >= 0:
            self.clock.observe(newest)
            local = max(int(trades["local_ts"][-1]) if len(trades) else 0, int(quotes["local_ts"][-1]) if len(quotes) else 0)
            self._lag_ms = local - newest
        self._stale_alerted = False
        self._record(self.runner.feed(trades, quotes, funding))

    def _on_status(self, status: FeedStatus) -> None:
        if status.kind == "gap" and status.gap_from > 0:
            self.engine.mark_feed_gap(status.gap_from, status.gap_to)
            # minutes of the outage the live clock closed before it was detected (a silent stall is seen
            # only after the silence limit) are flagged in the store too
            self.recorder.flag_gap(status.gap_from, status.gap_to)
            self._outage_from = -1
        elif status.kind in _OUTAGE and self._outage_from < 0 and self.clock.newest > 0:
            self._outage_from = self.clock.newest
            self.engine.mark_feed_gap(self._outage_from)  # open-ended until data comes back

    async def _tick(self) -> None:
        last_status = time.monotonic()
        while True:
            await asyncio.sleep(self.tick_interval)
            now = self.clock.now_ms()
            if now > 0:
                self._record(self.runner.close_until(now - self.close_grace_ms))
            quiet = self.clock.quiet_ms()
            if quiet > self.settings.feed_stale_halt_ms and not self._stale_alerted and self.clock.newest > 0:
                self._stale_alerted = True
                self._on_event(Alert(ts=now, kind="feed_stale", severity="error",
                                text=f"FEED STALE: no data for {quiet / 1000:.1f} s; entries halted"))
            if time.monotonic() - last_status >= self.status_interval:
                last_status = time.monotonic()
                self.sink(self.status())

    def _record(self, out: Any) -> None:
        if len(out.fills):
            self.recorder.minutes(out.bars[:0], out.features[:0], out.signals[:0], out.fills)
        if len(out.bars):
            self.recorder.minutes(out.bars, out.features, out.signals)
            # in event time (the live clock): also meaningful for a replay of old data
            now = self.clock.now_ms()
            for t in out.bars["ts_min"]:
                self._close_lags.append(now - (int(t) + MINUTE_MS))
            self._ready = int(out.features["ready"][-1])
            self._last_minute = int(out.bars["ts_min"][-1])

    def status(self) -> LiveStatus:
        lags = list(self._close_lags)
        self._close_lags.clear()
        window = self.settings.rolling_window_minutes
        return LiveStatus(
            wall_ms=int(time.time() * 1000), minute=self._last_minute, last_px=self.runner.last_px,
            ready=self._ready, warmup_left=max(0, window - 1 - (self.engine.bars_closed - 1))
            if self.engine.bars_closed else window - 1,
            lag_ms=self._lag_ms, close_lag_ms=lags,
            feed=self.feed.counters().as_dict() if self.feed is not None else {},
            recorder=dict(self.recorder.counters), late_events=self.engine.late_events,
            position=self.engine.position() if self.engine.mode != "signals" else None,
            execution=self.trader.status() if self.trader is not None else None)


def _exists(path: str) -> bool:
    import os

    return os.path.exists(path)
