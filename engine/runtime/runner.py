"""The runtime core every driver shares: feed the engine, turn its rows into events.

``Runner`` owns one ``Engine`` and the alert rules, and is used from one
thread (the driver's). ``feed``/``close_until``/``finish`` run the engine and
emit, in event-time order, every fill, every minute (none lost when several
close in one call), readiness changes and alerts; in external mode also the
intents for the execution backend (``IntentIssued``). ``apply_fill`` and
``reconcile`` take the backend's fills and position reports through the
engine's one door; ``command`` applies an operator command between two calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from engine.engine import Engine, Reconciliation, StepOutput
from engine.execution.types import ExecAlert, Fill, FundingCharge, PositionReport
from engine.runtime.alerts import AlertRules
from engine.runtime.events import (
    Alert,
    EntriesPausedChanged,
    Filled,
    FlattenRequested,
    IntentIssued,
    KillSwitchChanged,
    MinuteClosed,
    Snapshot,
)

MINUTE_MS = 60_000

Sink = Callable[[Any], Any]


def record(arr: np.ndarray, i: int) -> dict[str, Any]:
    """One record as a dict of Python scalars (a copy, never a view into engine output)."""
    row = arr[i]
    return {name: row[name].item() for name in arr.dtype.names}


class Runner:
    """One engine, its alert rules and counters, emitting plain events to ``emit``.

    Args:
        settings: engine settings.
        emit: the sink; called on the runner's thread.
        trading: paper execution on (False: signals and features only).
        mode: the engine mode ("signals", "paper", "external"); overrides ``trading``.
        client_prefix: the engine's client order id prefix (``engine.engine.client_prefix``).
        keep_rows: keep every call's rows (``outputs``) for an end-of-session report;
            a replay wants them, a daemon running for weeks does not.
    """

    def __init__(self, settings: Any, emit: Sink, trading: bool = True, mode: str | None = None,
                 client_prefix: str = "bt", keep_rows: bool = False):
        self.settings = settings
        self.engine = Engine(settings, trading=trading, mode=mode, client_prefix=client_prefix)
        self.rules = AlertRules(settings)
        self.emit = emit
        self.minutes = 0  # minutes closed
        self.fills = 0
        self.last_px = -1  # last trade price fed, ticks
        self.last_minute: MinuteClosed | None = None
        self.events = 0  # trades and quotes fed
        self.keep_rows = keep_rows
        self.outputs: list[StepOutput] = []

    # --- feeding --------------------------------------------------------------------

    def feed(self, trades: np.ndarray, quotes: np.ndarray, funding: np.ndarray | None = None) -> StepOutput:
        out = self.engine.feed(trades, quotes, funding)
        self.events += len(trades) + len(quotes)
        if len(trades):
            self.last_px = int(trades["px"][-1])
        self._handle(out)
        return out

    def close_until(self, ts: int) -> StepOutput:
        out = self.engine.close_until(ts)
        self._handle(out)
        return out

    def finish(self) -> StepOutput:
        out = self.engine.finish()
        self._handle(out)
        return out

    # --- fills in (external mode) -------------------------------------------------------

    def apply_fill(self, fill: Fill) -> np.ndarray:
        """An exchange fill through the engine; emits ``Filled`` for each record it made (none for a duplicate)."""
        rows = self.engine.apply_fill(fill)
        for i in range(len(rows)):
            self.emit(Filled(fill=record(rows, i)))
        self.fills += len(rows)
        for ev in self.rules.position(self.engine.position(), fill.ts):
            self.emit(ev)
        return rows

    def on_execution(self, event: Any) -> None:
        """One event of ``ExecutionBackend.poll()``: a fill, a funding charge, a position report or an alert."""
        if isinstance(event, Fill):
            self.apply_fill(event)
        elif isinstance(event, PositionReport):
            self.reconcile(event)
        elif isinstance(event, ExecAlert):
            self.emit(Alert(ts=event.ts, text=event.text, severity=event.severity, kind=event.kind))
        elif isinstance(event, FundingCharge):
            self.engine.apply_funding(event.ts, event.amount, event.exec_id)
        else:
            raise TypeError(f"unknown execution event {event!r}")

    def reconcile(self, report: PositionReport, adopt: bool = False) -> Reconciliation:
        """A venue position report through the engine; a mismatch (or its end) becomes an ``Alert``."""
        result = self.engine.reconcile(report, adopt=adopt)
        if result.alert is not None:
            a = result.alert
            self.emit(Alert(ts=a.ts, text=a.text, severity=a.severity, kind=a.kind))
        for i in range(len(result.fills)):
            self.emit(Filled(fill=record(result.fills, i)))
        self.fills += len(result.fills)
        return result

    # --- operator commands ------------------------------------------------------------

    def pause_entries(self, on: bool) -> None:
        """Pause new entries (True) or resume them; confirms with an event when the state changes."""
        if self.engine.position().entries_paused != on:
            self.engine.set_entries_paused(on)
            self.emit(EntriesPausedChanged(on=on, ts=self.engine.last_event_ts))

    def command(self, name: str) -> None:
        """``kill`` (toggle the manual kill switch), ``entries`` (toggle the entries pause) or ``flatten``;
        confirms with an event."""
        ts = self.engine.last_event_ts
        if name == "entries":
            self.pause_entries(not self.engine.position().entries_paused)
        elif name == "kill":
            on = not self.engine.position().kill_manual
            self.engine.set_kill_switch(on)
            self.emit(KillSwitchChanged(on=on, ts=ts))
        elif name == "flatten":
            intent = self.engine.flatten()
            self.emit(FlattenRequested(ts=ts, position=self.engine.position().position))
            if self.engine.mode == "external":
                self.emit(IntentIssued(intent=intent))
        else:
            raise ValueError(f"unknown command {name!r}")

    # --- what a screen shows ---------------------------------------------------------

    def snapshot(self, *, speed: float = 1.0, paused: bool = False, warming_up: bool = False,
                 progress: float = 0.0, finished: bool = False) -> Snapshot:
        """A copy of the engine's state for a screen (the runner's thread); the driver adds its own state."""
        bins, vols = self.engine.profile()
        last = self.last_minute
        f = last.features if last else None
        return Snapshot(
            ts=self.engine.last_event_ts if self.engine.last_event_ts > 0 else -1, last_px=self.last_px,
            bins=bins, volumes=vols,
            k=int(f["k"]) if f else 0, poc2=int(f["poc2"]) if f else 0,
            val=int(f["val"]) if f else 0, vah=int(f["vah"]) if f else 0,
            va_valid=bool(f["va_valid"]) if f else False,
            position=self.engine.position(), speed=speed, paused=paused, warming_up=warming_up,
            progress=progress, finished=finished, sides=self.engine.profile_sides(),
            naked=tuple(self.engine.naked_pocs()), orders=tuple(self.engine.open_orders()))

    # --- rows to events ----------------------------------------------------------------

    def _handle(self, out: StepOutput) -> None:
        """Fills and minute events in event-time order (a minute's rows are known at its end)."""
        if self.keep_rows and len(out.features) + len(out.fills):
            self.outputs.append(out)
        events: list[tuple[int, int, Any]] = []
        if len(out.intents) and self.engine.mode == "external":
            for intent in self.engine.intents_of(out.intents):
                events.append((intent.decision_ts + 1, len(events), IntentIssued(intent=intent)))
        for i in range(len(out.fills)):
            fill = record(out.fills, i)
            events.append((fill["ts_fill"], len(events), Filled(fill=fill)))
        for i in range(len(out.features)):
            feats = record(out.features, i)
            known = feats["ts_min"] + MINUTE_MS
            for ev in self.rules.minute(feats):
                events.append((known, len(events), ev))
            minute = MinuteClosed(features=feats, signal=record(out.signals, i), bar=record(out.bars, i))
            events.append((known, len(events), minute))
            self.last_minute = minute
        self.fills += len(out.fills)
        self.minutes += len(out.features)
        for _, _, ev in sorted(events, key=lambda e: (e[0], e[1])):
            self.emit(ev)
        for ev in self.rules.position(self.engine.position(), self.engine.last_event_ts):
            self.emit(ev)
