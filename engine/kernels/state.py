"""Engine state: plain numpy arrays owned by one NamedTuple.

Scalars live in two vectors (``si`` int64, ``sf`` float64) indexed by the
module-level constants below, which numba folds into the compiled code; the
larger structures (rolling histogram, minute FIFO, look-back rings) are
arrays of their own. A jitclass was rejected: it cannot be pickled for the
sweep's worker processes and does not cache across runs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# --- si: int64 scalars -------------------------------------------------------
SI_CUR_MIN = 0  # start of the open minute, ms; -1 before any event
SI_STARTED = 1  # 1 once the first trade is seen (bar rows start there)
SI_NBARS = 2  # bar rows closed so far
SI_M_OPEN = 3  # open minute's trade accumulators (ticks, lots)
SI_M_HIGH = 4
SI_M_LOW = 5
SI_M_CLOSE = 6
SI_M_VOL = 7
SI_M_N = 8
SI_M_OF = 9
SI_M_AMB = 10
SI_M_AGREE = 11
SI_M_AGREE_DEN = 12
SI_Q_TS = 13  # latest quote; ts -1 when none yet
SI_Q_BID = 14
SI_Q_BSZ = 15
SI_Q_ASK = 16
SI_Q_ASZ = 17
SI_PQ_TS = 18  # latest quote with ts strictly below SI_Q_TS (prevailing for trades at SI_Q_TS)
SI_PQ_BID = 19
SI_PQ_ASK = 20
SI_LAST_TRADE_PX = 21  # tick rule state; -1 before the first trade
SI_TICK_SIGN = 22
SI_PREV_CLOSE = 23  # close of the last bar row, ticks
SI_PREV_MID2 = 24  # bid + ask of the last bar row's snapshot; 0 when none
SI_K = 25  # applied bin width, base bins
SI_OFFSET = 26  # absolute base bin held at hist[0]
SI_LO = 27  # lowest / highest base bin that may hold volume (lo > hi: empty)
SI_HI = 28
SI_PROFILE_QTY = 29  # volume in the rolling profile, lots
SI_TOUCHED_N = 30  # distinct base bins traded in the open minute
SI_FIFO_HEAD = 31  # minute-histogram FIFO: next write slot, oldest entry, entry count
SI_FIFO_TAIL = 32
SI_FIFO_COUNT = 33
SI_LATE = 34  # events older than the open minute, dropped and counted
SI_NRET = 35  # returns pushed into the ring
SI_NDP = 36  # close changes pushed into the BVC ring
SI_HAVE_EMA = 37
SI_LAST_EVENT_TS = 38
# position: written only by engine.kernels.position (apply_fill)
SI_POS = 39  # signed lots: > 0 long, < 0 short (partial and reconciled quantities included)
SI_ENTRY_PX = 40  # average entry, ticks, rounded (SF_ENTRY_AVG holds it exactly); 0 when flat
SI_ENTRY_TS = 41  # time of the fill that opened the position
SI_STOP = 42  # ticks
SI_TARGET = 43  # ticks, 0 when none
SI_TAG = 44  # SETUP_* of the open position
SI_PEND_ACTION = 45  # outstanding order (paper: filled on the next quote; external: until filled): ACTION_*
SI_PEND_TS = 46  # its decision time
SI_PEND_TAG = 47
SI_PEND_STOP = 48
SI_PEND_TARGET = 49
SI_PEND_REASON = 50  # EXIT_* for exits
SI_LAST_EXIT_MIN = 51  # minute of the last exit fill; very negative when none
SI_KILL_DAILY = 52  # daily-loss kill switch on
SI_KILL_MANUAL = 53  # operator's kill switch on
SI_DAY = 54  # current risk day index
SI_NEXT_FUNDING = 55  # next funding time, ms
SI_FILLS = 56  # fills emitted so far (fill ids)
SI_RETEST_DIR = 57  # pending breakout retest: 1 long, -1 short, 0 none
SI_RETEST_UNTIL = 58  # last minute (ms) the retest may happen
SI_FLATTEN = 59  # operator asked to flatten; served on the next quote
SI_COVERED = 60  # closed minutes with trades among those the rolling profile holds
SI_SEG_TS = 61  # exchange time of the first event of the current segment (SPEC_NOTES, long gaps)
SI_NEXT_DAY = 62  # start of the next risk day, ms (on_time does nothing before it)
SI_ERROR = 63  # sticky error code (ERR_*)
SI_SEG_ROW = 64  # minute and bar passes: row of the current segment's first minute
SI_NEXT_SEG_ROW = 65  # minute pass: first row of the next segment (0: not looked up yet)
SI_GAP_FROM = 66  # the latest feed gap (disconnection or stall), exchange ms; minutes it touches
SI_GAP_TO = 67  # are marked and not entered on (FEED_GAP); from > to: none
SI_MODE = 68  # MODE_SIGNALS / MODE_PAPER / MODE_EXTERNAL (engine.types); Engine.set_mode switches it
SI_INTENTS = 69  # intents emitted so far (the seq of the newest)
SI_PEND_SEQ = 70  # seq of the intent behind SI_PEND_ACTION
SI_EXIT_SENT = 71  # external mode: an exit intent for a stop/target crossing is out (sent once)
SI_RECON_BLOCK = 72  # reconciliation found the venue's position differs: entries blocked
SI_VENUE_POS = 73  # the venue's position (signed lots) at the last reconciliation
SI_MIN_ROW = 74  # minute pass: next stored minute row to decide (persists across calls)
SI_ENTRIES_PAUSED = 75  # operator paused new entries (no latch: resumed by the operator; exits still run)
# session profiles (engine.kernels.features, "Sessions"): SESS_N fields for each of N_SESS sessions,
# session j's at SI_SESS + j * SESS_N + SESS_*
SI_SESS = 80
SI_DEV_POC2 = 90  # the UTC day's developing POC / VAL / VAH of the last closed minute (0: invalid)
SI_DEV_VAL = 91
SI_DEV_VAH = 92
SI_DEV_VALID = 93
SI_PD_POC2 = 94  # the previous UTC day's final value area (its last minute's developing one)
SI_PD_VAL = 95
SI_PD_VAH = 96
SI_PD_VALID = 97
SI_NPOC_N = 98  # open naked POCs in ``npoc``
N_SI = 112

# --- sf: float64 scalars -----------------------------------------------------
SF_M_PXQTY = 0  # open minute's sum(px * qty)
SF_QIMB_EMA = 1
SF_DAY_PNL = 2  # realized net PnL of the current risk day
SF_POS_FUNDING = 3  # funding paid by the open position
SF_POS_FEES = 4  # fees paid by the open position
SF_FUNDING_RATE = 5  # latest known funding rate
SF_REALIZED = 6  # cumulative realized net PnL
SF_FEES = 7  # cumulative fees
SF_FUNDING = 8  # cumulative funding
SF_ENTRY_AVG = 9  # average entry price of the open position, ticks (exact for one fill)
N_SF = 16

# --- look-back ring columns (lb[minute % LB_SIZE, col]) ---------------------------
LB_SIZE = 64
LB_CLOSE = 0
LB_HIGH = 1
LB_LOW = 2
LB_VAH = 3
LB_VAL = 4
LB_POC2 = 5
LB_VALID = 6  # value area valid
N_LB = 7

ERR_NONE = 0
ERR_FIFO_FULL = 1  # wrapper grows the FIFO and resumes
ERR_PRICE_RANGE = 2  # the rolling window spans more base bins than the histogram holds
ERR_FILLS_FULL = 3  # the call's fill buffer is full: the wrapper flushes it and resumes
ERR_ROWS_FULL = 4  # the call's minute buffers are full: the wrapper flushes them and resumes
ERR_INTENTS_FULL = 5  # the call's intent buffer is full: the wrapper flushes it and resumes

NO_MINUTE = -(2**62)

# --- sessions: fixed UTC periods with a profile of their own ------------------------
SESS_DAY = 0  # the UTC day
SESS_BLOCK = 1  # the 4-hour block (00, 04, ..., 20 UTC)
N_SESS = 2
SESS_ID = 0  # period index (t // period length) of the session held; NO_MINUTE: none
SESS_OFF = 1  # absolute base bin held at shist[j, 0]
SESS_LO = 2  # lowest / highest base bin with volume (lo > hi: empty)
SESS_HI = 3
SESS_BAD = 4  # 1: the session's range outgrew the histogram; its values are invalid until the next one
SESS_N = 5

# --- naked POC table (npoc[i, col], i < SI_NPOC_N, oldest first) ---------------------
NPOC_MAX = 64  # a full table drops its oldest entry
NPOC_POC2 = 0  # twice the POC, ticks
NPOC_START = 1  # start of its session, ms
NPOC_KIND = 2  # SESS_DAY or SESS_BLOCK
NPOC_WIDTH = 3  # width of the POC bin, ticks: the POC level is [poc2 - width, poc2 + width) / 2
N_NPOC = 4

# counts[] slots of one kernel call: inputs consumed (for resuming after an error) and rows written
C_TRADES = 0
C_QUOTES = 1
C_FUNDING = 2
C_ROWS = 3  # bar / feature / signal rows written
C_FILLS = 4
C_INTENTS = 5
N_COUNTS = 6


class EngineState(NamedTuple):
    """Everything the engine remembers between calls."""

    si: np.ndarray  # int64[N_SI]
    sf: np.ndarray  # float64[N_SF]
    hist: np.ndarray  # int64[W]: rolling base histogram, hist[b - offset]
    mhist: np.ndarray  # int64[W]: the open minute's histogram
    agg: np.ndarray  # int64[W]: scratch for the aggregated profile
    touched: np.ndarray  # int64[W]: base bins traded in the open minute
    fifo_bin: np.ndarray  # int64[R]: closed minutes' (bin, qty) entries, oldest first
    fifo_qty: np.ndarray  # int64[R]
    slot_n: np.ndarray  # int64[window]: entries per closed minute, by bar index % window
    slot_cov: np.ndarray  # int64[window]: 1 if that minute counts as covered (trades, no feed gap)
    ret: np.ndarray  # float64[window]: log returns of mid, by bar index % window
    dp: np.ndarray  # float64[bvc_lookback]: close changes (ticks)
    lb: np.ndarray  # int64[LB_SIZE, N_LB]: recent minutes for the setups
    hside: np.ndarray  # int64[2, W]: buy (row 0) and sell (row 1) volume of the rolling profile, like hist
    mside: np.ndarray  # int64[2, W]: the open minute's buy and sell volume, like mhist
    fifo_side: np.ndarray  # int64[2, R]: buy and sell qty of the FIFO entries
    shist: np.ndarray  # int64[N_SESS, W]: session profiles, shist[j, b - session offset]
    scr: np.ndarray  # int64[W]: scratch for the shape's valley scan
    npoc: np.ndarray  # int64[NPOC_MAX, N_NPOC]: open naked POCs


def _new_sf() -> np.ndarray:
    sf = np.zeros(N_SF, dtype=np.float64)
    sf[SF_FUNDING_RATE] = np.nan  # no recorded rate yet: the default applies
    return sf


def new_state(window: int, bvc_lookback: int, hist_bins: int = 1 << 20, fifo_size: int = 1 << 20,
              mode: int = 1) -> EngineState:
    """A fresh state for a rolling window of ``window`` minutes, in ``mode`` (MODE_*, paper by default)."""
    si = np.zeros(N_SI, dtype=np.int64)
    si[SI_MODE] = mode
    si[SI_CUR_MIN] = -1
    si[SI_Q_TS] = -1
    si[SI_PQ_TS] = -1
    si[SI_LAST_TRADE_PX] = -1
    si[SI_LO] = 1
    si[SI_HI] = 0
    si[SI_OFFSET] = NO_MINUTE
    si[SI_LAST_EXIT_MIN] = NO_MINUTE
    si[SI_DAY] = NO_MINUTE
    si[SI_NEXT_FUNDING] = NO_MINUTE
    si[SI_NEXT_DAY] = NO_MINUTE
    si[SI_GAP_FROM] = 1
    si[SI_GAP_TO] = 0
    for j in range(N_SESS):
        si[SI_SESS + j * SESS_N + SESS_ID] = NO_MINUTE
        si[SI_SESS + j * SESS_N + SESS_OFF] = NO_MINUTE
        si[SI_SESS + j * SESS_N + SESS_LO] = 1
    return EngineState(
        si=si,
        sf=_new_sf(),
        hist=np.zeros(hist_bins, dtype=np.int64),
        mhist=np.zeros(hist_bins, dtype=np.int64),
        agg=np.zeros(hist_bins, dtype=np.int64),
        touched=np.zeros(hist_bins, dtype=np.int64),
        fifo_bin=np.zeros(fifo_size, dtype=np.int64),
        fifo_qty=np.zeros(fifo_size, dtype=np.int64),
        slot_n=np.zeros(window, dtype=np.int64),
        slot_cov=np.zeros(window, dtype=np.int64),
        ret=np.full(window, np.nan),
        dp=np.zeros(bvc_lookback, dtype=np.float64),
        lb=np.zeros((LB_SIZE, N_LB), dtype=np.int64),
        hside=np.zeros((2, hist_bins), dtype=np.int64),
        mside=np.zeros((2, hist_bins), dtype=np.int64),
        fifo_side=np.zeros((2, fifo_size), dtype=np.int64),
        shist=np.zeros((N_SESS, hist_bins), dtype=np.int64),
        scr=np.zeros(hist_bins, dtype=np.int64),
        npoc=np.zeros((NPOC_MAX, N_NPOC), dtype=np.int64),
    )


def grow_fifo(state: EngineState) -> EngineState:
    """Double the FIFO, keeping its entries in order (oldest at index 0)."""
    si = state.si
    size = len(state.fifo_bin)
    count = int(si[SI_FIFO_COUNT])
    order = (int(si[SI_FIFO_TAIL]) + np.arange(count)) % size
    fifo_bin = np.zeros(size * 2, dtype=np.int64)
    fifo_qty = np.zeros(size * 2, dtype=np.int64)
    fifo_bin[:count] = state.fifo_bin[order]
    fifo_qty[:count] = state.fifo_qty[order]
    fifo_side = np.zeros((2, size * 2), dtype=np.int64)
    fifo_side[:, :count] = state.fifo_side[:, order]
    si[SI_FIFO_TAIL] = 0
    si[SI_FIFO_HEAD] = count
    si[SI_ERROR] = ERR_NONE
    return state._replace(fifo_bin=fifo_bin, fifo_qty=fifo_qty, fifo_side=fifo_side)
