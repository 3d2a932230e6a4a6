"""The console's screens, one per mode, over the same panels.

``ConsoleScreen`` is what every mode shares: the panels (status bar,
profile, chart, signals, position, orders, features, fills, alerts), the
state they are bound to (reactives, ``data_bind``), the handlers of the
driver's messages and the operator's keys that exist everywhere (kill
switch, flatten, entries pause, market structure). Each mode adds its own:

* ``ReplayScreen`` (``pbdtui replay``): the replay's keys (pause, step one
  minute, faster/slower, next trade, seek), its restarts and the
  end-of-session summary;
* ``LiveScreen`` (``pbdtui live``, paper or ``--live``, and ``pbdtui demo``):
  what quitting means for the position;
* ``AttachScreen`` (``pbdtui attach``): the daemon trades on, so quitting
  never asks.

The app (``pbdtui.app.PbdApp``) owns the driver's life (its worker posts
each event to the screen as a message) and the global keys (help, quit,
command palette). Questions and help are ``ModalScreen``s
(``pbdtui.screens``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, RichLog

from engine.report import headline, quote_currency
from engine.runtime import AlertRules
from engine.types import READY
from engine.units import decimals_of
from pbdtui.messages import (
    AlertRaised,
    EntriesPausedChanged,
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
)
from pbdtui.render import render_fill_line, render_signal_line
from pbdtui.screens import ConfirmScreen, SeekScreen, SummaryScreen
from pbdtui.widgets.features import FeaturesView
from pbdtui.widgets.panels import OrdersPanel, PositionPanel, PriceChart, StatusBar, TailLog
from pbdtui.widgets.profile import ProfileView

log = logging.getLogger("pbdtui.console")

MINUTE_MS = 60_000
SIGNALS_KEPT = 5_000  # closed minutes kept for the signals log (a bounded list: a long replay stays small)
CHART_MINUTES = 600  # closed minutes kept for the price chart (wider than any terminal)

Command = tuple[str, str, str]  # (palette title, what it does, action name)


def _guarded(handler: Callable[..., None]) -> Callable[..., None]:
    """A driver message handler that never takes the console (and so the engine) down.

    Messages still queued when the console quits find the panels gone; a
    handler that fails otherwise is a bug in a panel: it is logged and shown
    once, and the session goes on.
    """
    @functools.wraps(handler)
    def guarded(self: ConsoleScreen, message: Any) -> None:
        if getattr(self.app, "exiting", False):
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


class ConsoleScreen(Screen[None]):
    """Status bar, profile, position, orders, alerts; chart, signals, features and fills when wide.

    State flows down: the driver's snapshot, the last readiness code, the
    chart's minutes and the feed's health are reactives here, bound to the
    panels with ``data_bind``; the logs (signals, fills, alerts) are appended
    to from the message handlers.

    Args:
        settings: engine settings (instrument, strategy).
        driver: the runtime driver (``send(command)``; its ``db_path`` names the session).
        mode: REPLAY, PAPER, LIVE, DEMO or SIGNALS: the status bar's first word.
        note: what this session is (shown first in the alerts log and as the subtitle).
        network: the live modes' network, after the mode in the status bar ("" in a replay).
    """

    BINDINGS = [
        Binding("k", "kill_switch", "Kill switch"),
        Binding("f", "flatten", "Flatten"),
        Binding("e", "entries", "Entries"),
        Binding("m", "structure", "Structure", show=False),
    ]

    KEYS_HELP = [  # (keys, what): the help screen; a test checks every binding is listed
        ("k", "kill switch: on at once (latches; entries stop); off asks first"),
        ("f", "flatten: close the position at market (asks first)"),
        ("e", "pause / resume new entries (no latch, no question; exits and stops go on)"),
        ("m", "market structure on the profile: bars split buy|sell, the day's developing POC path, naked POCs"),
    ]

    PALETTE: list[Command] = [  # the command palette (Ctrl+P), besides the app's own
        ("Kill switch", "entries off (latches); off again asks first", "kill_switch"),
        ("Flatten", "close the position at market (asks first)", "flatten"),
        ("Pause / resume entries", "no new entries while paused; exits and stops go on", "entries"),
        ("Market structure", "the profile split buy|sell, the developing POC path, naked POCs", "structure"),
    ]

    snapshot: reactive[Snapshot | None] = reactive(None)
    """The driver's latest snapshot (profile, position, orders, clock, speed)."""

    ready: reactive[int | None] = reactive(None)
    """Readiness code of the last closed minute."""

    jumping: reactive[bool] = reactive(False)
    """A step, seek or next-trade jump was sent and has not arrived yet (a replay)."""

    bars: reactive[tuple[tuple[int, int, int, int, int, int, bool], ...]] = reactive(())
    """The chart's closed minutes, oldest first."""

    feed: reactive[Any | None] = reactive(None)
    """The live feed's health (``engine.runtime.events.FeedHealth``); None in a replay."""

    def __init__(self, settings: Any, driver: Any, mode: str, note: str = "", network: str = ""):
        super().__init__()
        self.settings = settings
        self.driver = driver
        self.mode = mode
        self.note = note
        self.network = network
        self.kill_on = False
        self.entries_paused = False
        self.flatten_requests: list[int] = []
        self.minutes: deque[int] = deque(maxlen=SIGNALS_KEPT)  # ts_min of every minute logged
        self._chart: deque[tuple[int, int, int, int, int, int, bool]] = deque(maxlen=CHART_MINUTES)
        self._path_day = -1  # UTC day of the profile panel's developing POC path
        self.alert_lines: deque[str] = deque(maxlen=SIGNALS_KEPT)  # the alerts panel's lines, unwrapped
        self.panel_errors: set[str] = set()  # handlers that failed once (shown once each)
        self.started = time.monotonic()
        self.minutes_closed = 0
        self.fills_seen = 0
        self.alert_counts: Counter[str] = Counter()  # alerts by severity

    def compose(self) -> ComposeResult:
        s = self.settings
        cls = type(self)
        yield StatusBar(mode=self.mode, stale_ms=s.feed_stale_halt_ms, network=self.network, id="status").data_bind(
            cls.snapshot, cls.ready, cls.jumping, cls.feed)
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield ProfileView(tick_size=s.tick_size, base_bin_ticks=s.base_bin_ticks,
                                  window_minutes=s.rolling_window_minutes, id="profile").data_bind(cls.snapshot)
            with Vertical(id="center"):
                yield PriceChart(tick_size=s.tick_size, id="chart").data_bind(cls.bars)
                yield OrdersPanel(tick_size=s.tick_size, qty_step=s.qty_step, id="orders").data_bind(cls.snapshot)
                yield TailLog(id="signals", max_lines=1000, min_width=20)
            with Vertical(id="side"):
                yield PositionPanel(tick_size=s.tick_size, qty_step=s.qty_step, order_qty=s.order_qty,
                                    max_hold_minutes=s.max_hold_minutes, id="position").data_bind(cls.snapshot)
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
        self.sub_title = self.note or self.describe()
        if self.note:
            self.log_alert(-1, self.note, "bold", "info")

    def describe(self) -> str:
        """The subtitle when no note says more."""
        return f"{self.mode.lower()} trading {self.settings.symbol}, recording into {self.driver.db_path.name}"

    def show_compiling(self) -> None:
        """The first frame on a cold numba cache: say what is happening instead of looking stuck."""
        self.query_one(ProfileView).placeholder = (
            "compiling the engine's kernels: the first run after an install or an engine "
            "change takes a minute or so; later runs start in seconds")

    # --- what the app asks of its mode ----------------------------------------------------

    def quit_question(self) -> str | None:
        """The question before quitting (None: quit at once)."""
        snap = self.snapshot
        if snap is None or snap.position.position == 0:
            return None
        return "A position is open. It stays protected by its stop on the exchange. Quit anyway?"

    @classmethod
    def help_rows(cls) -> list[tuple[str, str]]:
        """This mode's keys for the help screen, shared ones first (the app adds its global ones)."""
        return [r for c in reversed(cls.__mro__) for r in c.__dict__.get("KEYS_HELP", [])]

    @classmethod
    def commands(cls) -> list[Command]:
        """This mode's command palette entries, shared ones first."""
        return [r for c in reversed(cls.__mro__) for r in c.__dict__.get("PALETTE", [])]

    # --- operator keys: commands go to the driver's thread ---------------------------------

    def action_kill_switch(self) -> None:
        if not self.kill_on:
            self.driver.send("kill")  # stopping entries never waits for a question
            return

        def answer(yes: bool | None) -> None:
            if yes and self.kill_on:
                self.driver.send("kill")

        self.app.push_screen(ConfirmScreen("Reset the kill switch? Entries resume."), answer)

    def action_flatten(self) -> None:
        def answer(yes: bool | None) -> None:
            if yes:
                self.driver.send("flatten")

        self.app.push_screen(ConfirmScreen("Flatten: close the position at market?"), answer)

    def action_entries(self) -> None:
        # no question either way: a pause only withholds new entries, and resuming is what was asked
        self.driver.send("entries")

    def action_structure(self) -> None:
        profile = self.query_one(ProfileView)
        profile.structure = not profile.structure

    # --- messages from the driver ------------------------------------------------------------

    @_guarded
    def on_ticks_replayed(self, message: TicksReplayed) -> None:
        snap = message.snapshot
        self.snapshot = snap
        self.kill_on = snap.position.kill_manual
        self.entries_paused = snap.position.entries_paused
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
        self.minutes_closed += 1
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
        self.fills_seen += 1
        line = render_fill_line(message.fill, tick_size=self.settings.tick_size, qty_step=self.settings.qty_step)
        self.query_one("#fills", RichLog).write(line)
        self._write_alert(line)  # narrow screens show no fills panel

    @_guarded
    def on_readiness_changed(self, message: ReadinessChanged) -> None:
        known = message.ts_min + MINUTE_MS  # the minute's close
        style = "green" if message.after == READY else "yellow"
        self.log_alert(known, AlertRules.readiness_text(message.before, message.after), style, "info")

    @_guarded
    def on_alert_raised(self, message: AlertRaised) -> None:
        style = {"info": "", "warning": "yellow", "error": "bold red", "critical": "bold red"}.get(
            message.severity, "")
        self.log_alert(message.ts, message.text, style, message.severity)

    @_guarded
    def on_kill_switch_changed(self, message: KillSwitchChanged) -> None:
        self.kill_on = message.on
        self.log_alert(message.ts, "KILL SWITCH ON: entries off" if message.on else "kill switch off: entries on",
                       "bold red" if message.on else "green", "error" if message.on else "info")

    @_guarded
    def on_entries_paused_changed(self, message: EntriesPausedChanged) -> None:
        self.entries_paused = message.on
        self.log_alert(message.ts, "ENTRIES PAUSED: no new entries; exits and stops go on (e resumes)"
                       if message.on else "entries resumed", "bold yellow" if message.on else "green",
                       "warning" if message.on else "info")

    @_guarded
    def on_flatten_requested(self, message: FlattenRequested) -> None:
        self.flatten_requests.append(message.ts)
        what = "closes on the next quote" if message.position else "already flat"
        self.log_alert(message.ts, f"FLATTEN: {what}", "bold yellow", "warning")

    # --- helpers -------------------------------------------------------------------------------

    def log_alert(self, ts: int, text: str, style: str = "", severity: str = "info") -> None:
        """One line of the alerts log: time, severity, text."""
        clock = time.strftime("%H:%M:%S", time.gmtime(ts / 1000)) if ts >= 0 else "--:--:--"
        line = Text(f"{clock} ", style="dim")
        label = {"info": "INFO ", "warning": "WARN ", "error": "ERROR", "critical": "CRIT "}.get(severity, "     ")
        line.append(label, style={"warning": "yellow", "error": "bold red", "critical": "bold white on red"}.get(
            severity, "dim"))
        line.append(" ")
        line.append(text, style=style)
        self.alert_counts[severity] += 1
        self._write_alert(line)

    def session_summary(self) -> str:
        """One line on what this console's session did, printed when a live console closes."""
        elapsed = int(time.monotonic() - self.started)
        parts = [f"{self.mode.lower()} session {elapsed // 3600}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}",
                 f"{self.minutes_closed} minutes closed", f"{self.fills_seen} fills"]
        snap = self.snapshot
        if snap is not None:
            pos, cur = snap.position, quote_currency(self.settings)
            parts.append(f"realised {pos.realized:+.2f} {cur} (fees {pos.fees:.2f}, funding {pos.funding:+.2f})")
            held = pos.qty * self.settings.qty_step
            parts.append("position FLAT" if pos.position == 0 else
                         f"position {'LONG' if pos.position > 0 else 'SHORT'} {abs(held):g} at "
                         f"{pos.entry_px * self.settings.tick_size:.{decimals_of(self.settings.tick_size)}f}")
        bad = {k: v for k, v in sorted(self.alert_counts.items()) if k != "info"}
        parts.append("alerts: " + (", ".join(f"{v} {k}{'s' if v != 1 else ''}" for k, v in bad.items()) if bad else "no warnings"))
        return " · ".join(parts)

    def _write_alert(self, line: Text) -> None:
        self.alert_lines.append(line.plain)
        log.info("alert: %s", line.plain)  # the session log keeps every alert the panel has scrolled off
        self.query_one("#alerts", RichLog).write(line)


class ReplayScreen(ConsoleScreen):
    """``pbdtui replay``: recorded ticks through the engine and paper fills, with the replay's own keys."""

    BINDINGS = [
        Binding("p,space", "pause", "Pause", key_display="p"),
        Binding("s", "step", "Step 1 min"),
        Binding("n", "next_trade", "Next trade"),
        Binding("g", "seek", "Seek"),
        Binding("plus,equals_sign", "faster", "Faster", key_display="+"),
        Binding("minus", "slower", "Slower", key_display="-"),
        Binding("r", "summary", "Summary", show=False),
    ]

    KEYS_HELP = [
        ("p, space", "pause / resume the replay"),
        ("s", "step one minute (pauses first)"),
        ("n", "jump to the next trade (then paused)"),
        ("g", "seek: replay to a UTC time you type (back too: replays from the start; then paused)"),
        ("+, =", "faster: 1 2 5 10 30 60 120 300 600 1200 3000 ... x"),
        ("-", "slower"),
        ("r", "the end-of-session summary (when the replay has finished)"),
    ]

    PALETTE = [
        ("Pause / resume", "pause or resume the replay", "pause"),
        ("Step one minute", "replay one minute, then pause", "step"),
        ("Next trade", "replay at full speed to the next fill", "next_trade"),
        ("Seek", "replay to a UTC time", "seek"),
        ("Faster", "next replay speed up", "faster"),
        ("Slower", "next replay speed down", "slower"),
        ("Session summary", "the report of the replayed session", "summary"),
    ]

    def __init__(self, settings: Any, driver: Any, mode: str = "REPLAY", note: str = "", network: str = ""):
        super().__init__(settings, driver, mode, note, network)
        self.report: dict[str, Any] | None = None
        self.report_text = ""

    def describe(self) -> str:
        return f"replay of {self.driver.db_path.name}"

    def quit_question(self) -> str | None:
        if super().quit_question() is None:
            return None
        return "A position is open (the replay's paper position). Quit anyway?"

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

        self.app.push_screen(SeekScreen(), answer)

    def action_faster(self) -> None:
        self.driver.send("faster")

    def action_slower(self) -> None:
        self.driver.send("slower")

    def action_summary(self) -> None:
        if self.report_text and not isinstance(self.app.screen, SummaryScreen):
            self.app.push_screen(SummaryScreen(self.report_text))
        elif not self.report_text:
            self.notify("the summary comes at the end of the replay")

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
        self.log_alert(message.ts, f"seek back to {clock} UTC: replaying from the first tick (a fresh engine, "
                       "so position and PnL are those of a straight replay)", "bold", "info")

    @_guarded
    def on_replay_finished(self, message: ReplayFinished) -> None:
        self.jumping = False
        self.report = message.report
        self.report_text = message.report_text
        self.log_alert(message.ts, f"replay finished: {message.minutes} minutes, {message.fills} fills; "
                       "r shows the summary, q quits", "bold", "info")
        if message.report is not None:
            self.log_alert(message.ts, headline(message.report), "bold", "info")
            self.app.push_screen(SummaryScreen(self.report_text))


class LiveScreen(ConsoleScreen):
    """``pbdtui live`` (paper, or ``--live`` on an exchange) and ``pbdtui demo``: the engine runs in this process."""

    QUESTIONS = {
        "PAPER": "A paper position is open; it is dropped when the console quits. Quit anyway?",
        "DEMO": "A position is open on the demo's exchange, which closes with the console. Quit anyway?",
    }

    def quit_question(self) -> str | None:
        if super().quit_question() is None:
            return None
        return self.QUESTIONS.get(self.mode, super().quit_question())


class AttachScreen(LiveScreen):
    """``pbdtui attach``: a running daemon's state; its commands go to the daemon, which trades on after q."""

    def quit_question(self) -> str | None:
        return None  # the daemon keeps trading, and its position keeps its exchange stop: nothing to ask
