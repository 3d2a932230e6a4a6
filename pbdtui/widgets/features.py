"""The features panel: a thin widget over ``pbdtui.render.render_features``."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from engine.engine import PositionView
from pbdtui.render import render_features


class FeaturesView(Widget):
    """Latest closed minute's features, the decision, the position and PnL."""

    DEFAULT_CSS = """
    FeaturesView {
        height: auto;
        width: 1fr;
        border: round $secondary;
        border-title-align: left;
        padding: 0 1;
    }
    """

    features: reactive[dict[str, Any] | None] = reactive(None, layout=True)
    """The last closed minute's ``FEATURE_DTYPE`` record as a dict; None before the first close."""

    signal: reactive[dict[str, Any] | None] = reactive(None, layout=True)
    """The last closed minute's ``SIGNAL_DTYPE`` record as a dict."""

    position: reactive[PositionView | None] = reactive(None, layout=True)
    """The engine's position and PnL (a copy)."""

    last_px: reactive[int] = reactive(-1)
    """Last trade price in ticks (marks the open position to market); -1 before the first trade."""

    def __init__(self, *, tick_size: float, qty_step: float, order_qty: float, base_bin_ticks: int,
                 ambiguous_max: float, name: str | None = None, id: str | None = None,
                 classes: str | None = None):
        super().__init__(name=name, id=id, classes=classes)
        self.tick_size = tick_size
        self.qty_step = qty_step
        self.order_qty = order_qty
        self.base_bin_ticks = base_bin_ticks
        self.ambiguous_max = ambiguous_max
        self.border_title = "Features · last closed minute"

    def lines(self) -> list[str]:
        """The panel as plain lines (what ``render`` draws)."""
        return [line.plain for line in self._lines()]

    def _lines(self) -> list[Text]:
        return render_features(
            self.features, self.signal, self.position, tick_size=self.tick_size,
            qty_step=self.qty_step, order_qty=self.order_qty, base_bin_ticks=self.base_bin_ticks,
            last_px=self.last_px, ambiguous_max=self.ambiguous_max,
        )

    def render(self) -> Text:
        text = Text("\n", no_wrap=True, overflow="ellipsis").join(self._lines())
        text.no_wrap, text.overflow = True, "ellipsis"
        return text
