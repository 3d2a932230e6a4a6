"""Textual messages for the runtime's events, in one place.

The driver runs the engine on its own thread and emits plain events
(``engine.runtime.events``); ``message_for`` wraps each in the message of
the same fields here, so the screen never reads the engine's buffers and
the engine never imports Textual.

Names are in the past tense. ``TicksReplayed`` implements ``can_replace`` so
that when the screen falls behind it draws only the latest snapshot; every
other message (each closed minute, fills, alerts, command confirmations) is
delivered.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

from engine.runtime import events
from engine.runtime.events import Snapshot

__all__ = ["Snapshot", "message_for"]


@dataclass
class TicksReplayed(Message):
    """The driver fed another slice of ticks; ``snapshot`` is the new state."""

    snapshot: Snapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TicksReplayed)


@dataclass
class MinuteClosed(Message):
    """A minute closed: its features, signal and bar rows as plain dicts.

    Never replaced by a newer one: the signals log shows every minute, and
    several close at once after a gap, a step or a seek.
    """

    features: dict[str, Any]
    signal: dict[str, Any]
    bar: dict[str, Any] = field(default_factory=dict)


@dataclass
class OrderFilled(Message):
    """A paper fill (entry or exit) as a plain dict of ``FILL_DTYPE`` fields."""

    fill: dict[str, Any]


@dataclass
class IntentIssued(Message):
    """External mode: the engine asked the execution backend for an order (an ``Intent``)."""

    intent: Any


@dataclass
class ReadinessChanged(Message):
    """The readiness code of the closed minutes changed (e.g. WARMUP -> READY)."""

    ts_min: int
    before: int  # REASON_* code, -1 for "none yet"
    after: int


@dataclass
class AlertRaised(Message):
    """Something the operator should see (feed stale, ambiguous prints, no VA, loss limit)."""

    ts: int
    text: str
    severity: str = "warning"  # "info", "warning" or "error"
    kind: str = ""


@dataclass
class KillSwitchChanged(Message):
    """The engine applied the operator's kill switch command."""

    on: bool
    ts: int


@dataclass
class EntriesPausedChanged(Message):
    """The operator's pause of new entries was applied (on) or lifted (off); exits and stops go on."""

    on: bool
    ts: int


@dataclass
class FlattenRequested(Message):
    """The engine accepted a flatten; it closes on the first quote after ``ts``."""

    ts: int
    position: int  # position when the request was applied: -1, 0 or 1


@dataclass
class ReplayChanged(Message):
    """Pause or speed changed (applied by the driver)."""

    paused: bool
    speed: float


@dataclass
class ReplayRestarted(Message):
    """A seek backwards: the replay starts again from its first tick; the screen clears its history."""

    ts: int
    target: int


@dataclass
class ReplayFinished(Message):
    """The stored session has been replayed to its end."""

    ts: int
    minutes: int  # minutes closed in all
    fills: int  # paper fills in all
    report: dict[str, Any] | None = None  # the backtest report's figures of the replayed rows
    report_text: str = ""  # the same as the backtest's text report


@dataclass
class FeedHealth(Message):
    """The live feed's health (each status interval): connected, lag, age of the newest data, counters."""

    quiet_ms: int
    lag_ms: int
    reconnects: int
    gaps: int
    malformed: int
    connected: bool
    warmup_left: int = 0

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, FeedHealth)


@dataclass
class ExchangeChanged(Message):
    """The exchange's side of a live session: its position and stop, orders in flight, kill reasons, reconciliation."""

    status: dict[str, Any]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ExchangeChanged)


_MESSAGES: dict[type, type[Message]] = {
    events.ExchangeChanged: ExchangeChanged,
    events.FeedHealth: FeedHealth,
    events.TicksFed: TicksReplayed,
    events.MinuteClosed: MinuteClosed,
    events.Filled: OrderFilled,
    events.IntentIssued: IntentIssued,
    events.ReadinessChanged: ReadinessChanged,
    events.Alert: AlertRaised,
    events.KillSwitchChanged: KillSwitchChanged,
    events.EntriesPausedChanged: EntriesPausedChanged,
    events.FlattenRequested: FlattenRequested,
    events.ReplayChanged: ReplayChanged,
    events.ReplayRestarted: ReplayRestarted,
    events.ReplayFinished: ReplayFinished,
}


def message_for(event: Any) -> Message:
    """The Textual message carrying a runtime event's fields."""
    return _MESSAGES[type(event)](**{f.name: getattr(event, f.name) for f in dataclasses.fields(event)})
