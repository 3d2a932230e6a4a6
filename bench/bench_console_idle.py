"""The console's CPU when nothing happens: a replay paused, headless (``App.run_test``), 120x40.

The replay of a simulated 0.2-day session is warmed up, paused, then the
process's CPU time (all threads: the driver's worker, Textual's loop) is
measured over ``--seconds`` of wall time, and again while replaying at 60x
for comparison. Prints JSON with the machine's load average.

    PYTHONPATH=. python3 bench/bench_console_idle.py --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from engine.config import Settings
from engine.store import Store, instrument_of
from engine.synth import synthesize
from pbdtui.app import create_app


async def measure(db: Path, seconds: float) -> dict[str, float]:
    app = create_app(Settings(), db, speed=60.0)
    out: dict[str, float] = {}
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.mode_screen
        deadline = time.monotonic() + 600
        while screen.snapshot is None or screen.snapshot.warming_up:
            assert time.monotonic() < deadline, "warm-up"
            await pilot.pause(0.1)
        for label, paused in (("replaying_60x", False), ("paused", True)):
            if paused:
                app.driver.send("pause")
                while not app.driver.paused:
                    await pilot.pause(0.05)
                await pilot.pause(1.0)  # the last redraws of the pause
            cpu0, wall0 = time.process_time(), time.perf_counter()
            await pilot.pause(seconds)
            out[f"cpu_per_wall_{label}"] = round((time.process_time() - cpu0) / (time.perf_counter() - wall0), 4)
        await pilot.press("q")
        if app.screen.is_modal:
            await pilot.press("y")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "session.db"
        with Store(db, instrument_of(Settings())) as store:
            synthesize(store, Settings(), days=0.2, seed=11)
        figures = asyncio.run(measure(db, args.seconds))
    print(json.dumps({"bench": "console_idle", "seconds": args.seconds, **figures,
                      "machine": f"{platform.machine()} {os.cpu_count()} cpu", "python": platform.python_version(),
                      "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()]}, indent=1))


if __name__ == "__main__":
    main()
