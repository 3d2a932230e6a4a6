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
from engine.runtime.events import Alert, Filled, ReadinessChanged
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
    pos = ""
    if s.position is not None:
        p = s.position
        side = {1: "LONG", -1: "SHORT"}.get(p.position, "FLAT")
        held = f" {u.qty(abs(p.qty)):g} @ {u.px(p.entry_px):.{u.px_dec}f} stop {u.px(p.stop):.{u.px_dec}f}" \
            if p.position else ""
        kill = " KILL" if p.kill_manual or p.kill_daily else ""
        pos = f"PAPER {side}{held} realized {p.realized:+.4f} day {p.day_pnl:+.4f}{kill} | "
    return (f"{_utc(s.wall_ms)} UTC | {pos}minute {_utc(s.minute)} | last {price} | {ready} | lag {lag} | "
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
        elif isinstance(event, Filled):
            f = event.fill
            u = units_of(self.settings)
            side = "BUY" if f["side"] > 0 else "SELL"
            what = "ENTRY" if f["opening"] else "EXIT"
            pnl = "" if f["opening"] else f" pnl {f['pnl_realized']:+.4f}"
            text = f"{_utc(f['ts_fill'])} PAPER {what} {side} {u.qty(f['qty']):g} @ {u.px(f['px']):.{u.px_dec}f}{pnl}"
        elif isinstance(event, FeedChanged) and event.status.kind not in _QUIET_FEED:
            st = event.status
            text = f"{_utc(st.ts)} feed {st.kind}: {st.detail}"
        if text is not None:
            print(text, file=self.out, flush=True)


def run_collect(settings: Any, db: str, ws_url: str | None, duration: float | None, out: TextIO = sys.stdout,
                feed_config: FeedConfig | None = None, status_interval: float = 5.0, trading: bool = False) -> int:
    """``pbdtui collect`` (and ``pbdtui run --paper`` with ``trading``): record, compute, paper-trade."""
    url = resolve_url(ws_url or settings.ws_url)
    config = feed_config or FeedConfig(url=url)
    if feed_config is not None and ws_url:
        config = FeedConfig(**{**config.__dict__, "url": url})
    printer = _Printer(settings, out)
    run_id = f"paper-{int(time.time())}" if trading else "collect"
    driver = LiveDriver(settings, db, config, printer, trading=trading, status_interval=status_interval,
                        run_id=run_id)
    what = f"paper trading {settings.symbol} (run {run_id})" if trading else f"collecting {settings.symbol}"
    print(f"{what} from {url} into {db}"
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
    fills = f", {rec['fills']} paper fills" if trading else ""
    print(f"stopped: recorded {rec['trades']} trades, {rec['quotes']} quotes, {rec['minutes']} minutes{fills} "
          f"into {db}", file=out, flush=True)
    return 0
