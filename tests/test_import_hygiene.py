"""The engine is headless: importing any of it never loads the console's libraries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Every module of the engine package, found at run time so a new module is covered
# without editing this list; the named ones must exist.
_PROBE = """
import importlib, pkgutil, sys
import engine
names = sorted(m.name for m in pkgutil.walk_packages(engine.__path__, "engine."))
for required in ("engine.engine", "engine.store", "engine.features", "engine.synth",
                 "engine.config", "engine.records", "engine.types", "engine.kernels.loop"):
    assert required in names, required
for name in names:
    importlib.import_module(name)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("textual", "pbdtui", "rich"))
print(len(names))
print(",".join(loaded))
"""


def test_importing_engine_never_loads_textual():
    done = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    count, loaded = done.stdout.split("\n")[:2]
    assert int(count) >= 8
    assert loaded == "", f"engine imports pulled in: {loaded}"
