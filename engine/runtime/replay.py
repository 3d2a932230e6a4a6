"""Paced replay of stored ticks through the runtime (the console's replay and demo).

The first ``warmup_minutes`` of event time of each segment (default: the
profile window) are fed at full speed so the value area is ready within
seconds; after that each step feeds the event time that elapsed on the wall
clock times ``speed``. A stretch without ticks longer than ``GAP_SKIP_MS``
is jumped, not waited out (a gap longer than the window also starts a new
segment that warms up at full speed again, SPEC_NOTES "Long gaps").
Operator commands arrive through ``send`` from any thread and are applied
on the driver's thread between slices, so every engine call happens on one
thread (a lock around the engine was rejected: a warm-up slice can take a
second and a key press would block the screen that long).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engine.runtime.cursor import TickCursor
from engine.runtime.events import (
    Alert,
    ReplayChanged,
    ReplayFinished,
    ReplayRestarted,
    Snapshot,
    TicksFed,
)
from engine.runtime.runner import Runner, Sink
from engine.store import Store, StoreError, instrument_of
from engine.timerange import duration_text, range_text, utc_text

MINUTE_MS = 60_000
SPEED_MIN, SPEED_MAX = 1.0, 100_000.0
# faster/slower walk this ladder (doubling from 600x took five presses to reach a day per
# minute and gave odd speeds like 37.5x on the way down); a speed between two steps moves
# to the neighbouring step
SPEED_STEPS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3000.0, 6000.0,
               12_000.0, 30_000.0, 60_000.0, 100_000.0)


def next_speed(speed: float, faster: bool) -> float:
    """The neighbouring step of the speed ladder above (``faster``) or below ``speed``."""
    if faster:
        return next((s for s in SPEED_STEPS if s > speed), SPEED_STEPS[-1])
    return next((s for s in reversed(SPEED_STEPS) if s < speed), SPEED_STEPS[0])


class ReplayDriver:
    """Replays a tick database through one ``Runner`` at ``speed`` x real time.

    Args:
        settings: the engine settings.
        db_path: the tick database to replay (read only).
        speed: replay speed, x real time.
        warmup_minutes: event time fed at full speed first (None: the rolling window).
        ui_interval: least wall time between two snapshots posted.
        start_ms, end_ms: replay only ticks with ``start_ms <= ts < end_ms``.
    """

    WARM_SLICE_MS = 10 * MINUTE_MS  # warm-up step: small enough to draw the profile growing
    MAX_SLICE_MS = 5 * MINUTE_MS  # paced step cap: a slow machine runs slower, not in bursts
    STEP_S = 0.05  # paced loop period
    GAP_SKIP_MS = MINUTE_MS  # a stretch without ticks longer than this is jumped, not waited out

    def __init__(self, settings: Any, db_path: str | os.PathLike[str], speed: float = 600.0,
                 warmup_minutes: int | None = None, ui_interval: float = 0.25,
                 start_ms: int | None = None, end_ms: int | None = None):
        self.settings = settings
        self.db_path = Path(db_path)
        self.window = (start_ms, end_ms)
        self.runner = Runner(settings, self._emit_event, trading=True, keep_rows=True)
        self.speed = float(min(max(speed, SPEED_MIN), SPEED_MAX))
        self.paused = False
        minutes = settings.rolling_window_minutes if warmup_minutes is None else warmup_minutes
        self.warmup_ms = int(minutes) * MINUTE_MS
        self.ui_interval = ui_interval
        self._commands: queue.SimpleQueue[tuple[str, float]] = queue.SimpleQueue()
        self._stop = threading.Event()
        # replay state, touched by the driver's thread only
        self._sink: Sink = lambda event: None
        self._anchor: tuple[int, float] | None = None  # (event ms, wall s) the pacing counts from
        self._last_post = 0.0
        self.first_ts = self.end_ts = self.clock = -1
        self._warm_end = -1  # event time the current segment's full-speed warm-up ends
        self.finished = False
        self._store: Store | None = None
        self._cursor: TickCursor | None = None
        # a jump in progress, fed at full speed whatever the pause: ("seek", event time),
        # ("trade", fills before the jump) or ("step", end of the minute)
        self._jump: tuple[str, int] | None = None

    @property
    def engine(self):  # noqa: ANN201 - the runner's Engine
        return self.runner.engine

    # --- any thread -------------------------------------------------------------

    def send(self, command: str, value: float = 0.0) -> None:
        """Queue an operator command (applied on the driver's thread between slices).

        ``kill`` (toggle), ``entries`` (toggle the entries pause), ``flatten``, ``pause`` (toggle), ``speed`` (multiply by
        ``value``), ``faster``/``slower`` (next step of ``SPEED_STEPS``), ``step``
        (pause, then replay to the end of the current minute and close it),
        ``next_trade`` (full speed until the next fill, then pause), ``seek``
        (full speed to event time ``value`` ms UTC, then pause; a time already
        passed restarts the replay from its first tick into a fresh engine, so
        the position and PnL at the target are those of a straight replay).
        """
        self._commands.put((command, value))

    def stop(self) -> None:
        self._stop.set()

    # --- driver thread ----------------------------------------------------------

    def _emit_event(self, event: Any) -> None:
        self._sink(event)

    def run(self, sink: Sink, cancelled: Callable[[], bool] = lambda: False) -> None:
        """Replay until the end of the data, then keep serving commands until stopped or cancelled."""
        self._sink = sink
        with Store(self.db_path, instrument_of(self.settings), readonly=True) as store:
            span = store.tick_range(*self.window)
            if span is None:
                raise StoreError(f"{self.db_path}: no ticks to replay {range_text(*self.window)}")
            self.first_ts, self.end_ts = span[0], span[1] + 1
            self.clock = self.first_ts
            funding = store.load_funding()
            self._store = store
            self._cursor = TickCursor(store, self.first_ts)  # end_ts caps every take: nothing past the range
            self._warm_end = self.first_ts + self.warmup_ms
            while not (self._stop.is_set() or cancelled()):
                self._apply_commands()
                cursor = self._cursor
                assert cursor is not None
                if self.clock >= self.end_ts:
                    if not self.finished:
                        self._finish()
                    self._stop.wait(self.STEP_S)
                    continue
                if self._jump is not None:
                    self._jump_slice(cursor, funding)
                    continue
                paced = self.clock >= self._warm_end
                if paced and self.paused:
                    self._anchor = None
                    self._stop.wait(self.STEP_S)
                    continue
                self._skip_gap(cursor)
                step_start = time.monotonic()
                target = self._target(self._warm_end, step_start)
                if target <= self.clock:
                    self._stop.wait(self.STEP_S)
                    continue
                self._feed_to(cursor, funding, target)
                self._publish(force=not paced and self.clock >= self._warm_end)
                if paced:
                    self._stop.wait(max(0.0, self.STEP_S - (time.monotonic() - step_start)))

    def _feed_to(self, cursor: TickCursor, funding: np.ndarray, target: int) -> None:
        trades, quotes = cursor.take(target)
        a, b = np.searchsorted(funding["ts"], [self.clock, target], "left")
        self.runner.feed(trades, quotes, funding[a:b])
        self.clock = target

    def _jump_slice(self, cursor: TickCursor, funding: np.ndarray) -> None:
        """One full-speed slice of the jump in progress; ends it (paused) when it arrives."""
        assert self._jump is not None
        kind, arg = self._jump
        self._skip_gap(cursor)
        if kind == "trade":  # minute by minute, so the jump stops in the minute of the fill
            target = min((self.clock // MINUTE_MS + 1) * MINUTE_MS, self.end_ts)
        else:
            target = min(arg, self.clock + self.WARM_SLICE_MS, self.end_ts)
        if target > self.clock:
            self._feed_to(cursor, funding, target)
        if kind != "trade" and self.clock >= arg:
            self.runner.close_until(arg)  # the last minute closes now, not with the next tick
        done = (self.clock >= self.end_ts or (kind == "trade" and self.runner.fills > arg)
                or (kind != "trade" and self.clock >= arg))
        if done:
            self._jump = None
            self.paused = True
            self._anchor = None
            self._sink(ReplayChanged(paused=True, speed=self.speed))
        self._publish(force=done)

    def _skip_gap(self, cursor: TickCursor) -> None:
        """Jump the clock to the next tick when none comes for more than GAP_SKIP_MS."""
        nxt = cursor.next_ts()
        if nxt is None or nxt >= self.end_ts or nxt - self.clock <= self.GAP_SKIP_MS:  # past --to: not a gap
            return
        last = self.engine.last_event_ts
        self._sink(Alert(ts=nxt, kind="gap_skipped", severity="info",
                         text=f"no data for {duration_text(nxt - self.clock)}: skipped to {utc_text(nxt)} UTC"))
        if last > 0 and nxt - last > self.settings.rolling_window_minutes * MINUTE_MS:
            self._warm_end = nxt + self.warmup_ms
        self.clock = nxt
        self._anchor = None

    def _target(self, warm_end: int, now: float) -> int:
        """Event time to feed up to in this step."""
        if self.clock < warm_end:
            return min(self.clock + self.WARM_SLICE_MS, warm_end, self.end_ts)
        if self._anchor is None:
            self._anchor = (self.clock, now)
        target = self._anchor[0] + int((now - self._anchor[1]) * self.speed * 1000.0)
        if target > self.clock + self.MAX_SLICE_MS:
            # behind the clock: go on from here rather than catch up in one burst
            target = self.clock + self.MAX_SLICE_MS
            self._anchor = (target, now)
        return min(target, self.end_ts)

    def _apply_commands(self) -> None:
        applied = False
        while True:
            try:
                command, value = self._commands.get_nowait()
            except queue.Empty:
                break
            applied = True
            if command in ("kill", "flatten", "entries"):
                self.runner.command(command)
            elif command == "pause":
                self.paused = not self.paused
                self._anchor = None
                self._sink(ReplayChanged(paused=self.paused, speed=self.speed))
            elif command in ("speed", "faster", "slower"):
                speed = self.speed * value if command == "speed" else next_speed(self.speed, command == "faster")
                self.speed = float(min(max(speed, SPEED_MIN), SPEED_MAX))
                self._anchor = None
                self._sink(ReplayChanged(paused=self.paused, speed=self.speed))
            elif command == "step":
                # the end of the minute after the last one closed: one minute closes per press (the
                # clock's own minute would close two when a pause leaves the clock on a boundary,
                # the minute before it still open until the next tick)
                last = self.runner.last_minute
                end = ((self.clock // MINUTE_MS + 1) * MINUTE_MS if last is None
                       else int(last.features["ts_min"]) + 2 * MINUTE_MS)
                self._jump = ("step", min(max(end, self.clock), self.end_ts))
            elif command == "next_trade":
                self._jump = ("trade", self.runner.fills)
            elif command == "seek":
                target = min(max(int(value), self.first_ts), self.end_ts)
                if target < self.clock:
                    self._restart(target)
                self._jump = ("seek", target)
            else:
                raise ValueError(f"unknown command {command!r}")
        if applied:
            self._publish(force=True)

    def _restart(self, target: int) -> None:
        """Back to the first tick with a fresh engine (a seek backwards); the screen clears its logs."""
        self.runner = Runner(self.settings, self._emit_event, trading=True, keep_rows=True)
        self._cursor = TickCursor(self._store, self.first_ts)
        self.clock = self.first_ts
        self._warm_end = self.first_ts + self.warmup_ms
        self._anchor = None
        self.finished = False
        self._sink(ReplayRestarted(ts=self.first_ts, target=target))

    def _publish(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_post < self.ui_interval:
            return
        self._last_post = now
        self._sink(TicksFed(self.snapshot()))

    def snapshot(self) -> Snapshot:
        """A copy of what a screen shows (driver thread)."""
        span = max(1, self.end_ts - self.first_ts)
        return self.runner.snapshot(
            speed=self.speed, paused=self.paused, warming_up=self.clock < self._warm_end,
            progress=min(1.0, max(0.0, (self.clock - self.first_ts) / span)), finished=self.finished)

    def result(self):  # noqa: ANN201 - engine.backtest.BacktestResult
        """The replayed rows as a backtest result, for ``engine.report`` (driver thread)."""
        from engine.backtest import (
            BacktestResult,  # late: engine.report imports engine.runtime (an import cycle)
        )
        from engine.engine import concat

        out = concat(self.runner.outputs)
        pos = self.engine.position()
        bid, ask = pos.bid, pos.ask
        return BacktestResult(
            run_id=f"replay-{self.db_path.stem}", mode="tick", signals=out.signals, fills=out.fills,
            features=out.features, bars=out.bars, events=self.runner.events, seconds=0.0,
            last_mid2=bid + ask if bid > 0 and ask > 0 else 0, open_position=pos.position,
            open_entry_px=pos.entry_px, window=self.window)

    def _finish(self) -> None:
        from engine.report import report, text_report

        self.runner.finish()
        self.finished = True
        self._jump = None
        figures = report(self.settings, self.result())
        self._sink(ReplayFinished(ts=self.engine.last_event_ts, minutes=self.runner.minutes,
                                  fills=self.runner.fills, report=figures, report_text=text_report(figures)))
        self._publish(force=True)
