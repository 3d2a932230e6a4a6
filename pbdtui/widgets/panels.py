"""Thin widgets over the pure renderers of ``pbdtui.render``: status bar, position, orders, price chart, logs.

Each holds typed reactives that the app binds with ``data_bind`` and draws
with one renderer call; styling comes from the renderer's spans.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import events
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import RichLog

from pbdtui.messages import Snapshot
from pbdtui.render import render_chart, render_orders, render_position, render_status


class StatusBar(Widget):
    """One line: mode, UTC clock of the data, replay state and speed, kill switch, day PnL, readiness."""

    DEFAULT_CSS = """
    StatusBar { height: 1; padding: 0 1; }
    """

    snapshot: reactive[Snapshot | None] = reactive(None)
    """The driver's latest snapshot (clock, speed, pause, position and risk state)."""

    ready: reactive[int | None] = reactive(None)
    """Readiness code of the last closed minute; None before the first close."""

    jumping: reactive[bool] = reactive(False)
    """A step, seek or jump to the next trade is in progress."""

    feed: reactive[Any | None] = reactive(None)
    """The live feed's health (``engine.runtime.events.FeedHealth``); None in a replay."""

    def __init__(self, mode: str = "REPLAY", stale_ms: int = 10_000, network: str = "", **kwargs: Any):
        super().__init__(**kwargs)
        self.mode = mode
        self.stale_ms = stale_ms
        self.network = network

    def render(self) -> Text:
        snap = self.snapshot
        live = self.mode != "REPLAY"
        compact = 0 < self.size.width < 90  # the full status needs about 90 columns
        if snap is None:
            return render_status(mode=self.mode, ts=-1, state="warm-up", speed=0, progress=0.0,
                                 kill_manual=False, kill_daily=False, day_pnl=0.0, ready=self.ready,
                                 feed=self.feed, stale_ms=self.stale_ms, compact=compact, network=self.network)
        if live:
            state = "warm-up" if snap.warming_up else "live"
        else:
            state = ("finished" if snap.finished else "jump" if self.jumping else "paused" if snap.paused
                     else "warm-up" if snap.warming_up else "replay")
        return render_status(mode=self.mode, ts=snap.ts, state=state, speed=snap.speed, progress=snap.progress,
                             kill_manual=snap.position.kill_manual, kill_daily=snap.position.kill_daily,
                             day_pnl=snap.position.day_pnl, ready=self.ready, feed=self.feed,
                             stale_ms=self.stale_ms, compact=compact, entries_paused=snap.position.entries_paused,
                             network=self.network)


class PositionPanel(Widget):
    """Side, size, entry, stop, target, PnL, time in trade and the time stop left."""

    DEFAULT_CSS = """
    PositionPanel { height: auto; }
    """

    snapshot: reactive[Snapshot | None] = reactive(None, layout=True)
    """The driver's latest snapshot (position, last price, clock)."""

    exchange: reactive[dict[str, Any] | None] = reactive(None, layout=True)
    """Live modes: the exchange's side (``LiveTrader.status()``); None on paper and in a replay."""

    def __init__(self, *, tick_size: float, qty_step: float, order_qty: float, max_hold_minutes: int,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.units = dict(tick_size=tick_size, qty_step=qty_step, order_qty=order_qty,
                          max_hold_minutes=max_hold_minutes)
        self.border_title = "Position"

    def render(self) -> Text:
        snap = self.snapshot
        return render_position(snap.position if snap else None, last_px=snap.last_px if snap else -1,
                               ts=snap.ts if snap else -1, exchange=self.exchange, **self.units)


class OrdersPanel(Widget):
    """Open orders: entries and exits on their way, the stop and target protecting the position."""

    DEFAULT_CSS = """
    OrdersPanel { height: auto; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    snapshot: reactive[Snapshot | None] = reactive(None, layout=True)
    """The driver's latest snapshot (its ``orders`` and clock)."""

    def __init__(self, *, tick_size: float, qty_step: float, **kwargs: Any):
        super().__init__(**kwargs)
        self.units = dict(tick_size=tick_size, qty_step=qty_step)
        self.border_title = "Orders"

    def render(self) -> Text:
        snap = self.snapshot
        return render_orders(snap.orders if snap else (), ts=snap.ts if snap else -1, **self.units)


class PriceChart(Widget):
    """Recent minutes' ranges and closes with the value area as a band."""

    bars: reactive[tuple[tuple[int, int, int, int, int, int, bool], ...]] = reactive(())
    """Closed minutes, oldest first: (low, high, close, val, vah, volume, va_valid), ticks."""

    def __init__(self, *, tick_size: float, **kwargs: Any):
        super().__init__(**kwargs)
        self.tick_size = tick_size
        self.border_title = "Price · value area band"

    def render(self) -> Text:
        return render_chart(list(self.bars), tick_size=self.tick_size, height=self.size.height,
                            width=self.size.width)


class TailLog(RichLog):
    """A log that keeps its newest line in view when its panel is resized.

    RichLog scrolls to the end as it writes, but a later layout change (the
    first sizing under load, a terminal resize) leaves it scrolled part way;
    an operator reading alerts must always see the latest one.
    """

    def on_resize(self, event: events.Resize) -> None:
        super().on_resize(event)
        if self.auto_scroll:
            self.scroll_end(animate=False, immediate=False, x_axis=False)
