"""``pbdtui attach``: the console on a running daemon (loopback stream + REST), through its control socket.

The daemon is the real one of ``tests/test_live_trading.py`` (``Session``):
LiveDriver in external mode, BybitExecution over pybit, LiveTrader, the
control socket. The console attaches, shows the daemon's minutes and
position, sends the kill switch (and its reset) and a flatten, and quits;
the daemon is still trading afterwards.
"""

from __future__ import annotations

import asyncio

import pytest

from engine.runtime.control import socket_path
from engine.runtime.events import MinuteClosed
from engine.store import Store, instrument_of
from engine.synth import synthesize
from pbdtui.attach import create_attach_app
from pbdtui.screens import ConfirmScreen
from tests.helpers import pilot_press as _press
from tests.helpers import pilot_until as _until
from tests.test_live_trading import SETTINGS, START, Session


@pytest.fixture(scope="module")
def source_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("attach") / "src.db"
    with Store(path, instrument_of(SETTINGS)) as store:
        synthesize(store, SETTINGS, days=40 / 1440, seed=21, start_ms=START)
    return path


@pytest.fixture(autouse=True)
def _run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))


async def test_attach_watches_the_daemon_sends_kill_and_flatten_and_quitting_leaves_it_trading(source_db, tmp_path):
    db = tmp_path / "live.db"
    async with Session(source_db, db, speed=30.0, serve_from=START + 12 * 60_000) as s:
        await s.events.wait_for(lambda: s.events.of(MinuteClosed), 120)
        app = await asyncio.to_thread(create_attach_app, SETTINGS, socket_path(db))
        assert app.mode == "LIVE"
        async with app.run_test(size=(160, 48)) as pilot:
            await _until(pilot, lambda: app.mode_screen.snapshot is not None and app.mode_screen.minutes, "the daemon's state")
            assert any("attached to the live daemon" in line for line in app.mode_screen.alert_lines)
            assert app.mode_screen.snapshot.bins.size > 0  # the daemon's profile, drawn here
            # the daemon's feed health: up, from its counters (the subscription began after it connected)
            await _until(pilot, lambda: app.mode_screen.feed is not None and app.mode_screen.feed.connected, "the daemon's feed health")

            await _press(pilot, "e")  # the daemon's entries pause, through the control socket
            await _until(pilot, lambda: s.trader.entries_paused, "the daemon's entries pause")
            await _until(pilot, lambda: app.mode_screen.entries_paused, "the pause on screen")
            assert not s.trader.kill_reasons
            await _press(pilot, "e")
            await _until(pilot, lambda: not s.trader.entries_paused and not app.mode_screen.entries_paused,
                         "entries resumed in the daemon")

            await _press(pilot, "k")
            await _until(pilot, lambda: s.trader.status()["kill"]["on"], "the daemon's kill switch")
            await _until(pilot, lambda: app.mode_screen.kill_on, "the kill switch on screen")
            await _press(pilot, "k")  # the reset asks first
            await _until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the reset question")
            await _press(pilot, "y")
            await _until(pilot, lambda: not s.trader.status()["kill"]["on"], "the reset in the daemon")

            await _press(pilot, "f")
            await _until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the flatten question")
            await _press(pilot, "y")
            await _until(pilot, lambda: any("the exchange confirms flat" in line for line in app.mode_screen.alert_lines),
                         "the flatten confirmed by the exchange", 120)
            assert s.rest_venue.position()[0] == 0  # flat on the exchange

            minutes_before = len(s.events.of(MinuteClosed))
            await _press(pilot, "q")  # no question: quitting the console leaves the daemon as it is
            await _until(pilot, lambda: app.exiting, "quit")
        # the daemon goes on after the console has gone
        await s.events.wait_for(lambda: len(s.events.of(MinuteClosed)) > minutes_before, 120)
        assert not s.task.done()
