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

import functools
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, RichLog
from textual.worker import Worker, WorkerState, get_current_worker

from engine.kernel_cache import uncompiled
from engine.records import units_of
from engine.report import headline
from engine.runtime import AlertRules, ReplayDriver
from engine.types import READY
from pbdtui.messages import (
    AlertRaised,
    ExchangeChanged,
    FeedHealth,
    FlattenRequested,
    KillSwitchChanged,
    MinuteClosed,
    OrderFilled,
    ReadinessChanged,
    ReplayChanged,
    ReplayFinished,
    ReplayRestarted,
    Snapshot,
    TicksReplayed,
    message_for,
)
from pbdtui.render import PriceFormat, render_fill_line, render_signal_line
from pbdtui.screens import ConfirmScreen, HelpScreen, SeekScreen, SummaryScreen
from pbdtui.widgets.features import FeaturesView
from pbdtui.widgets.panels import PositionPanel, PriceChart, StatusBar, TailLog
from pbdtui.widgets.profile import ProfileView

log = logging.getLogger("pbdtui.console")

MINUTE_MS = 60_000
DEMO_DAYS = 0.3  # 7.2 h: a 4 h warm-up, then a bit over 3 h of trading to watch


def _guarded(handler: Callable[..., None]) -> Callable[..., None]:
    """A driver message handler that never takes the console (and so the engine) down.

    Messages still queued when the console quits find the panels gone; a
    handler that fails otherwise is a bug in a panel: it is logged and shown
    once, and the session goes on.
    """
    @functools.wraps(handler)
    def guarded(self: PbdApp, message: Any) -> None:
        if self.exiting:
            return
        try:
            handler(self, message)
        except Exception as exc:  # noqa: BLE001 - a panel's bug must not stop trading
            log.exception("console: %s failed on %r", handler.__name__, message)
            if handler.__name__ not in self.panel_errors:
                self.panel_errors.add(handler.__name__)
                self.notify(f"{handler.__name__}: {exc!r} (the engine goes on; see the session log)",
                            title="display error", severity="error", timeout=30)

    return guarded


SIGNALS_KEPT = 5_000  # closed minutes kept for the signals log (a bounded list: a long replay stays small)
CHART_MINUTES = 600  # closed minutes kept for the price chart (wider than any terminal)


class PbdApp(App[int]):
    """The console: status bar, profile, position, alerts; chart, signals, features and fills when wide.

    State flows down: the driver's snapshot, the last readiness code and the
    chart's minutes are app reactives bound to the panels with ``data_bind``;
    the logs (signals, fills, alerts) are appended to from the message handlers.
    """

    TITLE = "pbdtui"
    CSS_PATH = "console.tcss"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (140, "-wide")]

    BINDINGS = [
        Binding("k", "kill_switch", "Kill switch"),
        Binding("f", "flatten", "Flatten"),
        Binding("p,space", "pause", "Pause", key_display="p"),
        Binding("s", "step", "Step 1 min"),
        Binding("n", "next_trade", "Next trade"),
        Binding("g", "seek", "Seek"),
        Binding("plus,equals_sign", "faster", "Faster", key_display="+"),
        Binding("minus", "slower", "Slower", key_display="-"),
        Binding("r", "summary", "Summary", show=False),
        Binding("m", "structure", "Structure", show=False),
        Binding("question_mark,f1", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]

    HELP = [  # (keys, what): the help screen; a test checks every binding is listed
        ("k", "kill switch: on at once (latches; entries stop); off asks first"),
        ("f", "flatten: close the position at market (asks first)"),
        ("p, space", "pause / resume the replay"),
        ("s", "step one minute (pauses first)"),
        ("n", "jump to the next trade (then paused)"),
        ("g", "seek: replay to a UTC time you type (back too: replays from the start; then paused)"),
        ("+, =", "faster: 1 2 5 10 30 60 120 300 600 1200 3000 ... x"),
        ("-", "slower"),
        ("r", "the end-of-session summary (when the replay has finished)"),
        ("m", "market structure on the profile: bars split buy|sell, the day's developing POC path, naked POCs"),
        ("?, F1", "this help"),
        ("q", "quit (asks when a position is open)"),
        ("Ctrl+P", "command palette: every command above by name"),
    ]

    snapshot: reactive[Snapshot | None] = reactive(None)
    """The driver's latest snapshot (profile, position, clock, speed)."""

    ready: reactive[int | None] = reactive(None)
    """Readiness code of the last closed minute."""

    jumping: reactive[bool] = reactive(False)
    """A step, seek or next-trade jump was sent and has not arrived yet."""

    bars: reactive[tuple[tuple[int, int, int, int, int, int, bool], ...]] = reactive(())
    """The chart's closed minutes, oldest first."""

    feed: reactive[Any | None] = reactive(None)
    """The live feed's health (``engine.runtime.events.FeedHealth``); None in a replay."""

    # keys that only make sense in a replay: hidden and refused in the live modes
    REPLAY_ACTIONS = frozenset({"pause", "step", "next_trade", "seek", "faster", "slower", "summary"})
    REPLAY_KEYS = frozenset({"p, space", "s", "n", "g", "+, =", "-", "r"})

    def __init__(self, settings: Any, driver: Any, mode: str = "REPLAY"):
        super().__init__()
        self.settings = settings
        self.driver = driver
        self.mode = mode
        self.fmt = PriceFormat(settings.tick_size)
        self.units = units_of(settings)
        self.kill_on = False
        self.flatten_requests: list[int] = []
        self.minutes: deque[int] = deque(maxlen=SIGNALS_KEPT)  # ts_min of every minute logged
        self._chart: deque[tuple[int, int, int, int, int, int, bool]] = deque(maxlen=CHART_MINUTES)
        self._path_day = -1  # UTC day of the profile panel's developing POC path
        self.alert_lines: deque[str] = deque(maxlen=SIGNALS_KEPT)  # the alerts panel's lines, unwrapped
        self.report: dict[str, Any] | None = None
        self.report_text = ""
        self.error: BaseException | None = None
        self.replay_worker: Worker[None] | None = None
        self.exiting = False  # quitting: driver messages still queued are dropped
        self.demo_note = ""  # what the demo is, shown as the subtitle and the first alert
        self.panel_errors: set[str] = set()  # handlers that failed once (shown once each)

    def compose(self) -> ComposeResult:
        s = self.settings
        yield StatusBar(mode=self.mode, stale_ms=s.feed_stale_halt_ms, id="status").data_bind(
            PbdApp.snapshot, PbdApp.ready, PbdApp.jumping, PbdApp.feed)
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield ProfileView(tick_size=s.tick_size, base_bin_ticks=s.base_bin_ticks,
                                  window_minutes=s.rolling_window_minutes, id="profile").data_bind(PbdApp.snapshot)
            with Vertical(id="center"):
                yield PriceChart(tick_size=s.tick_size, id="chart").data_bind(PbdApp.bars)
                yield TailLog(id="signals", max_lines=1000, min_width=20)
            with Vertical(id="side"):
                yield PositionPanel(tick_size=s.tick_size, qty_step=s.qty_step, order_qty=s.order_qty,
                                    max_hold_minutes=s.max_hold_minutes, id="position").data_bind(PbdApp.snapshot)
                yield FeaturesView(tick_size=s.tick_size, qty_step=s.qty_step, order_qty=s.order_qty,
                                   base_bin_ticks=s.base_bin_ticks,
                                   ambiguous_max=s.ambiguous_trade_frac_max, id="features")
                yield TailLog(id="fills", max_lines=500, min_width=20)
                yield TailLog(id="alerts", max_lines=1000, wrap=True, min_width=20)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#signals", RichLog).border_title = "Signals · every minute"
        self.query_one("#fills", RichLog).border_title = "Fills"
        self.query_one("#alerts", RichLog).border_title = "Alerts"
        self.sub_title = (f"replay of {self.driver.db_path.name}" if self.replaying
                          else f"{self.mode.lower()} trading {self.settings.symbol}, recording into {self.driver.db_path.name}")
        if self.demo_note:
            self.sub_title = self.demo_note
            self._log(-1, self.demo_note, "bold", "info")
        if not kernels_cached("loop.run_events"):
            self.query_one(ProfileView).placeholder = (
                "compiling the engine's kernels: the first run after an install or an engine "
                "change takes a minute or so; later runs start in seconds")
        self.replay_worker = self.replay()

    @work(thread=True, exit_on_error=False, exclusive=True, group="replay")
    def replay(self) -> None:
        worker = get_current_worker()
        self.driver.run(lambda event: self.post_message(message_for(event)), lambda: worker.is_cancelled)

    @property
    def replaying(self) -> bool:
        return self.mode == "REPLAY"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The replay's keys (pause, step, seek, speed...) are hidden in the live modes."""
        return self.replaying or action not in self.REPLAY_ACTIONS

    def help_rows(self) -> list[tuple[str, str]]:
        """The help screen's rows for this mode."""
        return [row for row in self.HELP if self.replaying or row[0] not in self.REPLAY_KEYS]

    # --- commands palette -------------------------------------------------------------

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for title, help_text, action in self._palette():
            yield SystemCommand(title, help_text, action)

    def _palette(self) -> Iterable[tuple[str, str, Callable[[], Any]]]:
        for title, help_text, action in (
            ("Kill switch", "entries off (latches); off again asks first", self.action_kill_switch),
            ("Flatten", "close the position at market (asks first)", self.action_flatten),
            ("Pause / resume", "pause or resume the replay", self.action_pause),
            ("Step one minute", "replay one minute, then pause", self.action_step),
            ("Next trade", "replay at full speed to the next fill", self.action_next_trade),
            ("Seek", "replay to a UTC time", self.action_seek),
            ("Faster", "next replay speed up", self.action_faster),
            ("Slower", "next replay speed down", self.action_slower),
            ("Session summary", "the report of the replayed session", self.action_summary),
            ("Keys", "every key of the console", self.action_help),
        ):
            if self.replaying or action.__name__.removeprefix("action_") not in self.REPLAY_ACTIONS:
                yield title, help_text, action

    # --- key bindings: commands go to the driver thread ---------------------------

    def action_kill_switch(self) -> None:
        if not self.kill_on:
            self.driver.send("kill")  # stopping entries never waits for a question
            return

        def answer(yes: bool | None) -> None:
            if yes and self.kill_on:
                self.driver.send("kill")

        self.push_screen(ConfirmScreen("Reset the kill switch? Entries resume."), answer)

    def action_flatten(self) -> None:
        def answer(yes: bool | None) -> None:
            if yes:
                self.driver.send("flatten")

        self.push_screen(ConfirmScreen("Flatten: close the position at market?"), answer)

    def action_pause(self) -> None:
        self.driver.send("pause")

    def action_step(self) -> None:
        self.jumping = True
        self.driver.send("step")

    def action_next_trade(self) -> None:
        self.jumping = True
        self.driver.send("next_trade")

    def action_seek(self) -> None:
        def answer(ts: int | None) -> None:
            if ts is not None:
                self.jumping = True
                self.driver.send("seek", ts)

        self.push_screen(SeekScreen(), answer)

    def action_faster(self) -> None:
        self.driver.send("faster")

    def action_slower(self) -> None:
        self.driver.send("slower")

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.help_rows()))

    def action_structure(self) -> None:
        profile = self.query_one(ProfileView)
        profile.structure = not profile.structure

    def action_summary(self) -> None:
        if self.report_text and not isinstance(self.screen, SummaryScreen):
            self.push_screen(SummaryScreen(self.report_text))
        elif not self.report_text:
            self.notify("the summary comes at the end of the replay")

    async def action_quit(self) -> None:
        snap = self.snapshot
        attached = getattr(self.driver, "mode", "") == "attach"  # the daemon trades on: nothing to ask
        if snap is not None and snap.position.position != 0 and not attached:
            def answer(yes: bool | None) -> None:
                if yes:
                    self._leave()

            question = {"REPLAY": "A position is open (the replay's paper position). Quit anyway?",
                        "PAPER": "A paper position is open; it is dropped when the console quits. Quit anyway?",
                        "DEMO": "A position is open on the demo's exchange, which closes with the console. "
                                "Quit anyway?",
                        }.get(self.mode, "A position is open. It stays protected by its stop on the exchange. "
                                         "Quit anyway?")
            self.push_screen(ConfirmScreen(question), answer)
            return
        self._leave()

    def _leave(self) -> None:
        self.exiting = True
        self.driver.stop()
        self.exit(0)

    def on_unmount(self) -> None:
        self.exiting = True
        self.driver.stop()

    # --- messages from the driver ---------------------------------------------------

    @_guarded
    def on_ticks_replayed(self, message: TicksReplayed) -> None:
        snap = message.snapshot
        self.snapshot = snap
        self.kill_on = snap.position.kill_manual
        features = self.query_one(FeaturesView)
        features.position = snap.position
        features.last_px = snap.last_px

    @_guarded
    def on_exchange_changed(self, message: ExchangeChanged) -> None:
        self.query_one(PositionPanel).exchange = message.status

    @_guarded
    def on_feed_health(self, message: FeedHealth) -> None:
        self.feed = message

    @_guarded
    def on_minute_closed(self, message: MinuteClosed) -> None:
        # every minute arrives (no can_replace): the log gets one line each
        f, sig, bar = message.features, message.signal, message.bar
        features = self.query_one(FeaturesView)
        features.features = f
        features.signal = sig
        self.ready = int(f["ready"])
        self.minutes.append(int(f["ts_min"]))
        self.query_one("#signals", RichLog).write(render_signal_line(f, sig))
        profile = self.query_one(ProfileView)
        day = int(f["ts_min"]) // 86_400_000
        if day != self._path_day:  # the developing POC path restarts each UTC day
            self._path_day = day
            profile.dev_path = ()
        if f.get("dev_valid"):
            profile.dev_path = (*profile.dev_path, int(f["dev_poc2"]))
        if bar:
            self._chart.append((int(bar["low"]), int(bar["high"]), int(bar["close"]), int(f["val"]),
                                int(f["vah"]), int(bar["volume"]), bool(f["va_valid"])))
            self.bars = tuple(self._chart)

    @_guarded
    def on_order_filled(self, message: OrderFilled) -> None:
        line = render_fill_line(message.fill, tick_size=self.settings.tick_size, qty_step=self.settings.qty_step)
        self.query_one("#fills", RichLog).write(line)
        self._write_alert(line)  # narrow screens show no fills panel

    @_guarded
    def on_readiness_changed(self, message: ReadinessChanged) -> None:
        known = message.ts_min + MINUTE_MS  # the minute's close
        style = "green" if message.after == READY else "yellow"
        self._log(known, AlertRules.readiness_text(message.before, message.after), style, "info")

    @_guarded
    def on_alert_raised(self, message: AlertRaised) -> None:
        style = {"info": "", "warning": "yellow", "error": "bold red"}.get(message.severity, "")
        self._log(message.ts, message.text, style, message.severity)

    @_guarded
    def on_kill_switch_changed(self, message: KillSwitchChanged) -> None:
        self.kill_on = message.on
        self._log(message.ts, "KILL SWITCH ON: entries off" if message.on else "kill switch off: entries on",
                  "bold red" if message.on else "green", "error" if message.on else "info")

    @_guarded
    def on_flatten_requested(self, message: FlattenRequested) -> None:
        self.flatten_requests.append(message.ts)
        what = "closes on the next quote" if message.position else "already flat"
        self._log(message.ts, f"FLATTEN: {what}", "bold yellow", "warning")

    @_guarded
    def on_replay_changed(self, message: ReplayChanged) -> None:
        if message.paused:
            self.jumping = False

    @_guarded
    def on_replay_restarted(self, message: ReplayRestarted) -> None:
        # a seek backwards: the minutes, fills and chart start again with the fresh engine
        self.minutes.clear()
        self._chart.clear()
        self.bars = ()
        self.report = None
        self.report_text = ""
        for name in ("#signals", "#fills"):
            self.query_one(name, RichLog).clear()
        clock = time.strftime("%Y-%m-%d %H:%M", time.gmtime(message.target / 1000))
        self._log(message.ts, f"seek back to {clock} UTC: replaying from the first tick (a fresh engine, "
                  "so position and PnL are those of a straight replay)", "bold", "info")

    @_guarded
    def on_replay_finished(self, message: ReplayFinished) -> None:
        self.jumping = False
        self.report = message.report
        self.report_text = message.report_text
        self._log(message.ts, f"replay finished: {message.minutes} minutes, {message.fills} fills; "
                  "r shows the summary, q quits", "bold", "info")
        if message.report is not None:
            self._log(message.ts, headline(message.report), "bold", "info")
            self.push_screen(SummaryScreen(self.report_text))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.error = event.worker.error
            what = "replay stopped" if self.replaying else "live session stopped"
            self._log(-1, f"{what}: {event.worker.error}", "bold red", "error")
            self.notify(str(event.worker.error), title=what, severity="error", timeout=30)

    # --- helpers --------------------------------------------------------------------

    def _log(self, ts: int, text: str, style: str = "", severity: str = "info") -> None:
        clock = time.strftime("%H:%M:%S", time.gmtime(ts / 1000)) if ts >= 0 else "--:--:--"
        line = Text(f"{clock} ", style="dim")
        line.append({"info": "INFO ", "warning": "WARN ", "error": "ERROR"}.get(severity, "     "),
                    style={"warning": "yellow", "error": "bold red"}.get(severity, "dim"))
        line.append(" ")
        line.append(text, style=style)
        self._write_alert(line)

    def _write_alert(self, line: Text) -> None:
        self.alert_lines.append(line.plain)
        log.info("alert: %s", line.plain)  # the session log keeps every alert the panel has scrolled off
        self.query_one("#alerts", RichLog).write(line)


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


def create_live_app(settings: Any, db_path: str | os.PathLike[str], ws_url: str, *, trading: bool = True,
                    duration: float | None = None, ui_interval: float = 0.25,
                    feed_config: Any | None = None, rest_url: str | None = None, api_key: str = "",
                    api_secret: str = "") -> PbdApp:
    """The console on the live stream at ``ws_url``: warm start from ``db_path``, record into it, trade.

    Paper trading by default; with ``rest_url`` the engine runs in external
    mode and trades on Bybit's REST API there (``engine.runtime.trading``:
    orders, fills, reconciliation, kill switch, flatten confirmed by the
    exchange), as ``pbdtui run --live`` does.

    Args:
        settings: engine settings (instrument, strategy).
        db_path: the database recorded into and warm-started from (created when missing).
        ws_url: the public stream (``engine.adapters.bybit.ws.resolve_url`` forms).
        trading: paper execution on the live quotes (False: signals only).
        duration: stop the session after this many seconds (None: until quit).
        ui_interval: least wall time between two screen updates, s.
        feed_config: the feed client's settings (tests shorten its timeouts); its URL is replaced.
        rest_url, api_key, api_secret: the exchange to trade on (None: paper).
    """
    from dataclasses import replace

    from engine.adapters.bybit.ws import FeedConfig, resolve_url
    from engine.runtime.live import LiveDriver
    from engine.runtime.threaded import ThreadedLive

    url = resolve_url(ws_url)
    config = FeedConfig(url=url) if feed_config is None else replace(feed_config, url=url)
    if rest_url is not None:
        from engine.engine import client_prefix
        from engine.runtime.trading import bybit_trader

        start_ms = int(time.time() * 1000)
        live = LiveDriver(settings, str(db_path), config, lambda event: None, mode="external",
                          run_id=f"live-{start_ms // 1000}", client_prefix=client_prefix(start_ms),
                          status_interval=1.0)
        bybit_trader(settings, live, rest_url, api_key, api_secret)
        return PbdApp(settings, ThreadedLive(live, ui_interval=ui_interval, duration=duration), mode="LIVE")
    run_id = f"paper-{int(time.time())}" if trading else "console"
    live = LiveDriver(settings, str(db_path), config, lambda event: None, trading=trading, run_id=run_id,
                      status_interval=1.0)
    return PbdApp(settings, ThreadedLive(live, ui_interval=ui_interval, duration=duration),
                  mode="PAPER" if trading else "SIGNALS")


def run_live(settings: Any, db_path: str | os.PathLike[str], ws_url: str, trading: bool = True,
             duration: float | None = None, rest_url: str | None = None, api_key: str = "",
             api_secret: str = "") -> int:
    """``pbdtui live``: the console on the live stream until quit; prints what was recorded."""
    app = create_live_app(settings, db_path, ws_url, trading=trading, duration=duration, rest_url=rest_url,
                          api_key=api_key, api_secret=api_secret)
    code = run_console(app)
    rec = app.driver.driver.recorder.counters
    print(f"pbdtui: recorded {rec['trades']} trades, {rec['quotes']} quotes, {rec['minutes']} minutes"
          + (f", {rec['fills']} paper fills" if trading else "") + f" into {db_path}", file=sys.stderr)
    if app.error is not None:
        print(f"pbdtui: error: live session stopped: {app.error}", file=sys.stderr, flush=True)
        return 1
    return int(code or 0)


def session_log_path(mode: str) -> Path:
    """``$XDG_STATE_HOME/pbdtui/logs/<mode>-<UTC time>-<pid>.log`` (``~/.local/state/...``)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return Path(base) / "pbdtui" / "logs" / f"{mode.lower()}-{stamp}-{os.getpid()}.log"


def run_console(app: PbdApp) -> int | None:
    """Run ``app`` with the process's log records in a session log file (owner-only), not on the screen.

    A record printed to stderr would be drawn over the console; the file's
    path is printed when the console closes.
    """
    from engine.private import create_private_file, private_dir

    path = session_log_path(app.mode)
    private_dir(path.parent)
    create_private_file(path)
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    screen = [h for h in root.handlers if isinstance(h, logging.StreamHandler)
              and not isinstance(h, logging.FileHandler)]
    for h in screen:
        root.removeHandler(h)
    root.addHandler(handler)
    level = root.level
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    log.info("%s console started (pid %d)", app.mode, os.getpid())
    try:
        return app.run()
    finally:
        log.info("console closed")
        root.removeHandler(handler)
        handler.close()
        root.setLevel(level)
        for h in screen:
            root.addHandler(h)
        print(f"pbdtui: session log: {path}", file=sys.stderr, flush=True)


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
             seed: int = 7, start_ms: int | None = None, end_ms: int | None = None,
             print_report: bool = False) -> int:
    """``pbdtui demo``: open the console on ``db`` (its ticks in [start_ms, end_ms)), or on a generated session."""
    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    path = demo_database(settings, seed=seed, log=say) if db is None else Path(db)
    app = create_app(settings, path, speed=speed, start_ms=start_ms, end_ms=end_ms)
    code = run_console(app)
    if app.error is not None:
        say(f"pbdtui: error: replay stopped: {app.error}")
        return 1
    if print_report and app.report_text:
        print(app.report_text)
    return int(code or 0)
