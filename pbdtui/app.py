"""The operator console: a Textual app over one runtime driver, a screen per mode.

``create_app`` builds the app around an ``engine.runtime.ReplayDriver``,
which replays a tick database on a worker thread; ``create_live_app`` around
the live driver (``engine.runtime.threaded.ThreadedLive``); ``pbdtui.demo``
and ``pbdtui.attach`` around the demo's live session and a daemon's control
socket. The mode's screen (``pbdtui.consoles``) holds the panels.

Threads: the engine belongs to the driver's thread. The screen never touches
it: the driver emits plain events, wrapped here in Textual messages
(``pbdtui.messages.message_for``), and the screen's commands (kill switch,
entries pause, flatten, replay pause, speed) go through the driver's
thread-safe ``send``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState, get_current_worker

from engine.kernel_cache import uncompiled
from engine.runtime import ReplayDriver
from pbdtui.consoles import AttachScreen, ConsoleScreen, LiveScreen, ReplayScreen
from pbdtui.messages import message_for
from pbdtui.render import network_name
from pbdtui.screens import ConfirmScreen, HelpScreen

log = logging.getLogger("pbdtui.console")

DEMO_DAYS = 0.3  # 7.2 h: a 4 h warm-up, then a bit over 3 h of trading to watch


class PbdApp(App[int]):
    """The console's app: the driver's life and the global keys; the mode's screen does the rest.

    The driver runs on a worker thread and its events are posted, as
    messages, to the mode's screen (``mode_screen``: ``ReplayScreen``,
    ``LiveScreen`` or ``AttachScreen``, ``pbdtui.consoles``), which holds
    the panels and their state. The app keeps help (``?``, F1), quit
    (``q``, asking what the mode's screen asks) and the command palette.
    """

    TITLE = "pbdtui"
    CSS_PATH = "console.tcss"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (140, "-wide")]

    BINDINGS = [
        Binding("question_mark,f1", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]

    KEYS_HELP = [  # (keys, what): after the mode's keys on the help screen
        ("?, F1", "this help"),
        ("q", "quit (asks when a position is open; attach: the daemon trades on)"),
        ("Ctrl+P", "command palette: every command above by name"),
    ]

    def __init__(self, settings: Any, driver: Any, mode: str = "REPLAY", note: str = "", network: str = ""):
        super().__init__()
        self.settings = settings
        self.driver = driver
        self.mode = mode
        self.mode_screen = screen_class(mode, driver)(settings, driver, mode, note, network)
        self.error: BaseException | None = None
        self.driver_worker: Worker[None] | None = None
        self.exiting = False  # quitting: driver messages still queued are dropped

    def get_default_screen(self) -> Screen[Any]:
        return self.mode_screen  # the base of the screen stack; the questions and help go on top

    def on_mount(self) -> None:
        if not kernels_cached("loop.run_events"):
            self.mode_screen.show_compiling()
        self.driver_worker = self.run_driver()

    @work(thread=True, exit_on_error=False, exclusive=True, group="driver")
    def run_driver(self) -> None:
        worker = get_current_worker()
        console = self.mode_screen
        self.driver.run(lambda event: console.post_message(message_for(event)), lambda: worker.is_cancelled)

    # --- global keys -----------------------------------------------------------------------

    def help_rows(self) -> list[tuple[str, str]]:
        """The help screen's rows: the mode's keys, then the app's."""
        return self.mode_screen.help_rows() + self.KEYS_HELP

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.help_rows()))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for title, help_text, action in self.mode_screen.commands():
            yield SystemCommand(title, help_text, getattr(self.mode_screen, f"action_{action}"))
        yield SystemCommand("Keys", "every key of the console", self.action_help)

    async def action_quit(self) -> None:
        question = self.mode_screen.quit_question()
        if question is None:
            self._leave()
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self._leave()

        self.push_screen(ConfirmScreen(question), answer)

    def _leave(self) -> None:
        self.exiting = True
        self.driver.stop()
        self.exit(0)

    def on_unmount(self) -> None:
        self.exiting = True
        self.driver.stop()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.error = event.worker.error
            what = "replay stopped" if self.mode == "REPLAY" else "live session stopped"
            self.mode_screen.log_alert(-1, f"{what}: {event.worker.error}", "bold red", "error")
            self.notify(str(event.worker.error), title=what, severity="error", timeout=30)


def screen_class(mode: str, driver: Any) -> type[ConsoleScreen]:
    """The screen of a mode: a replay, the daemon's console (attach), or a session in this process."""
    if mode == "REPLAY":
        return ReplayScreen
    return AttachScreen if getattr(driver, "mode", "") == "attach" else LiveScreen


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
        return PbdApp(settings, ThreadedLive(live, ui_interval=ui_interval, duration=duration), mode="LIVE",
                      network=network_name(live.trader.target))
    run_id = f"paper-{int(time.time())}" if trading else "console"
    live = LiveDriver(settings, str(db_path), config, lambda event: None, trading=trading, run_id=run_id,
                      status_interval=1.0)
    return PbdApp(settings, ThreadedLive(live, ui_interval=ui_interval, duration=duration),
                  mode="PAPER" if trading else "SIGNALS", network=network_name(url))


def run_live(settings: Any, db_path: str | os.PathLike[str], ws_url: str, trading: bool = True,
             duration: float | None = None, rest_url: str | None = None, api_key: str = "",
             api_secret: str = "") -> int:
    """``pbdtui live``: the console on the live stream until quit; prints what was recorded."""
    app = create_live_app(settings, db_path, ws_url, trading=trading, duration=duration, rest_url=rest_url,
                          api_key=api_key, api_secret=api_secret)
    code = run_console(app)
    say_summary(app)
    rec = app.driver.driver.recorder.counters
    print(f"pbdtui: recorded {rec['trades']} trades, {rec['quotes']} quotes, {rec['minutes']} minutes"
          + (f", {rec['fills']} paper fills" if trading else "") + f" into {db_path}", file=sys.stderr)
    if app.error is not None:
        print(f"pbdtui: error: live session stopped: {app.error}", file=sys.stderr, flush=True)
        return 1
    return int(code or 0)


def say_summary(app: PbdApp) -> None:
    """Print the session's summary line (``ConsoleScreen.session_summary``) when a live console has closed."""
    print(f"pbdtui: {app.mode_screen.session_summary()}", file=sys.stderr, flush=True)


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
        log.info("session summary: %s", app.mode_screen.session_summary())
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
    if print_report and app.mode_screen.report_text:
        print(app.mode_screen.report_text)
    return int(code or 0)
