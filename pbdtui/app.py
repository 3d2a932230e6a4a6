"""The operator console: a Textual app over one engine driver.

``create_app`` builds the app around a ``ReplayDriver``, which replays a tick
database through ``engine.engine.Engine`` on a worker thread; ``run_demo``
(``pbdtui demo``) first generates a simulated session into a cache file so the
console works offline on data the project makes itself.

Threads: the engine belongs to the driver's thread. The screen never touches
it: the driver posts small copies as messages (``pbdtui.messages``) and the
screen's commands (kill switch, flatten, pause, speed) go through a
thread-safe queue that the driver drains between slices, so every engine
call happens on one thread, between two ``feed`` calls. A lock around the
engine was rejected: a slice can take a second during warm-up and the key
press would block the screen for that long.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import numpy as np
from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Footer, RichLog, Static
from textual.worker import Worker, WorkerState, get_current_worker

from engine.engine import Engine, StepOutput
from engine.kernel_cache import uncompiled
from engine.private import private_dir
from engine.records import units_of
from engine.store import Store, StoreError, instrument_of
from engine.timerange import range_text
from engine.types import (
    EXIT_NAMES,
    QUOTE_DTYPE,
    READY,
    REASON_FEED_STALE,
    REASON_NAMES,
    SETUP_NAMES,
    SIDE_BUY,
    TRADE_DTYPE,
)
from pbdtui.messages import (
    AlertRaised,
    FlattenRequested,
    KillSwitchChanged,
    MinuteClosed,
    OrderFilled,
    ReadinessChanged,
    ReplayChanged,
    ReplayFinished,
    Snapshot,
    TicksReplayed,
)
from pbdtui.render import PriceFormat, render_header
from pbdtui.widgets.features import FeaturesView
from pbdtui.widgets.profile import ProfileView

MINUTE_MS = 60_000
DAY_MS = 86_400_000
DEMO_DAYS = 0.3  # 7.2 h: a 4 h warm-up, then a bit over 3 h of trading to watch
SPEED_MIN, SPEED_MAX = 1.0, 100_000.0


def _utc(ts_ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts_ms / 1000)) + " UTC"


def _duration(ms: int) -> str:
    minutes = ms // MINUTE_MS
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 2 * 1440:
        return f"{minutes / 60:.1f} h"
    return f"{minutes / 1440:.1f} days"


def _record(arr: np.ndarray, i: int) -> dict[str, Any]:
    """One record as a dict of Python scalars (a copy, never a view into engine output)."""
    row = arr[i]
    return {name: row[name].item() for name in arr.dtype.names}


class _TickCursor:
    """Hands out consecutive time slices of a store's ticks, loading ahead in windows.

    ``Store.load_ticks`` reads whole chunks (up to 2**18 ticks each), so
    loading every one-second slice from SQL would re-read the same BLOB
    hundreds of times; the cursor loads ``window_ms`` of event time at once
    and cuts slices from memory.
    """

    def __init__(self, store: Store, start_ms: int, window_ms: int = 10 * MINUTE_MS):
        self.store = store
        self.window_ms = window_ms
        self.loaded_to = start_ms
        self.trades = np.zeros(0, TRADE_DTYPE)
        self.quotes = np.zeros(0, QUOTE_DTYPE)

    def take(self, ts_to: int) -> tuple[np.ndarray, np.ndarray]:
        """Ticks with ts before ``ts_to`` not handed out yet, in ts order."""
        if ts_to > self.loaded_to:
            new_to = max(ts_to, self.loaded_to + self.window_ms)
            more_t = self.store.load_ticks("trade", self.loaded_to, new_to)
            more_q = self.store.load_ticks("quote", self.loaded_to, new_to)
            self.trades = np.concatenate([self.trades, more_t]) if len(self.trades) else more_t
            self.quotes = np.concatenate([self.quotes, more_q]) if len(self.quotes) else more_q
            self.loaded_to = new_to
        i = int(np.searchsorted(self.trades["ts"], ts_to, "left"))
        j = int(np.searchsorted(self.quotes["ts"], ts_to, "left"))
        out = self.trades[:i], self.quotes[:j]
        self.trades, self.quotes = self.trades[i:], self.quotes[j:]
        return out

    def next_ts(self) -> int | None:
        """Exchange time of the next tick not handed out yet, or None at the end of the data."""
        firsts = [int(a["ts"][0]) for a in (self.trades, self.quotes) if len(a)]
        if firsts:
            return min(firsts)
        return self.store.next_tick_ts(self.loaded_to)  # nothing buffered: none before loaded_to


class ReplayDriver:
    """Replays a tick database through one engine at ``speed`` x real time.

    The first ``warmup_minutes`` of event time (default: the profile window)
    are fed at full speed so the value area is ready within seconds (pause
    takes effect when it ends); after that each step feeds the event time
    that elapsed on the wall clock times ``speed``. Operator commands arrive through ``send`` from any thread and
    are applied on the driver's thread between slices.

    Args:
        settings: the engine settings.
        db_path: the tick database to replay (read only).
        speed: replay speed, x real time.
        warmup_minutes: event time fed at full speed first (None: the rolling window).
        ui_interval: least wall time between two snapshots posted to the screen.
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
        self.window = (start_ms, end_ms)  # replay only ticks with start_ms <= ts < end_ms
        self.engine = Engine(settings, trading=True)
        self.speed = float(min(max(speed, SPEED_MIN), SPEED_MAX))
        self.paused = False
        minutes = settings.rolling_window_minutes if warmup_minutes is None else warmup_minutes
        self.warmup_ms = int(minutes) * MINUTE_MS
        self.ui_interval = ui_interval
        self._commands: queue.SimpleQueue[tuple[str, float]] = queue.SimpleQueue()
        self._stop = threading.Event()
        # replay state, touched by the driver's thread only
        self._post: Callable[[Message], Any] = lambda message: None
        self._anchor: tuple[int, float] | None = None  # (event ms, wall s) the pacing counts from
        self._last_px = -1
        self._minute_dirty = False
        self._minute: tuple[dict[str, Any], dict[str, Any]] | None = None  # features, signal
        self._ready = -1
        self._ambiguous_high = False
        self._va_missing = False
        self._kill_daily = False
        self._minutes = 0
        self._fills = 0
        self._last_post = 0.0
        self.first_ts = self.end_ts = self.clock = -1
        self._warm_end = -1  # event time the current segment's full-speed warm-up ends
        self.finished = False

    # --- any thread -------------------------------------------------------------

    def send(self, command: str, value: float = 0.0) -> None:
        """Queue an operator command: ``kill`` (toggle), ``flatten``, ``pause`` (toggle), ``speed`` (factor)."""
        self._commands.put((command, value))

    def stop(self) -> None:
        self._stop.set()

    # --- driver thread ----------------------------------------------------------

    def run(self, post: Callable[[Message], Any], cancelled: Callable[[], bool] = lambda: False) -> None:
        """Replay until the end of the data, then keep serving commands until stopped or cancelled."""
        self._post = post
        with Store(self.db_path, instrument_of(self.settings), readonly=True) as store:
            span = store.tick_range(*self.window)
            if span is None:
                raise StoreError(f"{self.db_path}: no ticks to replay {range_text(*self.window)}")
            self.first_ts, self.end_ts = span[0], span[1] + 1
            self.clock = self.first_ts
            funding = store.load_funding()
            cursor = _TickCursor(store, self.first_ts)  # end_ts caps every take: nothing past the range
            self._warm_end = self.first_ts + self.warmup_ms
            while not (self._stop.is_set() or cancelled()):
                self._apply_commands()
                if self.clock >= self.end_ts:
                    if not self.finished:
                        self._finish()
                    self._stop.wait(self.STEP_S)
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
                trades, quotes = cursor.take(target)
                a, b = np.searchsorted(funding["ts"], [self.clock, target], "left")
                out = self.engine.feed(trades, quotes, funding[a:b])
                if len(trades):
                    self._last_px = int(trades["px"][-1])
                self.clock = target
                self._handle(out)
                self._publish(force=not paced and self.clock >= self._warm_end)
                if paced:
                    self._stop.wait(max(0.0, self.STEP_S - (time.monotonic() - step_start)))

    def _skip_gap(self, cursor: _TickCursor) -> None:
        """Jump the clock to the next tick when none comes for more than GAP_SKIP_MS.

        A gap longer than the window starts a new segment that warms up again
        (SPEC_NOTES, long gaps), so its warm-up runs at full speed like the first.
        """
        nxt = cursor.next_ts()
        if nxt is None or nxt >= self.end_ts or nxt - self.clock <= self.GAP_SKIP_MS:  # past --to: not a gap
            return
        last = self.engine.last_event_ts
        self._post(AlertRaised(ts=nxt, text=f"no data for {_duration(nxt - self.clock)}: "
                                            f"skipped to {_utc(nxt)}"))
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
            ts = self.engine.last_event_ts
            if command == "kill":
                on = not self.engine.position().kill_manual
                self.engine.set_kill_switch(on)
                self._post(KillSwitchChanged(on=on, ts=ts))
            elif command == "flatten":
                self.engine.flatten()
                self._post(FlattenRequested(ts=ts, position=self.engine.position().position))
            elif command == "pause":
                self.paused = not self.paused
                self._anchor = None
                self._post(ReplayChanged(paused=self.paused, speed=self.speed))
            elif command == "speed":
                self.speed = float(min(max(self.speed * value, SPEED_MIN), SPEED_MAX))
                self._anchor = None
                self._post(ReplayChanged(paused=self.paused, speed=self.speed))
        if applied:
            self._publish(force=True)

    def _handle(self, out: StepOutput) -> None:
        """Turn one step's rows into messages: fills and alerts now, the minute and snapshot throttled.

        Fills and minute events are posted in event-time order (a minute's
        readiness is known at its end), so the log reads like a timeline.
        """
        s = self.settings
        events: list[tuple[int, int, Message]] = []
        for i in range(len(out.fills)):
            self._fills += 1
            fill = _record(out.fills, i)
            events.append((fill["ts_fill"], len(events), OrderFilled(fill=fill)))
        feats = out.features
        for i in range(len(feats)):
            ts_min = int(feats["ts_min"][i])
            known = ts_min + MINUTE_MS
            ready = int(feats["ready"][i])
            if ready != self._ready:
                events.append((known, len(events), ReadinessChanged(ts_min=ts_min, before=self._ready, after=ready)))
                self._ready = ready
            vol = int(feats["volume"][i])
            amb = int(feats["amb_qty"][i]) / vol if vol > 0 else 0.0
            high = amb > s.ambiguous_trade_frac_max
            if high and not self._ambiguous_high:
                events.append((known, len(events), AlertRaised(ts=known, text=(
                    f"ambiguous trades {amb:.0%} of the minute "
                    f"(threshold {s.ambiguous_trade_frac_max:.0%})"))))
            self._ambiguous_high = high
            missing = not int(feats["va_valid"][i])
            if missing and not self._va_missing:
                events.append((known, len(events), AlertRaised(
                    ts=known, text="no value area: the profile is empty", severity="error")))
            self._va_missing = missing
        for _, _, message in sorted(events, key=lambda e: (e[0], e[1])):
            self._post(message)
        if len(feats):
            self._minutes += len(feats)
            last = len(feats) - 1
            self._minute = (_record(feats, last), _record(out.signals, last))
            self._minute_dirty = True
        kill_daily = self.engine.position().kill_daily
        if kill_daily and not self._kill_daily:
            self._post(AlertRaised(ts=self.engine.last_event_ts, severity="error",
                                   text=f"daily loss limit {s.max_daily_loss:g} breached: entries off"))
        self._kill_daily = kill_daily

    def _publish(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_post < self.ui_interval:
            return
        self._last_post = now
        if self._minute_dirty and self._minute is not None:
            self._post(MinuteClosed(*self._minute))
            self._minute_dirty = False
        self._post(TicksReplayed(self.snapshot()))

    def snapshot(self) -> Snapshot:
        """A copy of what the screen shows (driver thread)."""
        bins, vols = self.engine.profile()
        f = self._minute[0] if self._minute else None
        pos = self.engine.position()
        span = max(1, self.end_ts - self.first_ts)
        return Snapshot(
            ts=self.engine.last_event_ts, last_px=self._last_px,
            bins=bins, volumes=vols,
            k=int(f["k"]) if f else 0, poc2=int(f["poc2"]) if f else 0,
            val=int(f["val"]) if f else 0, vah=int(f["vah"]) if f else 0,
            va_valid=bool(f["va_valid"]) if f else False,
            position=pos, speed=self.speed, paused=self.paused,
            warming_up=self.clock < self._warm_end,
            progress=min(1.0, max(0.0, (self.clock - self.first_ts) / span)),
            finished=self.finished,
        )

    def _finish(self) -> None:
        self._handle(self.engine.finish())
        self.finished = True
        self._post(ReplayFinished(ts=self.engine.last_event_ts, minutes=self._minutes, fills=self._fills))
        self._publish(force=True)


class PbdApp(App[int]):
    """The console: header line, profile, features, alerts log, key bindings."""

    TITLE = "pbdtui"
    CSS = """
    #status {
        height: 1;
        background: $primary-background;
        color: $text;
        padding: 0 1;
    }
    #body { height: 1fr; }
    #side { width: 38%; min-width: 44; max-width: 64; }
    #log {
        height: 1fr;
        border: round $accent;
        border-title-align: left;
        padding: 0 1;
    }
    """

    BINDINGS = [
        Binding("k", "kill_switch", "Kill switch"),
        Binding("f", "flatten", "Flatten"),
        Binding("p", "pause", "Pause"),
        Binding("plus,equals_sign", "faster", "Faster", key_display="+"),
        Binding("minus", "slower", "Slower", key_display="-"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, settings: Any, driver: ReplayDriver):
        super().__init__()
        self.settings = settings
        self.driver = driver
        self.fmt = PriceFormat(settings.tick_size)
        self.units = units_of(settings)
        self.snapshot: Snapshot | None = None
        self.ready: int | None = None
        self.kill_on = False
        self.speed = driver.speed
        self.paused = driver.paused
        self.flatten_requests: list[int] = []
        self.error: BaseException | None = None
        self.replay_worker: Worker[None] | None = None

    def compose(self) -> ComposeResult:
        s = self.settings
        yield Static(id="status")
        with Horizontal(id="body"):
            yield ProfileView(tick_size=s.tick_size, base_bin_ticks=s.base_bin_ticks,
                              window_minutes=s.rolling_window_minutes, id="profile")
            with Vertical(id="side"):
                yield FeaturesView(tick_size=s.tick_size, qty_step=s.qty_step, order_qty=s.order_qty,
                                   base_bin_ticks=s.base_bin_ticks,
                                   ambiguous_max=s.ambiguous_trade_frac_max, id="features")
                yield RichLog(id="log", max_lines=1000, wrap=True, min_width=20)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#log", RichLog).border_title = "Alerts and fills"
        self.sub_title = f"replay of {self.driver.db_path.name}"
        if not kernels_cached("loop.run_events"):
            self.query_one(ProfileView).placeholder = (
                "compiling the engine's kernels: the first run after an install or an engine "
                "change takes a minute or so; later runs start in seconds")
        self._update_status()
        self.replay_worker = self.replay()

    @work(thread=True, exit_on_error=False, exclusive=True, group="replay")
    def replay(self) -> None:
        worker = get_current_worker()
        self.driver.run(self.post_message, lambda: worker.is_cancelled)

    # --- key bindings: commands go to the driver thread ---------------------------

    def action_kill_switch(self) -> None:
        self.driver.send("kill")

    def action_flatten(self) -> None:
        self.driver.send("flatten")

    def action_pause(self) -> None:
        self.driver.send("pause")

    def action_faster(self) -> None:
        self.driver.send("speed", 2.0)

    def action_slower(self) -> None:
        self.driver.send("speed", 0.5)

    async def action_quit(self) -> None:
        self.driver.stop()
        self.exit(0)

    def on_unmount(self) -> None:
        self.driver.stop()

    # --- messages from the driver ---------------------------------------------------

    def on_ticks_replayed(self, message: TicksReplayed) -> None:
        snap = message.snapshot
        self.snapshot = snap
        self.kill_on = snap.position.kill_manual
        self.speed, self.paused = snap.speed, snap.paused
        self.query_one(ProfileView).snapshot = snap
        features = self.query_one(FeaturesView)
        features.position = snap.position
        features.last_px = snap.last_px
        self._update_status()

    def on_minute_closed(self, message: MinuteClosed) -> None:
        features = self.query_one(FeaturesView)
        features.features = message.features
        features.signal = message.signal
        self.ready = int(message.features["ready"])
        self._update_status()

    def on_order_filled(self, message: OrderFilled) -> None:
        f = message.fill
        side = "BUY" if f["side"] == SIDE_BUY else "SELL"
        qty = f"{self.units.qty(f['qty']):.{self.units.qty_dec}f}"  # as the features panel prints sizes
        price = self.fmt.px(f["px"])
        if f["opening"]:
            what = "LONG" if f["side"] == SIDE_BUY else "SHORT"
            text = f"ENTER {what} {qty} @ {price} ({SETUP_NAMES.get(f['tag'], '?')})"
            style = "bold cyan"
        else:
            text = (f"EXIT {side} {qty} @ {price} ({EXIT_NAMES.get(f['reason'], '?')}) "
                    f"pnl {f['pnl_realized']:+.2f}")
            style = "bold green" if f["pnl_realized"] >= 0 else "bold red"
        self._log(f["ts_fill"], text, style)

    def on_readiness_changed(self, message: ReadinessChanged) -> None:
        after = REASON_NAMES.get(message.after, str(message.after))
        known = message.ts_min + MINUTE_MS  # the minute's close
        if message.before < 0:
            self._log(known, f"readiness {after}", "yellow")
            return
        before = REASON_NAMES.get(message.before, str(message.before))
        style = "green" if message.after == READY else ("bold red" if message.after == REASON_FEED_STALE
                                                        else "yellow")
        text = f"readiness {before} -> {after}"
        if message.after == REASON_FEED_STALE:
            text = f"FEED STALE: no events for {self.settings.feed_stale_halt_ms / 1000:g} s; entries halted"
        self._log(known, text, style)

    def on_alert_raised(self, message: AlertRaised) -> None:
        style = {"info": "", "warning": "yellow", "error": "bold red"}.get(message.severity, "")
        self._log(message.ts, message.text, style)

    def on_kill_switch_changed(self, message: KillSwitchChanged) -> None:
        self.kill_on = message.on
        self._log(message.ts, "KILL SWITCH ON: entries off" if message.on else "kill switch off: entries on",
                  "bold red" if message.on else "green")
        self._update_status()

    def on_flatten_requested(self, message: FlattenRequested) -> None:
        self.flatten_requests.append(message.ts)
        what = "closes on the next quote" if message.position else "already flat"
        self._log(message.ts, f"FLATTEN: {what}", "bold yellow")

    def on_replay_changed(self, message: ReplayChanged) -> None:
        self.speed, self.paused = message.speed, message.paused
        self._update_status()

    def on_replay_finished(self, message: ReplayFinished) -> None:
        self._log(message.ts, f"replay finished: {message.minutes} minutes, {message.fills} fills; "
                  "q quits", "bold")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.error = event.worker.error
            self._log(-1, f"replay stopped: {event.worker.error}", "bold red")
            self.notify(str(event.worker.error), title="replay stopped", severity="error", timeout=30)

    # --- helpers --------------------------------------------------------------------

    def _log(self, ts: int, text: str, style: str = "") -> None:
        clock = time.strftime("%H:%M:%S", time.gmtime(ts / 1000)) if ts >= 0 else "--:--:--"
        line = Text(f"{clock} ", style="dim")
        line.append(text, style=style)
        self.query_one("#log", RichLog).write(line)

    def _update_status(self) -> None:
        snap = self.snapshot
        text = render_header(
            symbol=self.settings.symbol, ts=snap.ts if snap else -1, speed=self.speed, paused=self.paused,
            warming_up=snap.warming_up if snap else True, finished=snap.finished if snap else False,
            kill_manual=self.kill_on, kill_daily=snap.position.kill_daily if snap else False,
            ready=self.ready, progress=snap.progress if snap else 0.0,
        )
        self.query_one("#status", Static).update(text)


def create_app(settings: Any, db_path: str | os.PathLike[str], speed: float = 600.0, *,
               warmup_minutes: int | None = None, ui_interval: float = 0.25,
               start_ms: int | None = None, end_ms: int | None = None) -> PbdApp:
    """The console replaying ``db_path`` (the factory tests and ``run_demo`` use).

    Args:
        settings: engine settings (instrument, strategy).
        db_path: a tick database (``pbdtui data synth`` or ``data import``).
        speed: replay speed, x real time, after the warm-up.
        warmup_minutes: event time fed at full speed first (None: the profile window).
        ui_interval: least wall time between two screen updates, s.
        start_ms: replay ticks from this time (ms UTC, inclusive; None: the first).
        end_ms: replay ticks before this time (ms UTC, exclusive; None: to the last).
    """
    path = Path(db_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such database")
    driver = ReplayDriver(settings, path, speed=speed, warmup_minutes=warmup_minutes, ui_interval=ui_interval,
                          start_ms=start_ms, end_ms=end_ms)
    return PbdApp(settings, driver)


# --- the demo ----------------------------------------------------------------------


def kernels_cached(name: str) -> bool:
    """Whether numba's on-disk cache holds kernel ``name`` (e.g. ``loop.run_events``).

    ``engine.kernels`` points ``NUMBA_CACHE_DIR`` at a directory named after
    its sources, so after an install or an engine edit the cache is empty and
    the first run compiles for a while; the screen says so instead of
    looking stuck.
    """
    return not uncompiled([name])


def cache_dir() -> Path:
    """Where generated demo sessions live (``$XDG_CACHE_HOME/pbdtui`` or ``~/.cache/pbdtui``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pbdtui"


def _session_ok(path: Path, settings: Any, days: float) -> bool:
    """The file holds a complete session for this instrument."""
    if not path.is_file():
        return False
    try:
        with Store(path, instrument_of(settings), readonly=True) as store:
            span = store.tick_range()
    except (StoreError, apsw.Error):  # another instrument, or not a database at all
        return False
    return span is not None and span[1] - span[0] >= days * DAY_MS - 2 * MINUTE_MS


def demo_database(settings: Any, seed: int = 7, days: float = DEMO_DAYS, directory: Path | None = None,
                  log: Callable[[str], Any] | None = None) -> Path:
    """A simulated session for ``pbdtui demo``: reused when complete, else generated.

    The session is generated under a temporary name and renamed into place
    when complete, so an interrupted run never leaves a file that looks
    usable.
    """
    from engine.synth import synthesize

    directory = cache_dir() if directory is None else Path(directory)
    path = directory / f"demo-{seed}.db"
    if _session_ok(path, settings, days):
        return path
    private_dir(directory, tighten=directory == cache_dir())  # our cache folder is owner-only
    tmp = directory / f".demo-{seed}.{os.getpid()}.tmp.db"
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    if log is not None:
        log(f"pbdtui: generating a simulated session ({days:g} days, seed {seed}) into {path}")
        if not kernels_cached("synth.synth_block"):
            log("pbdtui: first run after an install or an engine change: compiling the kernels "
                "(a minute or so, once)")
    with Store(tmp, instrument_of(settings)) as store:
        report = synthesize(store, settings, days=days, seed=seed)
    if log is not None:
        log(report.summary())
    # a stale WAL next to the old file would be replayed into the new one
    for p in (Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    os.replace(tmp, path)
    with contextlib.suppress(FileNotFoundError):
        os.replace(f"{tmp}-wal", f"{path}-wal")
    return path


def run_demo(settings: Any, db: str | os.PathLike[str] | None = None, speed: float = 600.0,
             seed: int = 7, start_ms: int | None = None, end_ms: int | None = None) -> int:
    """``pbdtui demo``: open the console on ``db`` (its ticks in [start_ms, end_ms)), or on a generated session."""
    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    path = demo_database(settings, seed=seed, log=say) if db is None else Path(db)
    app = create_app(settings, path, speed=speed, start_ms=start_ms, end_ms=end_ms)
    code = app.run()
    if app.error is not None:
        say(f"pbdtui: error: replay stopped: {app.error}")
        return 1
    return int(code or 0)
