"""``--backend ray``: the sweep's work units as Ray tasks give the local pool's figures exactly.

Skipped when Ray is not installed (``pip install ".[cluster]"``), and unless
``PBDTUI_RAY_TESTS=1``: starting Ray and its workers costs about a minute on
2 shared cores, more than the rest of the sweep tests together. The test
starts its own local Ray instance with 2 CPUs.

    PBDTUI_RAY_TESTS=1 python -m pytest -q tests/test_sweep_ray.py
"""

from __future__ import annotations

import json
import os

import pytest

from engine import sweep
from engine.config import ConfigError, Settings
from engine.store import Store, instrument_of
from engine.synth import synthesize

if os.environ.get("PBDTUI_RAY_TESTS") != "1":
    pytest.skip("Ray tests are opt-in: PBDTUI_RAY_TESTS=1", allow_module_level=True)
ray = pytest.importorskip("ray")

BASE = Settings(rolling_window_minutes=60, max_daily_loss=1e9)
SPLIT = 1_767_571_200_000 + 3 * 3_600_000  # 2026-01-05 03:00 UTC, mid-way through the data


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ray") / "synth.db"
    with Store(path, instrument_of(BASE)) as store:
        synthesize(store, BASE, days=0.25, seed=3)
    return str(path)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _same(res: sweep.SweepResult) -> str:
    doc = sweep.json_doc(res, BASE)
    doc.pop("timings")
    return json.dumps(doc, sort_keys=True) + sweep.csv_text(res)


def test_ray_backend_gives_the_local_pools_reports_byte_for_byte(db, local_ray):
    # two feature groups (alpha_bin changes the profile) of two combinations each
    grid, combos = sweep.parse_grid(BASE, ["alpha_bin=0.2,0.3", "cooldown_minutes=0,5"])
    with Store(db, instrument_of(BASE)) as store:
        on_ray = sweep.run_sweep(store, grid, combos, workers=2, split_ms=SPLIT, backend="ray")
        local = sweep.run_sweep(store, grid, combos, workers=2, split_ms=SPLIT)
    assert len(on_ray.groups) == 2
    assert _same(on_ray) == _same(local)


def test_unknown_backend_and_address_without_ray_are_refused(db):
    grid, combos = sweep.parse_grid(BASE, ["cooldown_minutes=0"])
    with Store(db, instrument_of(BASE)) as store:
        with pytest.raises(ConfigError, match="unknown backend"):
            sweep.run_sweep(store, grid, combos, backend="dask")
        with pytest.raises(ConfigError, match="--address is for --backend ray"):
            sweep.run_sweep(store, grid, combos, address="auto")
