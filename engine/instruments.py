"""Known Bybit USDT perpetuals: what a store's integer ticks and lots mean.

A store holds prices as integer ticks and sizes as integer lots, so the
tick size and lot step of the symbol must be right before the first row is
imported. The table holds Bybit's ``/v5/market/instruments-info`` values
(``priceFilter.tickSize``, ``lotSizeFilter.qtyStep`` and ``minOrderQty``),
checked against real data in ``../shared/data/bybit_v5``: the BTCUSDT
instruments-info capture, the order-book frames of ETHUSDT, SOLUSDT and
DOGEUSDT in ``linear_capture.jsonl`` and the XRPUSDT order-book archive.
Exchanges change these now and then; an instrument not listed (or listed
with an outdated value) is given with ``--tick-size`` and ``--qty-step``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from engine.config import ConfigError


@dataclass(frozen=True)
class InstrumentSpec:
    """One linear perpetual's price and size grid."""

    symbol: str
    tick_size: float  # price increment
    qty_step: float  # size increment (one lot)
    min_qty: float  # smallest order (Bybit minOrderQty)


KNOWN: dict[str, InstrumentSpec] = {
    s.symbol: s
    for s in (
        InstrumentSpec("BTCUSDT", 0.1, 0.001, 0.001),
        InstrumentSpec("ETHUSDT", 0.01, 0.01, 0.01),
        InstrumentSpec("SOLUSDT", 0.01, 0.1, 0.1),
        InstrumentSpec("XRPUSDT", 0.0001, 1.0, 1.0),
        InstrumentSpec("DOGEUSDT", 0.00001, 1.0, 1.0),
    )
}


def known_text() -> str:
    """``BTCUSDT (tick 0.1, step 0.001), ...`` for help and error messages."""
    return ", ".join(f"{s.symbol} (tick {s.tick_size:g}, step {s.qty_step:g})" for s in KNOWN.values())


def resolve(symbol: str, tick_size: float | None = None, qty_step: float | None = None) -> InstrumentSpec:
    """The instrument ``symbol`` names, with ``tick_size``/``qty_step`` overriding the table.

    Raises:
        ConfigError: an unknown symbol without both sizes, or a size that is
            not a positive finite number.
    """
    symbol = symbol.strip()
    if symbol.upper() in KNOWN:  # xrpusdt is XRPUSDT; an unknown symbol is kept as typed (Tardis: BTC-USD)
        symbol = symbol.upper()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", symbol):
        raise ConfigError(f"--symbol {symbol!r}: expected an exchange symbol such as BTCUSDT")
    for flag, value in (("--tick-size", tick_size), ("--qty-step", qty_step)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{flag} {value!r}: expected a positive number")
    known = KNOWN.get(symbol)
    if known is None:
        if tick_size is None or qty_step is None:
            raise ConfigError(f"--symbol {symbol}: unknown instrument; known: {known_text()}; for another "
                              "one give --tick-size and --qty-step (Bybit instruments-info tickSize and qtyStep)")
        return InstrumentSpec(symbol, tick_size, qty_step, qty_step)
    return InstrumentSpec(symbol, known.tick_size if tick_size is None else tick_size,
                          known.qty_step if qty_step is None else qty_step,
                          known.min_qty if qty_step is None else qty_step)


def _is_multiple(qty: float, step: float) -> bool:
    ratio = qty / step
    return abs(ratio - round(ratio)) <= 1e-6 and round(ratio) >= 1


def apply(settings: Any, spec: InstrumentSpec, trading: bool) -> Any:
    """``settings`` for ``spec``: symbol, tick_size, qty_step and instrument (``<SYMBOL>_PERP``).

    ``order_qty`` is kept when it is a whole number of the new lots. When it
    is not (0.001 BTC has no meaning for XRP, whose lot is 1): a command
    that trades (``trading``) refuses, since the position size is the
    user's decision and a guessed size would change every P&L figure; one
    that does not (import, features, data) uses the instrument's minimum
    order, which none of its outputs depend on.

    Raises:
        ConfigError: ``trading`` and ``order_qty`` does not fit the lot step.
    """
    qty = settings.order_qty
    if not _is_multiple(qty, spec.qty_step):
        if trading:
            raise ConfigError(
                f"order_qty {qty:g} is not a whole number of {spec.symbol} lots (qty_step {spec.qty_step:g}): "
                f"set order_qty in the config, or PBDTUI_ORDER_QTY={spec.min_qty:g} (the exchange minimum)")
        qty = spec.min_qty
    return settings.replace(symbol=spec.symbol, tick_size=spec.tick_size, qty_step=spec.qty_step,
                            instrument=f"{spec.symbol}_PERP", order_qty=qty)
