"""The clock seam: the only place in the engine that reads the wall clock.

The live clock is the newest exchange timestamp seen plus the wall time
elapsed since it arrived (times ``speed`` for an accelerated replay of old
data), so a minute also closes when the feed goes quiet, and a replay at
600x closes minutes exactly as live would. Exchange time never goes back:
an older timestamp (a late or reordered event) does not move the clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class LiveClock:
    """Exchange time now, from the newest exchange timestamp and the wall time since.

    Args:
        speed: event-time milliseconds per wall-clock millisecond (1 live).
        wall: a monotonic wall clock in seconds (injectable for tests).
    """

    def __init__(self, speed: float = 1.0, wall: Callable[[], float] = time.monotonic):
        self.speed = speed
        self._wall = wall
        self.newest = -1  # newest exchange ts seen, ms
        self._at = 0.0  # wall time it arrived, s

    def observe(self, exchange_ts: int) -> None:
        """An event with this exchange time arrived now."""
        if exchange_ts > self.newest:
            self.newest = int(exchange_ts)
            self._at = self._wall()

    def now_ms(self) -> int:
        """The exchange time it is now; -1 before the first event."""
        if self.newest < 0:
            return -1
        return self.newest + int((self._wall() - self._at) * 1000.0 * self.speed)

    def quiet_ms(self) -> int:
        """Wall milliseconds since the newest event arrived (feed health); 0 before any."""
        return 0 if self.newest < 0 else int((self._wall() - self._at) * 1000.0)
