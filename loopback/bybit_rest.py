"""A Bybit v5 REST venue on 127.0.0.1: one linear account, pybit's signatures checked, faults on demand.

``BybitRestVenue(api_key=..., api_secret=...)`` is a real HTTP server
(stdlib ``ThreadingHTTPServer`` in a daemon thread) speaking the subset of
Bybit v5 the execution backend uses, with Bybit's envelope
``{retCode, retMsg, result, retExtInfo, time}`` and its rate-limit headers::

    with BybitRestVenue(api_key="k", api_secret="s") as venue:
        venue.set_quote(60000.0, 60000.1)
        session = HTTP(api_key="k", api_secret="s"); session.endpoint = venue.url

Endpoints: public ``GET /v5/market/time``, ``/v5/market/instruments-info``,
``/v5/market/tickers``; private (signed) ``POST /v5/order/create``,
``/v5/order/cancel-all``, ``/v5/position/trading-stop``, ``GET
/v5/order/realtime``, ``/v5/execution/list``, ``/v5/position/list``,
``/v5/account/wallet-balance``. Anything else: retCode 10017 (route not found).

Authentication (BYBIT.md 2.2): ``X-BAPI-API-KEY`` must be the venue's key
(else 10003), ``X-BAPI-SIGN`` the lowercase hex HMAC-SHA256 of
``timestamp + api_key + recv_window + (raw query | raw body)`` (else 10004),
and ``server_time - recv_window <= X-BAPI-TIMESTAMP < server_time + 1000``
(else 10002). Errors are answered with HTTP 200 and the retCode, which is
how pybit turns them into ``InvalidRequestError(status_code=retCode)``.
``set_clock_skew(ms)`` moves the venue's clock so a client must resync.

The account (one-way mode, ``positionIdx`` 0, cross margin at
``leverage``): market orders fill whole at the current quote (buy at the
ask, sell at the bid) with the taker fee; ``reduceOnly`` orders are cut to
the position and refused when they would not reduce it (110017); a
``stopLoss``/``takeProfit`` on an entry, or set by ``trading-stop``, is a
position-level conditional (tpslMode Full) listed by ``order/realtime`` as
``Untriggered`` and filled as a reduce-only market order when the quote
crosses it: a long's stop when the bid is at or below it, its take-profit
when the bid is at or above it (a short: the ask). Bybit triggers on the
last traded price by default; the quote is what the backtest's fill model
uses, so the loopback follows the model. A closed position cancels its
conditionals. ``fund(rate)`` charges a funding execution (execType
``Funding``).

Quotes: ``set_quote(bid, ask)`` (which also runs the triggers), or a
``quote`` callable returning ``(bid, ask)`` read on every request (triggers
run before each request is handled, and on ``check_triggers()``).

Rate limits: a rolling one-second count per path against Bybit's published
per-endpoint limits (``limits``), with ``X-Bapi-Limit``,
``X-Bapi-Limit-Status`` and ``X-Bapi-Limit-Reset-Timestamp`` on every
private answer; over the limit: retCode 10006.

Faults (``inject(kind, ...)``), each consumed by the next matching request:

| kind | answer | the request |
|---|---|---|
| ``timeout`` | none for ``hold`` s (the client times out) | executed |
| ``5xx`` | HTTP ``status`` (503) with an HTML body | executed only with ``execute=True`` |
| ``rate_limit`` | retCode 10006, reset ``reset_ms`` later | not executed |
| ``timestamp`` | retCode 10002 | not executed |
| ``insufficient_balance`` | retCode 110007 | not executed |
| ``duplicate`` | retCode 110072 | executed (a previous attempt placed it), unless ``execute=False`` |
| ``reject`` | retCode ``code`` (10001) with ``msg`` | not executed |
| ``body`` | HTTP ``status`` (200) with ``body`` (bytes) as it is: junk, cut or wrong-shape JSON | executed only with ``execute=True`` |

A ``body`` fault with an explicit public ``path`` also answers that public
path (the other kinds concern private requests only).

The venue binds only to loopback addresses and logs no secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger("pbdtui.exchange_sim.rest")

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
FAULT_KINDS = ("timeout", "5xx", "rate_limit", "timestamp", "insufficient_balance", "duplicate", "reject", "body")
_EXECUTED_BY_DEFAULT = {"timeout": True, "5xx": False, "rate_limit": False, "timestamp": False,
                        "insufficient_balance": False, "duplicate": True, "reject": False, "body": False}

# Bybit's per-UID per-second limits (BYBIT.md 2.4, UTA2.0 Pro, linear)
DEFAULT_LIMITS = {
    "/v5/order/create": 10, "/v5/order/cancel-all": 10, "/v5/position/trading-stop": 10,
    "/v5/order/realtime": 50, "/v5/execution/list": 50, "/v5/position/list": 50,
    "/v5/account/wallet-balance": 50,
}
PUBLIC = ("/v5/market/time", "/v5/market/instruments-info", "/v5/market/tickers")
SEVEN_DAYS_MS = 7 * 86_400_000
RECENT_CLOSED = 500  # order/realtime openOnly=1 keeps the newest 500 closed orders


@dataclass
class Injected:
    """One pending fault."""

    kind: str
    path: str | None  # None: any private path
    count: int
    execute: bool
    hold: float = 5.0  # timeout: seconds the answer is held back
    status: int = 503  # 5xx: HTTP status
    code: int = 10001  # reject: retCode
    msg: str = "params error"
    reset_ms: int = 200  # rate_limit: reset timestamp = now + reset_ms
    body: bytes = b""  # body: the answer's bytes


class _Reply(Exception):
    """An error answer: retCode and message."""

    def __init__(self, code: int, msg: str):
        super().__init__(msg)
        self.code = code
        self.msg = msg


@dataclass
class _Position:
    lots: int = 0  # signed
    avg: float = 0.0
    stop: float = 0.0
    take: float = 0.0
    stop_id: str = ""
    take_id: str = ""
    realised: float = 0.0  # since the position opened (curRealisedPnl)
    cum_realised: float = 0.0
    created: int = 0
    updated: int = 0
    seq: int = 0


@dataclass
class VenueCounters:
    """What the venue answered, in all (for tests and the demo's status line)."""

    requests: int = 0
    by_code: dict[int, int] = field(default_factory=dict)  # retCode -> answers
    http_errors: int = 0
    held: int = 0  # timeout faults served
    signature_failures: int = 0
    orders: int = 0
    fills: int = 0
    triggers: int = 0


def sign(secret: str, timestamp: str, api_key: str, recv_window: str, payload: str) -> str:
    """Bybit's HMAC-SHA256 signature (BYBIT.md 2.2) in lowercase hex."""
    text = f"{timestamp}{api_key}{recv_window}{payload}"
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


class BybitRestVenue:
    """One Bybit linear account behind a signed REST API on 127.0.0.1.

    Args:
        api_key, api_secret: the only credentials accepted.
        symbol: the one instrument; ``tick_size``, ``qty_step``, ``min_qty``,
            ``max_mkt_qty``, ``min_notional`` are its instruments-info rules.
        balance: USDT wallet balance.
        taker_fee: fee rate of every fill (market orders are takers).
        leverage: for the margin check (initial margin = notional / leverage).
        quote: optional ``() -> (bid, ask)`` read on every request.
        market_clock: optional ``() -> exchange ms`` stamping orders, executions and
            positions (default: the venue's clock). A venue following an
            accelerated loopback stream passes the stream's time, so fills carry
            the market's time line; signatures and rate limits stay on the wall clock.
        limits: per-path requests per second (default: Bybit's).
        host, port: where to listen (port 0: any free port).
    """

    def __init__(self, *, api_key: str, api_secret: str, symbol: str = "BTCUSDT", tick_size: str = "0.1",
                 qty_step: str = "0.001", min_qty: str = "0.001", max_mkt_qty: str = "500",
                 max_qty: str = "1190", min_notional: str = "5", balance: float = 10_000.0,
                 taker_fee: float = 0.00055, leverage: float = 10.0,
                 quote: Callable[[], tuple[float, float] | None] | None = None,
                 market_clock: Callable[[], int] | None = None, limits: dict[str, int] | None = None, host: str = "127.0.0.1", port: int = 0):
        if host not in LOOPBACK_HOSTS:
            raise ValueError(f"the loopback venue binds to loopback addresses only, not {host!r}")
        self.api_key = api_key
        self._secret = api_secret
        self.symbol = symbol
        self.tick = Decimal(tick_size)
        self.step = Decimal(qty_step)
        self.min_qty = Decimal(min_qty)
        self.max_mkt_qty = Decimal(max_mkt_qty)
        self.max_qty = Decimal(max_qty)
        self.min_notional = Decimal(min_notional)
        self.balance = float(balance)
        self.taker_fee = float(taker_fee)
        self.leverage = float(leverage)
        self._quote_source = quote
        self._market_clock = market_clock
        self.limits = dict(DEFAULT_LIMITS if limits is None else limits)
        self.counters = VenueCounters()
        self.log: list[tuple[str, str, int]] = []  # (method, path, retCode or -HTTP status) per request
        self._lock = threading.RLock()
        self._bid = 0.0
        self._ask = 0.0
        self._skew_ms = 0
        self._faults: list[Injected] = []
        self._release = threading.Event()
        self._pos = _Position()
        self._orders: dict[str, dict[str, Any]] = {}  # orderId -> order record (Bybit fields)
        self._closed: deque[str] = deque(maxlen=RECENT_CLOSED)
        self._link_ids: dict[str, str] = {}  # orderLinkId -> orderId
        self._execs: list[dict[str, Any]] = []
        self._hits: dict[str, deque[int]] = {}
        self._seq = 1_000
        self._server = _Server((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> BybitRestVenue:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                            name="bybit-rest-venue", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()  # answers held by a timeout fault go out now
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> BybitRestVenue:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the driver's controls --------------------------------------------------------------------

    def now_ms(self) -> int:
        """The venue's clock (wall clock + skew)."""
        return int(time.time() * 1000) + self._skew_ms

    def market_ms(self) -> int:
        """The time stamped on orders, executions and positions (``market_clock``, else ``now_ms``)."""
        if self._market_clock is not None:
            ts = self._market_clock()
            if ts > 0:
                return int(ts)
        return self.now_ms()

    def set_clock_skew(self, ms: int) -> None:
        """Move the venue's clock by ``ms`` (a client signing with its own clock now gets 10002)."""
        self._skew_ms = int(ms)

    def set_quote(self, bid: float, ask: float) -> None:
        """The current top of book; conditionals crossed by it trigger now."""
        with self._lock:
            self._bid, self._ask = float(bid), float(ask)
            self._trigger()

    def check_triggers(self) -> None:
        """Read the quote source and trigger crossed conditionals."""
        with self._lock:
            self._read_quote()
            self._trigger()

    def inject(self, kind: str, path: str | None = "/v5/order/create", count: int = 1,
               execute: bool | None = None, **options: Any) -> None:
        """Fail the next ``count`` requests to ``path`` (None: any private path) with ``kind``.

        Options: ``hold`` (timeout, seconds), ``status`` (5xx; body: 200), ``code``/``msg``
        (reject), ``reset_ms`` (rate_limit), ``body`` (body). See the module doc for defaults.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
        if kind == "body":
            options.setdefault("status", 200)
        with self._lock:
            self._faults.append(Injected(kind, path, count,
                                         _EXECUTED_BY_DEFAULT[kind] if execute is None else execute, **options))

    def release(self) -> None:
        """Let answers held back by ``timeout`` faults go out."""
        self._release.set()

    def fund(self, rate: float) -> dict[str, Any] | None:
        """Charge funding on the open position at the mid price: an execution of type ``Funding``."""
        with self._lock:
            if self._pos.lots == 0:
                return None
            mark = self._mid()
            size = abs(self._pos.lots) * float(self.step)
            fee = size * mark * rate * (1 if self._pos.lots > 0 else -1)  # longs pay a positive rate
            self.balance -= fee
            row = self._exec_row(order_id="", link_id="", side="Buy" if self._pos.lots > 0 else "Sell",
                                 qty=size, price=mark, fee=fee, fee_rate=rate, exec_type="Funding",
                                 order_type="UNKNOWN", stop_type="UNKNOWN", closed=0.0, order_qty=0.0)
            self._execs.append(row)
            return row

    def force_position(self, lots: int, avg: float = 0.0) -> None:
        """Set the account's position (signed lots) with no execution to explain it.

        A test seam for reconciliation: what a position changed outside the
        execution list looks like to a client (its fills no longer add up).
        """
        with self._lock:
            self._pos.lots = int(lots)
            self._pos.avg = float(avg or self._mid())
            self._pos.updated = self.market_ms()
            if lots == 0:
                self._deactivate_conditionals(self._pos.updated)

    def position(self) -> tuple[float, float, float, float]:
        """(signed size, average price, stop, take-profit) of the account now."""
        with self._lock:
            return (self._pos.lots * float(self.step), self._pos.avg, self._pos.stop, self._pos.take)

    def executions(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._execs]

    def orders(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(o) for o in self._orders.values()]

    # --- HTTP -------------------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        venue = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                venue._serve(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                venue._serve(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug("%s %s", self.address_string(), format % args)

        return Handler

    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        path, query = parts.path, parts.query
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length).decode() if length else ""
        headers: dict[str, str] = {}
        status = 200
        raw: bytes | None = None
        hold = 0.0
        with self._lock:
            self.counters.requests += 1
            now = self.now_ms()
            fault = self._take_fault(path)
            try:
                if path in PUBLIC:
                    if fault is not None:
                        self._fault_reply(fault, {})
                    if method != "GET":
                        raise _Reply(10017, "route not found")
                    result = self._public(path, dict(parse_qsl(query)))
                else:
                    self._verify(h, method, query, body, now)
                    headers = self._rate(path, now)
                    params = dict(parse_qsl(query)) if method == "GET" else self._json(body)
                    if fault is not None and fault.kind == "rate_limit":
                        headers = self._limit_headers(path, 0, now + fault.reset_ms)
                        raise _Reply(10006, "Too many visits. Exceeded the API Rate Limit.")
                    if fault is not None and not fault.execute:
                        self._fault_reply(fault, {})  # raises: the request is not executed
                    result = self._private(method, path, params, self.market_ms())
                    if fault is not None:
                        self._fault_reply(fault, result)
                code, msg = 0, "OK"
            except _Reply as reply:
                code, msg, result = reply.code, reply.msg, {}
                if isinstance(reply, _RateLimited):
                    headers = reply.headers
            except _HttpFault as e:
                code, msg, result, status, raw = -e.status, "", {}, e.status, e.body
            except _Hold as e:
                code, msg, result, hold = 0, "OK", e.result, e.hold
            self.log.append((method, path, code))
            if status == 200:
                self.counters.by_code[code] = self.counters.by_code.get(code, 0) + 1
            else:
                self.counters.http_errors += 1
        if hold:
            self.counters.held += 1
            self._release.wait(hold)  # the client has given up by now; the connection may be gone
        if raw is not None:
            self._send(h, status, raw, {"Content-Type": "application/json; charset=utf-8"})
            return
        if status != 200:
            text = f"<html><body><h1>{status} Service Unavailable</h1></body></html>".encode()
            self._send(h, status, text, {"Content-Type": "text/html"})
            return
        envelope = {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": self.now_ms()}
        self._send(h, 200, json.dumps(envelope).encode(), {"Content-Type": "application/json; charset=utf-8",
                                                             **headers})

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict[str, str]) -> None:
        try:
            h.send_response(status)
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # a client that timed out went away
            pass

    def _take_fault(self, path: str) -> Injected | None:
        for f in self._faults:
            if f.path == path or (f.path is None and path not in PUBLIC):
                f.count -= 1
                if f.count <= 0:
                    self._faults.remove(f)
                return f
        return None

    def _fault_reply(self, f: Injected, result: dict[str, Any]) -> None:
        if f.kind == "timeout":
            raise _Hold(f.hold, result)
        if f.kind == "5xx":
            raise _HttpFault(f.status)
        if f.kind == "body":
            raise _HttpFault(f.status, f.body)
        if f.kind == "timestamp":
            raise _Reply(10002, self._timestamp_text(0, self.now_ms(), 5000))
        if f.kind == "insufficient_balance":
            raise _Reply(110007, "ab not enough for new order")
        if f.kind == "duplicate":
            raise _Reply(110072, "OrderLinkedID is duplicate")
        raise _Reply(f.code, f.msg)

    @staticmethod
    def _timestamp_text(ts: int, now: int, window: int) -> str:
        return (f"invalid request, please check your server timestamp or recv_window param. "
                f"req_timestamp[{ts}],server_timestamp[{now}],recv_window[{window}]")

    def _verify(self, h: BaseHTTPRequestHandler, method: str, query: str, body: str, now: int) -> None:
        key = h.headers.get("X-BAPI-API-KEY")
        ts = h.headers.get("X-BAPI-TIMESTAMP")
        signature = h.headers.get("X-BAPI-SIGN")
        window = h.headers.get("X-BAPI-RECV-WINDOW") or "5000"
        if not key or not hmac.compare_digest(key, self.api_key):
            self.counters.signature_failures += 1
            raise _Reply(10003, "API key is invalid.")
        if not ts or not ts.isdigit() or not window.isdigit():
            raise _Reply(10001, "params error: X-BAPI-TIMESTAMP / X-BAPI-RECV-WINDOW missing or invalid")
        if not (now - int(window) <= int(ts) < now + 1000):
            raise _Reply(10002, self._timestamp_text(int(ts), now, int(window)))
        expected = sign(self._secret, ts, key, window, query if method == "GET" else body)
        if not signature or not hmac.compare_digest(signature, expected):
            self.counters.signature_failures += 1
            raise _Reply(10004, "error sign! origin_string[" + f"{ts}{key}{window}"
                         + (query if method == "GET" else body) + "]")

    def _limit_headers(self, path: str, remaining: int, reset: int) -> dict[str, str]:
        return {"X-Bapi-Limit": str(self.limits.get(path, 50)), "X-Bapi-Limit-Status": str(max(remaining, 0)),
                "X-Bapi-Limit-Reset-Timestamp": str(reset)}

    def _rate(self, path: str, now: int) -> dict[str, str]:
        limit = self.limits.get(path, 50)
        hits = self._hits.setdefault(path, deque())
        while hits and hits[0] <= now - 1000:
            hits.popleft()
        if len(hits) >= limit:
            headers = self._limit_headers(path, 0, hits[0] + 1000)
            raise _RateLimited(headers)
        hits.append(now)
        # at the limit: the time the oldest request leaves the window (else "just the current timestamp")
        return self._limit_headers(path, limit - len(hits), hits[0] + 1000 if len(hits) >= limit else now)

    @staticmethod
    def _json(body: str) -> dict[str, Any]:
        try:
            params = json.loads(body) if body else {}
        except ValueError:
            raise _Reply(10001, "params error: body is not JSON") from None
        if not isinstance(params, dict):
            raise _Reply(10001, "params error: body is not an object")
        return params

    # --- endpoints --------------------------------------------------------------------------------

    def _public(self, path: str, q: dict[str, str]) -> dict[str, Any]:
        now = self.now_ms()
        if path == "/v5/market/time":
            return {"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)}
        self._category(q)
        if q.get("symbol", self.symbol) != self.symbol:
            raise _Reply(10001, "params error: symbol invalid")
        if path == "/v5/market/instruments-info":
            return {"category": "linear", "nextPageCursor": "", "list": [self._instrument()]}
        self._read_quote()
        mid = self._mid()
        return {"category": "linear", "list": [{
            "symbol": self.symbol, "lastPrice": self._px(mid), "markPrice": self._px(mid),
            "indexPrice": self._px(mid), "bid1Price": self._px(self._bid), "bid1Size": "1.000",
            "ask1Price": self._px(self._ask), "ask1Size": "1.000", "fundingRate": "0.0001"}]}

    def _instrument(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol, "contractType": "LinearPerpetual", "status": "Trading",
            "baseCoin": self.symbol.removesuffix("USDT"), "quoteCoin": "USDT", "launchTime": "1585526400000",
            "deliveryTime": "0", "deliveryFeeRate": "", "priceScale": str(-self.tick.as_tuple().exponent),
            "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
            "priceFilter": {"minPrice": str(self.tick), "maxPrice": "1999999.80", "tickSize": str(self.tick)},
            "lotSizeFilter": {"maxOrderQty": str(self.max_qty), "minOrderQty": str(self.min_qty),
                              "qtyStep": str(self.step), "postOnlyMaxOrderQty": str(self.max_qty),
                              "maxMktOrderQty": str(self.max_mkt_qty), "minNotionalValue": str(self.min_notional)},
            "unifiedMarginTrade": True, "fundingInterval": 480, "settleCoin": "USDT",
        }

    @staticmethod
    def _category(q: dict[str, Any]) -> None:
        if q.get("category") != "linear":
            raise _Reply(10001, "params error: category must be linear on the loopback venue")

    def _private(self, method: str, path: str, q: dict[str, Any], now: int) -> dict[str, Any]:
        self._read_quote()
        self._trigger()
        routes = {
            ("POST", "/v5/order/create"): self._create,
            ("POST", "/v5/order/cancel-all"): self._cancel_all,
            ("POST", "/v5/position/trading-stop"): self._trading_stop,
            ("GET", "/v5/order/realtime"): self._realtime,
            ("GET", "/v5/execution/list"): self._execution_list,
            ("GET", "/v5/position/list"): self._position_list,
            ("GET", "/v5/account/wallet-balance"): self._wallet,
        }
        handler = routes.get((method, path))
        if handler is None:
            raise _Reply(10017, f"route not found: {method} {path}")
        if path != "/v5/account/wallet-balance":
            self._category(q)
        return handler(q, now)

    def _qty(self, text: Any) -> int:
        """A qty string as whole lots (10001 when it is not a positive multiple of qtyStep)."""
        try:
            qty = Decimal(str(text))
        except InvalidOperation:
            raise _Reply(10001, f"params error: qty {text!r}") from None
        lots = qty / self.step
        if qty <= 0 or lots != lots.to_integral_value():
            raise _Reply(10001, f"Qty invalid: {text} is not a multiple of qtyStep {self.step}")
        return int(lots)

    def _price(self, text: Any, name: str) -> float:
        try:
            px = Decimal(str(text))
        except InvalidOperation:
            raise _Reply(10001, f"params error: {name} {text!r}") from None
        if px < 0 or (px > 0 and (px / self.tick) != (px / self.tick).to_integral_value()):
            raise _Reply(10001, f"params error: {name} {text} is not a multiple of tickSize {self.tick}")
        return float(px)

    def _create(self, q: dict[str, Any], now: int) -> dict[str, Any]:
        if q.get("symbol") != self.symbol:
            raise _Reply(10001, "params error: symbol invalid")
        side = q.get("side")
        if side not in ("Buy", "Sell"):
            raise _Reply(10001, "params error: side invalid")
        if q.get("orderType") != "Market":
            raise _Reply(10001, "params error: the loopback venue takes Market orders only")
        if int(q.get("positionIdx", 0)) != 0:
            raise _Reply(10001, "params error: position idx not match position mode")
        link = str(q.get("orderLinkId") or "")
        if len(link) > 36:
            raise _Reply(10001, "params error: orderLinkId is longer than 36 characters")
        if link and link in self._link_ids:
            raise _Reply(110072, "OrderLinkedID is duplicate")
        lots = self._qty(q.get("qty"))
        qty = lots * self.step
        if qty > self.max_mkt_qty:
            raise _Reply(10001, f"The quantity of a single market order must be less than the maximum "
                                f"allowed per order: {self.max_mkt_qty}")
        reduce_only = q.get("reduceOnly") in (True, "true")
        stop = self._price(q.get("stopLoss") or 0, "stopLoss")
        take = self._price(q.get("takeProfit") or 0, "takeProfit")
        if not self._bid or not self._ask:
            raise _Reply(10001, "loopback venue: no quote yet")
        direction = 1 if side == "Buy" else -1
        px = self._ask if direction > 0 else self._bid
        pos = self._pos
        if reduce_only:
            if stop or take:
                raise _Reply(10001, "params error: TP/SL cannot be set on a reduce-only order")
            if pos.lots == 0 or (pos.lots > 0) == (direction > 0):
                raise _Reply(110017, "current position is zero, cannot fix reduce-only order qty")
            lots = min(lots, abs(pos.lots))
        else:
            if qty < self.min_qty:
                raise _Reply(10001, f"The number of contracts exceeds minimum limit allowed: {self.min_qty}")
            if qty * Decimal(str(px)) < self.min_notional:
                raise _Reply(110094, "Order does not meet minimum order value 5USDT")
            opening = lots if pos.lots == 0 or (pos.lots > 0) == (direction > 0) else max(lots - abs(pos.lots), 0)
            need = opening * float(self.step) * px * (1 / self.leverage + self.taker_fee)
            if need > self._available():
                raise _Reply(110007, "ab not enough for new order")
            after = pos.lots + direction * lots
            base = self._mid()
            if after != 0:
                long_after = after > 0
                if stop and ((long_after and stop >= base) or (not long_after and stop <= base)):
                    raise _Reply(10001, f"StopLoss:{stop} set for {'Buy' if long_after else 'Sell'} position "
                                        f"should {'lower' if long_after else 'higher'} than base_price:{base}")
                if take and ((long_after and take <= base) or (not long_after and take >= base)):
                    raise _Reply(10001, f"TakeProfit:{take} set for {'Buy' if long_after else 'Sell'} position "
                                        f"should {'higher' if long_after else 'lower'} than base_price:{base}")
        order = self._new_order(side, lots, link, now, reduce_only=reduce_only, stop=stop, take=take)
        self._fill(order, px, now)
        if not reduce_only and self._pos.lots != 0:
            if stop:
                self._set_conditional("stop", stop, now)
            if take:
                self._set_conditional("take", take, now)
        return {"orderId": order["orderId"], "orderLinkId": link}

    def _new_order(self, side: str, lots: int, link: str, now: int, reduce_only: bool = False,
                   stop: float = 0.0, take: float = 0.0, stop_type: str = "", trigger: float = 0.0,
                   status: str = "New", create_type: str = "CreateByUser") -> dict[str, Any]:
        order_id = str(uuid.uuid4())
        qty = self._fmt_qty(lots)
        order = {
            "orderId": order_id, "orderLinkId": link, "blockTradeId": "", "symbol": self.symbol, "price": "0",
            "qty": qty, "side": side, "isLeverage": "", "positionIdx": 0, "orderStatus": status,
            "createType": create_type, "cancelType": "UNKNOWN", "rejectReason": "EC_NoError", "avgPrice": "",
            "leavesQty": qty, "leavesValue": "0", "cumExecQty": "0", "cumExecValue": "0", "cumExecFee": "0",
            "timeInForce": "IOC" if not stop_type else "GTC", "orderType": "Market", "stopOrderType": stop_type,
            "orderIv": "", "triggerPrice": self._px(trigger) if trigger else "0",
            "takeProfit": self._px(take) if take else "", "stopLoss": self._px(stop) if stop else "",
            "tpTriggerBy": "LastPrice" if take else "", "slTriggerBy": "LastPrice" if stop else "",
            "triggerDirection": 0, "triggerBy": "LastPrice" if stop_type else "", "lastPriceOnCreated": "",
            "reduceOnly": reduce_only or bool(stop_type), "closeOnTrigger": bool(stop_type), "smpType": "None",
            "smpGroup": 0, "smpOrderId": "", "tpslMode": "Full" if (stop or take or stop_type) else "",
            "tpLimitPrice": "", "slLimitPrice": "", "placeType": "", "createdTime": str(now),
            "updatedTime": str(now),
        }
        self._orders[order_id] = order
        if link:
            self._link_ids[link] = order_id
        self.counters.orders += 1
        return order

    def _fill(self, order: dict[str, Any], px: float, now: int) -> None:
        """Execute ``order`` whole at ``px``: position, balance, execution row, order status."""
        lots = self._qty(order["qty"])
        direction = 1 if order["side"] == "Buy" else -1
        pos = self._pos
        closed = 0
        if pos.lots != 0 and (pos.lots > 0) != (direction > 0):
            closed = min(lots, abs(pos.lots))
            pnl = closed * float(self.step) * (px - pos.avg) * (1 if pos.lots > 0 else -1)
            pos.realised += pnl
            pos.cum_realised += pnl
            self.balance += pnl
        size = abs(pos.lots)
        after = pos.lots + direction * lots
        if after == 0:
            pos.avg = 0.0
        elif pos.lots == 0 or (pos.lots > 0) == (direction > 0):  # opened or added
            pos.avg = (pos.avg * size + px * lots) / (size + lots)
            if pos.lots == 0:
                pos.created, pos.realised = now, 0.0
        elif (after > 0) != (pos.lots > 0):  # flipped: the rest opens at px
            pos.avg, pos.created, pos.realised = px, now, 0.0
        pos.lots = after
        pos.updated = now
        pos.seq = self._next_seq()
        qty = lots * float(self.step)
        fee = qty * px * self.taker_fee
        self.balance -= fee
        self._execs.append(self._exec_row(
            order_id=order["orderId"], link_id=order["orderLinkId"], side=order["side"], qty=qty, price=px,
            fee=fee, fee_rate=self.taker_fee, exec_type="Trade", order_type="Market",
            stop_type=order["stopOrderType"] or "UNKNOWN", closed=closed * float(self.step), order_qty=qty))
        order.update(orderStatus="Filled", avgPrice=self._px(px), leavesQty="0", cumExecQty=order["qty"],
                     cumExecValue=f"{qty * px:.4f}", cumExecFee=f"{fee:.8f}", updatedTime=str(now))
        self._closed.append(order["orderId"])
        self.counters.fills += 1
        if pos.lots == 0 or (closed and (after > 0) != (after - direction * lots > 0)):
            self._deactivate_conditionals(now)  # a closed (or flipped) position drops its TP/SL

    def _exec_row(self, *, order_id: str, link_id: str, side: str, qty: float, price: float, fee: float,
                  fee_rate: float, exec_type: str, order_type: str, stop_type: str, closed: float,
                  order_qty: float) -> dict[str, Any]:
        now = self.market_ms()
        return {
            "symbol": self.symbol, "orderId": order_id, "orderLinkId": link_id, "side": side,
            "orderPrice": self._px(price), "orderQty": self._fmt_qty_f(order_qty), "leavesQty": "0",
            "createType": "CreateByUser", "orderType": order_type, "stopOrderType": stop_type,
            "execFee": f"{fee:.8f}", "execId": str(uuid.uuid4()), "execPrice": self._px(price),
            "execQty": self._fmt_qty_f(qty), "execType": exec_type, "execValue": f"{qty * price:.8f}",
            "execTime": str(now), "feeCurrency": "USDT", "isMaker": False, "feeRate": f"{fee_rate}",
            "tradeIv": "", "markIv": "", "markPrice": self._px(self._mid()), "indexPrice": self._px(self._mid()),
            "underlyingPrice": "", "blockTradeId": "", "closedSize": self._fmt_qty_f(closed),
            "seq": self._next_seq(),
        }

    def _set_conditional(self, which: str, price: float, now: int) -> None:
        """Place or move the position's stop (``which="stop"``) or take-profit; price 0 cancels it."""
        pos = self._pos
        old = pos.stop_id if which == "stop" else pos.take_id
        if old:
            self._orders[old].update(orderStatus="Deactivated", updatedTime=str(now))
            self._closed.append(old)
        new = ""
        if price:
            side = "Sell" if pos.lots > 0 else "Buy"
            order = self._new_order(side, abs(pos.lots), "", now, stop_type="StopLoss" if which == "stop"
                                    else "TakeProfit", trigger=price, status="Untriggered",
                                    create_type="CreateByStopLoss" if which == "stop" else "CreateByTakeProfit")
            order["triggerDirection"] = (2 if pos.lots > 0 else 1) if which == "stop" else (1 if pos.lots > 0 else 2)
            new = order["orderId"]
        if which == "stop":
            pos.stop, pos.stop_id = price, new
        else:
            pos.take, pos.take_id = price, new
        pos.updated, pos.seq = now, self._next_seq()

    def _deactivate_conditionals(self, now: int) -> None:
        for oid in (self._pos.stop_id, self._pos.take_id):
            if oid and self._orders[oid]["orderStatus"] == "Untriggered":
                self._orders[oid].update(orderStatus="Deactivated", updatedTime=str(now))
                self._closed.append(oid)
        self._pos.stop = self._pos.take = 0.0
        self._pos.stop_id = self._pos.take_id = ""

    def _trigger(self) -> None:
        """Fill the position's stop or take-profit when the quote crosses it (stop first)."""
        pos = self._pos
        if pos.lots == 0 or not self._bid or not self._ask:
            return
        long = pos.lots > 0
        px = self._bid if long else self._ask
        hit = ""
        if pos.stop and (px <= pos.stop if long else px >= pos.stop):
            hit = pos.stop_id
        elif pos.take and (px >= pos.take if long else px <= pos.take):
            hit = pos.take_id
        if not hit:
            return
        now = self.market_ms()
        order = self._orders[hit]
        order.update(orderStatus="Triggered", qty=self._fmt_qty(abs(pos.lots)), updatedTime=str(now))
        self.counters.triggers += 1
        self._fill(order, px, now)

    def _cancel_all(self, q: dict[str, Any], now: int) -> dict[str, Any]:
        which = q.get("orderFilter") or ""
        cancelled = []
        for oid, order in self._orders.items():
            conditional = bool(order["stopOrderType"])
            if order["orderStatus"] not in ("New", "PartiallyFilled", "Untriggered"):
                continue
            if (which == "Order" and conditional) or (which == "StopOrder" and not conditional):
                continue
            order.update(orderStatus="Deactivated" if conditional else "Cancelled", updatedTime=str(now))
            self._closed.append(oid)
            cancelled.append({"orderId": oid, "orderLinkId": order["orderLinkId"]})
        if which != "Order":
            if self._pos.stop_id and self._orders[self._pos.stop_id]["orderStatus"] != "Untriggered":
                self._pos.stop, self._pos.stop_id = 0.0, ""
            if self._pos.take_id and self._orders[self._pos.take_id]["orderStatus"] != "Untriggered":
                self._pos.take, self._pos.take_id = 0.0, ""
        return {"list": cancelled, "success": "1"}

    def _trading_stop(self, q: dict[str, Any], now: int) -> dict[str, Any]:
        if q.get("symbol") != self.symbol:
            raise _Reply(10001, "params error: symbol invalid")
        if q.get("tpslMode") not in ("Full", "Partial"):
            raise _Reply(10001, "params error: tpslMode is required")
        if q.get("positionIdx") is None or int(q["positionIdx"]) != 0:
            raise _Reply(10001, "params error: positionIdx is required (0 in one-way mode)")
        pos = self._pos
        if pos.lots == 0:
            raise _Reply(10001, "can not set tp/sl/ts for zero position")
        changes = {}
        for which, key in (("stop", "stopLoss"), ("take", "takeProfit")):
            if key in q and q[key] is not None:
                changes[which] = self._price(q[key], key)
        long = pos.lots > 0
        base = self._mid()
        if "stop" in changes and changes["stop"] and (changes["stop"] >= base if long else changes["stop"] <= base):
            raise _Reply(10001, f"StopLoss:{changes['stop']} set for {'Buy' if long else 'Sell'} position should "
                                f"{'lower' if long else 'higher'} than base_price:{base}")
        if "take" in changes and changes["take"] and (changes["take"] <= base if long else changes["take"] >= base):
            raise _Reply(10001, f"TakeProfit:{changes['take']} set for {'Buy' if long else 'Sell'} position should "
                                f"{'higher' if long else 'lower'} than base_price:{base}")
        if all((pos.stop if w == "stop" else pos.take) == v for w, v in changes.items()):
            raise _Reply(34040, "not modified")
        for which, price in changes.items():
            if (pos.stop if which == "stop" else pos.take) != price:
                self._set_conditional(which, price, now)
        return {}

    def _page(self, rows: list[dict[str, Any]], q: dict[str, Any], default: int, top: int) -> dict[str, Any]:
        try:
            limit = int(q.get("limit") or default)
            start = int(q.get("cursor") or 0)
        except ValueError:
            raise _Reply(10001, "params error: limit/cursor") from None
        if not 1 <= limit <= top:
            raise _Reply(10001, f"params error: limit must be in [1, {top}]")
        chunk = rows[start:start + limit]
        cursor = str(start + limit) if start + limit < len(rows) else ""
        return {"category": "linear", "list": chunk, "nextPageCursor": cursor}

    def _realtime(self, q: dict[str, Any], now: int) -> dict[str, Any]:
        if not (q.get("symbol") or q.get("settleCoin") or q.get("baseCoin")):
            raise _Reply(10001, "params error: symbol, baseCoin or settleCoin is required")
        open_only = str(q.get("openOnly") or "0")
        live = [o for o in self._orders.values() if o["orderStatus"] in ("New", "PartiallyFilled", "Untriggered")]
        rows = live + ([self._orders[i] for i in reversed(self._closed)] if open_only == "1" else [])
        seen: set[str] = set()
        rows = [o for o in rows if not (o["orderId"] in seen or seen.add(o["orderId"]))]
        if q.get("orderId"):
            rows = [o for o in rows if o["orderId"] == q["orderId"]]
        elif q.get("orderLinkId"):
            rows = [o for o in rows if o["orderLinkId"] == q["orderLinkId"]]
        rows.sort(key=lambda o: int(o["createdTime"]), reverse=True)
        return self._page([dict(o) for o in rows], q, 20, 50)

    def _execution_list(self, q: dict[str, Any], now: int) -> dict[str, Any]:
        try:
            start = int(q["startTime"]) if q.get("startTime") else None
            end = int(q["endTime"]) if q.get("endTime") else None
        except ValueError:
            raise _Reply(10001, "params error: startTime/endTime") from None
        if start is None and end is None:
            start, end = now - SEVEN_DAYS_MS, now
        elif start is None:
            start = end - SEVEN_DAYS_MS
        elif end is None:
            end = start + SEVEN_DAYS_MS
        if end - start > SEVEN_DAYS_MS:
            raise _Reply(10001, "params error: the time range must be within 7 days")
        rows = [e for e in self._execs if start <= int(e["execTime"]) <= end]
        for key in ("orderId", "orderLinkId", "execType", "symbol"):
            if q.get(key):
                rows = [e for e in rows if e[key] == q[key]]
        rows = sorted(rows, key=lambda e: (int(e["execTime"]), e["seq"]), reverse=True)
        return self._page([dict(e) for e in rows], q, 50, 100)

    def _position_list(self, q: dict[str, Any], now: int) -> dict[str, Any]:
        if not (q.get("symbol") or q.get("settleCoin")):
            raise _Reply(10001, "params error: symbol or settleCoin is required")
        if q.get("symbol") and q["symbol"] != self.symbol:
            return {"category": "linear", "list": [], "nextPageCursor": ""}
        pos = self._pos
        size = abs(pos.lots) * float(self.step)
        mark = self._mid()
        upl = size * (mark - pos.avg) * (1 if pos.lots > 0 else -1) if pos.lots else 0.0
        row = {
            "positionIdx": 0, "riskId": 1, "riskLimitValue": "2000000", "symbol": self.symbol,
            "side": "" if pos.lots == 0 else ("Buy" if pos.lots > 0 else "Sell"), "size": self._fmt_qty(abs(pos.lots)),
            "avgPrice": self._px(pos.avg) if pos.lots else "0", "positionValue": f"{size * pos.avg:.4f}" if pos.lots else "",
            "tradeMode": 0, "positionStatus": "Normal", "autoAddMargin": 0, "adlRankIndicator": 2 if pos.lots else 0,
            "leverage": f"{self.leverage:g}", "positionBalance": "0", "markPrice": self._px(mark),
            "liqPrice": "", "bustPrice": "", "positionMM": "0", "positionIM": "0", "tpslMode": "Full",
            "takeProfit": self._px(pos.take) if pos.take else "0", "stopLoss": self._px(pos.stop) if pos.stop else "0",
            "trailingStop": "0", "unrealisedPnl": f"{upl:.8f}", "curRealisedPnl": f"{pos.realised:.8f}",
            "cumRealisedPnl": f"{pos.cum_realised:.8f}", "seq": pos.seq, "isReduceOnly": False,
            "mmrSysUpdatedTime": "", "leverageSysUpdatedTime": "", "createdTime": str(pos.created or now),
            "updatedTime": str(pos.updated or now),
        }
        return {"category": "linear", "list": [row], "nextPageCursor": ""}

    def _wallet(self, q: dict[str, Any], now: int) -> dict[str, Any]:
        if q.get("accountType") != "UNIFIED":
            raise _Reply(10001, "params error: accountType only support UNIFIED")
        pos = self._pos
        upl = abs(pos.lots) * float(self.step) * (self._mid() - pos.avg) * (1 if pos.lots > 0 else -1) if pos.lots else 0.0
        im = self._margin()
        equity = self.balance + upl
        coin = {"coin": "USDT", "equity": f"{equity:.8f}", "usdValue": f"{equity:.8f}",
                "walletBalance": f"{self.balance:.8f}", "locked": "0", "borrowAmount": "0", "totalOrderIM": "0",
                "totalPositionIM": f"{im:.8f}", "totalPositionMM": "0", "unrealisedPnl": f"{upl:.8f}",
                "cumRealisedPnl": f"{pos.cum_realised:.8f}", "marginCollateral": True, "collateralSwitch": True}
        return {"list": [{"accountType": "UNIFIED", "totalEquity": f"{equity:.8f}",
                          "totalWalletBalance": f"{self.balance:.8f}", "totalMarginBalance": f"{equity:.8f}",
                          "totalAvailableBalance": f"{self._available():.8f}", "totalPerpUPL": f"{upl:.8f}",
                          "totalInitialMargin": f"{im:.8f}", "totalMaintenanceMargin": "0",
                          "accountIMRate": "0", "accountMMRate": "0", "coin": [coin]}]}

    # --- helpers ----------------------------------------------------------------------------------

    def _read_quote(self) -> None:
        if self._quote_source is not None:
            quote = self._quote_source()
            if quote is not None:
                self._bid, self._ask = float(quote[0]), float(quote[1])

    def _mid(self) -> float:
        return (self._bid + self._ask) / 2 if self._bid and self._ask else self._bid or self._ask

    def _margin(self) -> float:
        return abs(self._pos.lots) * float(self.step) * self._pos.avg / self.leverage

    def _available(self) -> float:
        return self.balance - self._margin()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _px(self, price: float) -> str:
        return str(Decimal(repr(price)).quantize(self.tick, rounding=ROUND_HALF_UP))

    def _fmt_qty(self, lots: int) -> str:
        return str(lots * self.step)

    def _fmt_qty_f(self, qty: float) -> str:
        return str(Decimal(repr(qty)).quantize(self.step, rounding=ROUND_HALF_UP))


class _HttpFault(Exception):
    def __init__(self, status: int, body: bytes | None = None):
        super().__init__(status)
        self.status = status
        self.body = body  # None: the 5xx HTML page


class _Hold(Exception):
    def __init__(self, hold: float, result: dict[str, Any]):
        super().__init__(hold)
        self.hold = hold
        self.result = result


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that died mid-request (killed: the crash tests) is not an error of the venue."""
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _RateLimited(_Reply):
    def __init__(self, headers: dict[str, str]):
        super().__init__(10006, "Too many visits. Exceeded the API Rate Limit.")
        self.headers = headers


def serve(api_key: str, api_secret: str, *, port: int = 0, bid: float | None = None, ask: float | None = None,
          quote: Callable[[], tuple[float, float] | None] | None = None, **options: Any) -> BybitRestVenue:
    """Start a venue (returns it running; ``venue.url`` is the ``--rest-url``, ``venue.stop()`` ends it)."""
    venue = BybitRestVenue(api_key=api_key, api_secret=api_secret, port=port, quote=quote, **options).start()
    if bid is not None and ask is not None:
        venue.set_quote(bid, ask)
    return venue


def main(argv: list[str] | None = None) -> int:
    """``python -m loopback.bybit_rest``: a venue with a fixed quote until Ctrl-C (keys from the environment)."""
    import argparse
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--bid", type=float, default=60_000.0)
    parser.add_argument("--ask", type=float, default=60_000.1)
    args = parser.parse_args(argv)
    key, secret = os.environ.get("BYBIT_API_KEY"), os.environ.get("BYBIT_API_SECRET")
    if not key or not secret:
        parser.error("set BYBIT_API_KEY and BYBIT_API_SECRET (the credentials the venue accepts)")
    venue = serve(key, secret, port=args.port, bid=args.bid, ask=args.ask)
    print(f"Bybit REST loopback on {venue.url} (Ctrl-C stops)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        venue.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
