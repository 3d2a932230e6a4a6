"""The headless runtime: one engine driven from any source, plain events to any sink.

ARCHITECTURE.md "one engine, three drivers". A driver turns its source
(stored ticks, a paced replay, the live feed) into ``Engine.feed`` calls
through one ``Runner``, which turns the rows each call produces into plain
events (``engine.runtime.events``): minutes closed, fills, readiness
changes, alerts (one set of rules, ``engine.runtime.alerts``), command
confirmations. A sink is any callable taking an event: the console wraps
each in a Textual message, the headless commands print status lines.

Nothing here imports the console, and the loopback venue is never imported
(import-linter contracts).
"""

from __future__ import annotations

from engine.runtime.alerts import AlertRules
from engine.runtime.clock import LiveClock
from engine.runtime.cursor import TickCursor
from engine.runtime.replay import ReplayDriver
from engine.runtime.runner import Runner

__all__ = ["AlertRules", "LiveClock", "ReplayDriver", "Runner", "TickCursor"]
