"""What the benchmarks share: sizes from the environment, medians with their spread,
peak memory of a process, and a quiet child Python."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Scratch (databases, rules, logs): bench/_work/, git-ignored, or $BENCH_WORK.
WORK = Path(os.environ.get("BENCH_WORK") or ROOT / "bench" / "_work")


def size(name: str, default: int) -> int:
    """An integer size from the environment (`BENCH_<NAME>`), else `default`."""
    raw = os.environ.get(f"BENCH_{name}", "").replace("_", "").strip()
    return int(raw) if raw else default


def number(name: str, default: float) -> float:
    raw = os.environ.get(f"BENCH_{name}", "").strip()
    return float(raw) if raw else default


def summary(values: list[float], digits: int = 4) -> dict[str, Any]:
    """Median, min, max and every value, rounded."""
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "values": [round(v, digits) for v in values],
    }


def rss_mb() -> float:
    """The current resident set size of this process, in MB (Linux /proc)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def max_rss_mb() -> float:
    """The peak resident set size of this process so far (VmHWM), in MB. Not
    getrusage's ru_maxrss: on Linux a child inherits its parent's peak across fork and
    exec, so a small child of a big parent would report the parent's figure."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def python(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> str:
    """Run `python args…` from the repository root; its stdout (raises on failure)."""
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def load() -> str:
    """The machine's load averages, as text for the report."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min), {os.cpu_count()} CPUs"


# The rules the cycle benchmarks run (bench.cycle, bench.growth): six rule types, all to a file channel.
RULES = """
sandboxes: [prod]
poll_every: 5m
lookback: 24h
channels:
  audit: {file: alerts.jsonl}
defaults:
  channels: [audit]
rules:
  - {name: run-failed, type: status, status: [failed], severity: critical}
  - {name: bad-records, type: failed_records, above: 5%, min_input: 100}
  - {name: flaky, type: failed_runs, above: 50%, window: 10}
  - {name: slow, type: duration, above: 2h}
  - {name: mapping, type: error_code, codes: ["MAPPER-*"]}
  - {name: missing, type: missing_run, schedule: flow, grace: 2h}
"""
