"""Small builders shared by the tests: hand-made tick arrays and short streams."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.config import Settings
from engine.engine import Engine, StepOutput, concat
from engine.types import QUOTE_DTYPE, TRADE_DTYPE

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


async def pilot_until(pilot, condition, what: str, timeout: float = 60.0) -> None:
    """Let a Textual pilot run until ``condition()`` holds (a UI state: polled between frames)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def pilot_press(pilot, *keys: str) -> None:
    """``pilot.press`` for a console fed by a live stream: each key handled before the next, without idle waits.

    Textual's pilot sends each key and then waits, twice, for the process to be idle (its CPU time
    stops advancing), up to a second each time. A console with a stream flowing in is never idle, so
    every key costs two seconds. Here each of those waits is a barrier instead: every message queued
    on the app and on the screen's widgets at that moment has been handled (the key, which the app
    forwards to the focused widget, and what its binding posted). Pilot's own barrier follows.
    These are Textual internals (8.x); without them the keys go through ``pilot.press`` as it is.
    """
    import textual.app

    idle = getattr(textual.app, "wait_for_idle", None)
    if idle is None or not hasattr(pilot, "_wait_for_screen"):  # another Textual: its own (slower) waits
        await pilot.press(*keys)
        return

    async def handled(*_args: object, **_kwargs: object) -> None:
        await pilot._wait_for_screen()

    textual.app.wait_for_idle = handled  # what Pilot's key loop awaits between keys
    try:
        await pilot.press(*keys)
    finally:
        textual.app.wait_for_idle = idle


def shared_file(rel: str) -> Path:
    """A file of ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / rel
    if not path.exists():
        pytest.skip(f"real data {path} is absent (../shared/data is not committed; CI provides it)")
    return path


def trades(rows: list[tuple]) -> np.ndarray:
    """(ts, px_ticks, qty_lots[, side]) tuples to a trade array."""
    out = np.zeros(len(rows), dtype=TRADE_DTYPE)
    for i, r in enumerate(rows):
        out["ts"][i] = r[0]
        out["local_ts"][i] = r[0]
        out["px"][i] = r[1]
        out["qty"][i] = r[2]
        out["side"][i] = r[3] if len(r) > 3 else 0
        out["trade_id"][i] = i + 1
    return out


def quotes(rows: list[tuple]) -> np.ndarray:
    """(ts, bid, bid_sz, ask, ask_sz) tuples to a quote array."""
    out = np.zeros(len(rows), dtype=QUOTE_DTYPE)
    for i, r in enumerate(rows):
        out["ts"][i], out["bid_px"][i], out["bid_sz"][i], out["ask_px"][i], out["ask_sz"][i] = r
        out["local_ts"][i] = r[0]
    return out


def run_all(settings: Settings, tr: np.ndarray, qu: np.ndarray, trading: bool = False) -> StepOutput:
    eng = Engine(settings, trading=trading)
    return concat([eng.feed(tr, qu), eng.finish()])


def random_stream(seed: int, minutes: int, start_ms: int = 1_700_000_000_000 // 60000 * 60000,
                  price: int = 300_000, trades_per_min: int = 40, quotes_per_min: int = 60,
                  gap_minutes: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """A random but plausible stream (random walk, one-tick spread, prints at the touch or inside)."""
    rng = np.random.default_rng(seed)
    tr_rows = []
    qu_rows = []
    mid = price
    for m in range(minutes):
        if m in gap_minutes:
            continue
        base = start_ms + m * 60000
        q_times = np.sort(rng.integers(0, 60000, quotes_per_min))
        t_times = np.sort(rng.integers(0, 60000, trades_per_min))
        qi = 0
        for tt in t_times:
            while qi < len(q_times) and q_times[qi] <= tt:
                mid += int(rng.integers(-2, 3))
                spread = 1 if rng.random() < 0.9 else int(rng.integers(2, 5))
                qu_rows.append((base + int(q_times[qi]), mid, int(rng.integers(1, 5000)), mid + spread,
                                int(rng.integers(1, 5000))))
                qi += 1
            side = 1 if rng.random() < 0.5 else -1
            if qu_rows and rng.random() < 0.95:
                last = qu_rows[-1]
                px = last[3] if side > 0 else last[1]
                if rng.random() < 0.05:
                    px = px + side * int(rng.integers(1, 3))
            else:
                px = mid + int(rng.integers(-3, 4))
            qty = int(max(1, rng.pareto(1.5) * 5))
            tr_rows.append((base + int(tt), px, qty, side))
        while qi < len(q_times):
            mid += int(rng.integers(-2, 3))
            qu_rows.append((base + int(q_times[qi]), mid, int(rng.integers(1, 5000)), mid + 1, int(rng.integers(1, 5000))))
            qi += 1
    tr = trades(tr_rows)
    qu = quotes(qu_rows)
    tr = tr[np.argsort(tr["ts"], kind="stable")]
    qu = qu[np.argsort(qu["ts"], kind="stable")]
    return tr, qu
