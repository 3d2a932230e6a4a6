"""Headless commands: the runtime with status lines instead of a screen.

``pbdtui collect`` records Bybit's public stream and computes features
live; it prints a status line every few seconds (minute, last price, lag,
reconnects, gaps) and every alert and feed event as it happens, and stops
cleanly on Ctrl-C, SIGTERM or after ``--duration``, committing what it
received.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from typing import Any, TextIO

from engine.adapters.bybit.ws import FeedConfig, resolve_url
from engine.records import units_of
from engine.runtime.events import Alert, ReadinessChanged
from engine.runtime.live import FeedChanged, LiveDriver, LiveStatus
from engine.types import REASON_NAMES

_QUIET_FEED = {"malformed", "book_reset"}  # counted in the status line, not printed one by one


def _utc(ts_ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts_ms / 1000)) if ts_ms > 0 else "--"


def status_line(settings: Any, s: LiveStatus) -> str:
    """One line of health figures."""
    u = units_of(settings)
    lags = sorted(s.close_lag_ms)
    close = f"{lags[len(lags) // 2] / 1000:.2f}/{lags[-1] / 1000:.2f} s" if lags else "--"
    feed = s.feed
    ready = REASON_NAMES.get(s.ready, "--") if s.ready >= 0 else "--"
    if s.ready == 1 and s.warmup_left:
        ready = f"WARMUP ({s.warmup_left} min left)"
    price = f"{u.px(s.last_px):.{u.px_dec}f}" if s.last_px > 0 else "--"
    lag = f"{s.lag_ms} ms" if abs(s.lag_ms) < 86_400_000 else "n/a (old data)"
    return (f"{_utc(s.wall_ms)} UTC | minute {_utc(s.minute)} | last {price} | {ready} | lag {lag} | "
            f"close lag p50/max {close} | reconnects {feed.get('reconnects', 0)} | gaps {feed.get('gaps', 0)} | "
            f"malformed {sum(feed.get('malformed', {}).values())} | dup {feed.get('duplicates', 0)} | "
            f"late {s.late_events} | recorded {s.recorder.get('trades', 0)} trades "
            f"{s.recorder.get('quotes', 0)} quotes {s.recorder.get('minutes', 0)} minutes")


class _Printer:
    def __init__(self, settings: Any, out: TextIO):
        self.settings = settings
        self.out = out

    def __call__(self, event: Any) -> None:
        text = None
        if isinstance(event, LiveStatus):
            text = status_line(self.settings, event)
        elif isinstance(event, Alert):
            text = f"{_utc(event.ts)} {event.severity.upper()}: {event.text}"
        elif isinstance(event, ReadinessChanged) and event.before >= 0:
            text = f"{_utc(event.ts_min + 60_000)} readiness {REASON_NAMES.get(event.before)} -> " \
                   f"{REASON_NAMES.get(event.after)}"
        elif isinstance(event, FeedChanged) and event.status.kind not in _QUIET_FEED:
            st = event.status
            text = f"{_utc(st.ts)} feed {st.kind}: {st.detail}"
        if text is not None:
            print(text, file=self.out, flush=True)


def run_collect(settings: Any, db: str, ws_url: str | None, duration: float | None, out: TextIO = sys.stdout,
                feed_config: FeedConfig | None = None, status_interval: float = 5.0) -> int:
    """``pbdtui collect``: record and compute features live until stopped."""
    url = resolve_url(ws_url or settings.ws_url)
    config = feed_config or FeedConfig(url=url)
    if feed_config is not None and ws_url:
        config = FeedConfig(**{**config.__dict__, "url": url})
    printer = _Printer(settings, out)
    driver = LiveDriver(settings, db, config, printer, trading=False, status_interval=status_interval)
    print(f"collecting {settings.symbol} from {url} into {db}"
          + (f" for {duration:g} s" if duration else " (Ctrl-C stops)"), file=out, flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        await driver.run(stop, duration)

    asyncio.run(main())
    rec = driver.recorder.counters
    print(f"stopped: recorded {rec['trades']} trades, {rec['quotes']} quotes, {rec['minutes']} minutes "
          f"into {db}", file=out, flush=True)
    return 0
