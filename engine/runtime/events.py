"""Plain events from the runtime to any sink (console, status lines, logs).

Every payload is a small copy made on the driver's thread: plain dicts of
one record's fields, a frozen ``PositionView``, or numpy arrays copied out
of the engine (the rolling profile). Names are in the past tense.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.engine import PositionView


@dataclass(eq=False)
class Snapshot:
    """What a screen shows between minute closes (a copy; safe to keep).

    ``eq=False``: comparing numpy arrays field by field would raise; identity
    is the right test for "changed".
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
    speed: float  # replay speed, x real time (1 live)
    paused: bool
    warming_up: bool  # still fast-forwarding the segment's first window
    progress: float  # fraction of the stored session replayed, 0..1
    finished: bool = False
    sides: tuple[np.ndarray, np.ndarray] | None = None  # (buy, sell) lots per base bin of ``bins`` (None: not sent)
    naked: tuple = ()  # open naked POCs (engine.engine.NakedPoc), oldest first
    orders: tuple = ()  # open orders (engine.engine.OrderView): entries/exits on their way, stop, target


@dataclass
class TicksFed:
    """Another slice of ticks went through the engine; ``snapshot`` is the new state."""

    snapshot: Snapshot


@dataclass
class MinuteClosed:
    """A minute closed: its bar, features and signal rows as plain dicts (one event per minute)."""

    features: dict[str, Any]
    signal: dict[str, Any]
    bar: dict[str, Any] = field(default_factory=dict)


@dataclass
class Filled:
    """A fill (entry or exit) as a plain dict of ``FILL_DTYPE`` fields."""

    fill: dict[str, Any]


@dataclass
class IntentIssued:
    """External mode: the engine wants this order placed (an ``engine.execution.types.Intent``)."""

    intent: Any


@dataclass
class ReadinessChanged:
    """The readiness code of the closed minutes changed (e.g. WARMUP -> READY)."""

    ts_min: int
    before: int  # REASON_* code, -1 for "none yet"
    after: int


@dataclass
class Alert:
    """Something the operator should see, from ``engine.runtime.alerts``."""

    ts: int
    text: str
    severity: str = "warning"  # "info", "warning" or "error"
    kind: str = ""  # the rule: ambiguity, no_value_area, daily_loss, gap_skipped, ...


@dataclass
class KillSwitchChanged:
    """The engine applied the operator's kill switch command."""

    on: bool
    ts: int


@dataclass
class EntriesPausedChanged:
    """The operator paused new entries, or resumed them (no latch; exits and stops still run)."""

    on: bool
    ts: int


@dataclass
class FlattenRequested:
    """The engine accepted a flatten; it closes on the first quote after ``ts``."""

    ts: int
    position: int  # position when the request was applied: -1, 0 or 1


@dataclass
class ReplayChanged:
    """Pause or speed changed (applied by the driver)."""

    paused: bool
    speed: float


@dataclass
class ReplayRestarted:
    """A seek backwards: the replay starts again from its first tick into a fresh engine."""

    ts: int  # the first tick's time, ms UTC
    target: int  # the time it replays to (then paused)


@dataclass
class ReplayFinished:
    """The stored session has been replayed to its end."""

    ts: int
    minutes: int  # minutes closed in all
    fills: int  # fills in all
    report: dict[str, Any] | None = None  # the backtest report's figures (engine.report.report)
    report_text: str = ""  # the same as the backtest's text report


@dataclass
class FeedHealth:
    """The live feed's health for a status bar (each status interval)."""

    quiet_ms: int  # wall ms since the newest event arrived (-1: no data yet)
    lag_ms: int  # receive time minus exchange time of the newest event
    reconnects: int
    gaps: int
    malformed: int  # bad frames, all topics
    connected: bool  # subscribed and receiving (False while disconnected or reconnecting)
    warmup_left: int = 0  # minutes until the profile window is full (0: full)


@dataclass
class ExchangeChanged:
    """The exchange's side of a live session (``LiveTrader.status()``): its position and stop, orders, kill, reconciliation."""

    status: dict[str, Any]
