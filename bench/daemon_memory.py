"""The daemon's own memory: `flowbot run` against the simulator, polling every second,
its RSS after 10, 100, 500 and 1,000 cycles (read from /proc, cycles counted in its log).

    .venv/bin/python -m bench.daemon_memory      (BENCH_DAEMON_CYCLES, default 1000)

Slow on purpose (a real daemon at one cycle a second: about 18 minutes for 1,000), so it
is not part of `make bench`'s default set. While it runs, this process puts new runs into
the simulator every few seconds, some failed and some good again, so that alerts fire,
repeat and resolve. Writes bench/results/daemon_memory.json.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import WORK, size
from flowbot.sim.payloads import make_flow, make_run
from flowbot.sim.scenario import Scenario
from flowbot.sim.server import Simulator

RESULTS = Path(__file__).parent / "results" / "daemon_memory.json"
FLOWS = 50
RULES = """
sandboxes: [prod]
poll_every: 1s
channels:
  audit: {file: alerts.jsonl}
defaults:
  channels: [audit]
  repeat_after: 1m
rules:
  - {name: run-failed, type: status, status: [failed]}
  - {name: bad-records, type: failed_records, above: 5%}
  - {name: flaky, type: failed_runs, above: 50%, window: 10}
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> int:
    cycles = size("DAEMON_CYCLES", 1000)
    marks = sorted({m for m in (10, 100, 500, cycles) if m <= cycles})
    work = WORK / "daemon_memory"
    work.mkdir(parents=True, exist_ok=True)
    for old in work.glob("*"):
        old.unlink()
    (work / "rules.yaml").write_text(RULES)
    now = datetime.now(UTC)
    scenario = Scenario(now=now)
    names = [f"flow-{i:02d}" for i in range(FLOWS)]
    for name in names:
        scenario.put_flow(make_flow(f"id-{name}", name=name, start_at=now - timedelta(days=2)))
    rng = random.Random(7)
    rss: dict[int, float] = {}
    with Simulator(scenario) as sim:
        env = {
            **os.environ,
            **sim.environment(), "FLOWBOT_RULES": str(work / "rules.yaml"),
            "FLOWBOT_DB": str(work / "flowbot.db"),
        }  # fmt: skip
        log = (work / "flowbot.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowbot", "run"], env=env, cwd=work, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        started = time.monotonic()
        n = 0
        try:
            while len(rss) < len(marks):
                time.sleep(0.5)
                if proc.poll() is not None:
                    raise RuntimeError(f"flowbot run exited {proc.returncode}")
                done = (work / "flowbot.log").read_text(errors="replace").count("cycle prod: ok")
                for mark in marks:
                    if done >= mark and mark not in rss:
                        rss[mark] = round(rss_mb(proc.pid), 1)
                        print(f"after {mark} cycles: {rss[mark]} MB", flush=True)
                if rng.random() < 0.2:
                    n += 1
                    at = datetime.now(UTC) - timedelta(seconds=30)
                    for name in rng.sample(names, 3):
                        failed = rng.random() < 0.4
                        sim.put_run(make_run(f"id-{name}", run_id=f"r-{n}-{name}",
                                             status="failed" if failed else "success",
                                             started_at=at, completed_at=at + timedelta(seconds=20),
                                             input_records=1000, failed_records=80 if failed else 0))  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(timeout=60)
            log.close()
    result = {
        "benchmark": "daemon_memory",
        "cycles": cycles,
        "rss_mb_after_cycles": {str(k): v for k, v in rss.items()},
        "growth_mb": round(rss[marks[-1]] - rss[marks[0]], 1),
        "seconds": round(time.monotonic() - started),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
