"""Lint contracts run as tests: engine stays headless, kernels stay pure, code stays clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_hold():
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    run = subprocess.run([exe], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_ruff_finds_nothing():
    exe = shutil.which("ruff")
    if exe is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    run = subprocess.run([exe, "check", "engine", "pbdtui", "loopback", "tests", "bench"], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_kernels_run_without_jit():
    # kernels read fields as arr["px"][i] so they also run as plain Python (NUMBA_DISABLE_JIT=1)
    code = (
        "from engine.config import Settings; from engine.engine import Engine, concat;"
        "from tests.helpers import random_stream;"
        "tr, qu = random_stream(1, 3); e = Engine(Settings());"
        "o = concat([e.feed(tr, qu), e.finish()]); print(len(o.bars))"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={"NUMBA_DISABLE_JIT": "1", "PATH": "/usr/bin:/bin", "HOME": str(REPO)})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "3"
