"""The crash suite: `flowbot check --once`, and the `flowbot run` daemon, as
real processes against the simulator and the local Slack look-alike, killed with SIGKILL
at random moments and restarted, while a script of events makes flows fail, fail again (no new message within
repeat_after) and recover. Afterwards Slack must have received every message the script
calls for, in order per flow, none twice except the one in flight at a kill, and the
database must pass `PRAGMA integrity_check`.

`make test` runs 10 steps of `check --once` and 6 steps (12+ cycles) of the daemon, so
that a busy 2-core machine stays far inside the per-test timeout;
`make soak` (FLOWBOT_SOAK=1) runs 300 and 150."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import SOAK
from daemon_harness import Running
from servers import slack_server

from flowbot.sim.payloads import make_flow, make_run
from flowbot.sim.scenario import Scenario
from flowbot.sim.server import Simulator

ROOT = Path(__file__).resolve().parent.parent
FLOWS = [f"crm-{i:02d}" for i in range(8)]
RULES = """
sandboxes: [prod]
poll_every: 1m
channels:
  ops: {slack: "#data-ops"}
defaults:
  channels: [ops]
  repeat_after: 24h
rules:
  - {name: run-failed, type: status, status: [failed], severity: critical}
"""


def run_of(name: str, status: str, n: int) -> dict:
    at = datetime.now(UTC) - timedelta(seconds=90)
    return make_run(f"id-{name}", run_id=f"run-{name}-{n}", status=status, started_at=at,
                    completed_at=at + timedelta(seconds=30),
                    errors=[{"code": "CONNECTOR-1001-500", "message": "copy failed"}]
                    if status == "failed" else None)  # fmt: skip


class Script:
    """Random events, and the ground truth of the messages they call for."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.firing = dict.fromkeys(FLOWS, False)
        self.expected: dict[str, list[str]] = {name: [] for name in FLOWS}
        self.n = 0

    def step(self, sim: Simulator) -> None:
        for name in self.rng.sample(FLOWS, self.rng.choice([1, 1, 2])):
            self.n += 1
            fail = self.rng.random() < 0.55
            sim.put_run(run_of(name, "failed" if fail else "success", self.n))
            if fail and not self.firing[name]:
                self.expected[name].append("firing")  # a repeat failure sends nothing
            elif not fail and self.firing[name]:
                self.expected[name].append("resolved")
            self.firing[name] = fail


def environment(sim, slack, tmp_path) -> dict[str, str]:
    return {
        **os.environ,
        **sim.environment(), "SLACK_BOT_TOKEN": "xoxb-crash-suite",
        "FLOWBOT_SLACK_API_URL": slack.url, "FLOWBOT_DB": str(tmp_path / "flowbot.db"),
        "FLOWBOT_RULES": str(tmp_path / "rules.yaml"),
    }  # fmt: skip


def check_once(env: dict[str, str], kill_after: float | None) -> bool:
    """One `flowbot check --once`; SIGKILL it after `kill_after` s. True if killed."""
    command = [sys.executable, "-m", "flowbot", "check", "--once"]
    proc = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        if kill_after is not None:
            try:
                proc.wait(timeout=kill_after)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.communicate(timeout=30)
                return True
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode in (0, 1), err.decode()[-2000:]
    assert b"Traceback" not in err, err.decode()[-2000:]
    return False


def posted(slack) -> dict[str, list[str]]:
    """Per flow, the events of the chat.postMessage calls Slack received, in order."""
    out: dict[str, list[str]] = {name: [] for name in FLOWS}
    for call in slack.calls_to("chat.postMessage"):
        text = str(call.body.get("text", ""))
        for name in FLOWS:
            if name in text:
                out[name].append("resolved" if "resolved" in text.lower() else "firing")
    return out


def collapse(events: list[str]) -> tuple[list[str], int]:
    """Drop immediate repeats (a message sent again after a kill): (events, repeats)."""
    out: list[str] = []
    for event in events:
        if out and out[-1] == event:
            continue
        out.append(event)
    return out, len(events) - len(out)


def quiet_world() -> Scenario:
    now = datetime.now(UTC)
    scenario = Scenario(now=now)
    for name in FLOWS:
        scenario.put_flow(make_flow(f"id-{name}", name=name, start_at=now - timedelta(days=3)))
        scenario.put_run(run_of(name, "success", 0))
    return scenario


def check_truth(slack, script: Script, kills: int, steps: int, db: Path) -> int:
    """Every message the script calls for arrived, in order per flow, and the only
    repeats are messages in flight at a kill; the database is intact. The repeats."""
    got = posted(slack)
    total_repeats = 0
    for name in FLOWS:
        events, repeats = collapse(got[name])
        assert events == script.expected[name], name
        total_repeats += repeats
    assert total_repeats <= kills
    assert sum(len(v) for v in script.expected.values()) >= steps // 3  # the script did things
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    return total_repeats


def crash_run(tmp_path, steps: int, seed: int) -> None:
    (tmp_path / "rules.yaml").write_text(RULES)
    scenario = quiet_world()
    rng = random.Random(seed)
    script = Script(seed)
    kills = 0
    with Simulator(scenario) as sim, slack_server() as slack:
        env = environment(sim, slack, tmp_path)
        check_once(env, None)  # the first cycle: a full read of a quiet world
        started = time.monotonic()
        for _ in range(steps):
            script.step(sim)
            if rng.random() < 0.7:
                kills += check_once(env, rng.uniform(0.0, 1.6))
            check_once(env, None)  # restarted: it must catch up
        for _ in range(2):
            check_once(env, None)
        elapsed = time.monotonic() - started
        assert kills >= steps // 3, f"only {kills} kills landed in {steps} steps"
        repeats = check_truth(slack, script, kills, steps, tmp_path / "flowbot.db")
    print(f"{steps} steps, {kills} kills, {repeats} repeated messages, {elapsed:.0f} s")


def daemon_crash_run(tmp_path, steps: int, seed: int) -> None:
    """`flowbot run` polling every second, killed at random points of its cycles."""
    rules = RULES.replace("poll_every: 1m", "poll_every: 1s")
    rng = random.Random(seed)
    script = Script(seed)
    kills = cycles = 0
    with Simulator(quiet_world()) as sim, slack_server() as slack:
        env = {"SLACK_BOT_TOKEN": "xoxb-crash-suite", "FLOWBOT_SLACK_API_URL": slack.url}
        bot = Running(tmp_path, sim, rules, env=env).start()
        try:
            bot.wait_cycles(1, timeout=60)
            for _ in range(steps):
                script.step(sim)
                if rng.random() < 0.6:
                    time.sleep(rng.uniform(0.0, 1.2))  # somewhere in its next cycle
                    bot.proc.kill()
                    bot.wait_exit()
                    bot.__exit__()
                    kills += 1
                    cycles += bot.cycles()
                    bot = Running(tmp_path, sim, rules, env=env).start()
                bot.wait_cycles(2, timeout=60)  # a whole cycle after the change
            bot.wait_cycles(2, timeout=60)
            cycles += bot.cycles()
            assert bot.stop() == 0
            assert "Traceback" not in bot.log()
        finally:
            bot.__exit__()
        repeats = check_truth(slack, script, kills, steps, tmp_path / "flowbot.db")
    assert cycles >= 2 * steps and kills >= steps // 3, (cycles, kills)
    print(f"daemon: {steps} steps, {cycles} cycles, {kills} kills, {repeats} repeated messages")


def test_kill_9_at_random_points_loses_no_alert_and_repeats_at_most_the_one_in_flight(tmp_path):
    crash_run(tmp_path, steps=10, seed=7)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(not SOAK, reason="soak only (FLOWBOT_SOAK=1)")
def test_kill_9_soak(tmp_path):
    crash_run(tmp_path, steps=300, seed=int(time.time()))


def test_the_daemon_killed_at_random_points_loses_no_alert(tmp_path):
    daemon_crash_run(tmp_path, steps=6, seed=7)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(not SOAK, reason="soak only (FLOWBOT_SOAK=1)")
def test_the_daemon_kill_9_soak(tmp_path):
    daemon_crash_run(tmp_path, steps=150, seed=int(time.time()))
