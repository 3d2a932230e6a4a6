"""The live feed: reorder buffer, and BybitPublicFeed against a real WebSocket server on 127.0.0.1.

The loopback venue serves a hand-built session as fast as the client reads;
under every fault the trades the client delivers must be exactly those the
venue served whole (nothing lost, nothing doubled), in exchange-time order,
and the fault must be reported.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.server import serve

from engine.adapters.bybit import ws as feed_module
from engine.adapters.bybit.frames import FrameDecoder, Ticker
from engine.adapters.bybit.ws import BybitPublicFeed, FeedConfig, FeedStatus, Ticks, resolve_url
from engine.adapters.reorder import ReorderBuffer
from engine.store import Instrument, Store
from engine.types import FUNDING_DTYPE
from loopback.bybit_ws import BybitPublicVenue
from loopback.faults import FaultError, parse_fault, parse_faults
from loopback.source import ArraySource
from tests.helpers import random_stream, shared_file

BTC = Instrument("BTCUSDT", 0.1, 0.001)
START = 1_767_571_200_000  # 2026-01-05 00:00 UTC


# --- reorder buffer ------------------------------------------------------------------------------


ROW = np.dtype([("ts", "i8"), ("tag", "i8")])  # a row kind: exchange time and a label


def rows(*pairs: tuple[int, int]) -> np.ndarray:
    return np.array(list(pairs), dtype=ROW)


def pairs(arr: np.ndarray) -> list[tuple[int, int]]:
    return [tuple(r) for r in arr.tolist()]


def released(out: list[np.ndarray] | None) -> list[list[tuple[int, int]]] | None:
    return None if out is None else [pairs(a) for a in out]


def test_reorder_buffer_releases_in_ts_order_after_the_grace_and_flags_late_rows():
    buf = ReorderBuffer((ROW, ROW), grace_ms=100)
    assert pairs(buf.add(0, rows((1000, 1), (1050, 2)), now=0.0)) == []
    assert pairs(buf.add(1, rows((1020, 11)), now=0.0)) == []
    assert buf.release(now=0.0) is None  # newest 1050: nothing is 100 ms old yet
    buf.add(1, rows((1140, 12)), now=0.01)
    assert released(buf.release(now=0.01)) == [[(1000, 1)], [(1020, 11)]]  # ts <= 1140 - 100
    assert buf.watermark == 1041
    assert pairs(buf.add(0, rows((1030, 0)), now=0.02)) == [(1030, 0)]  # behind the watermark: late
    assert pairs(buf.add(0, rows((1045, 3)), now=0.02)) == []  # after it: still put in order
    assert buf.release(now=0.02) is None
    # no newer exchange time for grace_ms of wall time: everything held goes
    assert released(buf.release(now=0.2)) == [[(1045, 3), (1050, 2)], [(1140, 12)]]
    assert buf.late == 1 and buf.held == 0 and buf.watermark == 1141


def test_reorder_buffer_keeps_the_rows_of_a_chunk_that_are_not_late():
    buf = ReorderBuffer((ROW,), grace_ms=10)
    buf.add(0, rows((100, 1), (200, 2)), now=0.0)
    assert released(buf.release(now=0.0)) == [[(100, 1)]]  # watermark 191
    assert pairs(buf.add(0, rows((150, 3), (195, 4), (190, 5), (300, 6)), now=0.0)) == [(150, 3), (190, 5)]
    assert released(buf.release(now=0.0, flush=True)) == [[(195, 4), (200, 2), (300, 6)]]
    assert buf.late == 2 and buf.held == 0


def test_reorder_buffer_wall_rule_never_passes_the_newest_time_seen():
    buf = ReorderBuffer((ROW,), grace_ms=50)
    buf.add(0, rows((500, 1)), now=0.0)
    assert released(buf.release(now=10.0)) == [[(500, 1)]]
    # a paused replay resumes with rows just after the newest seen: not late
    assert pairs(buf.add(0, rows((501, 2)), now=20.0)) == []


@pytest.mark.parametrize("seed", range(5))
def test_reorder_buffer_restores_order_of_rows_displaced_less_than_the_grace(seed):
    rng = random.Random(seed)
    want = sorted((rng.randrange(0, 5000), k) for k in range(400))
    arrival = sorted(want, key=lambda r: r[0] + rng.uniform(0, 80))  # each at most 80 ms late
    buf = ReorderBuffer((ROW,), grace_ms=100)
    out = []
    k = 0
    while k < len(arrival):
        n = rng.choice((1, 1, 2, 5))  # chunks of one or a few rows, as reads deliver them
        assert pairs(buf.add(0, rows(*arrival[k:k + n]), now=k * 1e-4)) == []
        k += n
        got = buf.release(now=k * 1e-4)
        if got:
            out += pairs(got[0])
    out += pairs((buf.release(now=0, flush=True) or [rows()])[0])
    assert [r[0] for r in out] == [r[0] for r in want] and sorted(out) == want


# --- the client against the loopback venue ---------------------------------------------------------------


def session(minutes: int = 3, seed: int = 4) -> ArraySource:
    trades, quotes = random_stream(seed, minutes, start_ms=START, price=650_000, trades_per_min=300,
                                   quotes_per_min=500)
    trades["trade_id"] = START + np.arange(len(trades))
    funding = np.array([(START, 0.0001), (START + 90_000, -0.0002)], dtype=FUNDING_DTYPE)
    return ArraySource(BTC, trades, quotes, funding)


def fast_config(url: str, **changes) -> FeedConfig:
    base = dict(url=url, stale_after=0.4, backoff_initial=0.01, backoff_max=0.05, seed=1, grace_ms=200,
                ping_interval=0.1, flush_interval=0.01)
    base.update(changes)
    return FeedConfig(**base)


async def eventually(condition, timeout: float = 20.0) -> None:
    """Wait until ``condition()`` holds (checked every few ms), or fail."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


class Run:
    """One feed against one venue, events collected."""

    def __init__(self, venue: BybitPublicVenue, config: FeedConfig):
        self.venue = venue
        self.feed = BybitPublicFeed(BTC, config)
        self.ticks: list[Ticks] = []
        self.statuses: list[FeedStatus] = []
        self.tickers: list[Ticker] = []

    async def consume(self) -> None:
        async for ev in self.feed:
            if isinstance(ev, Ticks):
                self.ticks.append(ev)
            elif isinstance(ev, FeedStatus):
                self.statuses.append(ev)
            else:
                self.tickers.append(ev)

    async def until_served(self, also=lambda: True) -> None:  # noqa: ANN001 - a condition checked with the frames
        task = asyncio.get_running_loop().create_task(self.consume())
        await self.venue.finished.wait()
        # the check and the close run with no await between them: nothing is sent after a condition held
        await eventually(lambda: self.feed.counters().frames >= self.venue.stats.frames_sent and also())
        await self.feed.close()
        await asyncio.wait_for(task, 10)

    def kinds(self) -> list[str]:
        return [s.kind for s in self.statuses]

    def delivered(self, field: str) -> np.ndarray:
        return np.concatenate([getattr(t, field) for t in self.ticks])


def dedup_consecutive(rows: list) -> list:
    out = []
    for r in rows:
        if not out or out[-1][1:] != r[1:]:
            out.append(r)
    return out


def check_exact(run: Run) -> None:
    """Delivered == served: every trade once, quotes and funding as sent, each kind in ts order."""
    served = run.venue.served_trades()
    got = run.delivered("trades")
    assert len(got) == len(served) > 0
    assert len(set(got["trade_id"].tolist())) == len(got)  # nothing doubled
    key = ["ts", "trade_id"]
    a, b = np.sort(got, order=key), np.sort(served, order=key)
    for f in ("ts", "px", "qty", "side", "trade_id"):
        assert np.array_equal(a[f], b[f]), f
    assert (got["local_ts"] >= got["ts"] - 60_000).all()  # receive times are wall clock, not copies
    in_order = [t for t in run.ticks if not t.late]
    for f in ("trades", "quotes", "funding"):
        ts = np.concatenate([getattr(t, f)["ts"] for t in in_order])
        assert (np.diff(ts) >= 0).all(), f
    want_q = dedup_consecutive([(ts, *l1) for ts, l1 in run.venue.served_quotes])
    quotes = run.delivered("quotes")
    assert sorted(quotes[["ts", "bid_px", "bid_sz", "ask_px", "ask_sz"]].tolist()) == sorted(want_q)
    want_f = []
    for ts, rate in run.venue.served_funding:
        if not want_f or want_f[-1][1] != rate:
            want_f.append((ts, rate))
    assert sorted(run.delivered("funding").tolist()) == sorted(want_f)


FAULT_CASES = {
    "drop@400": lambda r, c: ("gap" in r.kinds() and c.reconnects == 1 and c.gaps == 1
                              and r.venue.stats.faults == {"drop": 1}),
    "stall@400": lambda r, c: ("stale" in r.kinds() and "gap" in r.kinds() and c.stale == 1 and c.reconnects == 1),
    "garbage/50": lambda r, c: (c.malformed_total == r.venue.stats.faults["garbage"] > 20
                                and r.kinds().count("malformed") == c.malformed_total and c.reconnects == 0),
    "truncated/50": lambda r, c: c.malformed_total == r.venue.stats.faults["truncated"] > 20,
    "duplicate/20": lambda r, c: c.duplicates >= r.venue.stats.faults["duplicate"] > 20,  # a frame may hold several
    # held 3 book frames back (~0.4 s of this session): within a 1 s grace all is put back in order ...
    "reorder:3/10": lambda r, c: r.venue.stats.faults["reorder"] > 20 and c.late == 0,
    # ... with no grace the displaced trades arrive behind the watermark: delivered, flagged late
    "reorder:3/11": lambda r, c: c.late > 0 and sum(len(t.trades) for t in r.ticks if t.late) == c.late,
    "reset@300": lambda r, c: "book_reset" in r.kinds() and c.book_resets == 1,
    "refuse": lambda r, c: ("refused" in r.kinds() and c.refused == 1 and c.subscribed == 2
                            and len(r.delivered("funding")) == 0 and not r.tickers),
}


@pytest.mark.parametrize("fault", list(FAULT_CASES))
async def test_every_fault_delivers_exactly_the_served_trades_and_is_reported(fault):
    async with BybitPublicVenue(session(), speed=0, faults=parse_faults([fault]), record=True, seed=3) as venue:
        grace = {"reorder:3/10": 1000, "reorder:3/11": 0}.get(fault, 200)
        run = Run(venue, fast_config(venue.url, grace_ms=grace))
        await run.until_served()
    check_exact(run)
    c = run.feed.counters()
    assert FAULT_CASES[fault](run, c), (c.as_dict(), venue.stats, run.kinds())
    assert run.kinds()[-1] == "closed"


async def test_all_faults_at_once_and_a_second_drop_still_lose_and_double_nothing():
    faults = parse_faults(["drop@300", "drop@1500", "stall@900", "garbage/70", "truncated/90", "duplicate/30",
                           "reorder/25", "reset@200"])
    async with BybitPublicVenue(session(minutes=4, seed=9), speed=0, faults=faults, record=True, seed=5) as venue:
        run = Run(venue, fast_config(venue.url))
        await run.until_served()
    check_exact(run)
    c = run.feed.counters()
    assert c.reconnects == 3 and c.gaps == 3 and c.stale == 1 and c.duplicates > 0 and c.malformed_total > 0


async def test_pings_are_answered_and_tickers_carry_funding_and_mark_price():
    async with BybitPublicVenue(session(minutes=1), speed=60, record=True) as venue:
        run = Run(venue, fast_config(venue.url, ping_interval=0.05))
        # a ping written just before the client closes (an abort) may never be read: close once the venue has all
        await run.until_served(lambda: run.feed.counters().pings == venue.stats.pings)
    c = run.feed.counters()
    # every ping reached the venue and was answered; the last pong may still be in flight at the end
    assert c.pings >= 3 and c.pings == venue.stats.pings and c.pings - 1 <= c.pongs <= c.pings
    assert run.tickers and run.tickers[-1].mark_price and run.tickers[-1].next_funding_time == START + 8 * 3_600_000
    assert run.delivered("funding").tolist()[0] == (START, 0.0001)
    check_exact(run)


async def test_backoff_grows_exponentially_with_seeded_jitter_up_to_the_cap():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = FeedConfig(url=f"ws://127.0.0.1:{port}/v5/public/linear", backoff_initial=0.01, backoff_factor=2.0,
                     backoff_max=0.04, jitter=0.5, seed=11, open_timeout=1.0)
    feed = BybitPublicFeed(BTC, cfg)
    delays, stamps = [], []
    async for ev in feed:
        if isinstance(ev, FeedStatus) and ev.kind == "reconnecting":
            delays.append(ev.delay)
            stamps.append(ev.ts)  # emitted (wall ms), not received: a busy consumer reads them in bursts
            if len(delays) == 6:
                await feed.close()
    rng = random.Random(11)
    want = [min(0.04, 0.01 * 2**k) * (1 - 0.5 * rng.random()) for k in range(6)]
    assert delays == pytest.approx(want)
    assert all(stamps[k + 1] - stamps[k] >= delays[k] * 1000 * 0.95 - 1 for k in range(5))  # 1 ms resolution
    assert feed.counters().connect_failures >= 6


async def test_the_real_capture_replayed_by_a_plain_server_reaches_the_engine_in_order():
    frames = [json.loads(line) for line in open(shared_file("bybit_v5/linear_capture.jsonl"))]
    texts = [d["raw"] for d in frames if d["dir"] == "recv"]
    got_requests: list[dict] = []

    async def handler(ws):
        for _ in range(3):
            got_requests.append(json.loads(await ws.recv()))
        for text in texts:
            await ws.send(text)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}/v5/public/linear"
        feed = BybitPublicFeed(BTC, fast_config(url, stale_after=30))
        ticks: list[Ticks] = []

        async def consume():
            async for ev in feed:
                if isinstance(ev, Ticks):
                    ticks.append(ev)

        task = asyncio.get_running_loop().create_task(consume())
        await eventually(lambda: feed.counters().frames >= len(texts))
        await feed.close()
        await task
    assert [r["args"] for r in got_requests] == [["publicTrade.BTCUSDT"], ["orderbook.1.BTCUSDT"],
                                                 ["tickers.BTCUSDT"]]
    assert all(r["op"] == "subscribe" and r["req_id"] == r["args"][0] for r in got_requests)
    c = feed.counters()
    trades = np.concatenate([t.trades for t in ticks])
    assert len(trades) == c.trades == 56 and c.malformed == {} and c.quotes > 100 and c.funding == 1
    assert (np.diff(trades["ts"]) >= 0).all()


async def test_a_burst_of_frames_is_decoded_in_batches_with_the_rows_of_frame_by_frame_decoding():
    """Frames that arrive together are decoded together (decode_many): same rows, statuses and tickers."""
    rnd = random.Random(2)
    texts, bid = [], 650_000
    for k in range(3000):
        bid += rnd.choice((-1, 0, 1))
        if k % 5:
            texts.append(json.dumps({"topic": "orderbook.1.BTCUSDT", "type": "snapshot", "ts": START + k + 1,
                                     "data": {"s": "BTCUSDT", "b": [[f"{bid / 10:.2f}", f"{rnd.randint(1, 99)}.000"]],
                                              "a": [[f"{(bid + 1) / 10:.2f}", "1.000"]], "u": k + 2, "seq": k},
                                     "cts": START + k}, separators=(",", ":")))
        else:
            texts.append(json.dumps({"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": START + k + 1, "data": [
                {"T": START + k, "s": "BTCUSDT", "S": "Buy", "v": "0.001", "p": f"{bid / 10:.2f}",
                 "i": f"00000000-0000-4000-8000-{k:012d}"}]}, separators=(",", ":")))
        if k % 700 == 1:
            texts.append('{"topic":"orderbook.1.BTCUSDT","data":')  # truncated: a malformed status each
        if k % 1000 == 2:
            texts.append(json.dumps({"topic": "tickers.BTCUSDT", "type": "snapshot", "ts": START + k, "data": {
                "symbol": "BTCUSDT", "markPrice": f"{bid / 10:.2f}", "fundingRate": f"0.000{k // 1000 + 1}"}}))

    async def handler(ws):
        for _ in range(3):
            req = json.loads(await ws.recv())
            await ws.send(json.dumps({"success": True, "ret_msg": "", "conn_id": "c", "req_id": req["req_id"],
                                      "op": "subscribe"}))
        for text in texts:
            await ws.send(text)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}"
        run = Run(None, fast_config(url, stale_after=30))  # type: ignore[arg-type]
        task = asyncio.get_running_loop().create_task(run.consume())
        await eventually(lambda: run.feed.counters().frames >= len(texts) + 3)
        await run.feed.close()
        await asyncio.wait_for(task, 10)
    c = run.feed.counters()
    assert c.batches < c.frames // 4  # the frames that arrived together were decoded together
    want = FrameDecoder(BTC)
    for text in texts:
        want.decode(text, 0)
    for name, rows in (("trades", want.take_trades()), ("quotes", want.take_quotes())):
        got = run.delivered(name)
        assert len(got) == len(rows) > 500
        for f in rows.dtype.names:
            if f != "local_ts":
                assert np.array_equal(got[f], rows[f]), (name, f)
    assert run.delivered("funding").tolist() == want.take_funding().tolist()
    assert run.kinds().count("malformed") == c.malformed_total == 5 and run.kinds().count("subscribed") == 3
    assert [t.mark_price for t in run.tickers] == [want_t for want_t in _marks(texts)]


def _marks(texts: list[str]) -> list[float]:
    return [float(json.loads(t)["data"]["markPrice"]) for t in texts if t.startswith('{"topic": "tickers')]


def test_urls_mainnet_testnet_or_any_ws_url():
    assert resolve_url(None) == resolve_url("mainnet") == "wss://stream.bybit.com/v5/public/linear"
    assert resolve_url("testnet") == "wss://stream-testnet.bybit.com/v5/public/linear"
    assert resolve_url("ws://127.0.0.1:9/x") == "ws://127.0.0.1:9/x"
    with pytest.raises(ValueError, match="not 'mainnet'"):
        resolve_url("http://example.com")
    assert feed_module.BybitPublicFeed(BTC, FeedConfig(url="testnet")).url.startswith("wss://stream-testnet")


def test_the_venue_binds_only_to_loopback():
    with pytest.raises(ValueError, match="127.0.0.1 only"):
        BybitPublicVenue(session(minutes=1), host="0.0.0.0")


def test_fault_specs_parse_with_defaults_and_bad_ones_are_refused():
    assert parse_fault("drop").spec == "drop@300"
    assert parse_fault("drop@30s").span_ms == 30_000 and not parse_fault("drop@30s").repeat
    assert parse_fault("garbage/50").repeat and parse_fault("garbage/50").frames == 50
    assert parse_fault("stall:2@500").arg == "2" and parse_fault("refuse:orderbook").arg == "orderbook"
    assert [f.kind for f in parse_faults(["drop@10,reset@5", "reorder:4/7"])] == ["drop", "reset", "reorder"]
    for bad in ("explode", "drop@-1", "drop@x", "garbage:3/5", "refuse@10", "stall:abc"):
        with pytest.raises(FaultError):
            parse_fault(bad)


# --- pbdtui exchange-sim ----------------------------------------------------------------------------------


def test_exchange_sim_rejects_a_bad_fault_with_status_2(capsys):
    from pbdtui.cli import main

    assert main(["exchange-sim", "--db", "x.db", "--fault", "explode"]) == 2
    assert "unknown kind 'explode'" in capsys.readouterr().err


async def test_exchange_sim_prints_its_url_first_and_serves_a_database(tmp_path):
    src = session(minutes=2)
    db = tmp_path / "s.db"
    with Store(db, BTC) as store:
        store.append_ticks("trade", src.trades, "test")
        store.append_ticks("quote", src.quotes, "test")
        store.append_funding(src.funding)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "pbdtui.cli", "exchange-sim", "--db", str(db), "--speed", "0",
                             "--fault", "garbage/100", "--port", "0"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = await asyncio.to_thread(proc.stdout.readline)  # type: ignore[union-attr]
        assert url.startswith("ws://127.0.0.1:") and url.rstrip().endswith("/v5/public/linear")
        feed = BybitPublicFeed(BTC, fast_config(url.strip()))
        n = 0
        async for ev in feed:
            if isinstance(ev, Ticks):
                n += len(ev.trades)
                if n >= len(src.trades):
                    await feed.close()
        assert n == len(src.trades) and feed.counters().malformed_total > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(proc.communicate, timeout=20)
    assert proc.returncode == 0, err
    assert "exchange-sim: 1 connection(s)" in err and "'garbage'" in err

