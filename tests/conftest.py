"""Every test runs in its own empty working directory.

Commands write default outputs under the working directory
(``./backtests/<run_id>/``, ``./sweep_out``); a test must never leave files
in the repository.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _own_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
