"""The replay driver's operator commands: speed ladder, step, next trade, seek, the end report.

The driver runs on a real thread over a real SQLite file (a simulated session), as
in the console; the test sends commands through ``send`` and reads the events.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from engine.config import Settings
from engine.runtime.events import (
    Filled,
    MinuteClosed,
    ReplayChanged,
    ReplayFinished,
    ReplayRestarted,
)
from engine.runtime.replay import SPEED_STEPS, ReplayDriver, next_speed
from engine.store import Store, instrument_of
from engine.synth import synthesize

MINUTE_MS = 60_000


@pytest.fixture(scope="module")
def session_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("replay") / "session.db"
    settings = Settings()
    with Store(path, instrument_of(settings)) as store:
        synthesize(store, settings, days=0.2, seed=11)
    return path


class Running:
    """A driver on its own thread, its events in a list."""

    def __init__(self, driver: ReplayDriver):
        self.driver = driver
        self.events: list = []
        self.thread = threading.Thread(target=driver.run, args=(self.events.append,), daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.driver.stop()
        self.thread.join(30)

    def until(self, condition, what: str, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if not self.thread.is_alive():
                raise AssertionError(f"driver stopped before {what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.02)

    def of(self, kind: type) -> list:
        return [e for e in list(self.events) if isinstance(e, kind)]


def test_speed_ladder_steps_up_and_down_from_between_steps():
    assert next_speed(600.0, True) == 1200.0
    assert next_speed(600.0, False) == 300.0
    assert next_speed(37.5, False) == 30.0 and next_speed(37.5, True) == 60.0
    assert next_speed(1.0, False) == 1.0 and next_speed(SPEED_STEPS[-1], True) == SPEED_STEPS[-1]


def _warm(run: Running) -> None:
    run.until(lambda: run.driver.clock >= run.driver._warm_end > 0, "the warm-up")


def test_step_closes_exactly_one_minute_each_press_while_paused(session_db):
    driver = ReplayDriver(Settings(), session_db, speed=1.0)
    with Running(driver) as run:
        _warm(run)
        driver.send("pause")
        run.until(lambda: driver.paused, "pause")
        before = len(run.of(MinuteClosed))
        for n in (1, 2, 3):
            driver.send("step")
            run.until(lambda n=n: len(run.of(MinuteClosed)) == before + n, f"step {n}")
            time.sleep(0.2)  # nothing more closes while paused
            assert len(run.of(MinuteClosed)) == before + n
            assert driver.paused and driver.clock % MINUTE_MS == 0
        minutes = [e.features["ts_min"] for e in run.of(MinuteClosed)[before:]]
        assert minutes == [minutes[0], minutes[0] + MINUTE_MS, minutes[0] + 2 * MINUTE_MS]


def test_faster_and_slower_walk_the_ladder(session_db):
    driver = ReplayDriver(Settings(), session_db, speed=600.0)
    with Running(driver) as run:
        driver.send("faster")
        driver.send("faster")
        driver.send("slower")
        run.until(lambda: len(run.of(ReplayChanged)) == 3, "three speed changes")
        assert [e.speed for e in run.of(ReplayChanged)] == [1200.0, 3000.0, 1200.0]


def test_seek_goes_forward_at_full_speed_then_pauses_and_back_by_replaying_from_the_start(session_db):
    driver = ReplayDriver(Settings(), session_db, speed=1.0)
    with Running(driver) as run:
        _warm(run)
        target = driver.clock + 40 * MINUTE_MS  # 40 minutes at 1x would take that long
        driver.send("seek", target)
        run.until(lambda: driver.paused and driver.clock >= target, "the seek", 60.0)
        assert driver.clock == target
        at_target = driver.engine.position()
        minutes = [e.features for e in run.of(MinuteClosed)]
        fills = [e.fill for e in run.of(Filled)]

        back = target - 20 * MINUTE_MS
        driver.send("seek", back)
        run.until(lambda: run.of(ReplayRestarted), "the restart")
        run.until(lambda: driver.paused and driver.clock == back and driver._jump is None, "the seek back", 60.0)
        restart = run.events.index(run.of(ReplayRestarted)[0])
        after = run.events[restart + 1:]
        # a fresh engine from the first tick: the minutes and fills up to ``back`` are those of the first pass
        again = [repr(e.features) for e in after if isinstance(e, MinuteClosed)]  # repr: NaN equals NaN
        assert again and again == [repr(f) for f in minutes[:len(again)]]
        assert [e.features["ts_min"] for e in after if isinstance(e, MinuteClosed)][-1] == back - MINUTE_MS
        assert [e.fill for e in after if isinstance(e, Filled)] == [f for f in fills if f["ts_fill"] < back]

        driver.send("seek", target)  # and forward again to the same state as the straight replay
        run.until(lambda: driver.paused and driver.clock == target and driver._jump is None, "the seek", 60.0)
        assert driver.engine.position() == at_target


def test_next_trade_stops_in_the_minute_of_the_next_fill(session_db):
    driver = ReplayDriver(Settings(), session_db, speed=1.0)
    with Running(driver) as run:
        _warm(run)
        driver.send("next_trade")
        run.until(lambda: driver.paused or driver.finished, "the next trade", 120.0)
        fills = run.of(Filled)
        if not fills:
            pytest.skip("the session has no trade after the warm-up")
        # the jump goes minute by minute: it stops at the end of the minute of the first fill
        # (an exit and a new entry can share that minute)
        assert all(driver.clock - MINUTE_MS <= f.fill["ts_fill"] < driver.clock for f in fills)


def test_the_end_of_the_replay_carries_the_backtest_report(session_db):
    driver = ReplayDriver(Settings(), session_db, speed=100_000.0)
    with Running(driver) as run:
        run.until(lambda: run.of(ReplayFinished), "the end")
        done = run.of(ReplayFinished)[0]
        assert done.report is not None
        assert done.report["minutes"] == done.minutes == len(run.of(MinuteClosed))
        assert done.report["fills"] == done.fills == len(run.of(Filled))
        assert "net" in done.report_text.lower()
