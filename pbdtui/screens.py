"""Modal screens: confirmations, help, seek, the end-of-session summary."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from engine.config import ConfigError
from engine.timerange import FORMS_HELP, parse_utc


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; ``y`` or Enter answers yes, ``n`` or Escape no."""

    BINDINGS = [
        Binding("y,enter", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str):
        super().__init__(classes="dialog-screen")
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, id="question")
            yield Static(Text.assemble(("y", "bold"), "/Enter yes   ", ("n", "bold"), "/Esc no"), id="answers")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


def binding_rows(bindings: list[tuple[str, str]]) -> list[str]:
    """Help lines: key, then what it does."""
    width = max((len(k) for k, _ in bindings), default=0)
    return [f"{key:>{width}}  {what}" for key, what in bindings]


class HelpScreen(ModalScreen[None]):
    """Every key of the console (Escape, ``?`` or F1 closes)."""

    BINDINGS = [Binding("escape,question_mark,f1,q", "close", "Close")]

    def __init__(self, bindings: list[tuple[str, str]]):
        super().__init__(classes="dialog-screen")
        self.bindings = bindings

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog", id="help"):
            yield Static(Text("Keys", style="bold"))
            yield Static("\n".join(binding_rows(self.bindings)), id="keys")
            yield Static(Text("Ctrl+P: command palette   Escape: close", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)


class SeekScreen(ModalScreen[int | None]):
    """Asks for a UTC time to replay to (forward, or back: the replay restarts from its first tick)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("Seek to (UTC):")
            yield Input(placeholder="2026-01-05 08:00", id="when")
            yield Static(Text(FORMS_HELP, style="dim"), id="seek-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            self.dismiss(parse_utc(event.value, "seek"))
        except ConfigError as exc:
            self.query_one("#seek-error", Static).update(Text(str(exc), style="bold red"))

    def action_cancel(self) -> None:
        self.dismiss(None)


class SummaryScreen(ModalScreen[None]):
    """The end-of-session report (the backtest's text report of the replayed rows)."""

    BINDINGS = [Binding("escape,enter,r", "close", "Close")]

    def __init__(self, text: str, **kwargs: Any):
        super().__init__(classes="dialog-screen", **kwargs)
        self.text = text

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog", id="summary"):
            yield Static(Text("Session summary", style="bold"))
            yield Static(Text(self.text, no_wrap=True), id="report")
            yield Static(Text("Escape closes; r shows it again; q quits", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)
