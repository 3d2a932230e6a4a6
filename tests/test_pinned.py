"""Pinned digests of signals + fills on fixed simulated runs.

The digests were computed on the tree before the intents/fills split
(commit daffcdc, issue 9): paper trading in the tick loop, the sweep's
minute pass and bar mode must keep producing these exact bytes.
"""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest

from engine.config import Settings
from engine.engine import Engine, concat
from engine.types import FUNDING_DTYPE
from tests.helpers import random_stream

STREAM = Settings().replace(rolling_window_minutes=8, min_window_coverage=0.0, cooldown_minutes=0,
                            max_hold_minutes=4, qimb_entry_min=0.0, qimb_breakout_min=0.0, accept_outside_k=2,
                            breakout_target_va_multiple=3.0, max_daily_loss=1e9, funding_rate_default=0.001)


def digest(out) -> str:
    return hashlib.blake2b(out.signals.tobytes() + out.fills.tobytes(), digest_size=12).hexdigest()


@pytest.mark.parametrize("seed, flip, n_fills, expected", [
    (5, False, 22, "9cb4f57b05017dd38915dce4"),
    (6, True, 30, "c59ec356a68626f9b550529e"),
    (7, True, 30, "0bfe4d3ec37c210573f62c69"),
])
def test_paper_tick_run_on_a_random_stream_is_pinned(seed, flip, n_fills, expected):
    tr, qu = random_stream(seed, minutes=120, trades_per_min=25, quotes_per_min=40, gap_minutes=(50, 51))
    fund = np.zeros(2, dtype=FUNDING_DTYPE)
    fund["ts"] = [int(qu["ts"][0]) + 3_600_000, int(qu["ts"][0]) + 5_000_000]
    fund["rate"] = [0.0005, -0.0007]
    eng = Engine(STREAM.replace(flip_on_signal=flip))
    out = concat([eng.feed(tr, qu, fund), eng.finish()])
    assert len(out.fills) == n_fills
    assert digest(out) == expected


SIM = Settings().replace(rolling_window_minutes=60)
SIM_VARIANT = SIM.replace(slippage_ticks_entry=0, accept_outside_k=2, cooldown_minutes=0, max_hold_minutes=5,
                          flip_on_signal=True)


def test_simulated_session_tick_minute_pass_and_bar_mode_are_pinned(tmp_path_factory):
    from engine.backtest import run_backtest, run_bar, run_tick, run_tick_on_minutes
    from engine.features import compute_minutes
    from engine.store import Store, instrument_of
    from engine.synth import synthesize

    path = tmp_path_factory.mktemp("pinned") / "sim.db"
    with Store(path, instrument_of(SIM)) as st:
        synthesize(st, SIM, days=0.25, seed=11)
        for s, n_fills, expected in ((SIM, 50, "6d0cd147ce4c4417a6f06633"),
                                     (SIM_VARIANT, 90, "22e9ddf6167623e95807e121")):
            full = run_tick(st, s)
            m = compute_minutes(st, s)
            fast = run_tick_on_minutes(st, s, m.bars, m.features)
            assert (len(full.fills), digest(full)) == (n_fills, expected)
            assert (len(fast.fills), digest(fast)) == (n_fills, expected)
        run_backtest(st, SIM)  # writes the minute tables bar mode reads
        bar = run_bar(st, SIM)
        assert (len(bar.fills), digest(bar)) == (51, "23408271bc093c9dcc2dee1a")
    shutil.rmtree(path.parent, ignore_errors=True)
