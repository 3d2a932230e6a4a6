"""The Bybit v5 public WebSocket feed: trades, L1 book and ticker of one symbol, in time order.

``BybitPublicFeed`` connects to ``wss://stream.bybit.com/v5/public/linear``
(``"testnet"`` selects ``wss://stream-testnet.bybit.com/v5/public/linear``;
any ``ws://``/``wss://`` URL works, e.g. the loopback venue), subscribes to
``publicTrade.<SYM>``, ``orderbook.1.<SYM>`` and ``tickers.<SYM>`` (one
request per topic, ``req_id`` = the topic, so a refusal names its topic),
and yields small plain objects::

    async with BybitPublicFeed(instrument, FeedConfig(url="testnet")) as feed:
        async for event in feed:
            if isinstance(event, Ticks): ...      # trades/quotes/funding arrays, ts order
            elif isinstance(event, Ticker): ...   # merged ticker (mark price, funding)
            elif isinstance(event, FeedStatus): ...  # connected, refused, gap, stale, ...

Robustness, each with a counter in ``FeedCounters``:

* heartbeat: ``{"req_id": "<n>", "op": "ping"}`` every ``ping_interval``
  (Bybit asks for 20 s); the library's protocol-level pings are off, so the
  heartbeat is the one Bybit documents and a test can count it.
* silence: no frame for ``stale_after`` seconds -> ``stale`` status, the
  socket is aborted and the client reconnects. Measured from the end of the
  previous frame's handling, so time spent waiting for a slow consumer is
  not taken for silence. This also catches a server that keeps the TCP
  connection and its protocol pings alive but sends nothing (a "silent
  stall"), which protocol pings alone would not.
* reconnect: exponential backoff ``initial * factor**attempt`` capped at
  ``backoff_max``, times a jitter drawn uniformly from ``[1 - jitter, 1]``
  (seedable ``random.Random``), reset once a connection has delivered
  data; then every topic is subscribed again.
* refused subscription: a ``refused`` status (and counter), never an
  exception; the other topics go on.
* order: rows pass a ``ReorderBuffer`` (``grace_ms`` of exchange time) so
  trades, quotes and funding leave in exchange-time order; a row behind the
  watermark is delivered in a ``Ticks`` with ``late=True``.
* duplicates: trade ids seen within ``dedup_window_ms`` of exchange time
  (at most ``dedup_max_ids`` of them) are dropped, so a server repeating
  trades after a reconnect does not double them.
* gaps: after a reconnect, the first event reports a ``gap`` status with the
  exchange times of the last event before and the first event after.
* malformed frames are counted by topic (``DecodeStats``) and reported as
  ``malformed`` statuses with a one-line reason; they never end the feed.

Reading: ``websockets`` makes the connection (handshake, TLS, proxy,
compression) and sends; the frames it receives are split in bulk by
``engine.adapters.wsframes.BulkConnection`` (every message of a socket read
at once, as spans of the read's bytes) and decoded where they lie by
``FrameDecoder.decode_spans``; control frames still go to ``websockets``
(it answers pings and closes). What arrived while the previous frames were
handled is decoded together, up to ``max_batch_frames``: one frame at a
time at live rates, thousands after a reconnect or in a fast replay.

Times: every row keeps the exchange time (``T``/``cts``) in ``ts`` and the
receive time in ``local_ts`` (the time of the socket read that completed its
frame); statuses carry wall time. This module and ``wsframes`` are the live
edge, where the wall clock is read (``time.time`` for receive stamps, the
loop's monotonic clock for timeouts).

The client never imports the loopback venue (import-linter contract).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import websockets
from websockets.asyncio.client import connect

from engine.adapters.bybit.frames import (
    BOOK,
    BOOK_INVALID,
    CONTROL,
    MALFORMED,
    TRADES,
    Control,
    FrameDecoder,
    InstrumentLike,
    Ticker,
    warm_up,
)
from engine.adapters.reorder import ReorderBuffer
from engine.adapters.wsframes import BulkConnection
from engine.adapters.wsframes import warm_up as warm_up_reader
from engine.types import FUNDING_DTYPE, QUOTE_DTYPE, TRADE_DTYPE

log = logging.getLogger("pbdtui.feed")

MAINNET_URL = "wss://stream.bybit.com/v5/public/linear"
TESTNET_URL = "wss://stream-testnet.bybit.com/v5/public/linear"

# FeedStatus kinds
CONNECTING = "connecting"
CONNECTED = "connected"
SUBSCRIBED = "subscribed"
REFUSED = "refused"
DISCONNECTED = "disconnected"
RECONNECTING = "reconnecting"
STALE = "stale"
MALFORMED_FRAME = "malformed"
GAP = "gap"
BOOK_RESET = "book_reset"
CROSSED = "crossed"
CLOSED = "closed"

_K_TRADE, _K_QUOTE, _K_FUNDING = 0, 1, 2


def resolve_url(url: str | None) -> str:
    """``None``/``"mainnet"`` -> mainnet, ``"testnet"`` -> testnet, else the ``ws(s)://`` URL itself.

    Raises:
        ValueError: not a known network name nor a ws:// or wss:// URL.
    """
    if url is None or url == "mainnet":
        return MAINNET_URL
    if url == "testnet":
        return TESTNET_URL
    if urlsplit(url).scheme not in ("ws", "wss") or not urlsplit(url).hostname:
        raise ValueError(f"feed URL {url!r} is not 'mainnet', 'testnet' or a ws:// / wss:// URL")
    return url


@dataclass(frozen=True)
class FeedConfig:
    """Plain settings of one feed (the runtime maps its config onto these)."""

    url: str = MAINNET_URL  # or "testnet", or any ws:// URL (resolve_url)
    book_depth: int = 1  # orderbook.<depth>: 1 is the L1 stream (10 ms pushes)
    ping_interval: float = 20.0  # s between JSON pings (Bybit: "every 20 seconds")
    stale_after: float = 15.0  # s without any frame -> stale, reconnect
    backoff_initial: float = 0.5  # s before the first reconnect attempt
    backoff_factor: float = 2.0
    backoff_max: float = 30.0  # s, cap of the exponential delay
    jitter: float = 0.5  # delay x uniform(1 - jitter, 1)
    seed: int | None = None  # jitter RNG seed (tests); None: from the OS
    grace_ms: int = 200  # reorder grace, exchange ms
    flush_interval: float = 0.05  # s between releases of the reorder buffer
    batch_rows: int = 4096  # release at once when this many rows are held
    dedup_window_ms: int = 300_000  # trade ids remembered for this much exchange time
    dedup_max_ids: int = 500_000  # ... and at most this many
    open_timeout: float = 10.0  # s for the TCP + TLS + WebSocket handshake
    max_queue: int = 10_000  # events waiting for the consumer before the reader waits
    max_batch_frames: int = 4096  # frames decoded together, at most (reading pauses while this many wait)
    max_frame_bytes: int = 1 << 22


@dataclass(frozen=True)
class Ticks:
    """Rows released together, each array in ts order (``late``: behind the watermark at arrival)."""

    trades: np.ndarray  # TRADE_DTYPE
    quotes: np.ndarray  # QUOTE_DTYPE
    funding: np.ndarray  # FUNDING_DTYPE
    watermark: int  # every row with ts below this has now been delivered (late ones aside)
    late: bool = False


@dataclass(frozen=True)
class FeedStatus:
    """Something about the feed itself (``kind`` is one of the module's status constants)."""

    kind: str
    detail: str
    ts: int  # wall time, ms UTC
    delay: float = 0.0  # reconnecting: seconds until the attempt
    gap_from: int = 0  # gap: exchange time of the last event before the outage, ms
    gap_to: int = 0  # gap: exchange time of the first event after it, ms
    topic: str = ""  # subscribed / refused: the topic


@dataclass
class FeedCounters:
    """Everything the feed counted since it was created (``BybitPublicFeed.counters()`` copies it)."""

    frames: int = 0
    batches: int = 0  # decode steps: frames that arrived together are decoded together
    bytes: int = 0  # characters of text frames (= bytes for Bybit's ASCII JSON)
    connects: int = 0
    reconnects: int = 0  # connections after the first
    disconnects: int = 0
    connect_failures: int = 0
    stale: int = 0
    gaps: int = 0
    gap_ms: int = 0  # exchange time covered by gaps
    pings: int = 0
    pongs: int = 0
    subscribed: int = 0
    refused: int = 0
    trades: int = 0  # trade rows delivered (late ones included)
    quotes: int = 0
    funding: int = 0
    duplicates: int = 0  # trades dropped as already seen
    late: int = 0  # rows delivered flagged late
    ignored: int = 0  # frames of other symbols or topics
    crossed: int = 0
    empty_side: int = 0
    book_resets: int = 0  # u == 1
    malformed: dict[str, int] = field(default_factory=dict)  # by topic: publicTrade, orderbook, tickers, ...

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["malformed"] = dict(self.malformed)
        return out


class _RecentIds:
    """Trade ids seen lately: a set plus arrival order for eviction (bounded memory)."""

    def __init__(self, window_ms: int, max_ids: int):
        self.window_ms = window_ms
        self.max_ids = max_ids
        self.ids: set[int] = set()
        self.order: deque[tuple[int, int]] = deque()

    def fresh(self, trade_ids: np.ndarray, ts: np.ndarray, newest: int) -> np.ndarray:
        """A mask of the rows whose trade id was not seen before (nor earlier in these rows); remembers them."""
        ids, order = self.ids, self.order
        keep = np.ones(len(trade_ids), bool)
        for k, (tid, t) in enumerate(zip(trade_ids.tolist(), ts.tolist(), strict=True)):
            if tid in ids:
                keep[k] = False
            else:
                ids.add(tid)
                order.append((t, tid))
        horizon = newest - self.window_ms
        while order and (order[0][0] < horizon or len(order) > self.max_ids):
            ids.discard(order.popleft()[1])
        return keep


_END = object()


class BybitPublicFeed:
    """An asyncio client for one symbol's public topics; iterate it for events.

    Args:
        instrument: symbol, tick_size, qty_step (``engine.store.Instrument``).
        config: ``FeedConfig``; its ``url`` may be "mainnet", "testnet" or a URL.
        on_rows: called with every ``Ticks`` the moment it is delivered, before it waits in the queue
            for the consumer: a recorder takes the rows here, so what was received is on its way to
            disk even while the consumer (the engine) lags behind a burst or a starved CPU.

    The connection runs in a task started by the first iteration (or
    ``start()``); ``close()`` (or leaving ``async with``) stops it, releases
    the rows still held and ends the iteration after a ``closed`` status.
    """

    def __init__(self, instrument: InstrumentLike, config: FeedConfig | None = None,
                 on_rows: Callable[[Ticks], None] | None = None):
        self.config = config or FeedConfig()
        self.on_rows = on_rows
        self.url = resolve_url(self.config.url)
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.topics = (
            f"publicTrade.{self.symbol}",
            f"orderbook.{self.config.book_depth}.{self.symbol}",
            f"tickers.{self.symbol}",
        )
        self.decoder = FrameDecoder(instrument)
        self.buffer = ReorderBuffer((TRADE_DTYPE, QUOTE_DTYPE, FUNDING_DTYPE), self.config.grace_ms)
        self._recent = _RecentIds(self.config.dedup_window_ms, self.config.dedup_max_ids)
        self._counters = FeedCounters()
        self._rng = random.Random(self.config.seed)
        self._queue: asyncio.Queue[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._wake: asyncio.Event | None = None
        self._ws: BulkConnection | None = None
        self._last_rx = 0.0
        self._got_data = False  # this connection delivered rows (resets the backoff)
        self._last_event_ts: int | None = None
        self._gap_open: int | None = None  # last event ts before an outage, until the next event
        self._stale_hit = False
        self._in_frame = False
        self._ping_seq = 0
        self._seen_resets = 0

    # --- public ------------------------------------------------------------------

    def counters(self) -> FeedCounters:
        """A copy of the counters, the decoder's counts included."""
        c = replace(self._counters, malformed=dict(self.decoder.stats.malformed))
        s = self.decoder.stats
        c.ignored, c.crossed, c.empty_side, c.book_resets = s.ignored, s.crossed, s.empty_side, s.book_resets
        c.late = self.buffer.late
        return c

    def backlog(self) -> int:
        """Rows held in the reorder buffer plus events waiting for the consumer (0: all handed over)."""
        return self.buffer.held + (self._queue.qsize() if self._queue is not None else 0)

    def backoff_delay(self, attempt: int) -> float:
        """The delay before reconnect attempt ``attempt`` (0-based), jitter drawn from the feed's RNG."""
        cfg = self.config
        base = min(cfg.backoff_max, cfg.backoff_initial * cfg.backoff_factor ** min(attempt, 64))
        return base * (1.0 - cfg.jitter * self._rng.random())

    def start(self) -> None:
        """Start the connection task (iteration does it too)."""
        if self._task is None:
            self._queue = asyncio.Queue(self.config.max_queue)
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"bybit-feed-{self.symbol}")

    async def close(self) -> None:
        """Stop: close the socket, release what is held, end the iteration."""
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        ws = self._ws
        if ws is not None:
            ws.transport.abort()

    async def __aenter__(self) -> BybitPublicFeed:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
        if self._task is not None:
            # let the task release what it holds; a consumer that stopped reading may keep it waiting
            await asyncio.wait({self._task}, timeout=1.0)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def __aiter__(self) -> AsyncIterator[Ticks | Ticker | FeedStatus]:
        return self.events()

    async def events(self) -> AsyncIterator[Ticks | Ticker | FeedStatus]:
        """Every event in order, until the feed is closed."""
        self.start()
        assert self._queue is not None
        while True:
            item = await self._queue.get()
            if item is _END:
                self._queue.put_nowait(_END)  # a second iterator ends too
                return
            yield item

    # --- the connection loop ---------------------------------------------------------

    async def _emit(self, event: Any) -> None:
        assert self._queue is not None
        if self.on_rows is not None and isinstance(event, Ticks):
            self.on_rows(event)
        await self._queue.put(event)

    async def _status(self, kind: str, detail: str, **extra: Any) -> None:
        # the rare and the serious are logged; malformed frames are counted and reported as events only
        if kind in (REFUSED, STALE, DISCONNECTED, GAP, BOOK_RESET):
            log.warning("%s %s: %s", self.symbol, kind, detail)
        else:
            log.debug("%s %s: %s", self.symbol, kind, detail)
        await self._emit(FeedStatus(kind, detail, int(time.time() * 1000), **extra))

    async def _run(self) -> None:
        # the batch scanner's kernel is loaded (compiled on a fresh install) off the loop, before any frame:
        # its first use would otherwise stall the loop for seconds in the middle of the first burst
        await asyncio.to_thread(warm_up)
        await asyncio.to_thread(warm_up_reader)
        flusher = asyncio.get_running_loop().create_task(self._flush_loop())
        attempt = 0
        try:
            while not self._closing:
                self._got_data = False
                await self._status(CONNECTING, self.url)
                try:
                    await self._connection()
                except (TimeoutError, OSError, websockets.exceptions.WebSocketException) as exc:
                    if self._closing:
                        break
                    self._counters.connect_failures += 1
                    await self._status(DISCONNECTED, f"cannot connect to {self.url}: {type(exc).__name__}: {exc}")
                if self._closing:
                    break
                if self._got_data:
                    attempt = 0
                delay = self.backoff_delay(attempt)
                attempt += 1
                await self._status(RECONNECTING, f"attempt {attempt} in {delay:.2f} s", delay=delay)
                assert self._wake is not None
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            with contextlib.suppress(Exception):
                await self._release(flush=True)
                await self._status(CLOSED, "feed closed")
            assert self._queue is not None
            await self._queue.put(_END)

    async def _connection(self) -> None:
        host = urlsplit(self.url).hostname or ""
        loopback = host in ("127.0.0.1", "localhost", "::1")
        async with connect(
            self.url,
            ping_interval=None,  # JSON pings (Bybit's documented heartbeat) instead, see the module doc
            open_timeout=self.config.open_timeout,
            close_timeout=1.0,
            max_size=self.config.max_frame_bytes,
            proxy=None if loopback else True,
            compression=None if loopback else "deflate",
            create_connection=BulkConnection,
        ) as ws:
            self._ws = ws
            c = self._counters
            if c.connects:
                c.reconnects += 1
                if self._last_event_ts is not None:
                    self._gap_open = self._last_event_ts
            c.connects += 1
            self.decoder.reset_book()
            self._stale_hit = False
            loop = asyncio.get_running_loop()
            self._last_rx = loop.time()
            await self._status(CONNECTED, self.url)
            pinger = loop.create_task(self._ping_loop(ws))
            watchdog = loop.create_task(self._watchdog(ws))
            reason = "closed by the server"
            try:
                ws.max_frames = self.config.max_batch_frames
                for topic in self.topics:
                    await ws.send(json.dumps({"req_id": topic, "op": "subscribe", "args": [topic]}))
                while True:
                    await ws.ready.wait()
                    if ws.chunks:
                        await self._on_frames(*ws.take(self.config.max_batch_frames))
                        self._last_rx = loop.time()
                    elif ws.done:
                        raise ws.close_exc
                    else:
                        ws.ready.clear()
            except websockets.exceptions.ConnectionClosed as exc:
                reason = f"connection lost ({exc})"
            finally:
                self._ws = None
                pinger.cancel()
                watchdog.cancel()
                for task in (pinger, watchdog):
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            if self._stale_hit:
                reason = f"no frame for {self.config.stale_after:g} s"
            c.disconnects += 1
            if not self._closing:
                await self._status(DISCONNECTED, reason)

    async def _ping_loop(self, ws: BulkConnection) -> None:
        while True:
            await asyncio.sleep(self.config.ping_interval)
            self._ping_seq += 1
            await ws.send(f'{{"req_id":"{self._ping_seq}","op":"ping"}}')
            self._counters.pings += 1

    async def _watchdog(self, ws: BulkConnection) -> None:
        loop = asyncio.get_running_loop()
        limit = self.config.stale_after
        while True:
            await asyncio.sleep(max(0.005, limit / 4))
            silent = loop.time() - self._last_rx
            if silent > limit and not self._in_frame:
                self._stale_hit = True
                self._counters.stale += 1
                await self._status(STALE, f"no frame for {silent:.1f} s; reconnecting")
                ws.transport.abort()
                return

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.flush_interval)
            await self._release()

    async def _release(self, flush: bool = False) -> None:
        out = self.buffer.release(time.monotonic(), flush)
        if out is None:
            return
        trades, quotes, funding = out
        c = self._counters
        c.trades += len(trades)
        c.quotes += len(quotes)
        c.funding += len(funding)
        await self._emit(Ticks(trades, quotes, funding, self.buffer.watermark))

    # --- frames -------------------------------------------------------------------------

    async def _on_frames(self, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, recv_ms: np.ndarray) -> None:
        self._in_frame = True  # the watchdog ignores time spent here (a slow consumer is not silence)
        try:
            await self._handle_frames(buf, starts, ends, recv_ms)
        finally:
            self._in_frame = False

    async def _handle_frames(self, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, recv_ms: np.ndarray) -> None:
        """Decode frames received together (``buf[starts[i]:ends[i]]``, received at ``recv_ms[i]``);
        rows into the reorder buffer, then what the odd frames say.

        Events come in frame order, except that the rows of the whole batch
        (and a gap status) come at the place of its first data frame.
        """
        n = len(starts)
        c = self._counters
        c.frames += n
        c.batches += 1
        c.bytes += int((ends - starts).sum())
        dec = self.decoder
        notes: list[tuple[int, int, str, Ticker | None, bool]] = []  # frame, kind, reason, ticker, reset

        first_data = n  # the first frame that may have made rows
        following = 0  # the frame after the last one seen by on_slow; frames skipped in between were scanned

        def on_slow(i: int, kind: int) -> None:
            nonlocal first_data, following
            if i > following or kind == TRADES or kind == BOOK:
                first_data = min(first_data, following if i > following else i)
            following = i + 1
            ticker = None
            if dec.ticker_changed:
                dec.ticker_changed = False
                ticker = dec.ticker.ticker()
            reset = dec.stats.book_resets != self._seen_resets
            self._seen_resets = dec.stats.book_resets
            if ticker is not None or reset or kind not in (TRADES, BOOK):
                notes.append((i, kind, dec.reason, ticker, reset))

        dec.decode_spans(buf, starts, ends, recv_ms, on_slow)
        if following < n:
            first_data = min(first_data, following)
        k = 0
        while k < len(notes) and notes[k][0] < first_data:
            await self._note(notes[k])
            k += 1
        await self._rows(dec.take_trades(), dec.take_quotes(), dec.take_funding())
        for note in notes[k:]:
            await self._note(note)

    async def _rows(self, trades: np.ndarray, quotes: np.ndarray, funding: np.ndarray) -> None:
        c = self._counters
        mono = time.monotonic()
        buffer = self.buffer
        late = [trades[:0], quotes[:0], funding[:0]]
        first_ts = None
        if len(trades):
            newest = max(buffer.max_ts, int(trades["ts"].max()))
            fresh = trades[self._recent.fresh(trades["trade_id"], trades["ts"], newest)]
            c.duplicates += len(trades) - len(fresh)
            if len(fresh):
                first_ts = int(fresh["ts"][0])
                late[_K_TRADE] = buffer.add(_K_TRADE, fresh, mono)
        if len(quotes):
            first_ts = int(quotes["ts"][0]) if first_ts is None else min(first_ts, int(quotes["ts"][0]))
            late[_K_QUOTE] = buffer.add(_K_QUOTE, quotes, mono)
        if len(funding):
            late[_K_FUNDING] = buffer.add(_K_FUNDING, funding, mono)
        if first_ts is not None:
            self._got_data = True
            if self._gap_open is not None:
                gap_from, self._gap_open = self._gap_open, None
                c.gaps += 1
                c.gap_ms += max(0, first_ts - gap_from)
                await self._status(GAP, f"no data from {gap_from} to {first_ts} ({(first_ts - gap_from) / 1000:.3f} s "
                                   "of exchange time) across a reconnect", gap_from=gap_from, gap_to=first_ts)
            self._last_event_ts = buffer.max_ts
        if len(late[0]) or len(late[1]) or len(late[2]):
            c.trades += len(late[0])
            c.quotes += len(late[1])
            c.funding += len(late[2])
            await self._emit(Ticks(late[0], late[1], late[2], buffer.watermark, late=True))
        if buffer.held >= self.config.batch_rows:
            await self._release()

    async def _note(self, note: tuple[int, int, str, Ticker | None, bool]) -> None:
        """What one frame decoded by ``FrameDecoder.decode`` reports: a status, a control, a ticker."""
        _, kind, reason, ticker, reset = note
        dec = self.decoder
        if kind == MALFORMED:
            await self._status(MALFORMED_FRAME, reason)
        elif kind == CONTROL:
            await self._on_control(dec.controls.pop(0))
        elif kind == BOOK_INVALID:
            await self._status(CROSSED, reason)
        if reset:
            await self._status(BOOK_RESET, "order book reset by the exchange (u == 1)")
        if ticker is not None:
            await self._emit(ticker)

    async def _on_control(self, ctl: Control) -> None:
        c = self._counters
        if ctl.kind == "pong":
            c.pongs += 1
        elif ctl.kind == "subscribe":
            topic = ctl.req_id if ctl.req_id in self.topics else ""
            if not topic:
                topic = next((t for t in self.topics if t in ctl.message), "")
            if ctl.success:
                c.subscribed += 1
                await self._status(SUBSCRIBED, topic or "(no req_id)", topic=topic)
            else:
                c.refused += 1
                await self._status(REFUSED, f"subscription to {topic or 'a topic'} refused: {ctl.message}",
                                   topic=topic)
