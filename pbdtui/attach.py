"""``pbdtui attach``: the console on a running ``pbdtui run`` daemon, through its control socket.

The daemon owns the engine, the feed and the exchange; the console only
watches and asks. ``AttachDriver`` has the replay driver's interface
(``run(sink, cancelled)``, ``send``, ``stop``) so the console is the same
app: it subscribes to the daemon's events (minutes, fills, alerts, kill
switch, feed statuses, health), asks for a ``snapshot`` a few times a second
(profile, value area, position, open orders), and sends ``kill`` /
``reset-kill`` / ``pause`` / ``resume`` / ``flatten`` as requests. Closing the console, or losing the SSH session,
only closes the socket: the daemon keeps trading.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engine.engine import OrderView, PositionView
from engine.runtime.control import ControlClient, ControlError, find_daemons, socket_path
from engine.runtime.events import (
    Alert,
    EntriesPausedChanged,
    ExchangeChanged,
    Filled,
    KillSwitchChanged,
    MinuteClosed,
    Snapshot,
    TicksFed,
)
from engine.runtime.runner import Sink
from engine.runtime.threaded import FeedView


def find_socket(db: str | None) -> Path:
    """The control socket of the daemon recording into ``db``, or of the only daemon running."""
    if db is not None:
        return socket_path(db)
    daemons = find_daemons()
    if not daemons:
        raise ControlError("no pbdtui run daemon is running (start one with pbdtui run, or give --db)")
    if len(daemons) > 1:
        dbs = ", ".join(str(d.get("db", d["socket"])) for d in daemons)
        raise ControlError(f"{len(daemons)} daemons are running ({dbs}): say which with --db")
    return Path(daemons[0]["socket"])


def snapshot_of(screen: dict[str, Any]) -> Snapshot:
    """The daemon's ``screen`` answer (``Runner.snapshot`` as JSON) back into a ``Snapshot``."""
    return Snapshot(
        ts=int(screen["ts"]), last_px=int(screen["last_px"]),
        bins=np.asarray(screen["bins"], np.int64), volumes=np.asarray(screen["volumes"], np.int64),
        k=int(screen["k"]), poc2=int(screen["poc2"]), val=int(screen["val"]), vah=int(screen["vah"]),
        va_valid=bool(screen["va_valid"]), position=PositionView(**screen["position"]),
        speed=1.0, paused=False, warming_up=bool(screen["warming_up"]), progress=0.0)


class AttachDriver:
    """The console's driver for a daemon: events in by subscription, commands out as requests.

    Args:
        path: the daemon's control socket.
        poll_interval: seconds between two snapshots asked for.
    """

    mode = "attach"

    def __init__(self, path: str | Path, poll_interval: float = 0.5):
        self.path = Path(path)
        self.db_path = Path(str(self.path.parent).removesuffix(".run"))
        self.client = ControlClient(self.path, timeout=10.0)
        self.poll_interval = poll_interval
        self._stop = threading.Event()
        self._sink: Sink = lambda event: None
        self._kill_on = False
        self._entries_paused = False
        self._connected = False  # the daemon answers (the daemon's own feed: ``feed``)
        self.feed = FeedView()

    # --- any thread ------------------------------------------------------------------------

    def send(self, command: str, value: float = 0.0) -> None:
        """``kill`` (toggle: kill, or reset-kill when on), ``entries`` (toggle: pause, or resume when paused) or
        ``flatten``; answered on a thread of its own."""
        if command == "kill":
            cmd = "reset-kill" if self._kill_on else "kill"
        elif command == "entries":
            cmd = "resume" if self._entries_paused else "pause"
        elif command == "flatten":
            cmd = "flatten"
        else:
            raise ValueError(f"unknown command {command!r} (attach takes kill, entries, flatten)")
        threading.Thread(target=self._request, args=(cmd,), name=f"attach-{cmd}", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    # --- the console's worker thread ----------------------------------------------------------

    def run(self, sink: Sink, cancelled: Callable[[], bool] = lambda: False) -> None:
        """Follow the daemon until stopped or cancelled; a lost daemon is an alert, then retried."""
        self._sink = sink
        first = self.client.request("snapshot")  # raises ControlError: the console shows it
        self._initial(first)
        events = threading.Thread(target=self._follow, name="attach-events", daemon=True)
        events.start()
        while not (self._stop.is_set() or cancelled()):
            try:
                self._poll()
            except ControlError as exc:
                if self._connected:
                    self._connected = False
                    sink(Alert(ts=-1, kind="attach", severity="error",
                               text=f"lost the daemon: {exc}; retrying (the daemon's own state is unaffected)"))
            self._stop.wait(self.poll_interval)
        self._stop.set()

    def _initial(self, answer: dict[str, Any]) -> None:
        self._connected = True
        for alert in answer.get("alerts", []):
            self._sink(Alert(**alert))
        for fill in answer.get("fills", []):
            self._sink(Filled(fill=fill))
        minute = answer.get("minute")
        if minute:
            self._sink(MinuteClosed(**minute))
        self._state(answer)

    def _poll(self) -> None:
        answer = self.client.request("snapshot", timeout=5.0)
        if not self._connected:
            self._connected = True
            self._sink(Alert(ts=-1, kind="attach", severity="info", text="the daemon answers again"))
        self._state(answer)

    def _state(self, answer: dict[str, Any]) -> None:
        counters = answer.get("feed") or {}
        if counters:  # the daemon's feed counters: up while every connection made is still open
            self.feed.connected = int(counters.get("connects", 0)) > int(counters.get("disconnects", 0))
        status = answer.get("status", {})
        kill = bool(status.get("kill", {}).get("on"))
        if kill != self._kill_on:
            self._kill_on = kill
            self._sink(KillSwitchChanged(on=kill, ts=-1))
        paused = bool(status.get("entries_paused"))
        if paused != self._entries_paused:
            self._entries_paused = paused
            self._sink(EntriesPausedChanged(on=paused, ts=-1))
        if status:
            self._sink(ExchangeChanged(status))
        screen = answer.get("screen")
        if screen:
            snap = snapshot_of(screen)
            # the daemon's kill switch has reasons of its own (operator, loss, stale feed, mismatch)
            snap.position = PositionView(**{**screen["position"], "kill_manual": kill})
            snap.orders = tuple(OrderView(**o) for o in status.get("orders", []))  # the exchange's, as the daemon sees
            self._sink(TicksFed(snap))

    def _follow(self) -> None:
        """The subscription: the daemon's events as the console's; reconnects while not stopped."""
        while not self._stop.is_set():
            try:
                for line in self.client.events(timeout=None):
                    if self._stop.is_set():
                        return
                    event = self._event(line)
                    if event is not None:
                        self._sink(event)
            except (ControlError, OSError, ValueError):
                pass
            self._stop.wait(1.0)

    def _event(self, line: dict[str, Any]) -> Any:
        kind, data = line.get("event"), line.get("data") or {}
        if kind == "MinuteClosed":
            return MinuteClosed(**data)
        if kind == "Filled":
            return Filled(fill=data["fill"])
        if kind == "Alert":
            return Alert(**data)
        if kind == "FeedChanged":
            st = data.get("status", {})
            return self.feed.status(str(st.get("kind", "")), str(st.get("detail", "")), int(st.get("ts", -1)))
        if kind == "LiveStatus":
            # the daemon's status-line figures; the age of its newest data is not among them
            return self.feed.health(data.get("feed", {}), int(data.get("lag_ms", 0)),
                                    int(data.get("warmup_left", 0)), quiet_ms=0)
        return None

    def _request(self, cmd: str) -> None:
        try:
            answer = self.client.request(cmd, timeout=120.0)
        except ControlError as exc:
            self._sink(Alert(ts=-1, kind="attach", severity="error", text=f"{cmd}: {exc}"))
            return
        if cmd == "flatten":
            flat = answer.get("flat")
            self._sink(Alert(ts=-1, kind="flatten", severity="info" if flat else "error",
                             text="FLATTEN: the exchange confirms flat" if flat
                             else "FLATTEN: not confirmed flat yet; the daemon keeps trying and alerting"))
        elif cmd == "reset-kill" and answer.get("mismatch"):
            self._sink(Alert(ts=-1, kind="reconciliation", severity="warning",
                             text="kill switch reset, but entries stay blocked: the exchange position does "
                                  "not match (a matching position clears it)"))


def create_attach_app(settings: Any, path: Path) -> Any:
    """The console on the daemon at ``path`` (its instrument from the daemon's own answer)."""
    from pbdtui.app import PbdApp
    from pbdtui.render import network_name

    driver = AttachDriver(path)
    answer = driver.client.request("snapshot")
    units = answer.get("settings", {})
    settings = settings.replace(**{k: units[k] for k in ("symbol", "tick_size", "qty_step") if k in units})
    mode = str(answer.get("status", {}).get("mode", "LIVE")).upper()
    target = str(answer.get("status", {}).get("target", ""))
    return PbdApp(settings, driver, mode=mode, note=f"attached to the {mode.lower()} daemon recording into "
                                                   f"{driver.db_path.name}; q leaves it running",
                  network=network_name(target) if target else "")


def run_attach(settings: Any, db: str | None) -> int:
    """``pbdtui attach``: the console on a running daemon until q (the daemon goes on)."""
    import sys

    from pbdtui.app import run_console

    app = create_attach_app(settings, find_socket(db))
    code = run_console(app)
    if app.error is not None:
        print(f"pbdtui: error: attach stopped: {app.error}", file=sys.stderr, flush=True)
        return 1
    print("pbdtui: detached; the daemon keeps running", file=sys.stderr, flush=True)
    return int(code or 0)
