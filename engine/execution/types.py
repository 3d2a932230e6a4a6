"""The plain records between the engine and any execution backend.

Prices are int64 ticks (targets doubled ticks, as in the kernels), sizes
int64 lots of the instrument's ``qty_step``, times exchange ms UTC; money
is float USDT at this edge. Sides are ``engine.types.SIDE_BUY`` /
``SIDE_SELL``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

INTENT_ENTER = "enter"  # open a position: market order with its stop attached
INTENT_EXIT = "exit"  # close the position: reduce-only market order
INTENT_FLATTEN = "flatten"  # operator: cancel everything, close, confirm flat


@dataclass(frozen=True)
class Intent:
    """What the engine wants done; one exchange order per intent (``client_id`` = orderLinkId)."""

    kind: str  # INTENT_*
    side: int  # the order's side: SIDE_BUY or SIDE_SELL
    qty: int  # lots
    decision_ts: int  # exchange ms of the decision (minute close + 59 999)
    client_id: str  # unique across restarts (<= 36 chars, Bybit's orderLinkId limit); a retry reuses it
    stop: int = 0  # entries: stop price, ticks (sent with the order as stopLoss)
    target2: int = 0  # entries: target, doubled ticks; 0 none
    tag: int = 0  # SETUP_* of the position
    reason: int = 0  # exits: EXIT_*


@dataclass(frozen=True)
class Fill:
    """One execution reported by a backend (paper or exchange)."""

    client_id: str  # the intent's orderLinkId ("" for a fill no intent of ours explains)
    exec_id: str  # unique per execution: a fill seen twice is applied once
    ts: int  # exchange ms
    side: int  # SIDE_BUY / SIDE_SELL
    qty: int  # lots
    px: int  # ticks
    fee: float  # USDT, positive = paid
    reduce_only: bool = False
    order_id: str = ""  # the exchange's order id
    is_maker: bool = False


@dataclass(frozen=True)
class FundingCharge:
    """A funding payment on the open position (Bybit: ``/v5/execution/list`` execType Funding)."""

    exec_id: str  # unique: a charge seen twice is applied once
    ts: int  # exchange ms
    amount: float  # USDT, positive = paid by us
    rate: float  # the funding rate applied
    qty: int  # position size it was charged on, lots


@dataclass(frozen=True)
class PositionReport:
    """The venue's view of the position (reconciliation input), never written over local state."""

    ts: int  # exchange ms of the report
    qty: int  # signed lots: > 0 long, < 0 short, 0 flat
    entry_px: int = 0  # average entry, ticks
    stop: int = 0  # stop on the exchange, ticks (0: none)
    take_profit: int = 0  # ticks (0: none)


@dataclass(frozen=True)
class ExecAlert:
    """A backend outcome the operator must see (rejection, rate limit, timeout, mismatch...)."""

    ts: int
    kind: str  # e.g. rejected, rate_limited, timeout, insufficient_balance, duplicate_order, mismatch
    text: str
    client_id: str = ""
    severity: str = "error"


ExecEvent = Fill | FundingCharge | PositionReport | ExecAlert  # what ``ExecutionBackend.poll`` returns


class ExecutionBackend(Protocol):
    """What the runtime needs from any backend (paper or Bybit)."""

    def submit(self, intent: Intent) -> None:
        """Send the intent's order; never raises for venue errors (they come back as ExecAlert)."""

    def poll(self) -> list[Fill | FundingCharge | PositionReport | ExecAlert]:
        """Everything the venue reported since the last poll, in time order."""

    def position(self) -> PositionReport:
        """The venue's current position (a REST read for Bybit)."""

    def flatten(self) -> bool:
        """Cancel all open orders, close with a reduce-only market order, confirm flat; True once flat."""
