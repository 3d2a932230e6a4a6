"""Faults the loopback venue can inject, named on the command line as ``--fault SPEC``.

``SPEC`` is ``KIND[:ARG][@AT | /EVERY]``:

* ``AT`` fires once, ``EVERY`` repeatedly; either is a count of data frames
  handled by the venue (over all connections, e.g. ``@500``, ``/100``) or
  a span of session (exchange) time since the first served event (``@30s``,
  ``/5m``, ``@1500ms``), so a fault lands on the same data at any speed.
* Without ``@``/``/`` each kind has a default (the table below).

| kind | what the venue does | ARG | default |
|---|---|---|---|
| ``drop`` | closes the connection (close frame 1011) before the frame | - | ``@300`` |
| ``stall`` | stops sending anything (data, acks, pongs) but keeps the socket | wall seconds (default: until the client goes away) | ``@300`` |
| ``garbage`` | sends a frame of junk (not JSON, or JSON of the wrong shape) before the frame | - | ``/100`` |
| ``truncated`` | sends the frame cut short instead of whole (its content is lost) | - | ``/100`` |
| ``duplicate`` | sends the next trade frame twice; a new ``publicTrade`` subscription first gets the last 3 trade frames again | - | ``/50`` |
| ``reorder`` | holds the next trade frame back until ARG frames of other topics went out | frames (default 3) | ``/20`` |
| ``reset`` | sends the next book frame as a snapshot with ``u = 1`` (a service restart) | - | ``@200`` |
| ``refuse`` | answers the first subscription to a topic starting with ARG with ``success: false`` | topic prefix (default ``tickers``) | first subscription |

Faults that need a kind of frame (``duplicate``, ``reorder``, ``reset``)
wait for the next frame of that kind once due.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KINDS = ("drop", "stall", "garbage", "truncated", "duplicate", "reorder", "reset", "refuse")
_DEFAULTS = {
    "drop": "@300", "stall": "@300", "garbage": "/100", "truncated": "/100",
    "duplicate": "/50", "reorder": "/20", "reset": "@200", "refuse": "",
}
_SPEC = re.compile(r"^(?P<kind>[a-z]+)(?::(?P<arg>[^@/]+))?(?:(?P<mode>[@/])(?P<when>[0-9.]+)(?P<unit>ms|s|m)?)?$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000}


class FaultError(ValueError):
    """A --fault spec that cannot be read."""


@dataclass
class Fault:
    """One fault and its schedule; ``fire`` says whether it is due at a frame."""

    kind: str
    arg: str = ""
    repeat: bool = False  # '/' (every) or '@' (once)
    frames: int | None = None  # schedule in data frames ...
    span_ms: int | None = None  # ... or in session time
    fired: int = 0
    next_at: int = 0

    def __post_init__(self) -> None:
        self.next_at = (self.frames if self.frames is not None else self.span_ms) or 0

    def due(self, frame_no: int, session_ms: int) -> bool:
        """Whether the fault fires at data frame ``frame_no`` (1-based) at ``session_ms``; advances it."""
        if self.kind == "refuse" or (self.fired and not self.repeat):
            return False
        now = frame_no if self.frames is not None else session_ms
        if now < self.next_at:
            return False
        step = self.frames if self.frames is not None else self.span_ms
        self.next_at = now + (step or 1)
        self.fired += 1
        return True

    @property
    def spec(self) -> str:
        arg = f":{self.arg}" if self.arg else ""
        if self.frames is None and self.span_ms is None:
            return f"{self.kind}{arg}"
        when = str(self.frames) if self.frames is not None else f"{self.span_ms}ms"
        return f"{self.kind}{arg}{'/' if self.repeat else '@'}{when}"


def parse_fault(text: str) -> Fault:
    """``drop@30s`` etc. to a Fault (see the module doc).

    Raises:
        FaultError: unknown kind, bad schedule or argument.
    """
    m = _SPEC.match(text.strip())
    if m is None:
        raise FaultError(f"--fault {text!r}: expected KIND[:ARG][@AT|/EVERY], e.g. drop@300, garbage/50, drop@30s")
    kind = m["kind"]
    if kind not in KINDS:
        raise FaultError(f"--fault {text!r}: unknown kind {kind!r}; known: {', '.join(KINDS)}")
    arg = m["arg"] or ""
    if m["mode"] is None and kind != "refuse":
        return parse_fault(f"{kind}{':' + arg if arg else ''}{_DEFAULTS[kind]}")
    if kind == "refuse" and m["mode"] is not None:
        raise FaultError(f"--fault {text!r}: refuse takes a topic prefix (refuse:tickers), not a schedule")
    if kind in ("stall", "reorder") and arg:
        try:
            if float(arg) <= 0:
                raise ValueError(arg)
        except ValueError:
            raise FaultError(f"--fault {text!r}: {kind} takes a positive number") from None
    elif arg and kind != "refuse":
        raise FaultError(f"--fault {text!r}: {kind} takes no argument")
    fault = Fault(kind, arg)
    if m["mode"] is not None:
        try:
            when = float(m["when"])
        except ValueError:
            raise FaultError(f"--fault {text!r}: bad number {m['when']!r}") from None
        if when <= 0:
            raise FaultError(f"--fault {text!r}: the schedule must be positive")
        fault = Fault(kind, arg, repeat=m["mode"] == "/",
                      frames=int(when) if m["unit"] is None else None,
                      span_ms=int(when * _UNIT_MS[m["unit"]]) if m["unit"] is not None else None)
    return fault


def parse_faults(texts: list[str] | tuple[str, ...]) -> list[Fault]:
    """Every spec of a command line (a spec may also hold several, comma-separated)."""
    return [parse_fault(part) for text in texts for part in text.split(",") if part.strip()]
