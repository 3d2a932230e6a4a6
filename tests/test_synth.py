"""engine.synth: determinism, microstructure statistics and regimes of the synthetic market."""

from __future__ import annotations

import numpy as np
import pytest

from engine.config import Settings
from engine.kernels import synth as k
from engine.store import Store, instrument_of
from engine.synth import DEFAULT_START_MS, build_schedule, funding_rates, synthesize
from engine.types import FUNDING_DTYPE, SIDE_BUY, SIDE_SELL

DAY_MS = 86_400_000
SHORT_DAYS = 0.05  # 72 minutes
SHORT_SEED = 5


def _run(path, days: float, seed: int, start_ms: int | None = None):
    settings = Settings()
    with Store(path, instrument_of(settings)) as store:
        report = synthesize(store, settings, days=days, seed=seed, start_ms=start_ms)
        trades = store.load_ticks("trade")
        quotes = store.load_ticks("quote")
        funding = store.load_funding()
    return report, trades, quotes, funding


def _prevailing(trades: np.ndarray, quotes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the latest quote strictly earlier than each trade (-1: none), inferred sign."""
    idx = np.searchsorted(quotes["ts"], trades["ts"], side="left") - 1
    q = quotes[np.maximum(idx, 0)]
    sign = np.where(trades["px"] >= q["ask_px"], 1, np.where(trades["px"] <= q["bid_px"], -1, 0))
    sign[idx < 0] = 0
    return idx, sign


def _minute_mids(quotes: np.ndarray, t0: int, n_min: int) -> tuple[np.ndarray, np.ndarray]:
    """Close snapshot per minute: mid and qimb of the latest quote with ts <= minute end."""
    last = np.searchsorted(quotes["ts"], t0 + (np.arange(n_min) + 1) * 60_000, side="left") - 1
    q = quotes[last]
    mid = (q["bid_px"] + q["ask_px"]) / 2.0
    qimb = (q["bid_sz"] - q["ask_sz"]) / (q["bid_sz"] + q["ask_sz"])
    return mid, qimb


@pytest.fixture(scope="module")
def short(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("synth") / "short.db", SHORT_DAYS, SHORT_SEED)


class _MemoryStore:
    """Collects what synthesize writes, without SQLite (the one-day statistics need no disk)."""

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {"trade": [], "quote": []}
        self.funding = np.zeros(0, FUNDING_DTYPE)
        self.retention: str | None = None

    def claim_retention(self, value: str) -> bool:
        self.retention = value
        return True

    def append_ticks(self, kind: str, records: np.ndarray, source: str) -> int:
        self.parts[kind].append(records.copy())
        return len(records)

    def append_funding(self, records: np.ndarray) -> None:
        self.funding = np.concatenate([self.funding, records])

    def load(self, kind: str) -> np.ndarray:
        return np.concatenate(self.parts[kind])


@pytest.fixture(scope="module")
def day():
    store = _MemoryStore()
    report = synthesize(store, Settings(), days=1.0, seed=11)
    return report, store.load("trade"), store.load("quote"), store.funding


# --- determinism -------------------------------------------------------------


def test_same_seed_gives_identical_ticks(short, tmp_path):
    _, trades, quotes, funding = short
    _, trades2, quotes2, funding2 = _run(tmp_path / "again.db", SHORT_DAYS, SHORT_SEED)
    assert trades.tobytes() == trades2.tobytes()
    assert quotes.tobytes() == quotes2.tobytes()
    assert funding.tobytes() == funding2.tobytes()


def test_different_seed_differs(short, tmp_path):
    _, trades, quotes, _ = short
    _, trades2, quotes2, _ = _run(tmp_path / "other.db", SHORT_DAYS, SHORT_SEED + 1)
    assert len(trades) != len(trades2) or not np.array_equal(trades["px"], trades2["px"])
    assert len(quotes) != len(quotes2) or not np.array_equal(quotes["bid_px"], quotes2["bid_px"])


def test_shorter_run_is_a_prefix(short, tmp_path):
    _, trades, quotes, _ = short
    days = 0.02
    _, t_short, q_short, _ = _run(tmp_path / "prefix.db", days, SHORT_SEED)
    end = DEFAULT_START_MS + int(days * DAY_MS)
    assert t_short.tobytes() == trades[trades["ts"] < end].tobytes()
    assert q_short.tobytes() == quotes[quotes["ts"] < end].tobytes()


def test_rerun_into_same_store_adds_nothing(tmp_path):
    path = tmp_path / "twice.db"
    settings = Settings()
    with Store(path, instrument_of(settings)) as store:
        first = synthesize(store, settings, days=0.005, seed=2)
        synthesize(store, settings, days=0.005, seed=2)
        assert store.count_ticks("trade") == first.trades
        assert store.count_ticks("quote") == first.quotes


# --- report and layout --------------------------------------------------------


def test_report_and_time_layout(short):
    report, trades, quotes, _ = short
    assert report.trades == len(trades) and report.quotes == len(quotes)
    assert report.days == SHORT_DAYS and report.seed == SHORT_SEED
    end = DEFAULT_START_MS + int(SHORT_DAYS * DAY_MS)
    for arr in (trades, quotes):
        ts = arr["ts"]
        assert np.all(np.diff(ts) >= 0)
        assert ts[0] >= DEFAULT_START_MS and ts[-1] < end
        assert np.all(arr["local_ts"] > ts)
    assert report.first_ts == min(trades["ts"][0], quotes["ts"][0])
    assert report.last_ts == max(trades["ts"][-1], quotes["ts"][-1])
    assert quotes["ts"][0] == DEFAULT_START_MS  # a book is published before the first trade
    assert np.all(np.diff(trades["trade_id"]) == 1)
    line = report.summary()
    assert str(report.trades) in line and str(report.quotes) in line and "events/s" in line


def test_start_ms_is_honoured(tmp_path):
    start = 1_700_000_000_000
    report, trades, quotes, _ = _run(tmp_path / "start.db", 0.002, 4, start_ms=start)
    assert quotes["ts"][0] == start and trades["ts"][0] >= start
    assert report.last_ts < start + int(0.002 * DAY_MS)


# --- microstructure statistics ---------------------------------------------------


def test_book_is_never_crossed_and_mostly_one_tick(short):
    _, _, quotes, _ = short
    spread = quotes["ask_px"] - quotes["bid_px"]
    assert np.all(spread >= 1)
    assert np.mean(spread == 1) >= 0.80
    assert 0.01 < np.mean((spread >= 2) & (spread <= 5)) < 0.15
    assert np.all(quotes["bid_sz"] >= 1) and np.all(quotes["ask_sz"] >= 1)
    med_btc = np.median(np.concatenate([quotes["bid_sz"], quotes["ask_sz"]])) * 0.001
    assert 0.05 < med_btc < 5.0


def test_event_rates_near_bybit(short):
    _, trades, quotes, _ = short
    seconds = SHORT_DAYS * 86_400
    assert 5.0 < len(trades) / seconds < 45.0
    assert 15.0 < len(quotes) / seconds < 150.0
    # several events share a millisecond (multi-maker fills, trade + its quote)
    assert len(np.unique(trades["ts"])) < 0.9 * len(trades)


def test_trade_sizes_heavy_tailed(short):
    _, trades, _, _ = short
    qty = trades["qty"]
    assert np.all(qty >= 1)
    assert np.min(qty) == 1
    assert qty.max() / np.median(qty) > 100
    assert np.any(qty >= 1000)  # prints of 1 BTC and more


def test_aggressor_side_matches_the_prevailing_quote(short):
    _, trades, quotes, _ = short
    assert set(np.unique(trades["side"])) == {SIDE_BUY, SIDE_SELL}
    idx, sign = _prevailing(trades, quotes)
    assert np.all(idx >= 0)
    inside = sign == 0
    assert 0.01 < inside.mean() < 0.10
    assert np.mean(sign[~inside] == trades["side"][~inside]) > 0.95
    q = quotes[idx[inside]]
    assert np.all((trades["px"][inside] > q["bid_px"]) & (trades["px"][inside] < q["ask_px"]))
    stale = trades["ts"] - quotes["ts"][idx] > 250
    assert stale.mean() < 0.02


def test_sweeps_show_the_level_gone_in_their_millisecond(short):
    _, trades, quotes, _ = short
    _, sign = _prevailing(trades, quotes)
    buys = trades[(sign == 1) & (trades["side"] == SIDE_BUY)]
    sells = trades[(sign == -1) & (trades["side"] == SIDE_SELL)]
    checked = 0
    for arr, book, better in ((buys, "ask_px", np.greater_equal), (sells, "bid_px", np.less_equal)):
        # the prints of one side in one millisecond: the order(s) walked from lo to hi
        ts_u, first = np.unique(arr["ts"], return_index=True)
        hi = np.maximum.reduceat(arr["px"], first)
        lo = np.minimum.reduceat(arr["px"], first)
        walked = hi != lo
        far = hi[walked] if book == "ask_px" else lo[walked]
        for t, p in zip(ts_u[walked], far, strict=True):
            a, b = np.searchsorted(quotes["ts"], [t, t + 1])
            assert b > a, "a sweep publishes a quote in its own millisecond"
            assert np.any(better(quotes[book][a:b], p))
            checked += 1
    assert checked > 10


# --- regimes (one day) ------------------------------------------------------------


def test_day_rates_prices_and_returns(day):
    _, trades, quotes, _ = day
    assert 8.0 < len(trades) / 86_400 < 30.0
    assert 30.0 < len(quotes) / 86_400 < 100.0
    price = trades["px"] * 0.1
    assert 50_000 < price.min() and price.max() < 110_000
    mid, _ = _minute_mids(quotes, DEFAULT_START_MS, 1440)
    r = np.diff(np.log(mid))
    assert 0.0002 < r.std() < 0.0015


def test_volatility_clusters(day):
    _, _, quotes, _ = day
    mid, _ = _minute_mids(quotes, DEFAULT_START_MS, 1440)
    r = np.diff(np.log(mid))
    hourly = np.array([r[h * 60:(h + 1) * 60 - 1].std() for h in range(24)])
    assert hourly.std() / hourly.mean() > 0.2
    a = np.abs(r)
    assert np.corrcoef(a[1:], a[:-1])[0, 1] > 0.05
    # wider spreads when volatility is high
    spread = quotes["ask_px"] - quotes["bid_px"]
    hour = (quotes["ts"] - DEFAULT_START_MS) // 3_600_000
    wide = np.bincount(hour, weights=spread > 1, minlength=24)[:24] / np.bincount(hour, minlength=24)[:24]
    assert np.corrcoef(wide, hourly)[0, 1] > 0.3


def test_four_hour_ranges_vary(day):
    _, _, quotes, _ = day
    mid, _ = _minute_mids(quotes, DEFAULT_START_MS, 1440)
    ranges = np.array([(mid[i:i + 240].max() - mid[i:i + 240].min()) / mid[i] for i in range(0, 1200, 30)])
    assert ranges.min() > 0.001
    assert ranges.max() / ranges.min() > 1.3


def test_order_flow_and_imbalance_lead_price(day):
    _, trades, quotes, _ = day
    _, sign = _prevailing(trades, quotes)
    minute = (trades["ts"] - DEFAULT_START_MS) // 60_000
    of = np.bincount(minute, weights=sign * trades["qty"], minlength=1440)[:1440]
    mid, qimb = _minute_mids(quotes, DEFAULT_START_MS, 1440)
    r = np.diff(np.log(mid))
    assert np.corrcoef(of[1:], r)[0, 1] > 0.3  # buying pushes price up in the same minute
    assert np.corrcoef(qimb[:-1], r)[0, 1] > 0.03  # imbalance at the close leads the next minute


def test_funding_every_eight_hours(day):
    _, _, _, funding = day
    assert list(funding["ts"]) == [DEFAULT_START_MS + h * 3_600_000 for h in (0, 8, 16)]
    assert np.all(funding["ts"] % (8 * 3_600_000) == 0)
    assert np.all(np.abs(funding["rate"]) < 0.00375)
    assert len(np.unique(funding["rate"])) == 3


def test_funding_rates_realistic_over_many_intervals():
    ss = np.random.SeedSequence(3)
    rates = funding_rates(ss, DEFAULT_START_MS, DEFAULT_START_MS + 60 * DAY_MS)
    assert len(rates) == 180
    assert 0.00003 < rates["rate"].mean() < 0.0002
    assert np.any(rates["rate"] < 0) and np.mean(rates["rate"] > 0) > 0.6


def test_schedule_has_all_regimes():
    ss = np.random.SeedSequence(7).spawn(2)
    params = build_schedule(ss[0], ss[1], 10 * 1440, DEFAULT_START_MS)
    reg = params[:, k.P_REG].astype(int)
    starts = params[:, k.P_NEWSEG] > 0
    counts = np.bincount(reg[starts], minlength=5)
    assert counts[k.REG_BALANCE] > 20 and counts[k.REG_TREND] > 5
    assert counts[k.REG_FAKE_UP] + counts[k.REG_FAKE_DOWN] > 10
    assert counts[k.REG_RETURN] == counts[k.REG_FAKE_UP] + counts[k.REG_FAKE_DOWN] or \
        counts[k.REG_RETURN] + 1 == counts[k.REG_FAKE_UP] + counts[k.REG_FAKE_DOWN]
    seg = np.flatnonzero(starts)
    lengths = np.diff(np.append(seg, len(reg)))
    fake = np.isin(reg[seg], (k.REG_FAKE_UP, k.REG_FAKE_DOWN))
    assert lengths[fake].max() <= 12
    assert np.median(lengths[reg[seg] == k.REG_BALANCE]) >= 30
    sigma = params[:, k.P_SIG]
    assert 0.00015 <= sigma.min() and sigma.max() <= 0.0015
    assert np.percentile(sigma, 90) / np.percentile(sigma, 10) > 2.0
