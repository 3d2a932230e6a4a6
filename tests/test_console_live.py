"""The console in its live mode (``pbdtui live``) on the loopback venue: a real WebSocket on 127.0.0.1.

The database holds the first 15 minutes of a simulated session (the warm
start); the venue serves the rest as fast as the client reads. The console
shows PAPER with the feed's health, hides the replay's keys, applies the
kill switch and flatten through the live driver's loop, quits cleanly, and
what it received is recorded.
"""

from __future__ import annotations

import pytest

from engine.adapters.bybit.ws import FeedConfig
from engine.config import Settings
from engine.store import Store, instrument_of
from engine.synth import synthesize
from loopback.bybit_ws import BybitPublicVenue
from loopback.source import StoreSource
from pbdtui.app import create_live_app
from pbdtui.screens import ConfirmScreen, HelpScreen
from pbdtui.widgets.panels import OrdersPanel, PositionPanel, StatusBar
from tests.helpers import pilot_press as _press
from tests.helpers import pilot_until as _until

SETTINGS = Settings().replace(rolling_window_minutes=10)
START = 1_767_571_200_000  # 2026-01-05 00:00 UTC
CUT = START + 15 * 60_000


@pytest.fixture(scope="module")
def source_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("console-live") / "src.db"
    with Store(path, instrument_of(SETTINGS)) as store:
        synthesize(store, SETTINGS, days=40 / 1440, seed=21, start_ms=START)
    return path


def _history(source_db, db) -> None:
    with Store(source_db, readonly=True) as src, Store(db, instrument_of(SETTINGS)) as dst:
        tr, qu = src.load_ticks("trade"), src.load_ticks("quote")
        dst.append_ticks("trade", tr[tr["ts"] < CUT], "earlier run")
        dst.append_ticks("quote", qu[qu["ts"] < CUT], "earlier run")
        dst.append_funding(src.load_funding())


async def test_live_console_trades_on_paper_with_feed_health_and_the_operator_keys(source_db, tmp_path):
    db = tmp_path / "live.db"
    _history(source_db, db)
    config = FeedConfig(url="ws://127.0.0.1:1/", stale_after=2.0, backoff_initial=0.01, backoff_max=0.05,
                        seed=1, grace_ms=200, flush_interval=0.01)
    async with BybitPublicVenue(StoreSource(source_db, start_ms=CUT), speed=0, seed=3) as venue:
        app = create_live_app(SETTINGS, db, venue.url, feed_config=config, ui_interval=0.05)
        async with app.run_test(size=(160, 48)) as pilot:
            # the warm start's minutes, then live ones: a minute after the cut closes through the feed
            await _until(pilot, lambda: app.mode_screen.minutes and app.mode_screen.minutes[-1] >= CUT + 60_000, "a live minute")
            await _until(pilot, lambda: app.mode_screen.feed is not None and app.mode_screen.feed.connected, "the feed's health")
            status = app.query_one(StatusBar).render().plain
            assert status.startswith("PAPER loopback") and "feed ok" in status and "lag n/a" in status  # 2026 data
            assert "warm start: 14 minutes rebuilt" in "\n".join(app.mode_screen.alert_lines)

            # the replay's keys are not there: not in the footer, not applied
            actions = {b.binding.action for b in app.screen.active_bindings.values()}
            assert not {"pause", "step", "seek"} & actions and {"kill_switch", "flatten", "entries"} <= actions
            await _press(pilot, "p", "s", "g")
            assert not app.screen.is_modal

            await _press(pilot, "e")  # entries paused at once: no question, no kill switch
            await _until(pilot, lambda: app.mode_screen.snapshot.position.entries_paused, "the entries pause")
            assert not app.screen.is_modal and not app.mode_screen.snapshot.position.kill_manual
            await _until(pilot, lambda: "ENTRIES PAUSED" in app.query_one(StatusBar).render().plain
                         and "entries   PAUSED" in app.query_one(PositionPanel).render().plain,
                         "the pause in the status bar and the position panel")
            await _press(pilot, "e")  # the same key resumes
            await _until(pilot, lambda: not app.mode_screen.snapshot.position.entries_paused, "entries resumed")
            assert any("entries resumed" in line for line in app.mode_screen.alert_lines)
            assert app.query_one(OrdersPanel).region.height >= 3  # the paper broker's orders, at 160 columns

            await _press(pilot, "k")  # on at once, through the driver's loop
            await _until(pilot, lambda: app.mode_screen.snapshot.position.kill_manual
                         and "KILL ON" in app.query_one(StatusBar).render().plain, "the kill switch on screen")

            await _press(pilot, "f")
            await _until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the flatten question")
            await _press(pilot, "y")
            await _until(pilot, lambda: app.mode_screen.flatten_requests, "the flatten")

            await _press(pilot, "question_mark")
            await _until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help")
            help_keys = [keys for keys, _ in app.help_rows()]
            assert "k" in help_keys and "f" in help_keys and "s" not in help_keys and "g" not in help_keys
            await _press(pilot, "escape")
            await _press(pilot, "q")
            # paper closes on the next quote; once the venue's ticks have run out the position can stay open,
            # and then quitting asks first (the question is the console's, not a fault of the flatten)
            await _until(pilot, lambda: app.exiting or isinstance(app.screen, ConfirmScreen), "quit or its question", 30)
            if not app.exiting:
                assert app.mode_screen.snapshot.position.position != 0, app.screen.query_one("#question").render()
                await _press(pilot, "y")
                await _until(pilot, lambda: app.exiting, "quit", 30)
    rec = app.driver.driver.recorder.counters
    assert rec["trades"] > 0 and rec["minutes"] > 0
    summary = app.mode_screen.session_summary()  # what `pbdtui live` prints when it closes
    assert summary.startswith("paper session ") and f" · {rec['fills']} fills · " in summary, (summary, rec)
    assert f"{app.mode_screen.minutes_closed} minutes closed" in summary and app.mode_screen.minutes_closed >= 1
    assert f"realised {app.mode_screen.snapshot.position.realized:+.2f} USDT" in summary
    assert " error" in summary and " warning" in summary  # the kill switch's alert, the entries pause's
    with Store(db, readonly=True) as st:
        stored = st.fetch("SELECT COUNT(*) FROM bars_1m WHERE ts_min >= ?", (CUT,))
    assert stored[0][0] >= 1  # the live minutes were recorded, not only the warm start's


async def test_live_console_on_an_exchange_kill_switch_and_flatten_confirmed_flat_by_it(source_db, tmp_path):
    """``pbdtui live --live`` against the loopback Bybit REST exchange (signatures checked, stops held)."""
    from loopback.bybit_rest import BybitRestVenue

    db = tmp_path / "live-exchange.db"
    _history(source_db, db)
    config = FeedConfig(url="ws://127.0.0.1:1/", stale_after=2.0, backoff_initial=0.01, backoff_max=0.05,
                        seed=1, grace_ms=200, flush_interval=0.01)
    async with BybitPublicVenue(StoreSource(source_db, start_ms=CUT), speed=20, seed=3) as venue:
        exchange = BybitRestVenue(api_key="console-key", api_secret="console-secret-9f3",
                                  quote=venue.quote, market_clock=venue.market_ms).start()
        try:
            app = create_live_app(SETTINGS, db, venue.url, feed_config=config, ui_interval=0.05,
                                  rest_url=exchange.url, api_key="console-key", api_secret="console-secret-9f3")
            assert app.mode == "LIVE"
            assert app.mode_screen.network == "loopback"  # the REST target's network, after LIVE in the status bar
            async with app.run_test(size=(160, 48)) as pilot:
                trader = app.driver.driver.trader
                await _until(pilot, lambda: trader.started and app.mode_screen.minutes and app.mode_screen.feed is not None,
                             "the exchange's start reconciliation and a minute")
                await _press(pilot, "e")  # the trader's pause: entries withheld, nothing latched
                # the status bar shows it at its next refresh, after the screen's state changed
                await _until(pilot, lambda: trader.entries_paused and app.mode_screen.entries_paused
                             and "ENTRIES PAUSED" in app.query_one(StatusBar).render().plain,
                             "the trader's entries pause on screen")
                assert not trader.kill_reasons
                await _press(pilot, "e")
                await _until(pilot, lambda: not trader.entries_paused and not app.mode_screen.entries_paused,
                             "entries resumed")
                await _press(pilot, "k")
                await _until(pilot, lambda: trader.kill_reasons.get("operator"), "the trader's kill switch")
                await _until(pilot, lambda: app.mode_screen.kill_on, "the kill switch on screen")
                await _press(pilot, "f")
                await _until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the flatten question")
                await _press(pilot, "y")
                await _until(pilot, lambda: any("FLAT confirmed by the exchange" in line for line in app.mode_screen.alert_lines),
                             "the exchange's confirmation", 60)
                assert exchange.position()[0] == 0
                await _until(pilot, lambda: "exchange  FLAT" in app.query_one(PositionPanel).render().plain
                             and "reconcile ok" in app.query_one(PositionPanel).render().plain,
                             "the exchange's side in the position panel")
                assert not any("console-secret-9f3" in line for line in app.mode_screen.alert_lines)
                await _press(pilot, "q")
                await _until(pilot, lambda: app.exiting, "quit", 30)
        finally:
            exchange.stop()
