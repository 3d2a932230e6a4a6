"""Bybit v5 public frames to engine records: pure decoding, no I/O, no clock.

One module for every place Bybit's public messages are read: the live
WebSocket client (``engine.adapters.bybit.ws``) and the order-book archive
importer (``engine.importers.import_bybit_book``: the archive is the same
message format, one per line). Trade ids go through ``engine.ids`` like the
trade archive's ``trdMatchID``, so a trade recorded live and read back from
an archive has the same ``trade_id``.

``FrameDecoder`` turns the text (or parsed dict) of one frame into rows for
one instrument (prices in ticks, sizes in lots, rounded half-to-even like
``engine.units``):

* ``publicTrade.<SYM>`` -> ``TRADE_DTYPE`` rows: ``ts`` = ``T`` (match time),
  ``local_ts`` = the receive time passed in, side from ``S`` (taker side),
  ``trade_id`` from ``i``.
* ``orderbook.<depth>.<SYM>`` -> ``QUOTE_DTYPE`` rows: the book is kept per
  decoder (snapshot replaces it, so does ``u == 1``, the exchange's
  service-restart snapshot; size 0 deletes a level) and a row is made only
  when the best bid or ask (price or size) changes; ``ts`` = ``cts`` (the
  matching engine's time, comparable with trades' ``T``; ``ts`` when absent).
  A crossed book or an empty side makes no row and is counted.
* ``tickers.<SYM>`` -> the merged ticker (snapshot, then partial deltas: a
  key missing from a delta has not changed) and a ``FUNDING_DTYPE`` row
  ``(ts, fundingRate)`` whenever the rate changes.
* frames with ``op`` (subscribe acks and refusals, pongs) -> ``Control``.

Bad frames (invalid JSON, missing fields, wrong types, absurd values) never
raise out of ``decode``: they are counted by topic in ``DecodeStats`` with a
one-line reason. A trade frame with one bad trade keeps its good trades (the
frame still counts as malformed): losing real prints because a neighbour is
odd would be worse than the odd print. Frames for other symbols and topics
are ignored (counted, not malformed).

Rows accumulate in plain lists of tuples (``trades``, ``quotes``,
``funding``) and become arrays in ``take_*``: building a numpy array per
frame would cost more than decoding it (~3 us per array against ~6 us per
frame).

``decode_many`` decodes a list of frames with the same results: L1
snapshots and clean trade frames are scanned from bytes straight into row
arrays by a numba kernel (``framescan``, ~1 us a frame against ~10 us for
``decode``), every other frame goes through ``decode`` in its place. The
live client decodes together the frames that arrived while it was busy.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from heapq import heapify, heappop, heappush
from typing import Any, Protocol

import numpy as np

from engine.adapters.bybit import framescan as fs
from engine.adapters.bybit.framescan import GRID_TOLERANCE, TS_MAX_MS, TS_MIN_MS
from engine.ids import trade_id_of
from engine.types import (
    FUNDING_DTYPE,
    MAX_PRICE_TICKS,
    MAX_SIZE_LOTS,
    QUOTE_DTYPE,
    SIDE_BUY,
    SIDE_SELL,
    TRADE_DTYPE,
)

try:  # orjson parses a frame in ~3 us against ~10 us for json on the reference machine
    import orjson

    _loads: Any = orjson.loads
except ImportError:  # pragma: no cover - orjson is a declared dependency; json keeps it working
    _loads = json.loads

# GRID_TOLERANCE, TS_MIN_MS, TS_MAX_MS: defined with the batch scanner (framescan), which must use the same
MAX_FUNDING_RATE = 1.0  # |rate| above 100 % per interval is absurd (Bybit caps near 0.5 %)

# what decode() returns
IGNORED = 0  # another symbol or topic
TRADES = 1
BOOK = 2  # a book message applied (a quote row only if the L1 changed)
BOOK_INVALID = 3  # applied, but the book is crossed or a side is empty: no quote row
TICKER = 4
CONTROL = 5
MALFORMED = -1

# topic keys of DecodeStats.malformed
T_TRADE, T_BOOK, T_TICKER, T_CONTROL, T_FRAME = "publicTrade", "orderbook", "tickers", "control", "frame"

_SIDES = {"Buy": SIDE_BUY, "Sell": SIDE_SELL}


class InstrumentLike(Protocol):
    """What the decoder needs of ``engine.store.Instrument`` (or ``Settings``)."""

    symbol: str
    tick_size: float
    qty_step: float


class BadFrame(ValueError):
    """A message that cannot be used at all (the book is left untouched)."""


def _units(value: float, unit: float, limit: float, what: str, text: Any, side: str, plural: str,
           key: str) -> int:
    """``value`` as a whole number of ``unit`` (ticks or lots); BadFrame when too large or off the grid."""
    ratio = value / unit
    if not ratio < limit:
        raise BadFrame(f"{what} {_text(text)} in '{side}' is too large: at least {limit:.0e} {plural} of {unit:g}")
    n = round(ratio)
    if abs(ratio - n) > GRID_TOLERANCE:
        raise BadFrame(f"{what} {_text(text)} in '{side}' is not a multiple of {key} {unit:g}")
    return n


def _short(value: Any) -> str:
    """A value for a one-line reason: repr, cut to 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- order book (shared with the archive importer) ------------------------------


class BookSide:
    """One side of an order book: ticks -> lots, with the best level from a lazy heap.

    The heap holds ``sign * ticks`` (bids negated, so the top is the best
    bid); deleted levels stay in the heap until they reach the top. A price
    is pushed only when it is not already a level, so every level has at least
    one heap entry. Rejected: a sorted list with bisect (O(n) inserts on a
    500-level book at every delta).
    """

    def __init__(self, is_bid: bool):
        self.sign = -1 if is_bid else 1
        self.levels: dict[int, int] = {}
        self.heap: list[int] = []

    def reset(self, ticks: list[int], lots: list[int]) -> None:
        self.levels = {t: q for t, q in zip(ticks, lots, strict=True) if q > 0}
        self.heap = [self.sign * t for t in self.levels]
        heapify(self.heap)

    def update(self, ticks: list[int], lots: list[int]) -> None:
        levels, heap, sign = self.levels, self.heap, self.sign
        for t, q in zip(ticks, lots, strict=True):
            if q == 0:
                levels.pop(t, None)
            else:
                if t not in levels:
                    heappush(heap, sign * t)
                levels[t] = q
        if len(heap) > 2 * len(levels) + 1024:  # too many stale entries: rebuild
            self.heap = [sign * t for t in levels]
            heapify(self.heap)

    def best(self) -> int | None:
        heap, levels = self.heap, self.levels
        while heap and self.sign * heap[0] not in levels:
            heappop(heap)
        return self.sign * heap[0] if heap else None


def parse_levels(raw: Any, side: str, instrument: InstrumentLike) -> tuple[list[int], list[int]]:
    """[[price, size], ...] as (ticks, lots); size 0 means "delete the level".

    Plain Python per level: deltas hold a handful of levels, where numpy's
    per-call cost is larger than the work (measured 4x slower per message).
    Rounding is half-to-even like ``units.to_ticks``. The bounds are the
    importers' (``engine.types.MAX_PRICE_TICKS``, ``MAX_SIZE_LOTS``): a bid
    priced 1e300 would otherwise be the best bid for good and cross every
    later book. Off-grid sizes are refused like off-grid prices.

    Raises:
        BadFrame: not a list of [price, size] pairs, or a price/size that is
            unparsable, not finite, non-positive (price), negative (size),
            off the tick or lot grid, too large, or a positive price or size
            below one tick or lot.
    """
    if not isinstance(raw, list):
        raise BadFrame(f"'{side}' is not a list")
    tick, step = instrument.tick_size, instrument.qty_step
    ticks: list[int] = []
    lots: list[int] = []
    isfinite = math.isfinite
    for level in raw:
        try:
            price_text, size_text = level
            price, size = float(price_text), float(size_text)
        except (TypeError, ValueError, OverflowError) as exc:
            raise BadFrame(f"unparsable '{side}' level {_short(level)}") from exc
        if not (isfinite(price) and isfinite(size)):
            raise BadFrame(f"non-finite price or size in '{side}' level {_short(level)}")
        if price <= 0:
            raise BadFrame(f"non-positive price {_text(price_text)} in '{side}'")
        if size < 0:
            raise BadFrame(f"negative size {_text(size_text)} in '{side}'")
        t = _units(price, tick, MAX_PRICE_TICKS, "price", price_text, side, "ticks", "tick_size")
        if t < 1:
            raise BadFrame(f"price {_text(price_text)} in '{side}' is below one tick_size {tick:g}")
        q = _units(size, step, MAX_SIZE_LOTS, "size", size_text, side, "lots", "qty_step")
        if q == 0 and size > 0:  # would delete the level: a size is 0 or at least one lot
            raise BadFrame(f"size {_text(size_text)} in '{side}' is below one qty_step {step:g}")
        ticks.append(t)
        lots.append(q)
    return ticks, lots


def _text(value: Any) -> str:
    """A level's price or size as written (a string as is, else its repr), cut to 40 characters."""
    return value if isinstance(value, str) and len(value) <= 40 else _short(value)


def _utc_day(ms: int) -> str:
    if not -62_135_596_800_000 <= ms < 253_402_300_800_000:
        return "a time outside years 1-9999"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms // 1000))


def _message_time(value: Any) -> int:
    """A message's ``ts``/``cts``: an integer or its decimal text (a float, bool or list is refused)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"not an integer: {_short(value)}")
    return int(value)


L1 = tuple[int, int, int, int]  # bid ticks, bid lots, ask ticks, ask lots


def apply_book_message(
    msg: Any, instrument: InstrumentLike, bids: BookSide, asks: BookSide, have_book: bool,
    local_ts: int | None = None, ts_range: tuple[int, int] | None = None,
) -> tuple[int, int, L1] | str:
    """Apply one order-book message; returns (ts, local_ts, L1) or a problem with the resulting book.

    ``ts`` is ``cts`` (``ts`` when absent); ``local_ts`` is the given
    receive time, else the message's ``ts`` (archives carry no receive time).
    A snapshot, or any message with ``u == 1`` (the exchange restarted its
    book service), replaces the book; a delta updates it. ``ts_range``
    (inclusive ms bounds; the importers' plausible range) refuses a message
    whose ``ts`` or ``cts`` lies outside it.

    Raises:
        BadFrame: the message itself is unusable (book untouched): not an
            object, no snapshot/delta ``type`` or ``data`` object, another
            symbol, bad ``ts``/``cts``, a bad level, or a delta before any
            snapshot.
    """
    if not isinstance(msg, dict):
        raise BadFrame("message is not a JSON object")
    data = msg.get("data")
    kind = msg.get("type")
    if not isinstance(data, dict) or kind not in ("snapshot", "delta"):
        raise BadFrame("malformed message: needs 'type' snapshot/delta and a 'data' object")
    symbol = data.get("s")
    if symbol is None:
        symbol = str(msg.get("topic", "")).rsplit(".", 1)[-1]
    if symbol != instrument.symbol:
        raise BadFrame(f"symbol {_short(symbol)} is not {instrument.symbol}")
    try:
        msg_ts = _message_time(msg["ts"])
        cts = msg.get("cts")
        ts = msg_ts if cts is None else _message_time(cts)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise BadFrame("missing or unparsable 'ts'/'cts'") from exc
    if ts_range is not None:
        for name, value in (("ts", msg_ts), ("cts", ts)):
            if not ts_range[0] <= value <= ts_range[1]:
                raise BadFrame(f"'{name}' {_short(value)} ({_utc_day(value)}) is outside the plausible range "
                               f"{_utc_day(ts_range[0])[:10]} .. {_utc_day(ts_range[1])[:10]} (config "
                               "plausible_from, plausible_until_days)")
    b_ticks, b_lots = parse_levels(data.get("b", []), "b", instrument)
    a_ticks, a_lots = parse_levels(data.get("a", []), "a", instrument)
    if kind == "snapshot" or data.get("u") == 1:
        bids.reset(b_ticks, b_lots)
        asks.reset(a_ticks, a_lots)
    else:
        if not have_book:
            raise BadFrame("delta before the first snapshot")
        bids.update(b_ticks, b_lots)
        asks.update(a_ticks, a_lots)
    bid, ask = bids.best(), asks.best()
    if bid is None or ask is None:
        return "empty book side: " + ("bids" if bid is None else "asks")
    if bid >= ask:
        return f"crossed book: best bid {bid} >= best ask {ask} ticks"
    return ts, msg_ts if local_ts is None else local_ts, (bid, bids.levels[bid], ask, asks.levels[ask])


@dataclass(frozen=True)
class _Warm:
    symbol: str = "BTCUSDT"
    tick_size: float = 0.1
    qty_step: float = 0.001


_WARM_FRAME = ('{"topic":"orderbook.1.BTCUSDT","type":"snapshot","ts":1767571200002,"data":{"s":"BTCUSDT",'
               '"b":[["86605.80","0.850"]],"a":[["86605.90","0.435"]],"u":2,"seq":2},"cts":1767571200000}')


def warm_up() -> None:
    """Load the batch scanner's kernel now (numba's cache, or a compile on a fresh install).

    Its first call costs seconds (more on a busy machine); a live client
    calls this before connecting, off its event loop.
    """
    dec = FrameDecoder(_Warm())
    dec.decode_many([_WARM_FRAME] * max(1, dec.scan_min_frames), 0)


def _take(rows: list[tuple], chunks: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    """The rows of ``chunks`` then ``rows`` as one array; both emptied."""
    if rows:
        chunks.append(np.array(rows, dtype=dtype))
        rows.clear()
    if not chunks:
        return np.zeros(0, dtype)
    out = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
    chunks.clear()
    return out


def _layout(frames: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames end to end in one byte buffer: (buffer, starts, ends).

    Text frames are joined and encoded at once when all are ASCII (the
    exchange's case); otherwise each is encoded (a lone surrogate kept as
    bytes the scanner refuses) and a parsed dict gets no bytes at all: the
    scanner hands such frames to ``decode``.
    """
    try:
        raw = "\n".join(frames).encode("ascii")
        lens = np.fromiter(map(len, frames), dtype=np.int64, count=len(frames))
    except (TypeError, UnicodeEncodeError):
        parts = [f.encode("utf-8", "surrogatepass") if isinstance(f, str)
                 else bytes(f) if isinstance(f, bytes | bytearray | memoryview) else b"" for f in frames]
        raw = b"\n".join(parts)
        lens = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
    ends = np.cumsum(lens + 1) - 1
    return np.frombuffer(raw, dtype=np.uint8), ends - lens, ends


# --- plain results ----------------------------------------------------------------


@dataclass(frozen=True)
class Control:
    """A non-data frame: a subscribe/unsubscribe answer, a pong, or another ``op``.

    ``kind`` is ``"subscribe"``, ``"unsubscribe"``, ``"pong"`` or the frame's
    ``op``; ``success`` is the frame's ``success`` (True for pongs without it).
    """

    kind: str
    success: bool
    message: str  # ret_msg, e.g. "Invalid symbol :[tickers.NOPEUSDT]"
    req_id: str
    conn_id: str


@dataclass(frozen=True)
class Ticker:
    """The merged ``tickers`` state of one symbol (None: not received yet)."""

    ts: int  # exchange time of the latest ticker message, ms
    mark_price: float | None
    index_price: float | None
    last_price: float | None
    funding_rate: float | None  # the rate of the coming funding time (changes until then)
    next_funding_time: int | None  # ms
    funding_interval_hours: int | None


def _positive(text: Any, key: str) -> float:
    if type(text) is not str:
        raise BadFrame(f"'{key}' {_short(text)} is not a string")
    try:
        x = float(text)
    except ValueError:
        raise BadFrame(f"unparsable '{key}' {_short(text)}") from None
    if not 0.0 < x < math.inf or "_" in text:
        raise BadFrame(f"'{key}' {_short(text)} is not a positive finite number")
    return x


def _rate(text: Any, key: str) -> float:
    if type(text) is not str:
        raise BadFrame(f"'{key}' {_short(text)} is not a string")
    try:
        x = float(text)
    except ValueError:
        raise BadFrame(f"unparsable '{key}' {_short(text)}") from None
    if not abs(x) <= MAX_FUNDING_RATE or "_" in text:
        raise BadFrame(f"absurd '{key}' {_short(text)}")
    return x


def _ms_text(text: Any, key: str) -> int:
    if type(text) is not str or not text.isascii() or not text.isdigit():
        raise BadFrame(f"'{key}' {_short(text)} is not a time in ms")
    value = int(text)
    if not TS_MIN_MS <= value <= TS_MAX_MS:
        raise BadFrame(f"absurd '{key}' {_short(text)}")
    return value


def _hours(text: Any, key: str) -> int:
    if type(text) is not str or not text.isascii() or not text.isdigit() or not 0 < int(text) <= 1000:
        raise BadFrame(f"'{key}' {_short(text)} is not a number of hours")
    return int(text)


# ticker keys parsed into typed values (others are kept as the exchange's text)
_TICKER_TYPED = {
    "markPrice": _positive,
    "indexPrice": _positive,
    "lastPrice": _positive,
    "fundingRate": _rate,
    "nextFundingTime": _ms_text,
    "fundingIntervalHour": _hours,
}


@dataclass
class TickerState:
    """The merged ticker: ``fields`` as the exchange wrote them, ``values`` typed."""

    ts: int = 0
    fields: dict[str, Any] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    def ticker(self) -> Ticker:
        v = self.values
        return Ticker(self.ts, v.get("markPrice"), v.get("indexPrice"), v.get("lastPrice"),
                      v.get("fundingRate"), v.get("nextFundingTime"), v.get("fundingIntervalHour"))


@dataclass
class DecodeStats:
    """Counts of one decoder; ``malformed`` and ``last_reason`` by topic key (``T_*``)."""

    frames: int = 0
    trades: int = 0  # trade rows made
    quotes: int = 0  # quote rows made
    funding: int = 0  # funding rows made
    ignored: int = 0  # other symbols and topics
    controls: int = 0
    crossed: int = 0  # book messages leaving the book crossed (no quote row)
    empty_side: int = 0  # book messages leaving a side empty (no quote row)
    book_resets: int = 0  # messages with u == 1
    malformed: dict[str, int] = field(default_factory=dict)
    last_reason: dict[str, str] = field(default_factory=dict)

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())


class FrameDecoder:
    """Decodes the public frames of one instrument; keeps its book and ticker between frames.

    Args:
        instrument: symbol, tick_size and qty_step (``engine.store.Instrument``).

    Usage::

        dec = FrameDecoder(instrument)
        kind = dec.decode(text, recv_ms)        # TRADES, BOOK, ..., MALFORMED
        dec.decode_many(texts, recv_ms)         # the same, many frames at once (a numba scan)
        trades = dec.take_trades()              # TRADE_DTYPE rows since the last take
    """

    scan_min_frames = 8  # decode_many scans from this many frames on (measured: ~5x decode's cost for one frame)

    def __init__(self, instrument: InstrumentLike):
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.tick = float(instrument.tick_size)
        self.step = float(instrument.qty_step)
        self.trade_topic = f"publicTrade.{self.symbol}"
        self.ticker_topic = f"tickers.{self.symbol}"
        self._book_suffix = f".{self.symbol}"
        self.trades: list[tuple[int, int, int, int, int, int]] = []
        self.quotes: list[tuple[int, int, int, int, int, int]] = []
        self._trade_chunks: list[np.ndarray] = []  # rows of decode_many, in order before ``trades``
        self._quote_chunks: list[np.ndarray] = []
        self._sym = np.frombuffer(self.symbol.encode("utf-8"), dtype=np.uint8)
        self.funding: list[tuple[int, float]] = []
        self.controls: list[Control] = []
        self.bids, self.asks = BookSide(True), BookSide(False)
        self.have_book = False
        self.last_l1: L1 | None = None
        self.ticker = TickerState()
        self.ticker_changed = False  # set when a typed ticker value changed; the caller clears it
        self.last_rate: float | None = None
        self.stats = DecodeStats()
        self.reason = ""  # "<topic>: <reason>" of the last malformed or invalid frame

    # --- results ---------------------------------------------------------------

    def take_trades(self) -> np.ndarray:
        return _take(self.trades, self._trade_chunks, TRADE_DTYPE)

    def take_quotes(self) -> np.ndarray:
        return _take(self.quotes, self._quote_chunks, QUOTE_DTYPE)

    def take_funding(self) -> np.ndarray:
        out = np.array(self.funding, dtype=FUNDING_DTYPE) if self.funding else np.zeros(0, FUNDING_DTYPE)
        self.funding.clear()
        return out

    def reset_book(self) -> None:
        """Forget the book (a new connection): deltas wait for the next snapshot.

        The last L1 is kept, so a snapshot repeating it makes no new row.
        """
        self.have_book = False
        self.bids, self.asks = BookSide(True), BookSide(False)

    # --- decoding --------------------------------------------------------------

    def decode(self, frame: str | bytes | dict[str, Any], recv_ms: int) -> int:
        """Decode one frame received at ``recv_ms`` (ms UTC); never raises.

        Returns:
            TRADES, BOOK, BOOK_INVALID, TICKER, CONTROL, IGNORED or MALFORMED
            (then ``self.reason`` says why).
        """
        self.stats.frames += 1
        if isinstance(frame, dict):
            msg = frame
        else:
            try:
                msg = _loads(frame)
            except Exception as exc:  # noqa: BLE001 - any parser failure is a malformed frame
                detail = str(exc).splitlines()[0][:60] if str(exc) else type(exc).__name__
                return self._bad(T_FRAME, f"invalid JSON ({detail})")
            if type(msg) is not dict:
                return self._bad(T_FRAME, f"not a JSON object: {_short(msg)}")
        topic = msg.get("topic")
        key = T_FRAME
        try:
            if topic is None:
                key = T_CONTROL
                return self._control(msg)
            if topic == self.trade_topic:
                key = T_TRADE
                return self._trades(msg, recv_ms)
            if topic == self.ticker_topic:
                key = T_TICKER
                return self._ticker(msg)
            if type(topic) is not str:
                return self._bad(T_FRAME, f"topic {_short(topic)} is not a string")
            if topic.startswith("orderbook.") and topic.endswith(self._book_suffix):
                key = T_BOOK
                return self._book(msg, recv_ms)
            self.stats.ignored += 1
            return IGNORED
        except BadFrame as exc:
            return self._bad(key, str(exc))
        except Exception as exc:  # noqa: BLE001 - last line of defence: a bad frame must not stop the feed
            return self._bad(key, f"{type(exc).__name__}: {str(exc)[:80]}")

    def decode_many(self, frames: Sequence[str | bytes | dict[str, Any]], recv_ms: int | Sequence[int] | np.ndarray,
                    on_slow: Any = None) -> None:
        """Decode frames in order, ``recv_ms`` one receive time or one per frame; never raises.

        Rows, counts, book and ticker state are exactly those of ``decode``
        called frame by frame (and rows are taken the same way): L1
        snapshots and trade frames go through ``framescan.scan_frames``
        straight into arrays; every other frame (tickers, acks, deltas,
        resets, anything bad or odd) through ``decode``, in its place.
        ``on_slow(i, kind)``, if given, is called right after such a frame
        ``i`` with ``decode``'s result (``reason``, ``controls``,
        ``ticker_changed`` then describe it); fast frames are TRADES or BOOK
        with nothing to report. Fewer than ``scan_min_frames`` frames all go
        through ``decode`` (and ``on_slow``).
        """
        if len(frames) == 0:
            return
        if len(frames) < self.scan_min_frames:  # a frame or two at live rates: the scan's set-up costs more
            scalar = np.ndim(recv_ms) == 0
            for i, frame in enumerate(frames):
                kind = self.decode(frame, int(recv_ms if scalar else recv_ms[i]))  # type: ignore[index]
                if on_slow is not None:
                    on_slow(i, kind)
            return
        buf, starts, ends = _layout(frames)
        self.decode_spans(buf, starts, ends, recv_ms, on_slow, frames)

    def decode_spans(self, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                     recv_ms: int | Sequence[int] | np.ndarray, on_slow: Any = None,
                     frames: Sequence[Any] | None = None) -> None:
        """``decode_many`` of the frames ``buf[starts[i]:ends[i]]`` (uint8, e.g. a socket read), where they lie.

        ``frames``, if given, are the same frames as objects, handed to
        ``decode`` for the frames the scan leaves to it (else their bytes).
        """
        n = len(starts)
        if n == 0:
            return
        scalar = np.ndim(recv_ms) == 0

        def frame(j: int) -> Any:
            return frames[j] if frames is not None else buf[starts[j]:ends[j]].tobytes()

        if n < self.scan_min_frames:
            for i in range(n):
                kind = self.decode(frame(i), int(recv_ms if scalar else recv_ms[i]))  # type: ignore[index]
                if on_slow is not None:
                    on_slow(i, kind)
            return
        recv = np.full(n, recv_ms, dtype=np.int64) if scalar else np.asarray(recv_ms, np.int64)
        self._rows_to_chunks()
        trades = np.empty((len(buf) // 40 + 1, 6), dtype=np.int64)  # a valid trade object is longer than 40 bytes
        quotes = np.empty((n, 6), dtype=np.int64)
        state = np.zeros(fs.STATE_SIZE, dtype=np.int64)
        done_tr = done_qu = 0
        i = 0
        while True:
            if self.last_l1 is not None:
                state[fs.S_HAS_L1] = 1
                state[fs.S_L1:fs.S_L1 + 4] = self.last_l1
            j = fs.scan_frames(buf, starts, ends, recv, i, self._sym, self.tick, self.step, state, trades, quotes)
            self.stats.frames += j - i
            if state[fs.S_BOOK]:  # the book is the last snapshot, as _l1_snapshot leaves it
                state[fs.S_BOOK] = 0
                bid, bsz, ask, asz = (int(x) for x in state[fs.S_L1:fs.S_L1 + 4])
                self.last_l1 = (bid, bsz, ask, asz)
                self.bids.levels, self.bids.heap = {bid: bsz}, [-bid]
                self.asks.levels, self.asks.heap = {ask: asz}, [ask]
                self.have_book = True
            n_tr, n_qu = int(state[fs.S_TRADES]), int(state[fs.S_QUOTES])
            if n_tr > done_tr:
                self._trade_chunks.append(trades[done_tr:n_tr].copy().view(TRADE_DTYPE).reshape(-1))
                self.stats.trades += n_tr - done_tr
                done_tr = n_tr
            if n_qu > done_qu:
                self._quote_chunks.append(quotes[done_qu:n_qu].copy().view(QUOTE_DTYPE).reshape(-1))
                self.stats.quotes += n_qu - done_qu
                done_qu = n_qu
            if j >= n:
                return
            kind = self.decode(frame(j), int(recv[j]))
            self._rows_to_chunks()
            if on_slow is not None:
                on_slow(j, kind)
            state[fs.S_HAS_L1] = 0
            i = j + 1

    def _rows_to_chunks(self) -> None:
        """Rows made by ``decode`` into the chunk lists, so later batch rows stay after them."""
        if self.trades:
            self._trade_chunks.append(np.array(self.trades, dtype=TRADE_DTYPE))
            self.trades.clear()
        if self.quotes:
            self._quote_chunks.append(np.array(self.quotes, dtype=QUOTE_DTYPE))
            self.quotes.clear()

    def _bad(self, key: str, reason: str) -> int:
        stats = self.stats
        stats.malformed[key] = stats.malformed.get(key, 0) + 1
        stats.last_reason[key] = reason
        self.reason = f"{key}: {reason}"
        return MALFORMED

    def _trades(self, msg: dict[str, Any], recv_ms: int) -> int:
        data = msg.get("data")
        if type(data) is not list:
            raise BadFrame(f"'data' {_short(data)} is not a list")
        out = self.trades
        append = out.append
        n0 = len(out)
        symbol, tick, step = self.symbol, self.tick, self.step
        problem = None
        for k, t in enumerate(data):
            try:
                if type(t) is not dict:
                    raise BadFrame(f"{_short(t)} is not an object")
                if t.get("s") != symbol:
                    raise BadFrame(f"symbol {_short(t.get('s'))} is not {symbol}")
                ts = t.get("T")
                if type(ts) is not int or not TS_MIN_MS <= ts <= TS_MAX_MS:
                    raise BadFrame(f"'T' {_short(ts)} is not a time in ms")
                price = _positive(t.get("p"), "p")
                ratio = price / tick
                if not ratio < MAX_PRICE_TICKS:
                    raise BadFrame(f"price {_text(t['p'])} is too large: at least {MAX_PRICE_TICKS:.0e} ticks "
                                   f"of {tick:g}")
                px = round(ratio)
                if abs(ratio - px) > GRID_TOLERANCE:
                    raise BadFrame(f"price {t['p']} is not a multiple of tick_size {tick}")
                if px < 1:
                    raise BadFrame(f"price {_text(t['p'])} is below one tick_size {tick:g}")
                q_ratio = _positive(t.get("v"), "v") / step
                if not q_ratio < MAX_SIZE_LOTS:
                    raise BadFrame(f"size {_text(t['v'])} is too large: at least {MAX_SIZE_LOTS:.0e} lots "
                                   f"of {step:g}")
                qty = round(q_ratio)
                if abs(q_ratio - qty) > GRID_TOLERANCE:  # like prices: never rounded to another volume
                    raise BadFrame(f"size {_text(t['v'])} is not a multiple of qty_step {step:g}")
                if qty <= 0:
                    raise BadFrame(f"size {_text(t['v'])} is below one qty_step {step:g}")
                s = t.get("S")
                side = _SIDES.get(s) if type(s) is str else None
                if side is None:
                    raise BadFrame(f"side 'S' {_short(s)} is not Buy or Sell")
                tid = t.get("i")
                if type(tid) is not str or not tid:
                    raise BadFrame(f"trade id 'i' {_short(tid)} is not a non-empty string")
                append((ts, recv_ms, px, qty, side, trade_id_of(tid)))
            except BadFrame as exc:
                if problem is None:
                    problem = f"trade {k}: {exc}"
        self.stats.trades += len(out) - n0
        if problem is not None:
            return self._bad(T_TRADE, problem)
        return TRADES

    def _book(self, msg: dict[str, Any], recv_ms: int) -> int:
        # the archive importer takes any int() of ts/cts; live frames must carry real ms times
        for name in ("ts", "cts"):
            value = msg.get(name)
            if (value is not None or name == "ts") and (type(value) is not int or not TS_MIN_MS <= value <= TS_MAX_MS):
                raise BadFrame(f"'{name}' {_short(value)} is not a time in ms")
        data = msg.get("data")
        result = self._l1_snapshot(msg, data, recv_ms) if msg.get("type") == "snapshot" else None
        if result is None:
            result = apply_book_message(msg, self.instrument, self.bids, self.asks, self.have_book, recv_ms)
        self.have_book = True
        if data.get("u") == 1:
            self.stats.book_resets += 1
        if isinstance(result, str):
            if result.startswith("crossed"):
                self.stats.crossed += 1
            else:
                self.stats.empty_side += 1
            self.reason = f"{T_BOOK}: {result}"
            return BOOK_INVALID
        ts, local_ts, l1 = result
        if l1 != self.last_l1:
            self.last_l1 = l1
            self.quotes.append((ts, local_ts, *l1))
            self.stats.quotes += 1
        return BOOK

    def _l1_snapshot(self, msg: dict[str, Any], data: Any, recv_ms: int) -> tuple[int, int, L1] | None:
        """The common live case, a snapshot of one bid and one ask (Bybit's linear L1 is snapshot-only).

        Same result and book as ``apply_book_message`` in a third of the
        time (no level lists, no heap work); anything unusual (more levels,
        a bad value, a zero size, a crossed book) returns None and takes the
        general path, which says what is wrong.
        """
        if type(data) is not dict or data.get("s") != self.symbol:
            return None
        b, a = data.get("b"), data.get("a")
        if type(b) is not list or type(a) is not list or len(b) != 1 or len(a) != 1:
            return None
        try:
            (bp, bs), (ap, az) = b[0], a[0]
            bid_f, bsz_f, ask_f, asz_f = float(bp), float(bs), float(ap), float(az)
        except (TypeError, ValueError):
            return None
        if not (0.0 < bid_f < math.inf and 0.0 < ask_f < math.inf and 0.0 < bsz_f < math.inf
                and 0.0 < asz_f < math.inf):
            return None
        tick, step = self.tick, self.step
        rb, ra = bid_f / tick, ask_f / tick
        bid, ask = round(rb), round(ra)
        rbs, ras = bsz_f / step, asz_f / step
        bsz, asz = round(rbs), round(ras)
        if not (0 < bid < ask < MAX_PRICE_TICKS and 0 < bsz < MAX_SIZE_LOTS and 0 < asz < MAX_SIZE_LOTS
                and abs(rb - bid) <= GRID_TOLERANCE and abs(ra - ask) <= GRID_TOLERANCE
                and abs(rbs - bsz) <= GRID_TOLERANCE and abs(ras - asz) <= GRID_TOLERANCE):
            return None
        cts = msg.get("cts")
        bids, asks = self.bids, self.asks
        bids.levels, bids.heap = {bid: bsz}, [-bid]
        asks.levels, asks.heap = {ask: asz}, [ask]
        return (msg["ts"] if cts is None else cts), recv_ms, (bid, bsz, ask, asz)

    def _ticker(self, msg: dict[str, Any]) -> int:
        kind = msg.get("type")
        data = msg.get("data")
        ts = msg.get("ts")
        if type(data) is not dict or kind not in ("snapshot", "delta"):
            raise BadFrame("needs 'type' snapshot/delta and a 'data' object")
        if type(ts) is not int or not TS_MIN_MS <= ts <= TS_MAX_MS:
            raise BadFrame(f"'ts' {_short(ts)} is not a time in ms")
        if data.get("symbol") != self.symbol:
            raise BadFrame(f"symbol {_short(data.get('symbol'))} is not {self.symbol}")
        parsed = {key: conv(data[key], key) for key, conv in _TICKER_TYPED.items() if key in data}
        state = self.ticker
        old = state.values
        if kind == "snapshot":
            state.fields = dict(data)
            state.values = parsed
        else:
            state.fields.update(data)
            state.values = {**old, **parsed}
        state.ts = ts
        if state.values != old:
            self.ticker_changed = True
        rate = parsed.get("fundingRate")
        if rate is not None and rate != self.last_rate:
            self.last_rate = rate
            self.funding.append((ts, rate))
            self.stats.funding += 1
        return TICKER

    def _control(self, msg: dict[str, Any]) -> int:
        op = msg.get("op")
        if op is None and msg.get("type") == "COMMAND_RESP":  # the option/spread form of an ack
            op = "subscribe"
        if type(op) is not str:
            raise BadFrame("neither 'topic' nor 'op'")
        ret_msg = msg.get("ret_msg")
        success = msg.get("success")
        kind = "pong" if op == "pong" or (op == "ping" and ret_msg == "pong") else op
        self.controls.append(Control(
            kind=kind,
            success=success is True or (success is None and kind == "pong"),
            message=ret_msg if type(ret_msg) is str else "",
            req_id=str(msg.get("req_id") or ""),
            conn_id=str(msg.get("conn_id") or ""),
        ))
        self.stats.controls += 1
        return CONTROL
