"""Engine records back to Bybit v5 public frames, byte for byte in the captures' layout.

Key order, string-typed numbers and the fixed fields (``L``, ``BT``,
``RPI``, ``seq``, ``u``, ``cts``) follow the real frames in
``../shared/data/bybit_v5/``. Frames are written with f-strings, not
``json.dumps``: the venue encodes every frame it serves and a dict round
trip would cost several times more than the text.
"""

from __future__ import annotations

import json
from decimal import Decimal

import numpy as np

from engine.ids import MASK63
from engine.types import SIDE_BUY
from engine.units import decimals_of

FUNDING_INTERVAL_MS = 8 * 3_600_000
_M64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """splitmix64's finaliser: a fixed pseudo-random 64-bit value per id."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def uuid_text(trade_id: int) -> str:
    """A UUID-shaped id whose fold (``engine.ids.uuid_id``) is ``trade_id``.

    The low half is a pseudo-random function of the id and the high half
    that value XOR the id, so the text looks like Bybit's random UUIDs and a
    client decodes exactly the stored ``trade_id``. Negative ids (no UUID
    folds to them) are written as decimal integers, which decode to
    themselves.
    """
    if trade_id < 0:
        return str(trade_id)
    lo = _mix64(trade_id)
    hi = (trade_id ^ lo) & _M64
    if (hi ^ lo) & MASK63 != trade_id:  # pragma: no cover - ids are int64, so never
        raise ValueError(trade_id)
    h = f"{hi:016x}{lo:016x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Units:
    """Integer ticks/lots to the exchange's decimal text (exact, no float formatting)."""

    def __init__(self, step: float, min_decimals: int = 0):
        self.decimals = max(decimals_of(step), min_decimals)
        scaled = Decimal(repr(step)) * (10 ** self.decimals)
        if scaled != scaled.to_integral_value():  # pragma: no cover - decimals_of makes it integral
            raise ValueError(f"step {step} is not a multiple of 10**-{self.decimals}")
        self.mult = int(scaled)
        self.scale = 10 ** self.decimals
        self._memo: dict[int, str] = {}  # a market repeats its prices and sizes: formatting was most of the venue

    def text(self, units: int) -> str:
        memo = self._memo
        out = memo.get(units)
        if out is None:
            if len(memo) >= 1 << 16:
                memo.clear()
            out = memo[units] = self._text(units)
        return out

    def _text(self, units: int) -> str:
        v = int(units) * self.mult
        if not self.decimals:
            return str(v)
        sign = "-" if v < 0 else ""
        q, r = divmod(abs(v), self.scale)
        return f"{sign}{q}.{r:0{self.decimals}d}"


class BybitEncoder:
    """Frames of one instrument (prices with at least 2 decimals, as Bybit writes BTCUSDT)."""

    def __init__(self, symbol: str, tick_size: float, qty_step: float):
        self.symbol = symbol
        self.px = Units(tick_size, 2)
        self.qty = Units(qty_step)
        self.tick_size = tick_size
        self.trade_seq = 1_000_000_000
        self.last_px: int | None = None
        self.direction = "ZeroPlusTick"

    # --- publicTrade -----------------------------------------------------------------

    def trades(self, rows: np.ndarray, topic: str | None = None) -> str:
        """One ``publicTrade`` frame for ``rows`` (TRADE_DTYPE; Bybit sends up to 1024 per frame)."""
        sym = self.symbol
        px_text, qty_text = self.px.text, self.qty.text
        items = []
        for ts, px, qty, side, tid in zip(rows["ts"].tolist(), rows["px"].tolist(), rows["qty"].tolist(),
                                          rows["side"].tolist(), rows["trade_id"].tolist(), strict=True):
            last = self.last_px
            if last is not None and px != last:
                self.direction = "PlusTick" if px > last else "MinusTick"
            elif last is not None:
                self.direction = "ZeroPlusTick" if self.direction in ("PlusTick", "ZeroPlusTick") else "ZeroMinusTick"
            self.last_px = px
            self.trade_seq += 1
            items.append(
                f'{{"T":{ts},"s":"{sym}","S":"{"Buy" if side == SIDE_BUY else "Sell"}","v":"{qty_text(qty)}",'
                f'"p":"{px_text(px)}","L":"{self.direction}","i":"{uuid_text(tid)}","BT":false,"RPI":false,'
                f'"seq":{self.trade_seq}}}'
            )
        ts_msg = int(rows["ts"][-1]) + 1
        return (f'{{"topic":"{topic or "publicTrade." + sym}","type":"snapshot","ts":{ts_msg},'
                f'"data":[{",".join(items)}]}}')

    # --- orderbook.1 -------------------------------------------------------------------

    def book(self, topic: str, kind: str, ts: int, bids: list[tuple[int, int]], asks: list[tuple[int, int]],
             u: int, seq: int) -> str:
        """An ``orderbook`` frame; levels are (ticks, lots) with lots 0 = delete."""
        p, q = self.px.text, self.qty.text
        b = ",".join(f'["{p(t)}","{q(n)}"]' for t, n in bids)
        a = ",".join(f'["{p(t)}","{q(n)}"]' for t, n in asks)
        return (f'{{"topic":"{topic}","type":"{kind}","ts":{ts + 2},"data":{{"s":"{self.symbol}","b":[{b}],'
                f'"a":[{a}],"u":{u},"seq":{seq}}},"cts":{ts}}}')

    # --- tickers -------------------------------------------------------------------------

    def ticker_fields(self, ts: int, l1: tuple[int, int, int, int] | None, last_px: int | None,
                      rate: float | None) -> dict[str, str]:
        """The ticker values the venue knows (mark and index at the mid, 8-hour funding)."""
        out: dict[str, str] = {}
        if l1 is not None:
            bid, bsz, ask, asz = l1
            mid = f"{(bid + ask) * self.tick_size / 2:.{self.px.decimals}f}"
            out.update(markPrice=mid, indexPrice=mid, bid1Price=self.px.text(bid), bid1Size=self.qty.text(bsz),
                       ask1Price=self.px.text(ask), ask1Size=self.qty.text(asz))
        if last_px is not None:
            out["lastPrice"] = self.px.text(last_px)
        if rate is not None:
            out["fundingRate"] = f"{rate:.8f}".rstrip("0").rstrip(".") if rate else "0"
            out["nextFundingTime"] = str((ts // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS)
        return out

    def ticker(self, topic: str, kind: str, ts: int, values: dict[str, str], cs: int) -> str:
        """A ``tickers`` frame: a snapshot carries the static fields too, a delta only ``values``."""
        if kind == "snapshot":
            values = {"tickDirection": self.direction, "price24hPcnt": "0.001624", **values,
                      "openInterest": "59891.732", "fundingIntervalHour": "8", "fundingCap": "0.005",
                      "preOpenPrice": "", "preQty": "", "curPreListingPhase": ""}
        body = ",".join(f'"{k}":"{v}"' for k, v in values.items())
        return (f'{{"topic":"{topic}","type":"{kind}","data":{{"symbol":"{self.symbol}",{body}}},'
                f'"cs":{cs},"ts":{ts}}}')


def subscribe_ack(conn_id: str, req_id: str, success: bool = True, message: str = "") -> str:
    """The linear subscribe answer (BYBIT.md 1.2); a refusal as third-party fixtures show it."""
    return (f'{{"success":{"true" if success else "false"},"ret_msg":{json.dumps(message)},'
            f'"conn_id":"{conn_id}","req_id":{json.dumps(req_id)},"op":"subscribe"}}')


def pong(conn_id: str, req_id: str) -> str:
    """The linear pong (BYBIT.md 1.3)."""
    return f'{{"success":true,"ret_msg":"pong","conn_id":"{conn_id}","req_id":{json.dumps(req_id)},"op":"ping"}}'
