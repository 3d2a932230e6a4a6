"""The operator console: a Textual app over one runtime driver.

``create_app`` builds the app around an ``engine.runtime.ReplayDriver``,
which replays a tick database on a worker thread; ``run_demo`` (``pbdtui
demo``) first generates a simulated session into a cache file so the console
works offline on data the project makes itself.

Threads: the engine belongs to the driver's thread. The screen never touches
it: the driver emits plain events, wrapped here in Textual messages
(``pbdtui.messages.message_for``), and the screen's commands (kill switch,
flatten, pause, speed) go through the driver's thread-safe queue.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, RichLog, Static
from textual.worker import Worker, WorkerState, get_current_worker

from engine.kernel_cache import uncompiled
from engine.records import units_of
from engine.runtime import AlertRules, ReplayDriver
from engine.types import EXIT_NAMES, READY, SETUP_NAMES, SIDE_BUY
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
    message_for,
)
from pbdtui.render import PriceFormat, render_header
from pbdtui.widgets.features import FeaturesView
from pbdtui.widgets.profile import ProfileView

MINUTE_MS = 60_000
DEMO_DAYS = 0.3  # 7.2 h: a 4 h warm-up, then a bit over 3 h of trading to watch


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
        self.driver.run(lambda event: self.post_message(message_for(event)), lambda: worker.is_cancelled)

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
        known = message.ts_min + MINUTE_MS  # the minute's close
        style = "green" if message.after == READY else "yellow"
        self._log(known, AlertRules.readiness_text(message.before, message.after), style)

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


def demo_database(settings: Any, seed: int = 7, days: float = DEMO_DAYS, directory: Path | None = None,
                  log: Callable[[str], Any] | None = None) -> Path:
    """A simulated session for ``pbdtui demo``: reused when complete, else generated (``engine.synth``)."""
    from engine.synth import session_database

    if log is not None and uncompiled(["synth.synth_block"]):
        log("pbdtui: first run after an install or an engine change: compiling the kernels (a minute or so, once)")
    return session_database(settings, f"demo-{seed}", days, seed, directory, log)


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
