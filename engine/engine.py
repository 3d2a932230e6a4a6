"""The engine object every driver uses: state, parameters, feeding, modes, commands, fills in.

It is the only way in for every driver (ARCHITECTURE.md): the tick loop
(``feed`` / ``close_until`` / ``finish``: backtest, replay, live), the
sweep's quote replay over precomputed minutes (``attach_minutes`` +
``feed_minutes``) and bar mode (``run_bars``). All of them go through one
call path (``_drive``) that allocates each call's outputs, flushes a full
buffer and resumes, grows the minute FIFO when a burst needs it, and hands
back copies of the rows the call produced.

Intents out, fills in. The signal kernel emits INTENT_DTYPE records (each
call's ``StepOutput.intents``); ``intents_of`` turns them into
``engine.execution.types.Intent`` with a client order id unique across
restarts (``client_prefix``, which the driver makes from its start time,
plus the decision time and the intent's seq). Who fills them is the mode
(``set_mode``, switchable at run time):

- ``signals``: features and signals only (warm start, ``pbdtui features``);
- ``paper``: the paper fill model fills them inline in the numba loop
  (backtest, sweep, paper trading);
- ``external``: the loop only publishes intents; the exchange's fills come
  back through ``apply_fill`` (deduplicated by ``exec_id``), funding through
  ``apply_funding``, and the venue's position reports through ``reconcile``,
  which enters a mismatch as an event (a flag that blocks entries with
  RECONCILE_MISMATCH and an alert; optionally an adjusting fill flagged
  EXIT_RECONCILE), never by overwriting state.

Every fill, paper or exchange, is applied by ``engine.kernels.position.apply_fill``,
the only writer of position (signed lots) and PnL.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.execution.types import ExecAlert, Fill, Intent, PositionReport
from engine.kernels import loop
from engine.kernels.barmode import run_bars as _run_bars_kernel
from engine.kernels.minutepass import minutes_finish, quotes_on_minutes
from engine.kernels.params import P_QTY, make_params
from engine.kernels.position import apply_fill as _apply_fill_kernel
from engine.kernels.position import apply_funding as _apply_funding_kernel
from engine.kernels.state import (
    C_FILLS,
    C_INTENTS,
    C_ROWS,
    ERR_FIFO_FULL,
    ERR_FILLS_FULL,
    ERR_INTENTS_FULL,
    ERR_NONE,
    ERR_PRICE_RANGE,
    ERR_ROWS_FULL,
    N_COUNTS,
    NPOC_KIND,
    NPOC_POC2,
    NPOC_START,
    SESS_DAY,
    SF_DAY_PNL,
    SF_ENTRY_AVG,
    SF_FEES,
    SF_FUNDING,
    SF_REALIZED,
    SI_CUR_MIN,
    SI_ENTRIES_PAUSED,
    SI_ENTRY_PX,
    SI_ENTRY_TS,
    SI_ERROR,
    SI_EXIT_SENT,
    SI_FILLS,
    SI_FLATTEN,
    SI_GAP_FROM,
    SI_GAP_TO,
    SI_HI,
    SI_KILL_DAILY,
    SI_KILL_MANUAL,
    SI_LAST_EVENT_TS,
    SI_LATE,
    SI_LO,
    SI_MIN_ROW,
    SI_MODE,
    SI_NBARS,
    SI_NPOC_N,
    SI_OFFSET,
    SI_PEND_ACTION,
    SI_PEND_SEQ,
    SI_PEND_TS,
    SI_POS,
    SI_Q_ASK,
    SI_Q_BID,
    SI_RECON_BLOCK,
    SI_STOP,
    SI_TAG,
    SI_TARGET,
    SI_VENUE_POS,
    EngineState,
    grow_fifo,
    new_state,
)
from engine.kernels.strategy import request_flatten
from engine.types import (
    ACTION_ENTER_LONG,
    ACTION_ENTER_SHORT,
    ACTION_EXIT,
    BAR_DTYPE,
    EXIT_RECONCILE,
    EXIT_STOP,
    EXIT_TARGET,
    FEATURE_DTYPE,
    FILL_DTYPE,
    FUNDING_DTYPE,
    INTENT_DTYPE,
    INTENT_KIND_NAMES,
    MODE_EXTERNAL,
    MODE_NAMES,
    MODE_PAPER,
    ORDER_LIMIT,
    ORDER_MARKET,
    QUOTE_DTYPE,
    SETUP_MANUAL,
    SIDE_BUY,
    SIDE_SELL,
    SIGNAL_DTYPE,
    TRADE_DTYPE,
    EngineError,
)

_EMPTY_TRADES = np.zeros(0, dtype=TRADE_DTYPE)
_EMPTY_QUOTES = np.zeros(0, dtype=QUOTE_DTYPE)
_EMPTY_FUNDING = np.zeros(0, dtype=FUNDING_DTYPE)
_MODES = {name: code for code, name in MODE_NAMES.items()}
_FLUSH = (ERR_FILLS_FULL, ERR_ROWS_FULL, ERR_INTENTS_FULL)
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_]{1,16}$")
CLIENT_ID_MAX = 36  # Bybit's orderLinkId limit
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def base36(n: int) -> str:
    """``n`` (>= 0) in lower-case base 36: short, and only characters orderLinkId accepts."""
    if n < 0:
        raise ValueError("base36 of a negative number")
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _B36[r] + out
        if n == 0:
            return out


def client_prefix(start_ms: int) -> str:
    """A client-id prefix unique across restarts, from the driver's start time (wall ms; the driver reads it)."""
    return "p" + base36(int(start_ms))


@dataclass
class StepOutput:
    """Rows produced by one call, in minute order (copies, safe to keep; over attached minutes, bars and
    features are views of the attached rows)."""

    bars: np.ndarray
    features: np.ndarray
    signals: np.ndarray
    fills: np.ndarray
    intents: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=INTENT_DTYPE))  # INTENT_DTYPE rows


@dataclass(frozen=True)
class PositionView:
    """A small copy of the position and risk state for screens and reports."""

    position: int  # direction: 1 long, -1 short, 0 flat (``qty`` is the quantity)
    entry_px: int  # average entry, ticks (rounded)
    entry_ts: int
    stop: int
    target2: int
    tag: int
    realized: float
    fees: float
    funding: float
    day_pnl: float
    kill_daily: bool
    kill_manual: bool
    bid: int
    ask: int
    qty: int = 0  # signed lots
    mode: str = "paper"
    mismatch: bool = False  # reconciliation found the venue's position differs: entries blocked
    venue_qty: int = 0  # the venue's position at the last reconciliation, signed lots
    entries_paused: bool = False  # the operator paused new entries (exits still run)


@dataclass(frozen=True)
class OrderView:
    """One open order for screens: an entry or exit on its way, or the stop and target protecting a position."""

    side: int  # SIDE_BUY / SIDE_SELL
    kind: str  # "entry", "exit", "flatten", "stop" or "target"
    px2: int  # doubled ticks (a target sits on a half tick); 0: at market
    qty: int  # lots
    status: str  # "pending" (paper: fills on the next quote), "working" (resting), or the exchange order's state
    ts: int  # placed, exchange ms (the decision, or the position's entry for its stop and target)


@dataclass(frozen=True)
class Reconciliation:
    """What ``Engine.reconcile`` found and did."""

    matched: bool
    local_qty: int  # signed lots, before any adjusting fill
    venue_qty: int
    alert: ExecAlert | None  # the mismatch (or its resolution) for the operator
    fills: np.ndarray  # the adjusting fill (FILL_DTYPE, reason EXIT_RECONCILE) when adopted; else empty


Step = Callable[[tuple[np.ndarray, ...], np.ndarray], int]


class Engine:
    """One instrument's engine.

    Args:
        settings: a Settings (or anything with its attributes).
        trading: start in paper mode (False: signals mode); ``mode`` overrides it.
        hist_bins, fifo_size: sizes of the rolling histogram and minute FIFO
            (a run over stored minutes needs neither: pass small ones).
        mode: "signals", "paper" or "external" (``set_mode`` switches later).
        client_prefix: the start of every client order id: 1-16 letters,
            digits or ``_``, unique per engine start when orders reach an
            exchange (``client_prefix(start_ms)``); backtests keep the default.
    """

    def __init__(self, settings: Any, trading: bool = True, hist_bins: int = 1 << 20, fifo_size: int = 1 << 20,
                 mode: str | None = None, client_prefix: str = "bt"):
        mode = mode if mode is not None else ("paper" if trading else "signals")
        if mode not in _MODES:
            raise ValueError(f"unknown engine mode {mode!r} (expected one of {', '.join(_MODES)})")
        if not _PREFIX_RE.match(client_prefix):
            raise ValueError(f"client_prefix {client_prefix!r}: 1-16 letters, digits or _")
        self.settings = settings
        self.params = make_params(settings, trading=mode != "signals")
        self.state: EngineState = new_state(settings.rolling_window_minutes, settings.bvc_lookback,
                                            hist_bins=hist_bins, fifo_size=fifo_size, mode=_MODES[mode],
                                            roll_minutes=settings.htf_rolling_minutes)
        self.client_prefix = client_prefix
        self._input: str | None = None  # "ticks", "minutes" or "bars": one kind per engine
        self._minutes: tuple[np.ndarray, np.ndarray] | None = None
        self._outstanding: dict[str, Intent] = {}  # external mode: intents not yet completed
        self._filled: dict[str, int] = {}  # lots filled per outstanding client id
        self._exec_ids: set[str] = set()

    # --- modes ------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return MODE_NAMES[int(self.state.si[SI_MODE])]

    def set_mode(self, mode: str) -> None:
        """Switch who fills the intents: "signals", "paper" or "external" (between calls).

        A switch cancels the outstanding order and a pending paper flatten
        (they belonged to the other execution side); the position, its stop
        and target, and the risk state are kept. A warm start runs in
        signals mode and then switches, so history is never paper-traded.
        """
        if mode not in _MODES:
            raise ValueError(f"unknown engine mode {mode!r} (expected one of {', '.join(_MODES)})")
        si = self.state.si
        if int(si[SI_MODE]) == _MODES[mode]:
            return
        si[SI_MODE] = _MODES[mode]
        si[SI_PEND_ACTION] = 0
        si[SI_FLATTEN] = 0
        si[SI_EXIT_SENT] = 0
        self._outstanding.clear()
        self._filled.clear()

    # --- feeding ----------------------------------------------------------------

    def feed(self, trades: np.ndarray | None = None, quotes: np.ndarray | None = None,
             funding: np.ndarray | None = None) -> StepOutput:
        """Run events (each array sorted by ts) through the engine."""
        trades = _EMPTY_TRADES if trades is None else trades
        quotes = _EMPTY_QUOTES if quotes is None else quotes
        funding = _EMPTY_FUNDING if funding is None else funding
        _check(trades, TRADE_DTYPE, "trades")
        _check(quotes, QUOTE_DTYPE, "quotes")
        _check(funding, FUNDING_DTYPE, "funding")
        self._use("ticks")
        last = max(
            int(trades["ts"][-1]) if len(trades) else -1,
            int(quotes["ts"][-1]) if len(quotes) else -1,
            int(funding["ts"][-1]) if len(funding) else -1,
        )
        if last < 0:
            return self._empty()
        first = min(int(a["ts"][0]) for a in (trades, quotes, funding) if len(a))

        def step(outs: tuple[np.ndarray, ...], counts: np.ndarray) -> int:
            return loop.run_events(trades, quotes, funding, self.params, self.state, *outs, counts)

        return self._drive(step, lambda: _tick_sizes(loop.rows_needed(self.state, first, last)))

    def close_until(self, ts: int) -> StepOutput:
        """Close every minute that ended before ``ts`` (end of data, or the live clock).

        Minutes more than a window after the newest event are not closed: they
        would be rows inside a long gap (SPEC_NOTES, Bars).
        """
        self._use("ticks")

        def step(outs: tuple[np.ndarray, ...], counts: np.ndarray) -> int:
            return loop.close_now(self.state, self.params, ts, *outs, counts)

        return self._drive(step, lambda: _tick_sizes(loop.rows_needed(self.state, ts, ts)))

    def finish(self) -> StepOutput:
        """End of a finite stream: close the newest event's minute if it is still open.

        A minute the live clock has already moved past is not closed again,
        and no empty minute after the last event is made. Over stored minutes
        (``feed_minutes``), decides the rows left after the last quote.
        """
        if self._input == "minutes":
            return self._finish_minutes()
        if self._input == "bars":
            return self._empty()
        cur = int(self.state.si[SI_CUR_MIN])
        last_min = self.last_event_ts // loop.MINUTE_MS * loop.MINUTE_MS
        if cur < 0 or cur > last_min:
            return self._empty()
        return self.close_until(last_min + loop.MINUTE_MS)

    def attach_minutes(self, bars: np.ndarray, features: np.ndarray) -> None:
        """Precomputed minutes (``engine.features.compute_minutes``) for ``feed_minutes``: the whole run's rows."""
        _check(bars, BAR_DTYPE, "bars")
        _check(features, FEATURE_DTYPE, "features")
        if len(bars) != len(features):
            raise ValueError("bars and features differ in length")
        self._use("minutes")
        if self._minutes is not None:
            raise EngineError("minutes are already attached to this engine")
        self._minutes = (bars, features)

    def feed_minutes(self, quotes: np.ndarray, funding: np.ndarray | None = None) -> StepOutput:
        """The sweep's fast path: quotes and funding against the attached minutes (paper mode).

        Signals and fills are byte-identical to ``feed`` over the same ticks
        with the same settings (``engine.kernels.minutepass``); each call
        returns the minutes it decided.
        """
        funding = _EMPTY_FUNDING if funding is None else funding
        _check(quotes, QUOTE_DTYPE, "quotes")
        _check(funding, FUNDING_DTYPE, "funding")
        bars, feats = self._attached()
        rows = _rows_before(bars, int(quotes["ts"][-1]) if len(quotes) else -1) - int(self.state.si[SI_MIN_ROW])
        sizes = (max(rows, 0) + 2, len(quotes) // 64 + 64)

        def step(outs: tuple[np.ndarray, ...], counts: np.ndarray) -> int:
            return quotes_on_minutes(quotes, funding, bars, feats, self.params, self.state, *outs[2:], counts)

        return self._drive(step, lambda: sizes, stored=(bars, feats))

    def _finish_minutes(self) -> StepOutput:
        bars, feats = self._attached()
        left = len(bars) - int(self.state.si[SI_MIN_ROW])

        def step(outs: tuple[np.ndarray, ...], counts: np.ndarray) -> int:
            return minutes_finish(bars, feats, self.params, self.state, *outs[2:3], *outs[4:], counts)

        return self._drive(step, lambda: (left + 1, 16), stored=(bars, feats))

    def run_bars(self, bars: np.ndarray, features: np.ndarray) -> StepOutput:
        """Bar mode (spec 9.1 mode 2) over stored minute rows (paper mode, ``engine.kernels.barmode``)."""
        _check(bars, BAR_DTYPE, "bars")
        _check(features, FEATURE_DTYPE, "features")
        self._use("bars")
        if self._minutes is not None:
            raise EngineError("bar mode runs once per engine")
        self._require_paper("bar mode")
        self._minutes = (bars, features)
        sizes = (len(bars) + 1, len(bars) * 4 + 16)

        def step(outs: tuple[np.ndarray, ...], counts: np.ndarray) -> int:
            return _run_bars_kernel(bars, features, self.params, self.state, *outs[2:], counts)

        return self._drive(step, lambda: sizes, stored=(bars, features))

    # --- fills in (external mode) ------------------------------------------------

    def intents_of(self, records: np.ndarray) -> list[Intent]:
        """INTENT_DTYPE records (``StepOutput.intents``) as ``Intent`` with their client order ids."""
        return [self._intent(records[i]) for i in range(len(records))]

    def client_id(self, decision_ts: int, seq: int) -> str:
        """``<prefix>-<decision ts>-<seq>`` in base 36 (at most 36 characters: Bybit's orderLinkId)."""
        cid = f"{self.client_prefix}-{base36(max(0, decision_ts))}-{base36(seq)}"
        if len(cid) > CLIENT_ID_MAX:
            raise EngineError(f"client id {cid!r} is longer than {CLIENT_ID_MAX} characters")
        return cid

    def outstanding(self) -> list[Intent]:
        """External mode: the intents not yet completed by fills nor ended by the backend."""
        return list(self._outstanding.values())

    def apply_fill(self, fill: Fill) -> np.ndarray:
        """An execution reported by the exchange (external mode): the position changes through ``apply_fill``.

        A fill whose ``exec_id`` was seen before is ignored (venues resend). A
        fill that crosses zero is applied as a closing and an opening part
        (fee split by quantity). The intent it belongs to (``client_id``)
        gives the decision time, the exit reason and, for an opening fill, the
        stop, target and tag; a fill no intent of ours explains opens with no
        stop (tag SETUP_MANUAL). When the fills of an intent reach its
        quantity the outstanding order is done.

        Returns:
            The FILL_DTYPE records written (empty for a duplicate).
        """
        if fill.exec_id and fill.exec_id in self._exec_ids:
            return np.zeros(0, dtype=FILL_DTYPE)
        if fill.side not in (SIDE_BUY, SIDE_SELL) or fill.qty <= 0:
            raise ValueError(f"fill {fill.exec_id!r}: side must be SIDE_BUY or SIDE_SELL and qty > 0")
        if fill.exec_id:
            self._exec_ids.add(fill.exec_id)
        intent = self._outstanding.get(fill.client_id)
        rows = self._apply(fill.side, fill.qty, fill.px, fill.fee, fill.ts, intent,
                           ORDER_LIMIT if fill.is_maker else ORDER_MARKET)
        if intent is not None:
            self._filled[fill.client_id] = self._filled.get(fill.client_id, 0) + fill.qty
            if self._filled[fill.client_id] >= intent.qty:
                self.order_ended(fill.client_id)
        si = self.state.si
        if int(si[SI_POS]) == 0 and int(si[SI_PEND_ACTION]) == ACTION_EXIT:
            si[SI_PEND_ACTION] = 0  # flat: whatever exit was outstanding has nothing left to do
        return rows

    def order_ended(self, client_id: str) -> None:
        """The backend says this intent's order is over (filled, rejected, cancelled or expired)."""
        intent = self._outstanding.pop(client_id, None)
        self._filled.pop(client_id, None)
        if intent is None:
            return
        si = self.state.si
        seq = int(client_id.rsplit("-", 1)[1], 36)
        if int(si[SI_PEND_SEQ]) == seq:
            si[SI_PEND_ACTION] = 0
        if intent.kind == "exit" and int(si[SI_POS]) != 0:
            si[SI_EXIT_SENT] = 0  # not done: a later stop or target crossing may send another

    def apply_funding(self, ts: int, amount: float, exec_id: str = "") -> bool:
        """A funding payment the exchange reported for the open position (USDT, positive = paid).

        Realized with the position's close, as the paper model's funding is.
        A payment whose ``exec_id`` was seen before is ignored; returns
        whether it was applied.
        """
        if exec_id and exec_id in self._exec_ids:
            return False
        if exec_id:
            self._exec_ids.add(exec_id)
        _apply_funding_kernel(self.state.sf, float(amount))
        return True

    def reconcile(self, report: PositionReport, adopt: bool = False) -> Reconciliation:
        """Compare the venue's position with ours; a mismatch is an event, never an overwrite.

        A mismatch sets the RECONCILE_MISMATCH block (no new entries; exits
        still run) and returns an alert. With ``adopt`` an adjusting fill
        (reason EXIT_RECONCILE, no fee, at the venue's entry price when it
        opens, else at the mid) brings our position to the venue's through
        the same position function; the block stays until a report matches.
        A matching report clears the block.
        """
        si = self.state.si
        local, venue = int(si[SI_POS]), int(report.qty)
        si[SI_VENUE_POS] = venue
        empty = np.zeros(0, dtype=FILL_DTYPE)
        if local == venue:
            alert = None
            if int(si[SI_RECON_BLOCK]):
                si[SI_RECON_BLOCK] = 0
                alert = ExecAlert(ts=report.ts, kind="reconciled", severity="info",
                                  text=f"position matches the venue again ({venue} lots): entries allowed")
            return Reconciliation(True, local, venue, alert, empty)
        si[SI_RECON_BLOCK] = 1
        alert = ExecAlert(ts=report.ts, kind="mismatch", text=(
            f"POSITION MISMATCH: engine {local} lots, venue {venue} lots: entries blocked until they match"))
        fills = empty
        if adopt:
            diff = venue - local
            side = SIDE_BUY if diff > 0 else SIDE_SELL
            opening = local == 0 or (local > 0) == (diff > 0)
            mid = (int(si[SI_Q_BID]) + int(si[SI_Q_ASK])) // 2
            px = report.entry_px if (opening and report.entry_px > 0) else (mid if mid > 0 else report.entry_px)
            recon = Intent(kind="reconcile", side=side, qty=abs(diff), decision_ts=report.ts, client_id="",
                           stop=report.stop, tag=SETUP_MANUAL if local == 0 else int(si[SI_TAG]),
                           reason=EXIT_RECONCILE)
            fills = self._apply(side, abs(diff), px, 0.0, report.ts, recon, ORDER_MARKET)
        return Reconciliation(False, local, venue, alert, fills)

    # --- operator commands ------------------------------------------------------

    def set_kill_switch(self, on: bool) -> None:
        """Manual kill switch: no new entries while on (exits still run)."""
        self.state.si[SI_KILL_MANUAL] = 1 if on else 0

    def set_entries_paused(self, on: bool) -> None:
        """Pause new entries (or resume them): unlike the kill switch it never latches and is not a risk state.

        Exits (stop, target, time stop, flatten) still run; a flip is not
        taken (its exit alone would be a decision the operator did not make).
        """
        self.state.si[SI_ENTRIES_PAUSED] = 1 if on else 0

    def mark_feed_gap(self, from_ts: int, to_ts: int = 2**62) -> None:
        """The live feed had no data from ``from_ts`` to ``to_ts`` (exchange ms; open-ended by default).

        Every minute the interval touches and that has not closed yet is
        marked (``feed_gap``), counts as a minute without data for readiness,
        and is not entered on (FEED_GAP). Call it when the disconnection or
        stall is detected (open-ended), and again with its end on reconnect.
        """
        self.state.si[SI_GAP_FROM] = int(from_ts)
        self.state.si[SI_GAP_TO] = int(to_ts)

    def flatten(self, ts: int | None = None) -> Intent:
        """Flatten: a FLATTEN intent; paper closes on the first quote after ``ts`` (default: the newest event).

        The outstanding entry is cancelled. In external mode the backend does
        the closing (cancel all, reduce-only close, confirm flat).
        """
        when = int(self.state.si[SI_LAST_EVENT_TS]) if ts is None else int(ts)
        rec = np.zeros(1, dtype=INTENT_DTYPE)
        counts = np.zeros(N_COUNTS, dtype=np.int64)
        request_flatten(self.state.si, when, rec, counts)
        intent = self._intent(rec[0])
        if int(self.state.si[SI_MODE]) == MODE_EXTERNAL:
            self._outstanding[intent.client_id] = intent
        return intent

    # --- views ------------------------------------------------------------------

    def position(self) -> PositionView:
        si, sf = self.state.si, self.state.sf
        qty = int(si[SI_POS])
        return PositionView(
            position=(qty > 0) - (qty < 0), entry_px=int(si[SI_ENTRY_PX]), entry_ts=int(si[SI_ENTRY_TS]),
            stop=int(si[SI_STOP]), target2=int(si[SI_TARGET]), tag=int(si[SI_TAG]),
            realized=float(sf[SF_REALIZED]), fees=float(sf[SF_FEES]), funding=float(sf[SF_FUNDING]),
            day_pnl=float(sf[SF_DAY_PNL]), kill_daily=bool(si[SI_KILL_DAILY]),
            kill_manual=bool(si[SI_KILL_MANUAL]), bid=int(si[SI_Q_BID]), ask=int(si[SI_Q_ASK]),
            qty=qty, mode=self.mode, mismatch=bool(si[SI_RECON_BLOCK]), venue_qty=int(si[SI_VENUE_POS]),
            entries_paused=bool(si[SI_ENTRIES_PAUSED]),
        )

    def open_orders(self) -> list[OrderView]:
        """The orders this engine has open: the pending entry or exit (paper) or the intents not yet
        completed (external), then the position's stop and target (resting at the paper broker; at the
        exchange, ``LiveTrader.orders`` shows its own)."""
        si = self.state.si
        pos = int(si[SI_POS])
        close_side = SIDE_SELL if pos > 0 else SIDE_BUY
        out: list[OrderView] = []
        if int(si[SI_MODE]) == MODE_EXTERNAL:
            for i in self._outstanding.values():
                kind = {"enter": "entry"}.get(i.kind, i.kind)
                out.append(OrderView(i.side, kind, 0, i.qty - self._filled.get(i.client_id, 0), "sent",
                                     i.decision_ts))
        else:
            action = int(si[SI_PEND_ACTION])
            if action != 0:
                side = {ACTION_ENTER_LONG: SIDE_BUY, ACTION_ENTER_SHORT: SIDE_SELL}.get(action, close_side)
                qty = abs(pos) if action == ACTION_EXIT else int(self.params[P_QTY])
                out.append(OrderView(side, "exit" if action == ACTION_EXIT else "entry", 0, qty, "pending",
                                     int(si[SI_PEND_TS])))
            if int(si[SI_FLATTEN]) and pos != 0:
                out.append(OrderView(close_side, "flatten", 0, abs(pos), "pending", int(si[SI_FLATTEN])))
        if pos != 0 and int(si[SI_STOP]) > 0:
            out.append(OrderView(close_side, "stop", 2 * int(si[SI_STOP]), abs(pos), "working",
                                 int(si[SI_ENTRY_TS])))
        if pos != 0 and int(si[SI_TARGET]) > 0:
            out.append(OrderView(close_side, "target", int(si[SI_TARGET]), abs(pos), "working",
                                 int(si[SI_ENTRY_TS])))
        return out

    @property
    def entry_avg(self) -> float:
        """Average entry price of the open position, ticks (not rounded)."""
        return float(self.state.sf[SF_ENTRY_AVG])

    @property
    def bars_closed(self) -> int:
        return int(self.state.si[SI_NBARS])

    @property
    def late_events(self) -> int:
        return int(self.state.si[SI_LATE])

    @property
    def last_event_ts(self) -> int:
        return int(self.state.si[SI_LAST_EVENT_TS])

    def profile(self) -> tuple[np.ndarray, np.ndarray]:
        """(base bins, volumes in lots) of the rolling profile, for display."""
        si = self.state.si
        lo, hi, off = int(si[SI_LO]), int(si[SI_HI]), int(si[SI_OFFSET])
        if lo > hi:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        vols = self.state.hist[lo - off:hi - off + 1].copy()
        return np.arange(lo, hi + 1, dtype=np.int64), vols

    def profile_sides(self) -> tuple[np.ndarray, np.ndarray]:
        """(buy, sell) volume in lots per base bin of ``profile()``, by inferred aggressor side.

        Ambiguous trades are in neither, so buy + sell <= volume per bin.
        """
        si = self.state.si
        lo, hi, off = int(si[SI_LO]), int(si[SI_HI]), int(si[SI_OFFSET])
        if lo > hi:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        side = self.state.hside[:, lo - off:hi - off + 1]
        return side[0].copy(), side[1].copy()

    def naked_pocs(self) -> list[NakedPoc]:
        """The open naked POCs (earlier UTC days and 4-hour blocks not traded since), oldest first."""
        n = int(self.state.si[SI_NPOC_N])
        return [NakedPoc(int(r[NPOC_POC2]), int(r[NPOC_START]), "day" if r[NPOC_KIND] == SESS_DAY else "4h")
                for r in self.state.npoc[:n]]

    # --- internals --------------------------------------------------------------

    def _drive(self, step: Step, sizes: Callable[[], tuple[int, int]],
               stored: tuple[np.ndarray, np.ndarray] | None = None) -> StepOutput:
        """The one call path of every driver: allocate, run, flush a full buffer and resume, recover.

        ``step(outs, counts)`` runs a kernel on this call's buffers (bars,
        features, signals, fills, intents) and returns ERR_*; ``counts``
        keeps its resume positions. ``sizes()`` gives (minute rows, fills) to
        allocate. Over ``stored`` minutes the kernel writes signals only and
        the rows it decided are read back from ``SI_MIN_ROW``.
        """
        si = self.state.si
        outs = self._alloc(*sizes(), stored is None)
        counts = np.zeros(N_COUNTS, dtype=np.int64)
        row0 = int(si[SI_MIN_ROW])
        parts = []
        while True:
            err = step(outs, counts)
            if err == ERR_NONE:
                break
            if err in _FLUSH:
                # hand back what is done, then go on with fresh buffers
                parts.append(self._collect(outs, counts, stored, row0))
                row0 = int(self.state.si[SI_MIN_ROW])
                outs = self._alloc(*sizes(), stored is None)
                counts[C_ROWS] = 0
                counts[C_FILLS] = 0
                counts[C_INTENTS] = 0
                self.state.si[SI_ERROR] = ERR_NONE
                continue
            self._recover(err)
        parts.append(self._collect(outs, counts, stored, row0))
        out = parts[0] if len(parts) == 1 else concat(parts)
        if len(out.intents) and int(self.state.si[SI_MODE]) == MODE_EXTERNAL:
            for intent in self.intents_of(out.intents):
                self._outstanding[intent.client_id] = intent
        return out

    def _alloc(self, rows: int, fills: int, minutes: bool = True) -> tuple[np.ndarray, ...]:
        n = rows if minutes else 0
        return (
            np.zeros(n, dtype=BAR_DTYPE),
            np.zeros(n, dtype=FEATURE_DTYPE),
            np.zeros(rows, dtype=SIGNAL_DTYPE),
            np.zeros(fills, dtype=FILL_DTYPE),
            np.zeros(rows * 2 + 16, dtype=INTENT_DTYPE),
        )

    def _recover(self, err: int) -> None:
        if err == ERR_FIFO_FULL:
            self.state = grow_fifo(self.state)
            return
        if err == ERR_PRICE_RANGE:
            raise EngineError(
                "prices in the rolling window span more base bins than the histogram holds "
                f"({len(self.state.hist)}); raise base_bin_ticks or check the tick_size of the data"
            )
        raise EngineError(f"engine error code {err}")

    def _collect(self, outs: tuple[np.ndarray, ...], counts: np.ndarray,
                 stored: tuple[np.ndarray, np.ndarray] | None = None, row0: int = 0) -> StepOutput:
        n = int(counts[C_ROWS])
        nf = int(counts[C_FILLS])
        ni = int(counts[C_INTENTS])
        if stored is None:
            bars, feats = outs[0][:n].copy(), outs[1][:n].copy()
        else:  # the caller's own rows: views (a copy per call costs the sweep more than its Python loop)
            bars, feats = stored[0][row0:row0 + n], stored[1][row0:row0 + n]
        return StepOutput(bars, feats, outs[2][:n].copy(), outs[3][:nf].copy(), outs[4][:ni].copy())

    def _empty(self) -> StepOutput:
        return StepOutput(*(a[:0] for a in self._alloc(0, 0)))

    def _use(self, kind: str) -> None:
        if self._input is None:
            self._input = kind
        elif self._input != kind:
            raise EngineError(f"this engine runs {self._input}; it cannot also run {kind} (one input per engine)")

    def _attached(self) -> tuple[np.ndarray, np.ndarray]:
        if self._input != "minutes" or self._minutes is None:
            raise EngineError("attach_minutes(bars, features) first")
        self._require_paper("the minute pass")
        return self._minutes

    def _require_paper(self, what: str) -> None:
        if int(self.state.si[SI_MODE]) != MODE_PAPER:
            raise EngineError(f"{what} runs in paper mode only (the engine is in {self.mode} mode)")

    def _intent(self, rec: np.void) -> Intent:
        ts, seq = int(rec["decision_ts"]), int(rec["seq"])
        return Intent(kind=INTENT_KIND_NAMES[int(rec["kind"])], side=int(rec["side"]), qty=int(rec["qty"]),
                      decision_ts=ts, client_id=self.client_id(ts, seq), stop=int(rec["stop"]),
                      target2=int(rec["target2"]), tag=int(rec["tag"]), reason=int(rec["reason"]))

    def _apply(self, side: int, qty: int, px: int, fee: float, ts: int, intent: Intent | None,
               order_type: int) -> np.ndarray:
        """Apply a fill through the position function, split where it crosses zero; its FILL_DTYPE records."""
        si, sf = self.state.si, self.state.sf
        pos = int(si[SI_POS])
        parts = [(qty, fee)]
        if pos != 0 and (pos > 0) != (side > 0) and qty > abs(pos):
            close_fee = fee * abs(pos) / qty
            parts = [(abs(pos), close_fee), (qty - abs(pos), fee - close_fee)]
        rows = np.zeros(len(parts), dtype=FILL_DTYPE)
        for i, (q, f) in enumerate(parts):
            pos = int(si[SI_POS])
            reducing = pos != 0 and (pos > 0) != (side > 0)
            reason = intent.reason if (intent is not None and reducing) else 0
            if intent is not None and intent.reason == EXIT_RECONCILE:
                reason = EXIT_RECONCILE
            level2 = 0
            if reducing and reason == EXIT_STOP:
                level2 = 2 * int(si[SI_STOP])
            elif reducing and reason == EXIT_TARGET:
                level2 = int(si[SI_TARGET])
            tag = int(si[SI_TAG]) if pos != 0 else (intent.tag if intent is not None else SETUP_MANUAL)
            stop = intent.stop if intent is not None else 0
            target2 = intent.target2 if intent is not None else 0
            opening, gross, net, funding = _apply_fill_kernel(si, sf, self.params, side, q, px, f, ts, tag, stop,
                                                              target2)
            bid, ask = int(si[SI_Q_BID]), int(si[SI_Q_ASK])
            si[SI_FILLS] += 1
            r = rows[i:i + 1]
            r["fill_id"] = si[SI_FILLS]
            r["ts_submit"] = intent.decision_ts if (intent is not None and intent.decision_ts > 0) else ts
            r["ts_fill"] = ts
            r["side"] = side
            r["qty"] = q
            r["order_type"] = order_type
            r["px"] = px
            r["touch_px"] = (ask if side == SIDE_BUY else bid) if bid > 0 else px
            r["mid2"] = bid + ask if bid > 0 else 2 * px
            r["fee"] = f
            r["funding"] = funding
            r["pnl_realized"] = net
            r["pnl_gross"] = gross
            r["tag"] = tag
            r["reason"] = reason
            r["opening"] = 1 if opening else 0
            r["level2"] = level2
        return rows


@dataclass(frozen=True)
class NakedPoc:
    """An earlier session's POC that price has not traded at since."""

    poc2: int  # twice the POC, ticks
    start_ms: int  # start of its session (UTC day or 4-hour block), ms
    kind: str  # "day" or "4h"


def _tick_sizes(rows: int) -> tuple[int, int]:
    return rows, rows * 4 + 16


def _rows_before(bars: np.ndarray, last_ts: int) -> int:
    """Stored rows whose minute has ended by ``last_ts`` (the most a call up to it can decide)."""
    if last_ts < 0:
        return 0
    return int(np.searchsorted(bars["ts_min"], (last_ts // loop.MINUTE_MS) * loop.MINUTE_MS, "left"))


def _check(arr: np.ndarray, dtype: np.dtype, name: str) -> None:
    if arr.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, not {arr.dtype}")


def concat(outputs: list[StepOutput]) -> StepOutput:
    """Join the outputs of consecutive calls."""
    if not outputs:
        return StepOutput(np.zeros(0, BAR_DTYPE), np.zeros(0, FEATURE_DTYPE), np.zeros(0, SIGNAL_DTYPE),
                          np.zeros(0, FILL_DTYPE), np.zeros(0, INTENT_DTYPE))
    return StepOutput(*(_join([getattr(o, f) for o in outputs]) for f in ("bars", "features", "signals", "fills",
                                                                           "intents")))


def _join(arrays: list[np.ndarray]) -> np.ndarray:
    """``np.concatenate`` for records of one dtype, without its per-field promotion (a sweep joins hundreds)."""
    if len(arrays) == 1:
        return arrays[0]
    out = np.empty(sum(len(a) for a in arrays), dtype=arrays[0].dtype)
    i = 0
    for a in arrays:
        out[i:i + len(a)] = a
        i += len(a)
    return out
