"""In-process A/B on the 10-day db: run_tick and run_tick_on_minutes, CPU seconds (process_time)."""
import json
import time

from engine.backtest import run_tick, run_tick_on_minutes
from engine.config import Settings
from engine.features import compute_minutes
from engine.store import Store, instrument_of

s = Settings()
out = {}
with Store("/tmp/intents/bench10.db", instrument_of(s), readonly=True) as st:
    c = time.process_time()
    full = run_tick(st, s)
    out["run_tick_cpu"] = round(time.process_time() - c, 2)
    m = compute_minutes(st, s)
    res = []
    for _ in range(2):
        c = time.process_time()
        fast = run_tick_on_minutes(st, s, m.bars, m.features)
        res.append(round(time.process_time() - c, 2))
    out["minutes_cpu"] = res
    out["fills"] = len(full.fills)
    out["same"] = fast.fills.tobytes() == full.fills.tobytes()
print(json.dumps(out))
