"""Messages from the engine's driver thread to the console, in one place.

The replay (later: live) driver runs the engine on its own thread and tells
the screen what happened through these messages; the screen never reads the
engine's buffers. Every payload is a small copy made on the driver thread:
plain dicts of one record's fields, a frozen ``PositionView``, or numpy
arrays copied out of the engine (the rolling profile).

Names are in the past tense. High-rate messages (``TicksReplayed``,
``MinuteClosed``) implement ``can_replace`` so that when the screen falls
behind it draws only the latest one; the rare ones (fills, alerts, command
confirmations) are never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from textual.message import Message

from engine.engine import PositionView


@dataclass(eq=False)
class Snapshot:
    """What the screen shows between minute closes (a copy; safe to keep).

    The replay driver fills every field; a live driver would report speed 1.

    ``eq=False``: reactives compare old and new values, and comparing numpy
    arrays field by field would raise; identity is the right test here.
    """

    ts: int  # exchange time of the newest event fed, ms UTC (-1 before the first)
    last_px: int  # last trade price, ticks (-1 before the first trade)
    bins: np.ndarray  # base bins of the rolling profile (int64)
    volumes: np.ndarray  # lots per base bin (int64)
    k: int  # applied bin width in base bins, from the last closed minute (0: none yet)
    poc2: int  # twice the POC bin centre, ticks
    val: int  # ticks (lower edge of the value area)
    vah: int  # ticks (upper edge of the value area)
    va_valid: bool
    position: PositionView
    speed: float  # replay speed, x real time
    paused: bool
    warming_up: bool  # still fast-forwarding the first window
    progress: float  # fraction of the stored session replayed, 0..1
    finished: bool = False


@dataclass
class TicksReplayed(Message):
    """The driver fed another slice of ticks; ``snapshot`` is the new state."""

    snapshot: Snapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TicksReplayed)


@dataclass
class MinuteClosed(Message):
    """A minute closed: its features and signal rows as plain dicts."""

    features: dict[str, Any]
    signal: dict[str, Any]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, MinuteClosed)


@dataclass
class OrderFilled(Message):
    """A paper fill (entry or exit) as a plain dict of ``FILL_DTYPE`` fields."""

    fill: dict[str, Any]


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


@dataclass
class KillSwitchChanged(Message):
    """The engine applied the operator's kill switch command."""

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
class ReplayFinished(Message):
    """The stored session has been replayed to its end."""

    ts: int
    minutes: int  # minutes closed in all
    fills: int  # paper fills in all
