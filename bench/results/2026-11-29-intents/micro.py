"""In-process A/B: tick engine (paper) over 2 days in memory, and the minute pass
CPU seconds, best of N."""
import json
import sys
import time

import numpy as np

from engine.config import Settings
from engine.engine import Engine, concat
from engine.store import Store, instrument_of

s = Settings()
db = "/tmp/intents/bench10.db"
days = float(sys.argv[1]) if len(sys.argv) > 1 else 2
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
with Store(db, instrument_of(s), readonly=True) as st:
    t0 = st.tick_range(None, None)[0]
    end = t0 + int(days * 86_400_000)
    slices = [(tr, qu) for tr, qu in st.iter_event_slices(True, None, end)]
    fund = st.load_funding()
def tick():
    e = Engine(s)
    parts = [e.feed(tr, qu) for tr, qu in slices]
    parts.append(e.finish())
    return concat(parts)
out = tick()
bars, feats = out.bars, out.features
def minutes():
    if hasattr(Engine, "feed_minutes"):
        e = Engine(s, hist_bins=16, fifo_size=16)
        e.attach_minutes(bars, feats)
        parts = [e.feed_minutes(qu) for _, qu in slices]
        parts.append(e.finish())
        return concat(parts).fills
    from engine.kernels import loop
    from engine.kernels.minutepass import minutes_finish, quotes_on_minutes
    from engine.kernels.params import make_params
    from engine.kernels.state import new_state
    from engine.types import FILL_DTYPE, FUNDING_DTYPE, SIGNAL_DTYPE
    p = make_params(s, trading=True)
    state = new_state(s.rolling_window_minutes, s.bvc_lookback, hist_bins=16, fifo_size=16)
    sigs = np.zeros(len(bars), dtype=SIGNAL_DTYPE)
    counts = np.zeros(loop.N_COUNTS, dtype=np.int64)
    fp = []
    f0 = np.zeros(0, dtype=FUNDING_DTYPE)
    for _, qu in slices:
        counts[loop.C_QUOTES] = counts[loop.C_FUNDING] = 0
        while True:
            fills = np.zeros(len(qu) // 64 + 64, dtype=FILL_DTYPE)
            counts[loop.C_FILLS] = 0
            err = quotes_on_minutes(qu, f0, bars, feats, p, state, sigs, fills, counts)
            fp.append(fills[:counts[loop.C_FILLS]].copy())
            if err == 0:
                break
    minutes_finish(bars, feats, p, state, sigs, counts)
    return np.concatenate(fp)
minutes()
res = {"tick": [], "minutes": []}
for _ in range(reps):
    for name, fn in (("tick", tick), ("minutes", minutes)):
        c = time.process_time()
        fn()
        res[name].append(round(time.process_time() - c, 3))
ev = sum(len(a) + len(b) for a, b in slices)
print(json.dumps({"events": ev, "fills": len(out.fills), "tick_min": min(res["tick"]), "minutes_min": min(res["minutes"]), **res}))
