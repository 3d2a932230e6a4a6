"""Conversions between exchange units and the engine's integer ticks and lots."""

from __future__ import annotations

import numpy as np


def to_ticks(price: np.ndarray | float, tick_size: float) -> np.ndarray:
    """Nearest integer tick count of ``price`` (SPEC_NOTES: round(price / tick_size))."""
    return np.rint(np.asarray(price, dtype=np.float64) / tick_size).astype(np.int64)


def to_lots(size: np.ndarray | float, qty_step: float) -> np.ndarray:
    """Nearest integer lot count of ``size``."""
    return np.rint(np.asarray(size, dtype=np.float64) / qty_step).astype(np.int64)


def decimals_of(step: float) -> int:
    """Decimal places needed to write multiples of ``step`` exactly."""
    for d in range(13):
        if abs(round(step, d) - step) < 1e-12 * max(1.0, abs(step)):
            return d
    return 12
