"""One sender per database: `check --once` beside a running `flowbot run` on the same
database refuses with one line and exit 2, so no Slack message is ever posted twice.
Real processes, the simulator and the Slack look-alike on loopback."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from daemon_harness import Running, wait_until
from servers import slack_server

from flowbot.dblock import AlreadyRunning, acquire_lock
from flowbot.sim.payloads import make_flow, make_run
from flowbot.sim.scenario import Scenario
from flowbot.sim.server import Simulator

# Five channels, two alerts each: Slack channels are paced to one post a second.
RULES = """
sandboxes: [prod]
poll_every: 1s
lookback: 24h
channels:
  team0: {slack: "#c0"}
  team1: {slack: "#c1"}
  team2: {slack: "#c2"}
  team3: {slack: "#c3"}
  team4: {slack: "#c4"}
rules:
  - name: run-failed-0
    type: status
    status: [failed]
    flows: {name: "flow-[01]"}
    channels: [team0]
  - name: run-failed-1
    type: status
    status: [failed]
    flows: {name: "flow-[23]"}
    channels: [team1]
  - name: run-failed-2
    type: status
    status: [failed]
    flows: {name: "flow-[45]"}
    channels: [team2]
  - name: run-failed-3
    type: status
    status: [failed]
    flows: {name: "flow-[67]"}
    channels: [team3]
  - name: run-failed-4
    type: status
    status: [failed]
    flows: {name: "flow-[89]"}
    channels: [team4]
"""


NOW = datetime.now(UTC)


def failed(i):
    at = datetime.now(UTC) - timedelta(minutes=2, seconds=i)  # within the re-read overlap
    return make_run(f"f{i}", status="failed", started_at=at, completed_at=at + timedelta(minutes=1))


@pytest.fixture
def sim():
    scenario = Scenario(now=NOW)
    for i in range(10):
        scenario.put_flow(
            make_flow(name=f"flow-{i}", flow_id=f"f{i}", start_at=NOW - timedelta(days=2))
        )
    with Simulator(scenario, port=0) as server:
        yield server


def test_check_once_beside_run_refuses_and_nothing_is_posted_twice(tmp_path, sim):
    with slack_server() as slack:
        env = {"SLACK_BOT_TOKEN": "xoxb-test", "FLOWBOT_SLACK_API_URL": slack.url}
        with Running(tmp_path, sim, RULES, env=env) as bot:
            bot.wait_log("flowbot run:")  # holds the lock from before its first cycle
            checks = []
            for batch in ((0, 1, 2, 3), (4, 5, 6), (7, 8, 9)):  # alerts arrive while checks run
                for i in batch:
                    sim.put_run(failed(i))
                checks.append(
                    subprocess.run(
                        [sys.executable, "-m", "flowbot", "check", "--once"],
                        cwd=tmp_path,
                        env=bot.env,
                        capture_output=True,
                        text=True,
                        timeout=60,
                    )  # fmt: skip
                )
            wait_until(lambda: len(slack.calls_to("chat.postMessage")) >= 10, what="10 posts")
            bot.wait_cycles(2)
            assert bot.stop() == 0
        for check in checks:
            assert check.returncode == 2, check.stdout + check.stderr
            [line] = check.stderr.strip().splitlines()
            assert "is already watching" in line and "it will send" in line
            assert f"(pid {bot.proc.pid})" in line and str(bot.db) in line
        posts = Counter(c.body["text"] for c in slack.calls_to("chat.postMessage"))
        assert len(posts) == 10
        assert [text for text, n in posts.items() if n > 1] == []


def test_a_running_check_makes_run_wait_its_turn(tmp_path):
    db = str(tmp_path / "flowbot.db")
    held = acquire_lock(db, "check")
    try:
        with pytest.raises(AlreadyRunning, match=r"flowbot check \(pid \d+\) is already using"):
            acquire_lock(db, "run")
        with pytest.raises(AlreadyRunning, match="try again when it has finished"):
            acquire_lock(db, "check")
    finally:
        held.close()
    acquire_lock(db, "check").close()
