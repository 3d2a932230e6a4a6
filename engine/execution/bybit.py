"""The Bybit execution backend: intents to v5 orders through pybit, fills and positions read back by polling.

``BybitExecution(rest, instrument)`` implements ``ExecutionBackend`` for
one linear symbol in one-way mode (``positionIdx`` 0)::

    key, secret = credentials_from_env()
    rest = BybitRest("testnet", key, secret, symbol="BTCUSDT")   # or a loopback http://127.0.0.1:port
    backend = BybitExecution(rest, store.instrument)
    backend.start()                      # instrument rules, clock offset, first position read
    backend.submit(intent)               # never raises for venue errors
    for event in backend.poll(): ...     # Fill | FundingCharge | PositionReport | ExecAlert, in time order

Orders:

* **entry**: one market order, ``orderLinkId = intent.client_id``, with the
  stop attached (``stopLoss``, position-level, ``tpslMode`` Full) so the
  exchange holds the stop from the instant the position exists, and the
  target attached as ``takeProfit`` (see "Targets" below). An entry needs a
  stop, and the exchange position must read flat first (a position the
  engine does not know about would be doubled; one REST read per entry,
  entries are minutes apart).
* **exit**: a ``reduceOnly`` market order for the intent's quantity: it can
  only shrink the position, so racing the exchange's own stop or target
  cannot open a reverse position.
* **flatten**: ``flatten()`` (also ``submit`` of an ``INTENT_FLATTEN``).
* ``set_stop(ticks)`` moves the stop through ``/v5/position/trading-stop``.

Targets: exchange ``takeProfit``, not engine exits. The backtest's fill
model treats the target as a resting level filled by the first quote that
crosses it, like the stop, not as a decision at a minute close; a
take-profit held by the exchange is that, without the REST polling delay
(a second or more between the touch and a reduce-only order), and it still
works when the process or its connection dies, which an engine exit does
not. It is position-level (Full), so the exchange resizes it with the
position and cancels it when the position closes: no orphan order to
clean up. The target (doubled ticks: it may sit on a half tick) is rounded
to the tick at or beyond it (long: up, short: down), as bar mode does.
Costs accepted: Bybit triggers on the last traded price by default, not on
the quote; an engine exit on the target still works (reduce-only) and meets
a flat position at worst, which is reported as a rejection.

Instrument rules: ``/v5/market/instruments-info`` is read at ``start``;
an intent whose quantity is not a multiple of ``qtyStep``, below
``minOrderQty``, above ``maxMktOrderQty``, below ``minNotionalValue`` at the
reference price, or whose stop is off the ``tickSize`` grid or on the wrong
side of the reference price, is refused with an ``ExecAlert`` (kind
``refused``) and not sent. The reference price is ``price_source()`` (the
engine's quote, a float) when given, else ``/v5/market/tickers``.

Failures, each logged and alerted (``ExecAlert.kind`` = the RestError kind
unless said otherwise), none able to double a position:

* timeout / network / HTTP 5xx / server error on a create: the order may
  exist. It is looked up by ``orderLinkId`` (``/v5/order/realtime`` with
  ``openOnly`` 1 then 0, then ``/v5/execution/list``) before anything is
  resent; found: adopted (kind ``recovered``); not found: resent with the
  **same** ``orderLinkId`` (up to ``send_attempts``), so an order that was
  in flight after all comes back as 110072 instead of a second position.
  Still unresolved: kind ``unknown_order`` (critical); every ``poll`` looks
  it up again until found or ``unknown_grace_ms`` passed (then ``lost``).
* 110072 duplicate orderLinkId: "already placed": looked up and adopted.
* 10006 rate limit and 10002 timestamp: handled in ``BybitRest`` (back off
  until the reset time / resync the clock and re-sign); each back-off or
  resync is a warning alert; when retries run out the intent fails.
* 110007 (and the other balance codes), auth errors, other rejections: the
  intent fails, not retried (a failed intent may be submitted again with
  the same ``client_id``).
* a second ``submit`` of an intent already placed: ignored (kind
  ``duplicate_intent``, info); one whose outcome was unknown: looked up first.
* an order the exchange cancelled or rejected after accepting it (a market
  order with no liquidity): kind ``order_cancelled`` with the filled part.
* a liquidation or ADL execution: a fill plus a critical alert.

Fills come from ``/v5/execution/list`` (``startTime`` = newest execution
seen minus ``lookback_ms``, so late rows are not missed), deduplicated by
``execId``; fees are the exchange's ``execFee``. Funding executions
(``execType`` Funding) become ``FundingCharge`` records: the loopback venue
writes them (``BybitRestVenue.fund``), and Bybit lists them in the same
endpoint. ``PositionReport`` is emitted when the exchange's position
(size, entry, stop, take-profit) differs from the last one reported.

Times: this module is at the live edge and reads the wall clock, shifted by
the offset measured against ``/v5/market/time``, for alert and report
stamps; fills carry the exchange's ``execTime``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Any, Protocol

from engine.adapters.bybit.rest import (
    DUPLICATE,
    FAILED_STATUSES,
    NOT_MODIFIED,
    BybitRest,
    Execution,
    InstrumentRules,
    RestError,
    VenueOrder,
    VenuePosition,
    WalletBalance,
)
from engine.execution.types import (
    INTENT_ENTER,
    INTENT_EXIT,
    INTENT_FLATTEN,
    ExecAlert,
    Fill,
    FundingCharge,
    Intent,
    PositionReport,
)
from engine.types import SIDE_BUY, SIDE_SELL

log = logging.getLogger("pbdtui.exec")

SEVEN_DAYS_MS = 7 * 86_400_000
RECOVER_WINDOWS = 8  # 7-day execution reads a restart makes at most, looking for unrecorded executions
_LINK_ID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")

# order states
SENDING = "sending"
PLACED = "placed"  # the exchange has it (acknowledged or found)
DONE = "done"  # filled whole, or ended by the exchange
FAILED = "failed"  # refused here or rejected by the exchange: never on the book
UNKNOWN = "unknown"  # sent, outcome not known (timeout...) and not found yet


class InstrumentLike(Protocol):
    symbol: str
    tick_size: float
    qty_step: float



@dataclass
class _Order:
    intent: Intent
    params: dict[str, Any]
    status: str = SENDING
    order_id: str = ""
    sends: int = 0
    last_send_ms: int = 0
    filled_lots: int = 0


@dataclass(frozen=True)
class VenueSnapshot:
    """What ``pbdtui status`` shows: the exchange's view right now (None: that read failed)."""

    ts: int
    position: VenuePosition | None
    orders: list[VenueOrder] | None
    wallet: WalletBalance | None
    time_offset_ms: int
    errors: list[str] = field(default_factory=list)


def _decimal(value: float) -> Decimal:
    return Decimal(repr(float(value)))


class BybitExecution:
    """``ExecutionBackend`` on Bybit v5 (see the module doc).

    Args:
        rest: the signed client of the instrument's symbol.
        instrument: the store's grid (``symbol``, ``tick_size``, ``qty_step``):
            intents' ticks and lots are converted with it.
        price_source: ``() -> float | None``, a current price for the
            notional and stop-side checks (None: ``/v5/market/tickers``).
        since_ms: report executions from this exchange time on (default:
            ``start`` time); a restart passes its last recorded fill time.
        known_exec_ids: executions already recorded (not reported again).
        require_flat_entry: refuse an entry unless the exchange position is flat.
        send_attempts: sends of one order after uncertain outcomes.
        flatten_attempts, flatten_delay_s: position reads (and closes) before
            flatten gives up, and the pause between later ones.
        lookback_ms: overlap of each execution poll with the previous one.
        unknown_grace_ms: how long an order of unknown outcome is looked for.
        clock: ``() -> exchange ms`` stamping alerts and reports and bounding the
            execution reads (default: the REST client's corrected wall clock;
            the live driver passes its feed clock, so an accelerated loopback
            session and its venue share one time line).
        sleep: seam for tests.
    """

    def __init__(self, rest: BybitRest, instrument: InstrumentLike, *,
                 price_source: Callable[[], float | None] | None = None, since_ms: int | None = None,
                 known_exec_ids: tuple[str, ...] | list[str] = (), require_flat_entry: bool = True,
                 send_attempts: int = 3, flatten_attempts: int = 10, flatten_delay_s: float = 0.25,
                 lookback_ms: int = 60_000, unknown_grace_ms: int = 30_000,
                 clock: Callable[[], int] | None = None, sleep: Callable[[float], None] = time.sleep):
        if instrument.symbol != rest.symbol:
            raise ValueError(f"instrument {instrument.symbol} but the REST client trades {rest.symbol}")
        self.rest = rest
        self.symbol = instrument.symbol
        self.tick = _decimal(instrument.tick_size)
        self.step = _decimal(instrument.qty_step)
        self.price_source = price_source
        self.require_flat_entry = require_flat_entry
        self.send_attempts = max(1, send_attempts)
        self.flatten_attempts = max(1, flatten_attempts)
        self.flatten_delay_s = flatten_delay_s
        self.lookback_ms = lookback_ms
        self.unknown_grace_ms = unknown_grace_ms
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.RLock()
        self.rules: InstrumentRules | None = None
        self._since = since_ms
        self._floor = since_ms  # executions before this are not reported (before this run: the position read covers them)
        self._seen: dict[str, int] = dict.fromkeys(known_exec_ids, 0)  # execId -> execTime
        self._orders: dict[str, _Order] = {}  # client_id -> order
        self._by_order_id: dict[str, str] = {}  # exchange orderId -> client_id
        self._outbox: list[Any] = []
        self._last_report: PositionReport | None = None
        self._poll_failures = 0
        self._flatten_seq = 0

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> bool:
        """Clock offset, instrument rules, first position read; False (with alerts) when one failed."""
        with self._lock:
            try:
                offset = self.rest.sync_time()
                self.rules = self.rest.instrument_rules()
            except (RestError, ValueError) as e:
                self._alert("start", f"cannot start: {e}", severity="critical")
                return False
            if self._since is None:
                # our "now" may run ahead of the exchange's by the offset's uncertainty: an execution
                # stamped just after this start must not fall below the floor
                self._since = self._now() - int(getattr(self.rest, "offset_uncertainty_ms", 0))
            if self._floor is None:
                self._floor = self._since
            self._info("started", f"{self.symbol}: clock offset {offset} ms; tick {self.rules.tick_size}, qty step "
                                  f"{self.rules.qty_step}, min qty {self.rules.min_qty}, min notional "
                                  f"{self.rules.min_notional}, status {self.rules.status}")
            for problem in self._grid_problems():
                self._alert("rules", problem, severity="warning")
            return True

    def _now(self) -> int:
        if self._clock is not None:
            now = self._clock()
            if now > 0:
                self._onto_clock(int(now))
                return int(now)
        return self.rest.now_ms()

    def _onto_clock(self, now: int) -> None:
        """The clock moved to the feed's time line, behind the exchange's wall clock (a replayed or
        simulated feed): the start's floor moves back to it at once, not at the next poll, so an
        order sent now is not stamped below a floor taken later."""
        if self._since is not None and self._since > now:
            self._since = now
        if self._floor is not None and self._floor > now:
            self._floor = now

    def order_status(self, client_id: str) -> str | None:
        """The backend's state of an intent's order (``SENDING``/``PLACED``/``DONE``/``FAILED``/``UNKNOWN``), None if never seen."""
        with self._lock:
            order = self._orders.get(client_id)
            return None if order is None else order.status

    def _ready(self) -> bool:
        return self.rules is not None or self.start()

    def _grid_problems(self) -> list[str]:
        assert self.rules is not None
        out = []
        if self.step % self.rules.qty_step:
            out.append(f"the store's lot {self.step} is not a multiple of the exchange's qty step "
                       f"{self.rules.qty_step}: some quantities will be refused")
        if self.rules.tick_size % self.tick and self.tick % self.rules.tick_size:
            out.append(f"the store's tick {self.tick} and the exchange's tick {self.rules.tick_size} differ: "
                       "stops off the exchange grid will be refused")
        return out

    # --- conversions -------------------------------------------------------------------------------

    def price_of(self, ticks: int) -> Decimal:
        return Decimal(int(ticks)) * self.tick

    def ticks_of(self, price: float | Decimal) -> int:
        if not price:
            return 0
        return int((Decimal(str(price)) / self.tick).to_integral_value(ROUND_HALF_EVEN))

    def qty_of(self, lots: int) -> Decimal:
        return Decimal(int(lots)) * self.step

    def lots_of(self, qty: Decimal) -> int:
        return int((qty / self.step).to_integral_value(ROUND_HALF_EVEN))

    def _fmt_price(self, price: Decimal) -> str:
        assert self.rules is not None
        return str(price.quantize(self.rules.tick_size))

    def _fmt_qty(self, qty: Decimal) -> str:
        assert self.rules is not None
        return str(qty.quantize(self.rules.qty_step))

    # --- ExecutionBackend --------------------------------------------------------------------------

    def submit(self, intent: Intent) -> None:
        """Send the intent's order (see the module doc); outcomes come back from ``poll`` as alerts."""
        with self._lock:
            if intent.kind == INTENT_FLATTEN:
                self.flatten()
                return
            if not self._ready():
                self._alert("refused", "not started: instrument rules unknown; intent not sent",
                            intent.client_id)
                return
            known = self._orders.get(intent.client_id)
            if known is not None and known.status in (PLACED, DONE, SENDING):
                self._info("duplicate_intent", f"intent {intent.client_id} was placed already (order "
                                               f"{known.order_id or '?'}): not sent again", intent.client_id)
                return
            if known is not None and known.status == UNKNOWN:
                if self._resolve(known, "resubmitted"):
                    return
                order = known
            else:
                params = self._order_params(intent)
                if params is None:
                    return
                order = _Order(intent, params)
                self._orders[intent.client_id] = order
            self._send(order)

    def poll(self) -> list[Fill | FundingCharge | PositionReport | ExecAlert]:
        """Fills, funding, position changes and alerts since the last poll, in time order."""
        with self._lock:
            out: list[Any] = []
            if self._ready():
                try:
                    out.extend(self._poll_executions())
                    self._poll_orders()
                    report = self._read_position()
                    last = self._last_report
                    if last is None or (report.qty, report.entry_px, report.stop, report.take_profit) != (
                            last.qty, last.entry_px, last.stop, last.take_profit):
                        self._last_report = report
                        out.append(report)
                    if self._poll_failures:
                        self._info("poll", f"polling recovered after {self._poll_failures} failed poll(s)")
                        self._poll_failures = 0
                except RestError as e:
                    self._poll_failures += 1
                    if self._poll_failures == 1:
                        self._alert(e.kind, f"poll failed: {e}", severity="warning")
            self._take_notices()
            out.extend(self._outbox)
            self._outbox = []
            out.sort(key=lambda event: event.ts)
            return out

    def recover(self, recorded: dict[str, int] | set[str], since_ms: int) -> list[Fill]:
        """Executions a previous run made but did not record (killed first), oldest first.

        ``recorded``: the execIds already in the database; ``since_ms``: where to
        look from (the newest of them; ``LiveDriver.recorded_executions``). The
        execution list is read from ``since_ms - lookback_ms`` on, with no lower
        bound from this run's clock: a restart after a crash finds the executions
        the dead process had polled but not committed, and those the exchange
        made while no process ran (a stop that triggered). ``since_ms < 0``: a new
        database, nothing to look for. The executions returned are marked seen,
        so ``poll`` does not report them again.

        Raises:
            RestError: the read failed.
        """
        with self._lock:
            if since_ms < 0:
                return []
            start = max(0, since_ms - self.lookback_ms)
            # Bybit answers at most 7 days per request: windows from ``start`` to now, at most RECOVER_WINDOWS
            end, now, found = start, self._now(), []
            for _ in range(RECOVER_WINDOWS):
                found += self.rest.executions(startTime=end, endTime=end + SEVEN_DAYS_MS - 1)
                end += SEVEN_DAYS_MS
                if end > now:
                    break
            rows = [e for e in {e.exec_id: e for e in found}.values() if e.exec_id not in recorded
                    and e.exec_id not in self._seen and e.symbol in ("", self.symbol) and e.time >= start]
            rows.sort(key=lambda e: (e.time, e.seq))
            out = []
            for e in rows:
                self._seen[e.exec_id] = e.time
                event = self._event_of(e)
                if isinstance(event, Fill):
                    out.append(event)
            return out

    def position(self) -> PositionReport:
        """The exchange's position now (a REST read).

        Raises:
            RestError: the read failed (the caller cannot know the position).
        """
        with self._lock:
            return self._read_position()

    def flatten(self) -> bool:
        """Cancel open orders, close with reduce-only market orders, re-read until flat; True once confirmed.

        The position's own stop and take-profit are left on the exchange
        until the position reads flat (``orderFilter=Order`` cancels plain
        orders only), so a close that fails leaves the position protected;
        once flat, a full ``cancel-all`` removes whatever conditional is left.
        A close order may be sent more than once (its answer lost, the next
        read still shows the position): each is reduce-only, so together
        they cannot overshoot into a reverse position.
        """
        with self._lock:
            self._alert("flatten", f"flatten {self.symbol}: cancelling orders, closing the position",
                        severity="warning")
            if not self._ready():
                self._alert("flatten", "flatten NOT confirmed: cannot start the backend", severity="critical")
                return False
            try:
                self.rest.cancel_all(orderFilter="Order")
            except RestError as e:
                self._alert(e.kind, f"flatten: cancel-all failed: {e}", severity="error")
            size = None
            for attempt in range(self.flatten_attempts):
                if attempt >= 2:
                    self._sleep(self.flatten_delay_s)
                try:
                    pos = self._venue_position()
                except RestError as e:
                    self._alert(e.kind, f"flatten: position read failed (attempt {attempt + 1}): {e}")
                    continue
                size = pos.signed_size if pos is not None else Decimal(0)
                if size == 0:
                    try:
                        self.rest.cancel_all()
                    except RestError as e:
                        self._alert(e.kind, f"flatten: final cancel-all failed: {e}", severity="warning")
                    self._alert("flatten", f"flat confirmed by the exchange ({self.symbol} size 0)",
                                severity="info")
                    self._last_report = None  # the next poll reports the flat position
                    return True
                assert self.rules is not None
                qty = min(abs(size), self.rules.max_market_qty or abs(size))
                self._flatten_seq += 1
                link = f"flat-{self.rest.now_ms()}-{self._flatten_seq}"
                try:
                    self.rest.place_order(side="Sell" if size > 0 else "Buy", orderType="Market",
                                          qty=self._fmt_qty(qty), positionIdx=0, orderLinkId=link,
                                          reduceOnly=True)
                except RestError as e:
                    self._alert(e.kind, f"flatten: close order {link} for {qty} failed (attempt {attempt + 1}): "
                                        f"{e}")
            self._alert("not_flat", f"flatten NOT confirmed after {self.flatten_attempts} attempts: "
                                    f"{self.symbol} position {size if size is not None else 'unknown'} may be open",
                        severity="critical")
            return False

    # --- more than the interface -------------------------------------------------------------------

    def set_stop(self, stop_ticks: int) -> bool:
        """Move the position's stop on the exchange (``/v5/position/trading-stop``); True when it holds."""
        with self._lock:
            if not self._ready():
                return False
            assert self.rules is not None
            price = self.price_of(stop_ticks)
            if stop_ticks <= 0 or price % self.rules.tick_size:
                self._alert("refused", f"stop {price} is not on the exchange's {self.rules.tick_size} grid: "
                                       "not moved")
                return False
            try:
                self.rest.trading_stop(stopLoss=self._fmt_price(price))
            except RestError as e:
                if e.kind == NOT_MODIFIED:
                    return True
                self._alert(e.kind, f"stop move to {price} failed: {e}")
                return False
            self._info("stop_moved", f"stop moved to {price}")
            return True

    def snapshot(self) -> VenueSnapshot:
        """Position, open orders and balance for ``pbdtui status`` (each read may fail alone)."""
        with self._lock:
            errors: list[str] = []
            position = orders = wallet = None
            try:
                position = self._venue_position()
            except RestError as e:
                errors.append(str(e))
            try:
                orders = self.rest.orders()
            except RestError as e:
                errors.append(str(e))
            try:
                wallet = self.rest.wallet()
            except RestError as e:
                errors.append(str(e))
            return VenueSnapshot(self._now(), position, orders, wallet, self.rest.time_offset_ms, errors)

    # --- orders ------------------------------------------------------------------------------------

    def _order_params(self, intent: Intent) -> dict[str, Any] | None:
        """The create-order parameters of ``intent``, or None (alerted) when it breaks a rule."""
        rules = self.rules
        assert rules is not None
        cid = intent.client_id

        def refuse(text: str) -> None:
            self._alert("refused", f"intent {cid} not sent: {text}", cid)

        if not _LINK_ID.match(cid):
            refuse("client_id must be 1-36 letters, digits, '-' or '_' (Bybit orderLinkId)")
            return None
        if intent.kind not in (INTENT_ENTER, INTENT_EXIT):
            refuse(f"unknown intent kind {intent.kind!r}")
            return None
        if intent.side not in (SIDE_BUY, SIDE_SELL):
            refuse(f"side {intent.side} is neither buy nor sell")
            return None
        if rules.status and rules.status != "Trading":
            refuse(f"{self.symbol} status is {rules.status}, not Trading")
            return None
        qty = self.qty_of(intent.qty)
        if intent.qty <= 0 or qty % rules.qty_step:
            refuse(f"qty {qty} is not a positive multiple of the qty step {rules.qty_step}")
            return None
        if qty < rules.min_qty:
            refuse(f"qty {qty} is below the minimum order qty {rules.min_qty}")
            return None
        if rules.max_market_qty and qty > rules.max_market_qty:
            refuse(f"qty {qty} is above the maximum market order qty {rules.max_market_qty}")
            return None
        params: dict[str, Any] = {"side": "Buy" if intent.side == SIDE_BUY else "Sell", "orderType": "Market",
                                  "qty": self._fmt_qty(qty), "positionIdx": 0, "orderLinkId": cid}
        if intent.kind == INTENT_EXIT:
            params["reduceOnly"] = True
            return params
        # an entry: its stop travels with it
        stop = self.price_of(intent.stop)
        if intent.stop <= 0:
            refuse("an entry needs a stop (no position without a stop on the exchange)")
            return None
        if stop % rules.tick_size or not rules.min_price <= stop <= (rules.max_price or stop):
            refuse(f"stop {stop} is not a valid price on the exchange's {rules.tick_size} grid")
            return None
        try:
            ref = self._reference_price()
        except RestError as e:
            refuse(f"no reference price for the notional and stop checks ({e})")
            return None
        long = intent.side == SIDE_BUY
        if qty * ref < rules.min_notional:
            refuse(f"notional {qty * ref:.2f} at {ref} is below the minimum {rules.min_notional}")
            return None
        if (long and stop >= ref) or (not long and stop <= ref):
            refuse(f"stop {stop} is on the wrong side of the price {ref} for a {'long' if long else 'short'}")
            return None
        params["reduceOnly"] = False
        params["stopLoss"] = self._fmt_price(stop)
        params["slTriggerBy"] = "LastPrice"
        params["tpslMode"] = "Full"
        if intent.target2 > 0:
            half = Decimal(intent.target2) / 2
            ticks = half.to_integral_value(ROUND_CEILING if long else ROUND_FLOOR)
            take = (ticks * self.tick / rules.tick_size).to_integral_value(
                ROUND_CEILING if long else ROUND_FLOOR) * rules.tick_size
            if (long and take > ref) or (not long and take < ref):
                params["takeProfit"] = self._fmt_price(take)
                params["tpTriggerBy"] = "LastPrice"
            else:
                self._alert("target_not_set", f"intent {cid}: target {take} is already crossed at {ref}; sent "
                                              "without a take-profit", cid, severity="warning")
        return params

    def _reference_price(self) -> Decimal:
        if self.price_source is not None:
            price = self.price_source()
            if price:
                return _decimal(price)
        row = self.rest.ticker()
        bid, ask = Decimal(str(row.get("bid1Price") or 0)), Decimal(str(row.get("ask1Price") or 0))
        if bid and ask:
            return (bid + ask) / 2
        last = Decimal(str(row.get("lastPrice") or 0))
        if not last:
            raise RestError("rejected", "tickers has no price", path="/v5/market/tickers")
        return last

    def _send(self, order: _Order) -> None:
        """Send ``order`` until it is placed, refused or unknown (see the module doc)."""
        cid = order.intent.client_id
        if (order.intent.kind == INTENT_ENTER and self.require_flat_entry and order.sends == 0):
            try:
                pos = self._venue_position()
            except RestError as e:
                order.status = FAILED
                self._alert(e.kind, f"intent {cid} not sent: cannot confirm the position is flat ({e})", cid)
                return
            if pos is not None and pos.size != 0:
                order.status = FAILED
                self._alert("refused", f"intent {cid} not sent: the exchange position is {pos.signed_size}, not "
                                       "flat (an entry would add to it)", cid)
                return
        while order.sends < self.send_attempts:
            order.sends += 1
            order.last_send_ms = self._now()
            try:
                result = self.rest.place_order(**order.params)
            except RestError as e:
                if e.uncertain:
                    self._alert(e.kind, f"order {cid} send {order.sends}: {e}; looking it up by orderLinkId",
                                cid, severity="warning")
                    if self._resolve(order, "after " + e.kind):
                        return
                    continue  # not on the exchange: resend with the same orderLinkId
                if e.kind == DUPLICATE:
                    self._alert("duplicate_order", f"order {cid}: orderLinkId already used (110072); treating it "
                                                   "as placed and looking it up", cid, severity="warning")
                    if not self._resolve(order, "after 110072"):
                        order.status = UNKNOWN
                        self._alert("unknown_order", f"order {cid}: the exchange says the orderLinkId exists but "
                                                     "it cannot be found; not resent", cid, severity="critical")
                    return
                order.status = FAILED
                self._alert(e.kind, f"order {cid} failed: {e}", cid)
                return
            self._placed(order, str(result.get("orderId") or ""))
            return
        order.status = UNKNOWN
        self._alert("unknown_order", f"order {cid}: outcome unknown after {order.sends} sends; it is looked up on "
                                     "every poll and not sent again", cid, severity="critical")

    def _placed(self, order: _Order, order_id: str) -> None:
        order.status = PLACED
        order.order_id = order_id
        if order_id:
            self._by_order_id[order_id] = order.intent.client_id
        log.info("order %s placed: %s (exchange id %s)", order.intent.client_id,
                 {k: v for k, v in order.params.items() if k != "orderLinkId"}, order_id)

    def _resolve(self, order: _Order, why: str) -> bool:
        """Look ``order`` up by orderLinkId; True when found (then adopted as placed)."""
        cid = order.intent.client_id
        try:
            found = self._lookup(cid)
        except RestError as e:
            order.status = UNKNOWN
            self._alert(e.kind, f"order {cid}: lookup failed ({e}); outcome unknown, not resent", cid,
                        severity="critical")
            return True  # stop sending: nothing is known
        if found is None:
            return False
        self._placed(order, found.order_id)
        self._alert("recovered", f"order {cid} found on the exchange {why} (status {found.status}, filled "
                                 f"{found.cum_exec_qty}): not sent again", cid, severity="info")
        if found.status in FAILED_STATUSES:
            self._ended(order, found)
        return True

    def _lookup(self, cid: str) -> VenueOrder | None:
        for open_only in (1, 0):
            match = [o for o in self.rest.orders(orderLinkId=cid, openOnly=open_only) if o.order_link_id == cid]
            if match:
                return match[0]
        execs = [e for e in self.rest.executions(orderLinkId=cid, startTime=self._now() - SEVEN_DAYS_MS
                                                 + 60_000) if e.order_link_id == cid]
        if not execs:
            return None
        filled = sum((e.qty for e in execs), Decimal(0))
        first = execs[-1]
        return VenueOrder(order_id=first.order_id, order_link_id=cid, symbol=first.symbol, side=first.side,
                          order_type=first.order_type, status="Filled", qty=filled, cum_exec_qty=filled,
                          avg_price=first.price, trigger_price=0.0, stop_order_type="", reduce_only=False,
                          reject_reason="", created_time=first.time, updated_time=execs[0].time)

    def _ended(self, order: _Order, found: VenueOrder) -> None:
        order.status = DONE
        cid = order.intent.client_id
        self._alert("order_cancelled", f"order {cid} ended by the exchange: {found.status} "
                                       f"({found.reject_reason or 'no reason given'}), filled {found.cum_exec_qty} "
                                       f"of {found.qty}", cid)

    def _poll_orders(self) -> None:
        """Orders not filled whole yet: cancelled by the exchange? Unknown ones: found yet?"""
        now = self._now()
        for order in list(self._orders.values()):
            if order.status == PLACED:
                if order.filled_lots >= order.intent.qty:
                    order.status = DONE
                    continue
                found = self._lookup(order.intent.client_id)
                if found is not None and found.status in FAILED_STATUSES:
                    self._ended(order, found)
                elif found is not None and found.status == "Filled":  # a reduce-only cut to the position
                    order.status = DONE
            elif order.status == UNKNOWN:
                found = self._lookup(order.intent.client_id)
                if found is not None:
                    self._placed(order, found.order_id)
                    self._alert("recovered", f"order {order.intent.client_id} found on the exchange (status "
                                             f"{found.status})", order.intent.client_id, severity="info")
                    if found.status in FAILED_STATUSES:
                        self._ended(order, found)
                elif now - order.last_send_ms > self.unknown_grace_ms:
                    order.status = FAILED
                    self._alert("lost", f"order {order.intent.client_id} never reached the exchange (not found "
                                        f"{self.unknown_grace_ms} ms after its last send)", order.intent.client_id)

    # --- reading back ------------------------------------------------------------------------------

    def _poll_executions(self) -> list[Fill | FundingCharge]:
        assert self._since is not None
        now = self._now()
        floor = self._floor if self._floor is not None else self._since
        start = max(self._since - self.lookback_ms, now - SEVEN_DAYS_MS + 60_000)
        rows = [e for e in self.rest.executions(startTime=start) if e.exec_id not in self._seen
                and e.symbol in ("", self.symbol) and e.time >= floor]
        rows.sort(key=lambda e: (e.time, e.seq))
        out: list[Fill | FundingCharge] = []
        for e in rows:
            self._seen[e.exec_id] = e.time
            self._since = max(self._since, e.time)
            event = self._event_of(e)
            if event is not None:
                out.append(event)
        horizon = self._since - 4 * self.lookback_ms  # rows that old are never asked for again
        if len(self._seen) > 10_000:
            self._seen = {k: t for k, t in self._seen.items() if t >= horizon or t == 0}
        return out

    def _event_of(self, e: Execution) -> Fill | FundingCharge | None:
        lots = self.lots_of(e.qty)
        if e.exec_type == "Funding":
            return FundingCharge(e.exec_id, e.time, e.fee, e.fee_rate, lots)
        if e.exec_type not in ("Trade", "AdlTrade", "BustTrade", "Delivery", "BlockTrade", "MovePosition"):
            self._info("execution", f"execution {e.exec_id} of type {e.exec_type} ignored")
            return None
        if self.qty_of(lots) != e.qty:
            self._alert("fill_grid", f"execution {e.exec_id}: qty {e.qty} is not a whole number of "
                                     f"{self.step} lots; recorded as {lots} lots", severity="critical")
        cid = e.order_link_id or self._by_order_id.get(e.order_id, "")
        order = self._orders.get(cid) if cid else None
        if order is not None:
            order.filled_lots += lots
        if e.exec_type != "Trade":
            self._alert("liquidation", f"{e.exec_type} execution {e.exec_id}: {e.side} {e.qty} at {e.price}",
                        cid, severity="critical")
        reduce_only = (e.stop_order_type not in ("", "UNKNOWN")
                       or (order is not None and order.params.get("reduceOnly") is True)
                       or cid.startswith("flat-"))
        return Fill(client_id=cid, exec_id=e.exec_id, ts=e.time, side=SIDE_BUY if e.side == "Buy" else SIDE_SELL,
                    qty=lots, px=self.ticks_of(e.price), fee=e.fee, reduce_only=reduce_only, order_id=e.order_id,
                    is_maker=e.is_maker)

    def _venue_position(self) -> VenuePosition | None:
        rows = [p for p in self.rest.positions() if p.position_idx == 0]
        return rows[0] if rows else None

    def _read_position(self) -> PositionReport:
        pos = self._venue_position()
        now = self._now()
        if pos is None or pos.size == 0:
            return PositionReport(ts=now, qty=0)
        lots = self.lots_of(pos.size)
        return PositionReport(ts=now, qty=lots if pos.side == "Buy" else -lots, entry_px=self.ticks_of(pos.avg_price),
                              stop=self.ticks_of(pos.stop_loss), take_profit=self.ticks_of(pos.take_profit))

    # --- alerts ------------------------------------------------------------------------------------

    def _alert(self, kind: str, text: str, client_id: str = "", severity: str = "error") -> None:
        text = self.rest.scrub(text)
        level = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.CRITICAL}.get(
            severity, logging.ERROR)
        log.log(level, "[%s] %s", kind, text)
        self._outbox.append(ExecAlert(ts=self._now(), kind=kind, text=text, client_id=client_id,
                                      severity=severity))

    def _info(self, kind: str, text: str, client_id: str = "") -> None:
        self._alert(kind, text, client_id, severity="info")

    def _take_notices(self) -> None:
        for n in self.rest.take_notices():
            self._outbox.append(ExecAlert(ts=n.ts, kind=n.kind, text=n.text, severity="warning"))
