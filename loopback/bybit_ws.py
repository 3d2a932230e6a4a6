"""A Bybit v5 public WebSocket venue on 127.0.0.1: real frames, a chosen speed, injectable faults.

``BybitPublicVenue(source, speed=..., faults=[...])`` serves one market
timeline (``loopback.source``) to every connection subscribed to its
topics, the way Bybit's public linear stream does:

* requests: ``{"op": "subscribe", "args": [...], "req_id": ...}`` answered
  with Bybit's linear ack (``req_id`` echoed); ``{"op": "ping"}`` answered
  with the linear pong. Topics: ``publicTrade.<SYM>``,
  ``orderbook.<depth>.<SYM>``, ``tickers.<SYM>``; anything else is refused.
* ``publicTrade``: one frame per millisecond of trades; ``orderbook``: a
  snapshot first (per connection), then deltas (lots 0 delete the old best
  level); ``tickers``: a snapshot first, then partial deltas (funding rate
  and next funding time when the rate changes, mark/index/last price and
  the top of book every second).
* pacing: ``speed`` x real time of the exchange timestamps; ``speed <= 0``
  sends as fast as the connections take it. With ``pause_when_idle`` (the
  default) the market waits while nobody is subscribed, so a client that
  reconnects finds the session where it left it. A connection that does
  not read (or is stalled by a fault) holds the market back until it goes
  away: a loopback venue for one client at a time, mainly.
* faults (``loopback.faults``): drop, stall, garbage, truncated,
  duplicate, reorder, reset, refuse.

With ``record=True`` the venue keeps what it *served*: each trade in a frame
written whole to a socket (and the wall time it was written), each L1 and
funding rate sent whole, so a test can check that a client delivered exactly
those (nothing lost, nothing doubled), or that a client killed at a known
instant lost only what it received in its last second. Frames a fault destroyed or never sent are not in the record.

The venue binds only to loopback addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import string
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import websockets
from websockets.asyncio.server import Server, ServerConnection, serve

from engine.types import TRADE_DTYPE
from loopback.encode import BybitEncoder, pong, subscribe_ack
from loopback.faults import Fault
from loopback.source import FUNDING, QUOTE, TICK, TRADE, Item, timeline

log = logging.getLogger("pbdtui.exchange_sim")

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
PATH = "/v5/public/linear"
REPLAY_ON_SUBSCRIBE = 3  # trade frames repeated to a new subscriber by the duplicate fault
SEND_BATCH = 256  # frames written together at most (all that is queued when the sender would wait)

_GARBAGE = (
    "{\"op\":",
    "[1,2,3]",
    "null",
    "\u0000\u0001\u0002\u00ff\ufffd",
    '{"topic":"publicTrade.{sym}","type":"snapshot","ts":1,"data":[{"T":"soon","s":"{sym}"}]}',
    '{"topic":"orderbook.1.{sym}","type":"delta","ts":"x","data":5}',
    '{"topic":"tickers.{sym}","type":"delta","data":{"symbol":"{sym}","fundingRate":"NaN%"},"ts":1}',
    "<html><body>502 Bad Gateway</body></html>",
)


@dataclass
class VenueStats:
    """What the venue did, in all."""

    connections: int = 0
    subscriptions: int = 0
    refused: int = 0
    pings: int = 0
    frames_sent: int = 0  # every text frame written: data, acks, pongs, junk
    data_frames: int = 0  # market frames handled (the clock of frame-counted faults)
    trades_served: int = 0
    quotes_served: int = 0
    faults: dict[str, int] = field(default_factory=dict)


class _Conn:
    """One client connection: its subscriptions, what it was last sent, its queues."""

    def __init__(self, ws: ServerConnection, conn_id: str, limit: int):
        self.ws = ws
        self.conn_id = conn_id
        self.alive = True
        self.topics: dict[str, str] = {}  # TRADE/QUOTE/TICK -> the subscribed topic name
        self.need_book = False  # a book snapshot is owed
        self.need_ticker = False
        self.replay_trades = False  # duplicate fault: repeat recent trade frames first
        self.l1: tuple[int, int, int, int] | None = None  # the book as this client knows it
        self.u = 0
        self.seq = 0
        self.cs = 0
        self.ctrl: deque[str] = deque()  # acks, pongs: sent before the next data frame
        self.data: deque[Item] = deque()
        self.limit = limit
        self.wake = asyncio.Event()
        self.space = asyncio.Event()
        self.space.set()
        self.drained = asyncio.Event()
        self.drained.set()
        self.stalled = False
        self.held: list[tuple[str, Item]] = []  # reorder fault: trade frames held back
        self.hold_left = 0
        self.out: list[str] = []  # frames sent but not yet written: one write for many (see _flush)

    def close(self) -> None:
        self.alive = False
        self.wake.set()
        self.space.set()
        self.drained.set()

    async def put(self, item: Item) -> None:
        while self.alive and len(self.data) >= self.limit:
            self.space.clear()
            await self.space.wait()
        if self.alive:
            self.data.append(item)
            self.drained.clear()
            self.wake.set()


class BybitPublicVenue:
    """The venue; ``async with BybitPublicVenue(src) as venue: ... venue.url ...``.

    Args:
        source: ``loopback.source.StoreSource``/``ArraySource`` (``instrument``, ``funding``, ``slices()``).
        speed: x real time; ``<= 0`` as fast as possible.
        faults: ``loopback.faults.Fault`` objects (``parse_faults``).
        host, port: a loopback address only; port 0 picks a free one.
        seed: junk, truncation points and connection ids are drawn from it.
        record: keep the served trades, L1s and funding rates (tests).
        pause_when_idle: the market waits while nobody is subscribed.
    """

    def __init__(self, source: Any, speed: float = 1.0, faults: list[Fault] | tuple[Fault, ...] = (),
                 host: str = "127.0.0.1", port: int = 0, seed: int = 1, record: bool = False,
                 pause_when_idle: bool = True):
        if host not in LOOPBACK_HOSTS:
            raise ValueError(f"the loopback venue binds to 127.0.0.1 only, not {host!r}")
        self.source = source
        inst = source.instrument
        self.symbol = inst.symbol
        self.encoder = BybitEncoder(inst.symbol, inst.tick_size, inst.qty_step)
        self.speed = float(speed)
        self.faults = list(faults)
        self.host, self.port = host, port
        self.rng = random.Random(seed)
        self.record = record
        self.pause_when_idle = pause_when_idle
        self.stats = VenueStats()
        self.conns: set[_Conn] = set()
        self.finished = asyncio.Event()  # every item handed to every connection and sent
        self._subscribed = asyncio.Event()
        self._server: Server | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._first_ts: int | None = None
        self._recent_trades: deque[str] = deque(maxlen=REPLAY_ON_SUBSCRIBE)
        self._served_trades: list[np.ndarray] = []
        self._served_at: list[float] = []  # wall time (epoch s) each of those frames was written
        self.served_quotes: list[tuple[int, tuple[int, int, int, int]]] = []
        self.served_funding: list[tuple[int, float]] = []
        self._armed: dict[str, Fault] = {}
        self._market_ts = -1  # exchange time of the newest item handed to the connections
        self._market_at = 0.0  # monotonic time it was
        self._market_shown = -1  # the latest market_ms() answered: the clock never steps back from it
        self._market_lock = threading.Lock()  # market_ms() is read from the REST venue's threads too
        self._market_l1: tuple[int, int, int, int] | None = None
        self._refuse = [f for f in self.faults if f.kind == "refuse"]
        self.url = ""

    # --- life cycle ----------------------------------------------------------------

    async def start(self) -> str:
        """Bind, start serving; returns ``ws://127.0.0.1:<port>/v5/public/linear``."""
        self._server = await serve(self._handler, self.host, self.port, compression=None, ping_interval=None,
                                   max_size=1 << 20, close_timeout=1.0)
        port = next(iter(self._server.sockets)).getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"ws://{host}:{port}{PATH}"
        self._pump_task = asyncio.get_running_loop().create_task(self._pump(), name="exchange-sim-pump")
        return self.url

    async def stop(self) -> None:
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump_task
        for conn in list(self.conns):
            conn.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    async def __aenter__(self) -> BybitPublicVenue:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        """Serve until cancelled (the CLI)."""
        await asyncio.Future()

    def market_ms(self) -> int:
        """Exchange time of the market now (-1 before the first item).

        The newest item served plus the wall time since, as a client's live
        clock (``engine.runtime.clock.LiveClock``) reckons it. A loopback REST
        venue following this stream takes it as its market clock
        (``BybitRestVenue(market_clock=...)``), so fills carry the stream's
        time line even when the stream runs faster than real time, or has ended.

        It never steps back, as an exchange's clock does not: while the
        venue waits on a slow client its reckoning runs on past the next
        item's time, and a fill stamped after that must not be earlier than
        one stamped before (a daemon drops executions older than its start).
        """
        if self._market_ts < 0:
            return -1
        with self._market_lock:
            now = max(self._market_shown, self._market_ts + int((time.monotonic() - self._market_at) * 1000))
            self._market_shown = now
            return now

    def quote(self) -> tuple[float, float] | None:
        """The current top of book (bid, ask) in prices, for a REST venue filling at it; None before any."""
        l1 = self._market_l1
        if l1 is None:
            return None
        tick = self.source.instrument.tick_size
        return round(l1[0] * tick, 10), round(l1[2] * tick, 10)

    def served_trades(self) -> np.ndarray:
        """Every trade served whole, in the order sent (TRADE_DTYPE as stored)."""
        if not self._served_trades:
            return np.zeros(0, TRADE_DTYPE)
        return np.concatenate(self._served_trades)

    def served_trade_times(self) -> np.ndarray:
        """Wall time (epoch ms) each trade of ``served_trades()`` was written to its socket (a crash test's clock)."""
        frames, times = list(self._served_trades), list(self._served_at)
        n = min(len(frames), len(times))
        if not n:
            return np.zeros(0, np.int64)
        return np.repeat(np.round(np.asarray(times[:n]) * 1000).astype(np.int64), [len(f) for f in frames[:n]])

    # --- requests from clients ----------------------------------------------------------

    def _conn_id(self) -> str:
        alphabet = string.ascii_lowercase + "0123456789"
        head = "".join(self.rng.choice(alphabet) for _ in range(20))
        return f"{head}-{''.join(self.rng.choice(alphabet) for _ in range(5))}"

    async def _handler(self, ws: ServerConnection) -> None:
        conn = _Conn(ws, self._conn_id(), limit=64 if self.speed <= 0 else 4096)
        conn.u = self.rng.randrange(1_000_000, 100_000_000)  # an update id well past 1 (1 means a reset)
        conn.seq = self.rng.randrange(10**11, 10**12)
        self.conns.add(conn)
        self.stats.connections += 1
        sender = asyncio.get_running_loop().create_task(self._sender(conn))
        try:
            async for message in ws:
                if not conn.stalled:
                    self._request(conn, message)
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            conn.close()
            self.conns.discard(conn)
            self._update_subscribed()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    def _request(self, conn: _Conn, message: str | bytes) -> None:
        try:
            req = json.loads(message)
        except ValueError:
            return
        if not isinstance(req, dict):
            return
        op = req.get("op")
        req_id = req.get("req_id")
        req_id = req_id if isinstance(req_id, str) else ""
        if op == "ping":
            self.stats.pings += 1
            conn.ctrl.append(pong(conn.conn_id, req_id))
        elif op == "subscribe":
            self._subscribe(conn, req.get("args"), req_id)
        conn.wake.set()

    def _topic_kind(self, topic: Any) -> str | None:
        if not isinstance(topic, str):
            return None
        parts = topic.split(".")
        if len(parts) == 2 and parts[0] == "publicTrade" and parts[1] == self.symbol:
            return TRADE
        if len(parts) == 2 and parts[0] == "tickers" and parts[1] == self.symbol:
            return TICK
        if len(parts) == 3 and parts[0] == "orderbook" and parts[1] in ("1", "50", "200", "500", "1000") \
                and parts[2] == self.symbol:
            return QUOTE
        return None

    def _subscribe(self, conn: _Conn, args: Any, req_id: str) -> None:
        topics = args if isinstance(args, list) else []
        kinds = [self._topic_kind(t) for t in topics]
        bad = [t for t, k in zip(topics, kinds, strict=True) if k is None]
        refused = ""
        for fault in self._refuse:
            prefix = fault.arg or "tickers"
            if not fault.fired and any(isinstance(t, str) and t.startswith(prefix) for t in topics):
                fault.fired += 1
                self._count_fault("refuse")
                refused = f"Invalid symbol :[{','.join(str(t) for t in topics)}]"
        if not topics or bad or refused:
            self.stats.refused += 1
            message = refused or f"Invalid symbol :[{','.join(str(t) for t in (bad or topics))}]"
            conn.ctrl.append(subscribe_ack(conn.conn_id, req_id, success=False, message=message))
            return
        for topic, kind in zip(topics, kinds, strict=True):
            assert kind is not None
            conn.topics[kind] = topic
            self.stats.subscriptions += 1
            if kind == QUOTE:
                conn.need_book = True
            elif kind == TICK:
                conn.need_ticker = True
            elif any(f.kind == "duplicate" for f in self.faults):
                conn.replay_trades = True
        conn.ctrl.append(subscribe_ack(conn.conn_id, req_id))
        self._update_subscribed()

    def _update_subscribed(self) -> None:
        if any(c.alive and c.topics for c in self.conns):
            self._subscribed.set()
        else:
            self._subscribed.clear()

    # --- the market ------------------------------------------------------------------------

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        enc = self.encoder
        trade_topic, ticker_topic = f"publicTrade.{self.symbol}", f"tickers.{self.symbol}"
        t0: int | None = None
        w0 = 0.0
        n = 0
        cs = 1_000_000
        prepare = getattr(self.source, "prepare", None)
        if prepare is not None:  # e.g. a simulated session generated after the URL is printed
            await prepare()
        for item in timeline(self.source):
            if self.pause_when_idle:
                self._update_subscribed()
                await self._subscribed.wait()
            if self._first_ts is None:
                self._first_ts = item.ts
            if self.speed > 0:
                if t0 is None:
                    t0, w0 = item.ts, loop.time()
                delay = w0 + (item.ts - t0) / 1000.0 / self.speed - loop.time()
                if delay > 0.002:
                    await asyncio.sleep(delay)
                elif delay < -1.0:  # held back (idle, a stalled client): resume the pace from here
                    w0 -= delay
            if item.kind == TRADE:
                assert item.trades is not None
                item.text = enc.trades(item.trades, trade_topic)
            elif item.kind in (FUNDING, TICK):
                cs += 1
                values = enc.ticker_fields(item.ts, item.l1, item.last_px, item.rate)
                if item.kind == FUNDING:
                    values = {k: values[k] for k in ("fundingRate", "nextFundingTime") if k in values}
                else:
                    values.pop("fundingRate", None)
                    values.pop("nextFundingTime", None)
                item.text = enc.ticker(ticker_topic, "delta", item.ts, values, cs)
            # the exchange's clock and book move when the event happens, before any client is handed it: a
            # client that gets it while the venue waits on a slower connection must not be ahead of the venue
            if item.ts > self._market_ts:
                self._market_ts, self._market_at = item.ts, time.monotonic()
            if item.l1 is not None:
                self._market_l1 = item.l1
            for conn in [c for c in self.conns if c.alive and c.topics]:
                await conn.put(item)
            n += 1
            if n % 64 == 0:
                await asyncio.sleep(0)
        for conn in list(self.conns):
            conn.wake.set()
            await conn.drained.wait()
        self.finished.set()

    def _count_fault(self, kind: str) -> None:
        self.stats.faults[kind] = self.stats.faults.get(kind, 0) + 1

    # --- one connection's frames ---------------------------------------------------------------

    async def _send(self, conn: _Conn, text: str) -> bool:
        """Queue one frame on ``conn``; written at the next ``_flush`` (at most ``SEND_BATCH`` frames later)."""
        if not conn.alive:
            return False
        conn.out.append(text)
        if len(conn.out) >= SEND_BATCH or conn.held:  # reorder fault: the frames around held trades go one by one
            return await self._flush(conn)
        return True

    async def _flush(self, conn: _Conn) -> bool:
        """Write the queued frames with one ``transport.write`` (a syscall per frame was most of the venue's time).

        The frames are made by ``websockets``' protocol (``send_text``: its
        state checks, its extensions), only written together; then the
        connection's flow control is respected as ``send`` would.
        """
        out, conn.out = conn.out, []
        if not out:
            return conn.alive
        ws = conn.ws
        try:
            for text in out:
                ws.protocol.send_text(text.encode("utf-8", "surrogatepass"))
            ws.transport.write(b"".join(ws.protocol.data_to_send()))
            await ws.drain()
        except (websockets.exceptions.InvalidState, websockets.exceptions.ConnectionClosed, ConnectionError):
            conn.close()
            return False
        self.stats.frames_sent += len(out)
        return True

    async def _sender(self, conn: _Conn) -> None:
        while conn.alive:
            while conn.ctrl and conn.alive and not conn.stalled:
                await self._send(conn, conn.ctrl.popleft())
            if not conn.data:
                if conn.held:
                    await self._flush_held(conn)
                    continue
                await self._flush(conn)  # nothing more to send now: write what is queued before waiting
                if conn.data or conn.held:  # put while the flush awaited the socket: its wake-up is not lost
                    continue
                conn.drained.set()
                conn.wake.clear()
                if not conn.ctrl:
                    await conn.wake.wait()
                continue
            item = conn.data.popleft()
            conn.space.set()
            await self._serve_item(conn, item)

    async def _serve_item(self, conn: _Conn, item: Item) -> None:
        kind = item.kind
        topic = conn.topics.get(TICK if kind == FUNDING else kind)
        if conn.need_book and QUOTE in conn.topics and item.l1 is not None and kind != QUOTE:
            await self._book_frame(conn, item, snapshot=True)
        if conn.need_ticker and TICK in conn.topics:
            await self._ticker_snapshot(conn, item)
            if kind in (FUNDING, TICK):
                return  # the snapshot holds what the delta would have said
        if topic is None:
            return
        self.stats.data_frames += 1
        session_ms = item.ts - (self._first_ts or item.ts)
        for fault in self.faults:
            if fault.due(self.stats.data_frames, session_ms):
                self._armed[fault.kind] = fault
        armed = self._armed
        if "drop" in armed:
            del armed["drop"]
            self._count_fault("drop")
            await self._flush(conn)
            conn.alive = False
            with contextlib.suppress(Exception):
                await conn.ws.close(1011, "loopback fault: drop")
            conn.close()
            return
        if "stall" in armed:
            fault = armed.pop("stall")
            self._count_fault("stall")
            await self._stall(conn, float(fault.arg) if fault.arg else None)
            if not conn.alive:
                return
        if "garbage" in armed:
            del armed["garbage"]
            self._count_fault("garbage")
            junk = self.rng.choice(_GARBAGE).replace("{sym}", self.symbol)
            if self.rng.random() < 0.3:
                junk = "".join(chr(self.rng.randrange(32, 127)) for _ in range(self.rng.randrange(1, 80)))
            await self._send(conn, junk)
        if kind == TRADE:
            await self._trade_frame(conn, item)
        elif kind == QUOTE:
            await self._book_frame(conn, item, snapshot=conn.need_book)
        else:
            await self._text_frame(conn, item.text, item)
        if conn.held and kind != TRADE:
            conn.hold_left -= 1
            if conn.hold_left <= 0:
                await self._flush_held(conn)

    async def _stall(self, conn: _Conn, seconds: float | None) -> None:
        await self._flush(conn)
        conn.stalled = True
        try:
            if seconds is None:
                await conn.ws.wait_closed()
                conn.close()
            else:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(conn.ws.wait_closed(), seconds)
                conn.ctrl.clear()  # pings of the stall went unanswered
        finally:
            conn.stalled = False

    def _truncate(self, text: str) -> str | None:
        """The fault's cut copy of ``text`` when truncation is armed, else None."""
        if "truncated" not in self._armed:
            return None
        del self._armed["truncated"]
        self._count_fault("truncated")
        return text[: self.rng.randrange(1, max(2, len(text) - 1))]

    async def _trade_frame(self, conn: _Conn, item: Item) -> None:
        if conn.replay_trades:
            conn.replay_trades = False
            for old in list(self._recent_trades):
                self._count_fault("duplicate")
                await self._send(conn, old)
        text = item.text
        if "reorder" in self._armed or conn.held:
            if not conn.held:
                fault = self._armed.pop("reorder")
                self._count_fault("reorder")
                conn.hold_left = int(float(fault.arg)) if fault.arg else 3
            conn.held.append((text, item))
            return
        await self._send_trades(conn, text, item)

    async def _send_trades(self, conn: _Conn, text: str, item: Item) -> None:
        cut = self._truncate(text)
        if cut is not None:
            await self._send(conn, cut)
            return
        if not await self._send(conn, text):
            return
        self._recent_trades.append(text)
        assert item.trades is not None
        self.stats.trades_served += len(item.trades)
        if self.record:
            self._served_trades.append(item.trades)
            self._served_at.append(time.time())
        if "duplicate" in self._armed:
            del self._armed["duplicate"]
            self._count_fault("duplicate")
            await self._send(conn, text)

    async def _flush_held(self, conn: _Conn) -> None:
        await self._flush(conn)
        held, conn.held = conn.held, []
        for text, item in held:
            await self._send_trades(conn, text, item)

    async def _book_frame(self, conn: _Conn, item: Item, snapshot: bool) -> None:
        new = item.l1
        assert new is not None
        topic = conn.topics[QUOTE]
        old = conn.l1
        reset = "reset" in self._armed
        if reset:
            del self._armed["reset"]
            self._count_fault("reset")
            conn.u = 0
        conn.u += 1
        conn.seq += 1 + (conn.seq % 7)
        if snapshot or reset or old is None:
            text = self.encoder.book(topic, "snapshot", item.l1_ts, [(new[0], new[1])], [(new[2], new[3])],
                                     conn.u, conn.seq)
        else:
            bids: list[tuple[int, int]] = []
            asks: list[tuple[int, int]] = []
            if new[0] != old[0]:
                bids = [(old[0], 0), (new[0], new[1])]
            elif new[1] != old[1]:
                bids = [(new[0], new[1])]
            if new[2] != old[2]:
                asks = [(old[2], 0), (new[2], new[3])]
            elif new[3] != old[3]:
                asks = [(new[2], new[3])]
            text = self.encoder.book(topic, "delta", item.l1_ts, bids, asks, conn.u, conn.seq)
        cut = self._truncate(text)
        if cut is not None:
            await self._send(conn, cut)
            return
        if await self._send(conn, text):
            conn.need_book = False
            conn.l1 = new
            self.stats.quotes_served += 1
            if self.record:
                self.served_quotes.append((item.l1_ts, new))

    async def _ticker_snapshot(self, conn: _Conn, item: Item) -> None:
        conn.cs += 1
        values = self.encoder.ticker_fields(item.ts, item.l1, item.last_px, item.rate)
        text = self.encoder.ticker(conn.topics[TICK], "snapshot", item.ts, values, conn.cs)
        if await self._send(conn, text):
            conn.need_ticker = False
            if self.record and item.rate is not None:
                self.served_funding.append((item.ts, item.rate))

    async def _text_frame(self, conn: _Conn, text: str, item: Item) -> None:
        cut = self._truncate(text)
        if cut is not None:
            await self._send(conn, cut)
            return
        if await self._send(conn, text) and self.record and item.kind == FUNDING and item.rate is not None:
            self.served_funding.append((item.ts, item.rate))
