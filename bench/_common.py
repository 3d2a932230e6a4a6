"""Helpers shared by the bench scripts: machine facts, timed subprocesses, synthetic databases."""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TIME_BIN = "/usr/bin/time"


def machine() -> dict[str, str]:
    """CPU model, cores, memory, load and versions (what a figure was measured on)."""
    info: dict[str, str] = {"python": platform.python_version(), "platform": platform.platform()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket",
                               "Hypervisor vendor", "L2 cache", "L3 cache"):
                info[key.strip()] = value.strip()
    except (OSError, subprocess.CalledProcessError):
        info["Model name"] = platform.processor() or "unknown"
    info["nproc"] = str(os.cpu_count())
    try:
        meminfo = Path("/proc/meminfo").read_text()
        kb = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1))  # type: ignore[union-attr]
        info["memory_gb"] = f"{kb / 1024 / 1024:.1f}"
    except (OSError, AttributeError):
        pass
    try:
        info["loadavg_at_start"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        pass
    for mod in ("numpy", "numba", "apsw"):
        try:
            m = __import__(mod)
            info[mod] = getattr(m, "__version__", None) or (m.apsw_version() if mod == "apsw" else "?")
        except ImportError:
            info[mod] = "missing"
    try:
        info["git"] = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                                     capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return info


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


@dataclass
class Run:
    """One timed subprocess."""

    cmd: list[str]
    wall_s: float
    max_rss_mb: float | None
    rss_source: str
    returncode: int
    stdout: str
    stderr: str
    loadavg_after: str = field(default="")
    cpu_s: float | None = None  # user + system CPU seconds of the command (and its children)

    @property
    def cpu_share(self) -> float | None:
        """CPU seconds / wall seconds: well below 1 for a one-thread command means it waited
        (for the disk, or for a CPU another process held)."""
        return None if self.cpu_s is None or self.wall_s <= 0 else self.cpu_s / self.wall_s


def timed(cmd: list[str], cwd: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Run:
    """Run ``cmd``; wall time from this process, peak RSS from ``/usr/bin/time -v`` when
    present, else from getrusage(RUSAGE_CHILDREN) (a max over all children so far: only
    meaningful when this child is the biggest yet)."""
    use_time = os.access(TIME_BIN, os.X_OK)
    full = [TIME_BIN, "-v", *cmd] if use_time else cmd
    t0 = time.perf_counter()
    proc = subprocess.run(full, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    rss = None
    cpu = None
    source = "none"
    err = proc.stderr
    if use_time:
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
        if m:
            rss = int(m.group(1)) / 1024
            source = "/usr/bin/time -v"
        user = re.search(r"User time \(seconds\): ([\d.]+)", err)
        system = re.search(r"System time \(seconds\): ([\d.]+)", err)
        if user and system:
            cpu = float(user.group(1)) + float(system.group(1))
        err = err.split("\tCommand being timed:")[0]
    else:
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        source = "getrusage(RUSAGE_CHILDREN)"
    run = Run(cmd, wall, rss, source, proc.returncode, proc.stdout, err, loadavg(), cpu)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + err)
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}")
    return run


def pbdtui(*args: str) -> list[str]:
    """The pbdtui command line run with this interpreter (honours PYTHONPATH)."""
    return [sys.executable, "-m", "pbdtui.cli", *args]


def synth_db(path: Path, days: float, seed: int = 1) -> dict[str, float]:
    """Synthesize ``days`` into ``path`` (built-in default settings); counts and seconds."""
    from engine.config import Settings
    from engine.store import Store, instrument_of
    from engine.synth import synthesize

    s = Settings()
    t0 = time.perf_counter()
    with Store(path, instrument_of(s)) as store:
        rep = synthesize(store, s, days=days, seed=seed)
    return {"days": days, "seed": seed, "trades": rep.trades, "quotes": rep.quotes,
            "seconds": round(time.perf_counter() - t0, 2)}


def db_counts(path: Path) -> tuple[int, int]:
    from engine.store import Store

    with Store(path, readonly=True) as store:
        return store.count_ticks("trade"), store.count_ticks("quote")


def clean_cwd(tmp: Path) -> str:
    """A working directory without config.yaml, so commands use the built-in defaults."""
    d = tmp / "cwd"
    d.mkdir(exist_ok=True)
    return str(d)


def emit(name: str, result: dict, out: str | None) -> None:
    text = json.dumps(result, indent=1, default=lambda o: asdict(o) if hasattr(o, "__dataclass_fields__") else str(o))
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
        print(f"{name}: wrote {out}", file=sys.stderr)


def rm(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
