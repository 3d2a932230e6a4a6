"""Snapshot tests of the console's main layouts (pytest-textual-snapshot), at 80x24 and 160x48.

The state is made deterministic first: the replay seeks to a fixed minute and
pauses there (seek feeds at full speed and stops exactly on the target), so the
profile, logs and clock are the same on every run whatever the machine's speed.
Review a changed snapshot (``pytest --snapshot-update`` writes it) before committing it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from textual.widgets import RichLog

from engine.config import Settings
from engine.store import Store, instrument_of
from engine.synth import synthesize
from pbdtui.app import create_app

pytest.importorskip("pytest_textual_snapshot")

SEEK_TO = 1_767_585_480_000 + 25 * 60_000  # 2026-01-05 04:23 UTC: 23 minutes after the warm-up


@pytest.fixture(scope="module")
def session_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("snap") / "session.db"
    settings = Settings()
    with Store(path, instrument_of(settings)) as store:
        synthesize(store, settings, days=0.2, seed=11)
    return path


def _app(session_db: Path):
    # the warm-up ends at 04:00 and the replay at 1x barely moves before the seek arrives
    return create_app(Settings(), session_db, speed=1.0)


async def _at_seek(pilot) -> None:
    app = pilot.app
    deadline = time.monotonic() + 240
    while app.mode_screen.snapshot is None or app.mode_screen.snapshot.warming_up:
        assert time.monotonic() < deadline, "warm-up"
        await pilot.pause(0.05)
    app.driver.send("seek", SEEK_TO)
    while not (app.driver.paused and app.driver.clock == SEEK_TO and not app.mode_screen.jumping
               and app.mode_screen.snapshot.ts >= SEEK_TO - 1_000 and app.mode_screen.snapshot.paused):
        assert time.monotonic() < deadline, "seek"
        await pilot.pause(0.05)
    # every log shows its newest line once the layout has settled (the operator's view)
    logs = list(app.query(RichLog))
    while any(log.scroll_y < log.max_scroll_y for log in logs):
        assert time.monotonic() < deadline, "logs at their ends"
        await pilot.pause(0.05)
    await pilot.pause(0.3)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_console_layout(snap_compare, session_db, size):
    assert snap_compare(_app(session_db), terminal_size=size, run_before=_at_seek)
