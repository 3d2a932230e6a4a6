"""Bybit v5 REST through pybit: one linear symbol, typed answers, every failure classified.

``BybitRest(url, api_key, api_secret, symbol=...)`` wraps pybit's
``unified_trading.HTTP`` (``endpoint`` set from ``url``: ``"mainnet"``,
``"testnet"``, ``"demo"`` or any ``http(s)://`` URL such as the loopback
venue) and returns the ``result`` object of each call, or raises
``RestError`` with a ``kind``:

| kind | cause | did a POST reach the book? |
|---|---|---|
| ``timeout`` | no answer within ``timeout`` s | unknown |
| ``network`` | connection refused/reset | unknown |
| ``http`` | HTTP status other than 200 (5xx, 403 IP limit) or an unreadable body | unknown |
| ``server`` | retCode 10000/10016 (server timeout/error) | unknown |
| ``rate_limited`` | retCode 10006 after ``rate_limit_retries`` back-offs | no |
| ``timestamp`` | retCode 10002 after a time resync | no |
| ``auth`` | 10003/10004/10005/10010: key, signature, permission, IP | no |
| ``insufficient_balance`` | 110004/110006/110007/110012/110044/110045 | no |
| ``duplicate`` | 110072: the orderLinkId was used already | an order with that id exists |
| ``not_modified`` | 34040 (trading-stop with unchanged values) | no |
| ``rejected`` | any other retCode | no |

"unknown" kinds (``UNCERTAIN``) leave the caller to look the order up by
its orderLinkId before sending again; this module never resends a POST on
its own. pybit's own retries are off (its ``retry_codes`` would sleep
3 s on a 10002 and hide the retCode behind "Retries exceeded"): this
client retries what is safe, knowing what each code means:

* 10002: the clock is resynced from ``/v5/market/time`` (offset = server
  time minus the midpoint of the local send/receive times) and the request
  is signed again with the corrected timestamp, once.
* 10006: back off until ``X-Bapi-Limit-Reset-Timestamp`` (server clock,
  corrected by the offset; at least ``min_backoff_s``, at most
  ``max_backoff_s``) and retry, up to ``rate_limit_retries`` times. A
  request rejected with 10006 was not executed, so this holds for orders too.
* ``X-Bapi-Limit-Status: 0`` on a success: the next request to that path
  waits for the reset first, instead of drawing a 10006.

Each back-off and resync is logged and kept in ``notices`` for the caller
to turn into alerts. The API key and secret are given by the caller (read
from the environment by ``credentials_from_env``), never logged: every
text this module logs or puts in an exception passes ``scrub``, and the
pybit session's ``repr`` hides them.

Response parsers (``parse_*``) take the ``result`` object of a v5 answer
and return small frozen records with Bybit's strings converted (Decimal for
sizes and rule values, float for prices and money, int for ms times).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import requests
from pybit.exceptions import FailedRequestError, InvalidRequestError
from pybit.unified_trading import HTTP

log = logging.getLogger("pbdtui.rest")

MAINNET_URL = "https://api.bybit.com"
TESTNET_URL = "https://api-testnet.bybit.com"
DEMO_URL = "https://api-demo.bybit.com"
NETWORKS = {"mainnet": MAINNET_URL, "testnet": TESTNET_URL, "demo": DEMO_URL}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

# RestError kinds
TIMEOUT = "timeout"
NETWORK = "network"
HTTP_ERROR = "http"
SERVER = "server"
RATE_LIMITED = "rate_limited"
TIMESTAMP = "timestamp"
AUTH = "auth"
INSUFFICIENT_BALANCE = "insufficient_balance"
DUPLICATE = "duplicate"
NOT_MODIFIED = "not_modified"
REJECTED = "rejected"
UNCERTAIN = frozenset({TIMEOUT, NETWORK, HTTP_ERROR, SERVER})  # a POST may or may not have been executed
# a number in an answer beyond this is not a price, size or money amount (it would overflow the engine's int64
# ticks); prices, sizes and amounts are checked against it, never silently clipped
_MAX_NUMBER = Decimal(10) ** 12

_CODE_KINDS = {
    10000: SERVER, 10016: SERVER,
    10002: TIMESTAMP, 10006: RATE_LIMITED,
    10003: AUTH, 10004: AUTH, 10005: AUTH, 10010: AUTH,
    110004: INSUFFICIENT_BALANCE, 110006: INSUFFICIENT_BALANCE, 110007: INSUFFICIENT_BALANCE,
    110012: INSUFFICIENT_BALANCE, 110044: INSUFFICIENT_BALANCE, 110045: INSUFFICIENT_BALANCE,
    110072: DUPLICATE, 34040: NOT_MODIFIED,
}


def resolve_rest_url(url: str | None) -> str:
    """``None``/``"mainnet"``, ``"testnet"``, ``"demo"`` -> Bybit's base URL; an ``http(s)://`` URL as given.

    Raises:
        ValueError: neither a network name nor an http:// or https:// URL.
    """
    if url is None:
        return MAINNET_URL
    if url in NETWORKS:
        return NETWORKS[url]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"REST URL {url!r} is not 'mainnet', 'testnet', 'demo' or an http(s):// URL")
    return url.rstrip("/")


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine (no confirmation needed to trade there)."""
    return urlsplit(resolve_rest_url(url)).hostname in LOOPBACK_HOSTS


def credentials_from_env(env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """``(BYBIT_API_KEY, BYBIT_API_SECRET)`` from the environment.

    Raises:
        ValueError: either is missing or empty (the message names the variable, never a value).
    """
    env = os.environ if env is None else env
    key, secret = env.get("BYBIT_API_KEY", ""), env.get("BYBIT_API_SECRET", "")
    missing = [name for name, value in (("BYBIT_API_KEY", key), ("BYBIT_API_SECRET", secret)) if not value]
    if missing:
        raise ValueError(f"live trading needs {' and '.join(missing)} in the environment")
    return key, secret


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` with every secret (at least 4 characters long) replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


class RestError(Exception):
    """A failed REST call: ``kind`` (module constants), ``code`` (retCode or HTTP status), scrubbed message."""

    def __init__(self, kind: str, message: str, code: int = 0, path: str = ""):
        super().__init__(f"{path}: {message} ({kind}{f', code {code}' if code else ''})")
        self.kind = kind
        self.code = code
        self.message = message
        self.path = path

    @property
    def uncertain(self) -> bool:
        """The request may have been executed (timeout, network, HTTP error, server error)."""
        return self.kind in UNCERTAIN


# --- response records and parsers ---------------------------------------------------------------


def _dec(value: Any, default: str = "0") -> Decimal:
    if isinstance(value, (dict, list, bool)):
        raise ValueError(f"not a number: {str(value)[:40]!r}")
    try:
        out = Decimal(str(value)) if value not in (None, "") else Decimal(default)
    except InvalidOperation:
        raise ValueError(f"not a number: {str(value)[:40]!r}") from None
    if not out.is_finite() or abs(out) > _MAX_NUMBER:
        raise ValueError(f"not a finite number of a sane size: {str(value)[:40]!r}")
    return out


def _flt(value: Any) -> float:
    if value in (None, ""):
        return 0.0
    if isinstance(value, (dict, list, bool)):
        raise ValueError(f"not a number: {str(value)[:40]!r}")
    out = float(value)
    if not math.isfinite(out) or abs(out) > _MAX_NUMBER:
        raise ValueError(f"not a finite number of a sane size: {str(value)[:40]!r}")
    return out


def _int(value: Any) -> int:
    if value in (None, ""):
        return 0
    if isinstance(value, (dict, list, float)):
        raise ValueError(f"not an integer: {str(value)[:40]!r}")
    out = int(value)
    if abs(out) >= 2**62:  # ms times and sequence numbers fit an int64 with room
        raise ValueError(f"integer out of range: {str(value)[:40]!r}")
    return out


@dataclass(frozen=True)
class InstrumentRules:
    """``/v5/market/instruments-info`` trading rules of one linear symbol."""

    symbol: str
    status: str  # "Trading" when orders are accepted
    tick_size: Decimal  # priceFilter.tickSize
    min_price: Decimal
    max_price: Decimal
    qty_step: Decimal  # lotSizeFilter.qtyStep
    min_qty: Decimal  # minOrderQty
    max_qty: Decimal  # maxOrderQty
    max_market_qty: Decimal  # maxMktOrderQty
    min_notional: Decimal  # minNotionalValue, quote currency


def parse_instrument(result: Mapping[str, Any], symbol: str) -> InstrumentRules:
    """The rules of ``symbol`` in an instruments-info ``result``.

    Raises:
        ValueError: ``symbol`` is not in the list.
    """
    for row in result.get("list") or ():
        if row.get("symbol") == symbol:
            price, lot = row.get("priceFilter") or {}, row.get("lotSizeFilter") or {}
            max_qty = _dec(lot.get("maxOrderQty"), "0")
            rules = InstrumentRules(
                symbol=symbol, status=str(row.get("status") or ""), tick_size=_dec(price.get("tickSize")),
                min_price=_dec(price.get("minPrice")), max_price=_dec(price.get("maxPrice")),
                qty_step=_dec(lot.get("qtyStep")), min_qty=_dec(lot.get("minOrderQty")), max_qty=max_qty,
                max_market_qty=_dec(lot.get("maxMktOrderQty"), str(max_qty)),
                min_notional=_dec(lot.get("minNotionalValue")))
            if rules.tick_size <= 0 or rules.qty_step <= 0:
                raise ValueError(f"{symbol}: tickSize {rules.tick_size} and qtyStep {rules.qty_step} must be positive")
            return rules
    raise ValueError(f"instruments-info has no {symbol}")


@dataclass(frozen=True)
class Execution:
    """One row of ``/v5/execution/list``."""

    exec_id: str
    symbol: str
    order_id: str
    order_link_id: str
    side: str  # "Buy" / "Sell"
    exec_type: str  # Trade, Funding, AdlTrade, BustTrade, ...
    price: float
    qty: Decimal
    value: float
    fee: float  # quote currency; positive = paid
    fee_rate: float
    is_maker: bool
    time: int  # ms
    order_type: str
    stop_order_type: str  # "", "UNKNOWN", StopLoss, TakeProfit, ...
    closed_size: Decimal
    seq: int


def parse_executions(result: Mapping[str, Any]) -> tuple[list[Execution], str]:
    """The rows of an execution-list ``result`` and its ``nextPageCursor`` ("" at the end)."""
    rows = [
        Execution(
            exec_id=str(r["execId"]), symbol=str(r.get("symbol") or ""), order_id=str(r.get("orderId") or ""),
            order_link_id=str(r.get("orderLinkId") or ""), side=str(r.get("side") or ""),
            exec_type=str(r.get("execType") or ""), price=_flt(r.get("execPrice")), qty=_dec(r.get("execQty")),
            value=_flt(r.get("execValue")), fee=_flt(r.get("execFee")), fee_rate=_flt(r.get("feeRate")),
            is_maker=bool(r.get("isMaker")), time=_int(r.get("execTime")),
            order_type=str(r.get("orderType") or ""), stop_order_type=str(r.get("stopOrderType") or ""),
            closed_size=_dec(r.get("closedSize")), seq=_int(r.get("seq")))
        for r in result.get("list") or ()
    ]
    return rows, str(result.get("nextPageCursor") or "")


@dataclass(frozen=True)
class VenuePosition:
    """One row of ``/v5/position/list``."""

    symbol: str
    side: str  # "Buy", "Sell", "" (flat)
    size: Decimal  # unsigned
    avg_price: float
    stop_loss: float  # 0: none
    take_profit: float  # 0: none
    mark_price: float
    unrealised_pnl: float
    cum_realised_pnl: float
    position_idx: int
    updated_time: int

    @property
    def signed_size(self) -> Decimal:
        return -self.size if self.side == "Sell" else self.size


def parse_positions(result: Mapping[str, Any]) -> list[VenuePosition]:
    """The rows of a position-list ``result``."""
    return [
        VenuePosition(
            symbol=str(r.get("symbol") or ""), side=str(r.get("side") or ""), size=_dec(r.get("size")),
            avg_price=_flt(r.get("avgPrice")), stop_loss=_flt(r.get("stopLoss")),
            take_profit=_flt(r.get("takeProfit")), mark_price=_flt(r.get("markPrice")),
            unrealised_pnl=_flt(r.get("unrealisedPnl")), cum_realised_pnl=_flt(r.get("cumRealisedPnl")),
            position_idx=_int(r.get("positionIdx")), updated_time=_int(r.get("updatedTime")))
        for r in result.get("list") or ()
    ]


OPEN_STATUSES = frozenset({"New", "PartiallyFilled", "Untriggered"})
FAILED_STATUSES = frozenset({"Rejected", "Cancelled", "PartiallyFilledCanceled", "Deactivated"})


@dataclass(frozen=True)
class VenueOrder:
    """One row of ``/v5/order/realtime`` (or ``/v5/order/history``)."""

    order_id: str
    order_link_id: str
    symbol: str
    side: str
    order_type: str
    status: str  # New, PartiallyFilled, Untriggered, Filled, Cancelled, Rejected, Triggered, Deactivated
    qty: Decimal
    cum_exec_qty: Decimal
    avg_price: float
    trigger_price: float
    stop_order_type: str  # "" for a plain order; StopLoss / TakeProfit for position conditionals
    reduce_only: bool
    reject_reason: str
    created_time: int
    updated_time: int


def parse_orders(result: Mapping[str, Any]) -> tuple[list[VenueOrder], str]:
    """The rows of an order list ``result`` and its ``nextPageCursor``."""
    rows = [
        VenueOrder(
            order_id=str(r.get("orderId") or ""), order_link_id=str(r.get("orderLinkId") or ""),
            symbol=str(r.get("symbol") or ""), side=str(r.get("side") or ""),
            order_type=str(r.get("orderType") or ""), status=str(r.get("orderStatus") or ""),
            qty=_dec(r.get("qty")), cum_exec_qty=_dec(r.get("cumExecQty")), avg_price=_flt(r.get("avgPrice")),
            trigger_price=_flt(r.get("triggerPrice")), stop_order_type=str(r.get("stopOrderType") or ""),
            reduce_only=bool(r.get("reduceOnly")), reject_reason=str(r.get("rejectReason") or ""),
            created_time=_int(r.get("createdTime")), updated_time=_int(r.get("updatedTime")))
        for r in result.get("list") or ()
    ]
    return rows, str(result.get("nextPageCursor") or "")


@dataclass(frozen=True)
class WalletBalance:
    """The unified account's totals and its USDT row (``/v5/account/wallet-balance``)."""

    total_equity: float
    total_available: float  # totalAvailableBalance (USD)
    usdt_wallet: float
    usdt_equity: float
    unrealised_pnl: float


def parse_wallet(result: Mapping[str, Any]) -> WalletBalance:
    """The first account of a wallet-balance ``result`` (its USDT coin row, zeros when absent)."""
    accounts = result.get("list") or [{}]
    acc = accounts[0]
    usdt = next((c for c in acc.get("coin") or () if c.get("coin") == "USDT"), {})
    return WalletBalance(total_equity=_flt(acc.get("totalEquity")),
                         total_available=_flt(acc.get("totalAvailableBalance")),
                         usdt_wallet=_flt(usdt.get("walletBalance")), usdt_equity=_flt(usdt.get("equity")),
                         unrealised_pnl=_flt(usdt.get("unrealisedPnl")))


def parse_server_time(result: Mapping[str, Any]) -> int:
    """Server time in ms from a ``/v5/market/time`` result (``timeNano`` preferred).

    Raises:
        ValueError: neither field holds a plausible time (after 2001, before 2100).
    """
    if result.get("timeNano"):
        ms = _int(result["timeNano"]) // 1_000_000
    else:
        ms = _int(result.get("timeSecond")) * 1000
    if not 1_000_000_000_000 <= ms <= 4_102_444_800_000:
        raise ValueError(f"server time {ms} ms is not a plausible time")
    return ms


# --- the client ---------------------------------------------------------------------------------


class _Session(HTTP):
    """pybit's HTTP with a clock offset in the signed timestamp and a repr that hides the credentials.

    pybit signs with its own ``time.time()``; overriding ``_prepare_headers``
    (the one place it reads the clock for a signature) is the narrowest way
    to sign with the exchange's time after a resync. Rejected: patching
    ``pybit._helpers.generate_timestamp`` (process-wide) or widening
    ``recv_window`` as pybit does on 10002 (it only hides a late clock).
    """

    time_offset_ms = 0

    def _prepare_headers(self, payload, recv_window, content_type="application/json"):  # type: ignore[override]
        timestamp = int(time.time() * 1000) + self.time_offset_ms
        signature = self._auth(payload=payload, recv_window=recv_window, timestamp=timestamp)
        return {"Content-Type": content_type, "X-BAPI-API-KEY": self.api_key, "X-BAPI-SIGN": signature,
                "X-BAPI-SIGN-TYPE": "2", "X-BAPI-TIMESTAMP": str(timestamp), "X-BAPI-RECV-WINDOW": str(recv_window)}

    def __repr__(self) -> str:
        return f"_Session(endpoint={self.endpoint!r})"

    __str__ = __repr__


@dataclass(frozen=True)
class Notice:
    """Something the client did on its own that the operator should know (back-off, resync)."""

    ts: int  # exchange ms (local clock + offset)
    kind: str  # rate_limited, timestamp
    text: str


class BybitRest:
    """A signed v5 client of one linear symbol (thread-safe: one request at a time).

    Args:
        url: ``"mainnet"``, ``"testnet"``, ``"demo"`` or an ``http(s)://`` base URL.
        api_key, api_secret: credentials (``credentials_from_env``); None for public calls only.
        symbol: the instrument; ``category`` is ``linear``.
        timeout: seconds before a request is given up as ``timeout``.
        recv_window: ms the exchange accepts a signed request after its timestamp.
        rate_limit_retries: back-offs on 10006 before ``RestError(rate_limited)``.
        min_backoff_s, max_backoff_s: bounds of one back-off.
        sleep, clock: seams for tests (``time.sleep``, ``time.time``).
    """

    def __init__(self, url: str | None, api_key: str | None, api_secret: str | None, *, symbol: str = "BTCUSDT",
                 timeout: float = 5.0, recv_window: int = 5000, rate_limit_retries: int = 3,
                 min_backoff_s: float = 0.05, max_backoff_s: float = 5.0,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time):
        self.url = resolve_rest_url(url)
        self.symbol = symbol
        self.category = "linear"
        self._key, self._secret = api_key, api_secret
        self.rate_limit_retries = rate_limit_retries
        self.min_backoff_s, self.max_backoff_s = min_backoff_s, max_backoff_s
        self._sleep, self._clock = sleep, clock
        # retry_codes={0}: pybit replaces an empty set by its defaults {10002, 10006, ...}; retCode 0 is
        # never looked up, so this turns pybit's retries off and every retCode reaches _call.
        self._http = _Session(api_key=api_key, api_secret=api_secret, timeout=timeout, recv_window=recv_window,
                              max_retries=1, retry_codes={0}, return_response_headers=True, log_requests=False)
        self._http.endpoint = self.url
        self._lock = threading.RLock()
        self._blocked_until: dict[str, float] = {}  # path -> local time the rate limit resets
        self.notices: list[Notice] = []
        self.requests = 0
        self.last_limit: dict[str, tuple[int, int]] = {}  # path -> (remaining, limit) from the last answer
        self.offset_uncertainty_ms = 0  # half the round trip of the last clock sync, ms

    def __repr__(self) -> str:
        return f"BybitRest(url={self.url!r}, symbol={self.symbol!r})"

    @property
    def time_offset_ms(self) -> int:
        return self._http.time_offset_ms

    def now_ms(self) -> int:
        """The exchange's time as this client knows it (local clock + offset)."""
        return int(self._clock() * 1000) + self._http.time_offset_ms

    def take_notices(self) -> list[Notice]:
        with self._lock:
            out, self.notices = self.notices, []
            return out

    def scrub(self, text: str) -> str:
        return scrub(text, self._secret, self._key)

    # --- calls -------------------------------------------------------------------------------------

    def sync_time(self) -> int:
        """Measure and set the offset between the exchange clock and ours; returns it (ms)."""
        with self._lock:
            before = self._clock()
            server = self._parsed("/v5/market/time", parse_server_time,
                                  self._call("get_server_time", "/v5/market/time", {}, auth=False))
            after = self._clock()
            offset = server - int((before + after) * 500)
            self._http.time_offset_ms = offset
            # the offset is known to within half the round trip: a time we stamp may run ahead of the
            # exchange's by up to that much
            self.offset_uncertainty_ms = int((after - before) * 500) + 1
            return offset

    def instrument_rules(self) -> InstrumentRules:
        result = self._call("get_instruments_info", "/v5/market/instruments-info",
                            {"category": self.category, "symbol": self.symbol}, auth=False)
        return self._parsed("/v5/market/instruments-info", parse_instrument, result, self.symbol)

    def ticker(self) -> dict[str, Any]:
        """The symbol's row of ``/v5/market/tickers`` (raw strings)."""
        result = self._call("get_tickers", "/v5/market/tickers", {"category": self.category, "symbol": self.symbol},
                            auth=False)
        rows = result.get("list") or []
        if not isinstance(rows, list) or not rows or not isinstance(rows[0], dict):
            raise RestError(REJECTED, f"tickers has no {self.symbol}", path="/v5/market/tickers")
        return rows[0]

    def place_order(self, **params: Any) -> dict[str, Any]:
        """``/v5/order/create`` (category and symbol added); ``{"orderId", "orderLinkId"}``."""
        return self._call("place_order", "/v5/order/create", {"category": self.category, "symbol": self.symbol,
                                                              **params})

    def cancel_all(self, **params: Any) -> dict[str, Any]:
        return self._call("cancel_all_orders", "/v5/order/cancel-all",
                          {"category": self.category, "symbol": self.symbol, **params})

    def trading_stop(self, **params: Any) -> dict[str, Any]:
        return self._call("set_trading_stop", "/v5/position/trading-stop",
                          {"category": self.category, "symbol": self.symbol, "tpslMode": "Full",
                           "positionIdx": 0, **params})

    def positions(self) -> list[VenuePosition]:
        result = self._call("get_positions", "/v5/position/list", {"category": self.category, "symbol": self.symbol})
        return [p for p in self._parsed("/v5/position/list", parse_positions, result) if p.symbol == self.symbol]

    def orders(self, *, max_pages: int = 10, **params: Any) -> list[VenueOrder]:
        """``/v5/order/realtime`` for the symbol, all pages (``openOnly``, ``orderLinkId``... as given)."""
        out: list[VenueOrder] = []
        cursor = ""
        for _ in range(max_pages):
            query = {"category": self.category, "symbol": self.symbol, "limit": 50, **params}
            if cursor:
                query["cursor"] = cursor
            rows, cursor = self._parsed("/v5/order/realtime", parse_orders,
                                        self._call("get_open_orders", "/v5/order/realtime", query))
            out.extend(rows)
            if not cursor or not rows:
                break
        return out

    def executions(self, *, max_pages: int = 20, **params: Any) -> list[Execution]:
        """``/v5/execution/list`` for the symbol, all pages, newest first (``startTime``... as given)."""
        out: list[Execution] = []
        cursor = ""
        for _ in range(max_pages):
            query = {"category": self.category, "symbol": self.symbol, "limit": 100, **params}
            if cursor:
                query["cursor"] = cursor
            rows, cursor = self._parsed("/v5/execution/list", parse_executions,
                                        self._call("get_executions", "/v5/execution/list", query))
            out.extend(rows)
            if not cursor or not rows:
                break
        return out

    def wallet(self) -> WalletBalance:
        return self._parsed("/v5/account/wallet-balance", parse_wallet,
                            self._call("get_wallet_balance", "/v5/account/wallet-balance", {"accountType": "UNIFIED"}))

    # --- the one door ------------------------------------------------------------------------------

    def _call(self, method: str, path: str, params: dict[str, Any], auth: bool = True) -> dict[str, Any]:
        """pybit's ``method`` with ``params``; the ``result`` object, or ``RestError``."""
        with self._lock:
            resynced = False
            backoffs = 0
            while True:
                self._wait_for_limit(path)
                try:
                    return self._once(method, path, params, auth)
                except RestError as e:
                    if e.kind == TIMESTAMP and not resynced:
                        resynced = True
                        old = self._http.time_offset_ms
                        try:
                            offset = self.sync_time()
                        except RestError as sync_error:
                            raise e from sync_error
                        self._notice(TIMESTAMP, f"{path}: timestamp rejected (10002); clock resynced, offset "
                                                f"{old} -> {offset} ms; retrying")
                        continue
                    if e.kind == RATE_LIMITED and backoffs < self.rate_limit_retries:
                        backoffs += 1
                        delay = self._backoff(path, getattr(e, "reset_ms", 0))
                        self._notice(RATE_LIMITED, f"{path}: rate limited (10006); backing off {delay * 1000:.0f} "
                                                   f"ms (attempt {backoffs} of {self.rate_limit_retries})")
                        self._sleep(delay)
                        continue
                    raise

    def _once(self, method: str, path: str, params: dict[str, Any], auth: bool) -> dict[str, Any]:
        self.requests += 1
        try:
            answer = getattr(self._http, method)(**dict(params))
        except requests.exceptions.Timeout as e:
            raise RestError(TIMEOUT, self.scrub(f"no answer within {self._http.timeout} s ({type(e).__name__})"),
                            path=path) from None
        except requests.exceptions.RequestException as e:
            raise RestError(NETWORK, self.scrub(f"{type(e).__name__}: {e}"), path=path) from None
        except InvalidRequestError as e:
            code = e.status_code
            if type(code) is not int or code == 0 or not isinstance(e.message, str):
                # a retCode that is not a number, or without its text: the answer is unreadable, and a POST
                # answered so may have been executed (the caller looks it up), not a rejection
                raise RestError(HTTP_ERROR, self.scrub(f"unreadable answer: retCode {str(code)[:40]!r}, retMsg "
                                                       f"{str(e.message)[:40]!r}"), path=path) from None
            err = RestError(_CODE_KINDS.get(code, REJECTED), self.scrub(str(e.message)[:200]), code, path)
            if code == 10006:
                err.reset_ms = self._reset_ms(e.resp_headers)  # type: ignore[attr-defined]
            raise err from None
        except FailedRequestError as e:
            try:
                status = int(e.status_code or 0)
            except (TypeError, ValueError):
                status = 0
            raise RestError(HTTP_ERROR, self.scrub(str(e.message)), status, path) from None
        except PermissionError as e:  # pybit: "Authenticated endpoints require keys."
            raise RestError(AUTH, str(e), path=path) from None
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
            # an answer pybit could not read: not JSON, an envelope that is not an object, a retCode without
            # its retMsg, ... (pybit looks fields up without checking)
            raise RestError(HTTP_ERROR, self.scrub(f"unreadable answer: {type(e).__name__}: {str(e)[:80]}"),
                            path=path) from None
        body, _elapsed, headers = answer
        self._note_limit(path, headers)
        result = body.get("result") if isinstance(body, dict) else None
        if result is None or result == "":
            return {}
        if not isinstance(result, dict):
            raise RestError(HTTP_ERROR, self.scrub(f"unreadable answer: 'result' is a {type(result).__name__}, "
                                                   "not an object"), path=path)
        return result

    def _parsed(self, path: str, parse: Callable[..., Any], result: Any, *args: Any) -> Any:
        """``parse(result, *args)``; an answer of the wrong shape (missing field, wrong type) is a RestError."""
        try:
            return parse(result, *args)
        except RestError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, IndexError, ArithmeticError) as e:
            raise RestError(HTTP_ERROR, self.scrub(f"unreadable answer: {type(e).__name__}: {str(e)[:120]}"),
                            path=path) from None

    @staticmethod
    def _reset_ms(headers: Any) -> int:
        try:
            return int((headers or {}).get("X-Bapi-Limit-Reset-Timestamp") or 0)
        except (TypeError, ValueError):
            return 0

    def _note_limit(self, path: str, headers: Any) -> None:
        try:
            remaining = int(headers.get("X-Bapi-Limit-Status"))
            limit = int(headers.get("X-Bapi-Limit") or 0)
        except (AttributeError, TypeError, ValueError):
            return
        self.last_limit[path] = (remaining, limit)
        if remaining <= 0:
            reset = self._reset_ms(headers)
            now = self.now_ms()
            # a reset in the past says nothing: wait one window (Bybit's limits are per rolling second)
            wait = self._bounded((reset - now) / 1000 if reset > now else 1.0)
            self._blocked_until[path] = self._clock() + wait
            self._notice(RATE_LIMITED, f"{path}: request limit reached ({limit}/s); next request waits "
                                       f"{wait * 1000:.0f} ms")

    def _wait_for_limit(self, path: str) -> None:
        until = self._blocked_until.pop(path, 0.0)
        wait = until - self._clock()
        if wait > 0:
            self._sleep(wait)

    def _bounded(self, seconds: float) -> float:
        return min(max(seconds, self.min_backoff_s), self.max_backoff_s)

    def _backoff(self, path: str, reset_ms: int) -> float:
        """Seconds to wait after a 10006: until the reset time (exchange clock) or the minimum."""
        return self._bounded((reset_ms - self.now_ms()) / 1000 if reset_ms else self.min_backoff_s)

    def _notice(self, kind: str, text: str) -> None:
        text = self.scrub(text)
        log.warning("%s", text)
        self.notices.append(Notice(self.now_ms(), kind, text))
