"""The alert rules (spec 11), one set for the replay, live and the backtest report.

Each rule fires when its condition starts (edge-triggered), not on every
minute it lasts: a feed that stays stale for an hour is one alert.

- readiness changed (any REASON_* transition; FEED_STALE and
  INSUFFICIENT_HISTORY are what an operator watches for)
- ambiguity spike: the minute's ambiguous volume share above
  ``ambiguous_trade_frac_max``
- value area failure: the rolling profile is empty
- daily loss limit: the daily-loss kill switch tripped
"""

from __future__ import annotations

from typing import Any

from engine.engine import PositionView
from engine.runtime.events import Alert, ReadinessChanged
from engine.types import REASON_FEED_STALE, REASON_INSUFFICIENT_HISTORY, REASON_NAMES

MINUTE_MS = 60_000


class AlertRules:
    """Edge-triggered alert state over a stream of closed minutes and position views."""

    def __init__(self, settings: Any):
        self.settings = settings
        self.ready = -1
        self.ambiguous_high = False
        self.va_missing = False
        self.kill_daily = False

    def minute(self, features: dict[str, Any]) -> list[ReadinessChanged | Alert]:
        """Events for one closed minute (``FEATURE_DTYPE`` fields as a dict), in order."""
        s = self.settings
        out: list[ReadinessChanged | Alert] = []
        ts_min = int(features["ts_min"])
        known = ts_min + MINUTE_MS
        ready = int(features["ready"])
        if ready != self.ready:
            out.append(ReadinessChanged(ts_min=ts_min, before=self.ready, after=ready))
            if ready == REASON_FEED_STALE:
                out.append(Alert(ts=known, kind="feed_stale", severity="error", text=(
                    f"FEED STALE: no quote for {s.feed_stale_halt_ms / 1000:g} s at the minute close; "
                    "entries halted")))
            elif ready == REASON_INSUFFICIENT_HISTORY and self.ready >= 0:
                out.append(Alert(ts=known, kind="insufficient_history", text=(
                    f"the {s.rolling_window_minutes}-minute window holds trades in fewer than "
                    f"{s.min_window_coverage:.0%} of its minutes: entries wait for data")))
            self.ready = ready
        vol = int(features["volume"])
        amb = int(features["amb_qty"]) / vol if vol > 0 else 0.0
        high = amb > s.ambiguous_trade_frac_max
        if high and not self.ambiguous_high:
            out.append(Alert(ts=known, kind="ambiguity", text=(
                f"ambiguous trades {amb:.0%} of the minute (threshold {s.ambiguous_trade_frac_max:.0%})")))
        self.ambiguous_high = high
        missing = not int(features["va_valid"])
        if missing and not self.va_missing:
            out.append(Alert(ts=known, kind="no_value_area", severity="error",
                             text="no value area: the profile is empty"))
        self.va_missing = missing
        return out

    def position(self, pos: PositionView, ts: int) -> list[Alert]:
        """Alerts from the risk state after a step."""
        out = []
        if pos.kill_daily and not self.kill_daily:
            out.append(Alert(ts=ts, kind="daily_loss", severity="error", text=(
                f"daily loss limit {self.settings.max_daily_loss:g} USDT breached: entries off until "
                f"{self.settings.daily_reset_hour_utc:02d}:00 UTC")))
        self.kill_daily = pos.kill_daily
        return out

    @staticmethod
    def readiness_text(before: int, after: int) -> str:
        name = REASON_NAMES.get(after, str(after))
        return f"readiness {name}" if before < 0 else f"readiness {REASON_NAMES.get(before, str(before))} -> {name}"
