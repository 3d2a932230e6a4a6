"""The rolling volume profile panel: a thin widget over ``pbdtui.render.render_profile``."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from pbdtui.messages import Snapshot
from pbdtui.render import naked_table, profile_title, render_profile

# Rich styles for the parts of a profile line; the text itself comes from render_profile.
_STYLES = (
    (r"░+", "grey42"),
    (r"█+", "green"),
    (r"▓+", "red"),
    (r"•+", "bold yellow"),
    (r"(dPOC|nPOC|rVA[HL]) \S+", "yellow"),
    (r"naked POCs:.*", "bold"),
    (r"─+┼─+ VA[HL] \S+", "magenta"),
    (r"POC \S+", "bold yellow"),
    (r"◀ last \S+", "bold black on cyan"),
    (r"ENTRY \S+", "bold cyan"),
    (r"STOP \S+", "bold red"),
    (r"TARGET \S+", "bold green"),
)


def position_marks(snap: Snapshot) -> tuple[tuple[str, int], ...]:
    """The open position's entry, stop and target as profile marks (none when flat)."""
    p = snap.position
    if p.position == 0:
        return ()
    # target2 is in doubled ticks (it can sit on a half tick, like the POC): the mark goes on its tick
    return (("ENTRY", p.entry_px), ("STOP", p.stop), ("TARGET", p.target2 // 2))


class ProfileView(Widget):
    """ASCII profile of the rolling window with POC, VAH/VAL and the last price marked."""

    DEFAULT_CSS = """
    ProfileView {
        height: 1fr;
        width: 1fr;
        border: round $primary;
        border-title-align: left;
        padding: 0 1;
    }
    """

    snapshot: reactive[Snapshot | None] = reactive(None)
    """Latest snapshot from the driver (a copy of the profile and the value area); None before the first."""

    placeholder: reactive[str] = reactive("starting the engine...")
    """What the panel says before the first snapshot arrives."""

    structure: reactive[bool] = reactive(False)
    """Market-structure view: bars split buy|sell, the day's developing POC path, naked POCs."""

    dev_path: reactive[tuple[int, ...]] = reactive(())
    """The UTC day's developing POC per closed minute (doubled ticks), oldest first; the app fills it."""

    roll_va: reactive[tuple[int, int] | None] = reactive(None)
    """(VAL, VAH) in ticks of the rolling higher-timeframe value area (htf_rolling_minutes) at the last minute."""

    def __init__(self, *, tick_size: float, base_bin_ticks: int, window_minutes: int,
                 name: str | None = None, id: str | None = None, classes: str | None = None):
        super().__init__(name=name, id=id, classes=classes)
        self.tick_size = tick_size
        self.base_bin_ticks = base_bin_ticks
        self.window_minutes = window_minutes
        self.border_title = "Volume profile"

    def lines(self) -> list[str]:
        """The profile as plain lines for the current size (what ``render`` draws)."""
        snap = self.snapshot
        height, width = self.size.height, self.size.width
        if snap is None:
            return [self.placeholder][:height]
        if snap.k <= 0:
            return ["building the first minute..."][:height]
        if not self.structure:
            return render_profile(
                snap.bins, snap.volumes, k=snap.k, poc2=snap.poc2, val=snap.val, vah=snap.vah,
                last_px=snap.last_px, tick_size=self.tick_size, height=height, width=width,
                base_bin_ticks=self.base_bin_ticks, va_valid=snap.va_valid, marks=position_marks(snap),
            )
        table_rows = min(4, max(0, height - 10))
        marks = position_marks(snap)
        if self.dev_path:
            marks += (("dPOC", self.dev_path[-1] // 2),)
        if self.roll_va is not None:
            marks += (("rVAL", self.roll_va[0]), ("rVAH", self.roll_va[1]))
        # the nearest naked POC each side of the last price stays on screen; the table lists more
        above = [n.poc2 for n in snap.naked if n.poc2 > 2 * snap.last_px]
        below = [n.poc2 for n in snap.naked if n.poc2 < 2 * snap.last_px]
        marks += tuple(("nPOC", v // 2) for v in (min(above, default=0), max(below, default=0)) if v)
        lines = render_profile(
            snap.bins, snap.volumes, k=snap.k, poc2=snap.poc2, val=snap.val, vah=snap.vah,
            last_px=snap.last_px, tick_size=self.tick_size, height=height - table_rows, width=width,
            base_bin_ticks=self.base_bin_ticks, va_valid=snap.va_valid, marks=marks, sides=snap.sides,
            path=self.dev_path,
        )
        table = naked_table(snap.naked, snap.last_px, snap.ts, self.tick_size, table_rows)
        return lines + [line[:width] for line in table]

    def render(self) -> Text:
        snap = self.snapshot
        if snap is not None and snap.k > 0:
            # the title says how many bins a row holds, which depends on the height
            self.border_title = profile_title(
                snap.bins, snap.volumes, k=snap.k, poc2=snap.poc2, val=snap.val, vah=snap.vah,
                last_px=snap.last_px, base_bin_ticks=self.base_bin_ticks, tick_size=self.tick_size,
                window_minutes=self.window_minutes, height=self.size.height, va_valid=snap.va_valid,
                marks=position_marks(snap),
            )
        no_wrap = self.snapshot is not None  # the placeholder may wrap; profile lines never do
        text = Text("\n".join(self.lines()), no_wrap=no_wrap, overflow="crop")
        for pattern, style in _STYLES:
            text.highlight_regex(pattern, style)
        return text
