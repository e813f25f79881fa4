"""The daemon's own memory: `flowbot run` as a child process against the simulator, its
RSS (VmRSS from /proc/<pid>/status) after 10, 100, 500, 1,000, 1,500 and 2,000 cycles.

    .venv/bin/python -m bench.daemon_memory      (BENCH_DAEMON_CYCLES, default 2000)

Part of `make bench` (`python -m bench`, name daemon_memory); run alone, it writes
bench/results/daemon_memory.json. The real daemon, scheduler and all, polling every
100 ms (rules.yaml takes durations in ms; below a minute is only a warning): cycles run
back to back, so 2,000 take about 7 minutes instead of the 33 of a one-second poll.
Cycles are counted by the "cycle prod: ok" lines of its log. 50 flows; the simulator
starts with 20 minutes of runs, so that the runs a cycle re-reads (the read window)
are as many from the first cycle as at the last, and every 5 s on average this process
puts in three new runs, some failed and some good again, so that alerts fire, repeat
(repeat_after: 1m of wall time) and resolve. Beside the RSS, each mark records its
anonymous and file-backed parts and the size of the database and its WAL, to tell a
leak from a cache filling.
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
from typing import Any

from bench.common import WORK, load, size

RESULTS = Path(__file__).parent / "results" / "daemon_memory.json"
FLOWS = 50
POLL = "100ms"
MARKS = (10, 100, 500, 1000, 1500, 2000)
FEED_EVERY = 5.0  # seconds between batches of three new runs, on average
HISTORY = timedelta(minutes=20)  # runs put in before the start, at the same rate
RULES = f"""
sandboxes: [prod]
poll_every: {POLL}
channels:
  audit: {{file: alerts.jsonl}}
defaults:
  channels: [audit]
  repeat_after: 1m
rules:
  - {{name: run-failed, type: status, status: [failed]}}
  - {{name: bad-records, type: failed_records, above: 5%}}
  - {{name: flaky, type: failed_runs, above: 50%, window: 10}}
"""


def proc_kb(pid: int, name: str, field: str) -> int:
    """One `Field:   123 kB` line of /proc/<pid>/<name>, in kB (0 when absent)."""
    for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def snapshot(pid: int, work: Path) -> dict[str, float]:
    """What the child holds now: RSS, its anonymous and file-backed parts, and the
    database with its WAL (MB)."""

    def mb(kb: int) -> float:
        return round(kb / 1024, 1)

    def file_mb(path: Path) -> float:
        return round(path.stat().st_size / 1e6, 2) if path.exists() else 0.0

    return {
        "rss_mb": mb(proc_kb(pid, "status", "VmRSS")),
        "anon_mb": mb(proc_kb(pid, "status", "RssAnon")),
        "file_mb": mb(proc_kb(pid, "status", "RssFile")),
        "db_mb": file_mb(work / "flowbot.db"),
        "wal_mb": file_mb(work / "flowbot.db-wal"),
    }


def run(cycles: int | None = None, work: Path | None = None) -> dict[str, Any]:
    from flowbot.sim.payloads import make_flow, make_run
    from flowbot.sim.scenario import Scenario
    from flowbot.sim.server import Simulator

    cycles = cycles or size("DAEMON_CYCLES", 2000)
    marks = sorted({m for m in (*MARKS, cycles) if m <= cycles})
    work = work or WORK / "daemon_memory"
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
    history = int(HISTORY.total_seconds() / FEED_EVERY)
    for n in range(history):  # the read window full from the first cycle on
        feed(scenario.put_run, rng, names, n, make_run, now - HISTORY * rng.random())
    at_mark: dict[int, dict[str, float]] = {}
    load_before = load()
    with Simulator(scenario) as sim:
        env = {
            **os.environ,
            **sim.environment(), "FLOWBOT_RULES": str(work / "rules.yaml"),
            "FLOWBOT_DB": str(work / "flowbot.db"),
        }  # fmt: skip
        log_path = work / "flowbot.log"
        log = log_path.open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowbot", "run"], env=env, cwd=work, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        started = time.monotonic()
        done, batches, next_feed = 0, history, started
        try:
            with log_path.open("rb") as reading:
                tail = b""
                while len(at_mark) < len(marks):
                    time.sleep(0.05)
                    if proc.poll() is not None:
                        raise RuntimeError(f"flowbot run exited {proc.returncode}")
                    if time.monotonic() - started > 3600:
                        raise RuntimeError(f"flowbot run: {done} cycles in an hour")
                    chunk = tail + reading.read()
                    complete, _, tail = chunk.rpartition(b"\n")
                    done += complete.count(b"cycle prod: ok")
                    for mark in marks:
                        if done >= mark and mark not in at_mark:
                            at_mark[mark] = snapshot(proc.pid, work)
                            print(f"after {mark} cycles ({time.monotonic() - started:.0f} s):"
                                  f" {at_mark[mark]}", flush=True)  # fmt: skip
                    if time.monotonic() >= next_feed:
                        batches += 1
                        feed(sim.put_run, rng, names, batches, make_run,
                             datetime.now(UTC) - timedelta(seconds=30))  # fmt: skip
                        next_feed += rng.expovariate(1 / FEED_EVERY)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
            log.close()
        seconds = time.monotonic() - started
    text = log_path.read_text(errors="replace")
    first, last = at_mark[marks[0]]["rss_mb"], at_mark[marks[-1]]["rss_mb"]
    half = max((m for m in marks if m <= cycles // 2), default=marks[0])
    alerts = work / "alerts.jsonl"
    return {
        "cycles": cycles,
        "flows": FLOWS,
        "poll_every": POLL,
        "rss_mb_after_cycles": {str(m): at_mark[m]["rss_mb"] for m in marks},
        "at_mark": {str(m): at_mark[m] for m in marks},
        "growth_mb": round(last - first, 1),
        "growth_mb_second_half": round(last - at_mark[half]["rss_mb"], 1),
        "second_half_from": half,
        "flat": (last - first) <= max(10.0, 0.1 * first),
        "seconds": round(seconds),
        "cycles_per_second": round(done / seconds, 2),
        "runs_fed": batches * 3,
        "runs_before_start": history * 3,
        "messages_sent": len(alerts.read_text().splitlines()) if alerts.exists() else 0,
        "failed_cycles": text.count("cycle prod: FAILED"),
        "skipped_runs": text.count("maximum number of running instances"),
        "load_before": load_before,
        "load_after": load(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def feed(put: Any, rng: random.Random, names: list[str], n: int, make_run: Any,
         at: datetime) -> None:  # fmt: skip
    """Three runs of three flows started `at`, lasting 20 s; 40% failed (8% bad records)."""
    for name in rng.sample(names, 3):
        failed = rng.random() < 0.4
        put(make_run(f"id-{name}", run_id=f"r-{n}-{name}",
                             status="failed" if failed else "success",
                             started_at=at, completed_at=at + timedelta(seconds=20),
                             input_records=1000, failed_records=80 if failed else 0))  # fmt: skip


def main() -> int:
    result = {"benchmark": "daemon_memory", **run()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
