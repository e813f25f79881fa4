"""Alert latency: a failed run appears in the simulator → a message reaches Slack.

    .venv/bin/python -m bench.latency    (BENCH_LATENCY_SAMPLES=5, BENCH_POLL_SECONDS=2)

flowbot runs as its user would run it, a separate process against the simulator and
the local Slack look-alike (tests/servers.py), with `poll_every` of a few seconds:
`flowbot run` when the daemon command exists, otherwise `flowbot check --once` started
on a fixed grid every poll interval (what cron or a scheduler does; each cycle then
also pays the process start). Failures are injected at random moments; the figure is
the time from injection to the Slack server receiving the chat.postMessage naming the
flow. The target is one poll interval plus 2 s.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import ROOT, WORK, number, size, summary

RULES = """
sandboxes: [prod]
poll_every: {poll}s
channels:
  ops: {{slack: "#data-ops"}}
defaults:
  channels: [ops]
rules:
  - {{name: run-failed, type: status, status: [failed]}}
"""


def has_daemon(flowbot: str) -> bool:
    done = subprocess.run([flowbot, "run", "--help"], capture_output=True, cwd=ROOT)
    return done.returncode == 0


def environment(sim: Any, slack: Any, work: Path) -> dict[str, str]:
    return {
        **os.environ,
        **sim.environment(), "SLACK_BOT_TOKEN": "xoxb-bench-token",
        "FLOWBOT_SLACK_API_URL": slack.url, "FLOWBOT_DB": str(work / "flowbot.db"),
        "FLOWBOT_RULES": str(work / "rules.yaml"),
    }  # fmt: skip


class Loop:
    """`flowbot check --once` every `poll` seconds on a fixed grid, until stopped."""

    def __init__(self, flowbot: str, env: dict[str, str], poll: float) -> None:
        self.command, self.env, self.poll = [flowbot, "check", "--once"], env, poll
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.cycles = 0

    def _run(self) -> None:
        tick = time.monotonic()
        while not self.stop.is_set():
            subprocess.run(self.command, env=self.env, cwd=ROOT, capture_output=True)
            self.cycles += 1
            tick += self.poll
            self.stop.wait(max(0.0, tick - time.monotonic()))

    def __enter__(self) -> Loop:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


class Daemon:
    """`flowbot run` as a child process, stopped with SIGTERM."""

    def __init__(self, flowbot: str, env: dict[str, str], log: Path) -> None:
        self.command, self.env, self.log = [flowbot, "run"], env, log
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Daemon:
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                self.command, env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def posted(slack: Any, name: str) -> bool:
    return any(name in json.dumps(c.body) for c in slack.calls_to("chat.postMessage"))


def run(
    samples: int | None = None, poll: float | None = None, work: Path | None = None
) -> dict[str, Any]:
    from flowbot.sim.payloads import make_flow, make_run
    from flowbot.sim.scenario import Scenario
    from flowbot.sim.server import Simulator
    from tests.servers import slack_server

    samples = samples or size("LATENCY_SAMPLES", 5)
    poll = poll or number("POLL_SECONDS", 2.0)
    work = work or WORK / "latency"
    work.mkdir(parents=True, exist_ok=True)
    for old in work.glob("*"):
        old.unlink()
    (work / "rules.yaml").write_text(RULES.format(poll=int(poll) if poll >= 1 else 1))
    flowbot = str(Path(sys.executable).with_name("flowbot"))
    daemon = has_daemon(flowbot)
    now = datetime.now(UTC)
    scenario = Scenario(now=now)
    names = [f"latency-{i:02d}" for i in range(samples)]
    for name in names:
        scenario.put_flow(make_flow(f"id-{name}", name=name, start_at=now - timedelta(days=2)))
    rng = random.Random(5)
    latencies: list[float] = []
    with Simulator(scenario) as sim, slack_server() as slack:
        env = environment(sim, slack, work)
        runner = Daemon(flowbot, env, work / "daemon.log") if daemon else Loop(flowbot, env, poll)
        with runner:
            time.sleep(poll * 2)  # the first cycle (a full read) is behind us
            for name in names:
                time.sleep(rng.uniform(0, poll))
                started = datetime.now(UTC) - timedelta(seconds=30)
                sim.put_run(make_run(f"id-{name}", status="failed", started_at=started,
                                     completed_at=datetime.now(UTC),
                                     errors=[{"code": "CONNECTOR-1001-500", "message": "x"}]))  # fmt: skip
                injected = time.monotonic()
                deadline = injected + poll * 3 + 30
                while not posted(slack, name) and time.monotonic() < deadline:
                    time.sleep(0.01)
                if not posted(slack, name):
                    raise RuntimeError(
                        f"no Slack message for {name} within {deadline - injected:.0f} s"
                    )
                latencies.append(time.monotonic() - injected)
    return {
        "mode": "flowbot run (daemon)" if daemon else "flowbot check --once every poll interval",
        "poll_seconds": poll,
        "samples": samples,
        "seconds": summary(latencies, 3),
        "target_seconds": poll + 2,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
