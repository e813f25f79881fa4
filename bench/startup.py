"""Startup: the wall time of `flowbot --help` and `flowbot rules check`, as a user's
shell runs them.

    .venv/bin/python -m bench.startup      (BENCH_STARTUP_RUNS, default 10)

Each run is a fresh `.venv/bin/flowbot --help` process; one unmeasured run first warms
the OS file cache, and flowbot's bytecode is compiled first, as `pip install` does. The reference is a bare `python -c pass` measured the same way: the
interpreter's own floor on this machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, size, summary


def wall(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def run(runs: int | None = None) -> dict[str, Any]:
    runs = runs or size("STARTUP_RUNS", 10)
    flowbot = str(Path(sys.executable).with_name("flowbot"))
    commands = {
        "flowbot_help": [flowbot, "--help"],
        "rules_check": [flowbot, "rules", "check", str(ROOT / "rules.yaml")],
        "python_bare": [sys.executable, "-c", "pass"],
    }
    # As installed: pip compiles bytecode, an editable checkout under
    # PYTHONDONTWRITEBYTECODE would compile flowbot's sources in every run.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "flowbot")], check=True)
    result: dict[str, Any] = {"runs": runs}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for command in commands.values():
        wall(command)
    for _ in range(runs):  # interleaved, so that the machine's load hits all alike
        for name, command in commands.items():
            times[name].append(wall(command))
    for name in commands:
        result[name] = summary(times[name])
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
