"""The alert lifecycle end to end, over real HTTP against the simulator, a real SQLite
file, the Slack look-alike and the file channel: current truth on every cycle, one
incident per flow and channel, inhibit, and resolutions that follow their thread."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import Clock
from servers import slack_server

from flowbot.notifiers import build_notifiers
from flowbot.pipeline import build_deps, run_once
from flowbot.rules import load_rules
from flowbot.settings import Secret
from flowbot.sim.payloads import make_flow, make_run
from flowbot.sim.scenario import Scenario
from flowbot.sim.server import Simulator
from flowbot.store import Store

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
EXAMPLE_RULES = Path(__file__).resolve().parent.parent / "flowbot" / "examples" / "rules.yaml"

RULES = """
sandboxes: [prod]
poll_every: 1m
lookback: 24h
group_at: 5
channels:
  ops: {slack: "#ops"}
  audit: {file: alerts.jsonl}
defaults:
  channels: [ops, audit]
rules:
  - {name: run-failed, type: status, status: [failed], severity: critical}
  - {name: bad-records, type: failed_records, above: 5%, min_input: 100}
  - {name: mapping-errors, type: error_code, codes: ["MAPPER-*"], channels: [ops]}
"""


class World:
    """The simulator, a Slack look-alike, the rules, the database and a clock."""

    def __init__(self, tmp_path: Path, sim: Simulator, slack, rules: str) -> None:
        (tmp_path / "rules.yaml").write_text(rules)
        self.path, self.sim, self.slack = tmp_path, sim, slack
        self.clock = Clock(NOW)
        self.settings = sim.settings(
                        db=str(tmp_path / "flowbot.db"), slack_bot_token=Secret("xoxb-test"),
            slack_api_url=slack.url,
        )  # fmt: skip
        self.ruleset = load_rules(tmp_path / "rules.yaml", environ={})
        self.store = Store(self.settings.db)
        self.store.migrate()

    def cycle(self):
        deps = build_deps(self.settings, self.ruleset, clock=self.clock, store=self.store)
        deps.notifiers = build_notifiers(
            self.ruleset.channels, self.settings, clock=time.monotonic,
            sleep=lambda s: None, now=self.clock,
        )  # fmt: skip
        reports, delivery = run_once(deps)
        assert all(r.ok for r in reports) and delivery.pending == 0
        return reports[0]

    def records(self) -> list[dict]:
        path = self.path / "alerts.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def posts(self) -> list[dict]:
        return [c.body for c in self.slack.calls_to("chat.postMessage")]


def flow(name: str) -> dict:
    return make_flow(name=name, flow_id=f"id-{name}", start_at=NOW - timedelta(days=10))


def failed(name: str, at: datetime, *, code: str = "CONNECTOR-2001-500", failed_records=0):
    return make_run(
        f"id-{name}", status="failed", started_at=at, completed_at=at + timedelta(minutes=5),
        input_records=1000, failed_records=failed_records,
        errors=[{"code": code, "message": "Error in processing"}],
    )  # fmt: skip


def good(name: str, at: datetime):
    return make_run(f"id-{name}", started_at=at, completed_at=at + timedelta(minutes=5))


@pytest.fixture
def world(tmp_path, request):
    rules = getattr(request, "param", RULES)
    scenario = Scenario(now=NOW)
    scenario.put_flow(flow("crm-daily"))
    with slack_server() as slack, Simulator(scenario, port=0, page_size=50) as sim:
        w = World(tmp_path, sim, slack, rules)
        yield w
        w.store.close()


def text(body: dict) -> str:
    return json.dumps(body.get("blocks") or body.get("text"))


# ---------------------------------------------------------------- current truth


def test_a_failure_superseded_by_later_good_runs_never_pages_on_the_first_cycle(world):
    world.sim.put_run(failed("crm-daily", NOW - timedelta(hours=14)))
    world.sim.put_run(good("crm-daily", NOW - timedelta(hours=10)))
    world.sim.put_run(good("crm-daily", NOW - timedelta(hours=6)))
    report = world.cycle()
    assert report.fired == 0 and world.posts() == [] and world.records() == []
    # history shows it, already recovered, with no message
    [alert] = world.store.alerts(rule="run-failed")
    assert alert.state == "resolved" and "already recovered" in alert.reason
    assert world.store.messages(alert_ids=[alert.id]) == []


def test_after_downtime_only_the_current_state_pages(world):
    world.cycle()
    world.clock.advance(hours=6)  # flowbot was down; two failures, then the newest fails
    world.sim.put_run(failed("crm-daily", NOW + timedelta(hours=1)))
    world.sim.put_run(good("crm-daily", NOW + timedelta(hours=2)))
    world.sim.put_run(failed("crm-daily", NOW + timedelta(hours=5)))
    report = world.cycle()
    assert report.fired == 1
    [record] = world.records()
    assert record["event"] == "firing"
    assert record["run"]["started_at"] == (NOW + timedelta(hours=5)).isoformat()


def test_a_firing_alert_whose_flow_left_the_condition_resolves_without_a_new_run(world):
    # An alert left firing although the flow's current run is good (as 0.1 left stale
    # pages): the next evaluation resolves it, with no new run at all.
    world.sim.put_run(failed("crm-daily", NOW - timedelta(hours=3)))
    world.cycle()
    [alert] = world.store.firing_alerts("prod")
    world.sim.put_run(good("crm-daily", NOW - timedelta(minutes=5)))
    world.clock.advance(minutes=1)
    world.cycle()  # reads the good run: resolves
    assert world.store.firing_alerts("prod") == []
    # reopen it by hand, as a stale 0.1 alert: no run changes, yet it resolves (the
    # upgrade that adds due times leaves every flow to be judged at the next cycle)
    world.store.update_alert(alert.id, state="firing", resolved=None)
    world.store.db.execute("UPDATE flows SET due = NULL")
    world.clock.advance(minutes=1)
    report = world.cycle()
    assert report.runs_new == 0 and report.resolved == 1
    assert world.store.firing_alerts("prod") == []


# ---------------------------------------------------------------- one incident


def test_one_failed_run_matching_three_rules_is_one_message_per_channel(world):
    world.sim.put_run(
        failed("crm-daily", NOW - timedelta(minutes=20), code="MAPPER-0001", failed_records=200)
    )
    report = world.cycle()
    assert report.fired == 3  # three alerts, one identity each
    [post] = world.posts()  # one Slack message carries all three
    body = text(post)
    assert post["blocks"][0]["text"]["text"].startswith(":red_circle: run-failed and 2 more")
    for rule in ("run-failed", "bad-records", "mapping-errors"):
        assert rule in body
    assert "20% of records failed" in body and body.count("Error in processing") == 1
    [record] = world.records()  # the file channel: run-failed and bad-records route there
    assert [r["rule"] for r in record["rules"]] == ["run-failed", "bad-records"]
    # every alert follows the message's thread: the resolution is one reply in it
    world.clock.advance(minutes=10)
    world.sim.put_run(good("crm-daily", NOW - timedelta(minutes=5)))
    report = world.cycle()
    assert report.resolved == 3
    first, reply = world.posts()
    assert reply["thread_ts"] and "resolved" in text(reply) and "firing" not in text(reply)
    [update] = [c.body for c in world.slack.calls_to("chat.update")]
    assert update["ts"] == reply["thread_ts"] and "RESOLVED" in text(update)


def test_inhibit_mutes_target_rules_while_the_source_fires(world):
    (world.path / "rules.yaml").write_text(
        RULES + "inhibit:\n  - {source: run-failed, target: [bad-records]}\n"
    )
    world.ruleset = load_rules(world.path / "rules.yaml", environ={})
    world.sim.put_run(
        failed("crm-daily", NOW - timedelta(minutes=20), code="MAPPER-0001", failed_records=200)
    )
    report = world.cycle()
    assert report.fired == 3 and report.muted == 1
    body = text(world.posts()[0])
    assert "run-failed" in body and "mapping-errors" in body and "bad-records" not in body
    assert [a.muted for a in world.store.alerts(rule="bad-records")] == [True]


def test_the_example_rules_give_one_message_for_one_failed_run(tmp_path):
    scenario = Scenario(now=NOW)
    scenario.put_flow(flow("crm-daily"))
    scenario.put_run(
        failed("crm-daily", NOW - timedelta(minutes=20), code="MAPPER-0001", failed_records=200)
    )
    rules = EXAMPLE_RULES.read_text().replace("alerts.jsonl", str(tmp_path / "alerts.jsonl"))
    with slack_server() as slack, Simulator(scenario, port=0) as sim:
        world = World(tmp_path, sim, slack, rules)
        try:
            world.cycle()
            [post] = world.posts()  # data-ops: run-failed + too-many-bad-records + mapping-errors
            for rule in ("run-failed", "too-many-bad-records", "mapping-errors"):
                assert rule in text(post)
            assert len(world.records()) == 1  # audit: run-failed alone
        finally:
            world.store.close()


# ---------------------------------------------------------------- grouped resolutions


STORM_RULES = """
sandboxes: [prod]
poll_every: 1m
lookback: 24h
group_at: 5
channels:
  ops: {slack: "#ops"}
  audit: {file: alerts.jsonl}
defaults:
  channels: [ops, audit]
rules:
  - {name: run-failed, type: status, status: [failed], severity: critical}
"""


@pytest.mark.parametrize("world", [STORM_RULES], indirect=True)
def test_a_storm_resolves_in_its_own_thread_and_single_alerts_in_theirs(world):
    storm = [f"store-{i}" for i in range(6)]
    for name in [*storm, "lone"]:
        world.sim.put_flow(flow(name))
    for name in storm:
        world.sim.put_run(failed(name, NOW - timedelta(minutes=20), code="CONNECTOR-1001-500"))
    world.sim.put_run(failed("lone", NOW - timedelta(minutes=20)))
    world.cycle()
    storm_post, lone_post = sorted(world.posts(), key=lambda b: "lone" in text(b))
    assert "6 dataflows" in text(storm_post) and "lone" in text(lone_post)
    threads = {
        a.flow_name: world.store.thread(a.id, "ops")["ts"]
        for a in world.store.firing_alerts("prod")
    }
    assert len({threads[n] for n in storm}) == 1 and threads["lone"] != threads[storm[0]]

    # half the storm recovers: a reply in the storm's thread, no rewrite yet
    world.clock.advance(minutes=10)
    for name in storm[:3]:
        world.sim.put_run(good(name, NOW - timedelta(minutes=5)))
    world.cycle()
    [reply] = world.posts()[2:]  # one reply for the three, in the storm's thread
    assert reply["thread_ts"] == threads[storm[0]]
    assert "resolved" in text(reply) and "is firing" not in text(reply)
    assert text(reply).count("store-") >= 3
    assert world.slack.calls_to("chat.update") == []

    # the rest and the lone flow: the storm's message is rewritten, the lone one too
    world.clock.advance(minutes=10)
    for name in [*storm[3:], "lone"]:
        world.sim.put_run(good(name, NOW + timedelta(minutes=5)))
    world.cycle()
    replies = {p["thread_ts"]: p for p in world.posts()[-2:]}
    assert set(replies) == {threads[storm[0]], threads["lone"]}
    for reply in replies.values():
        assert "resolved" in text(reply) and "is firing" not in text(reply)
    updated = {u.body["ts"] for u in world.slack.calls_to("chat.update")}
    assert updated == {threads[storm[0]], threads["lone"]}
    # the file channel says resolved too, never "grouped"
    events = [r["event"] for r in world.records()]
    assert events.count("grouped") == 1 and set(events[2:]) == {"resolved"}


@pytest.mark.parametrize("world", [STORM_RULES], indirect=True)
def test_a_whole_storm_resolving_at_once_is_one_resolution_in_every_channel(world):
    storm = [f"store-{i}" for i in range(6)]
    for name in storm:
        world.sim.put_flow(flow(name))
        world.sim.put_run(failed(name, NOW - timedelta(minutes=20), code="CONNECTOR-1001-500"))
    world.cycle()
    world.clock.advance(minutes=10)
    for name in storm:
        world.sim.put_run(good(name, NOW - timedelta(minutes=5)))
    world.cycle()
    first, reply = world.posts()
    assert reply["thread_ts"] and reply["blocks"][0]["text"]["text"].startswith(
        ":white_check_mark: resolved: run-failed: 6 dataflows"
    )
    [update] = world.slack.calls_to("chat.update")
    assert "RESOLVED" in text(update.body)
    grouped, resolved = world.records()
    assert resolved["event"] == "resolved" and len(resolved["alerts"]) == 6


# ---------------------------------------------------------------- late arrivals


@pytest.mark.parametrize("late_minutes", [15, 35, 55])
def test_a_run_that_shows_up_late_is_still_judged(world, late_minutes):
    """A failed run appears in the listing `late_minutes` after it started (within the
    default late_arrival of 1h): a cycle still reads it and it pages."""
    world.cycle()
    started = world.clock.at
    for _ in range(late_minutes // 5):
        world.clock.advance(minutes=5)
        world.cycle()
    world.sim.put_run(failed("crm-daily", started))  # visible only now
    for _ in range(14):
        world.clock.advance(minutes=5)
        report = world.cycle()
        if report.fired:
            break
    assert report.fired == 1 and "run-failed" in text(world.posts()[0])


def test_a_steady_cycle_reads_small_slices_not_the_late_window(world):
    """With runs in every poll interval, a steady cycle asks for the fresh window and
    one slice per age, each a single page: never the whole hour again."""
    for _ in range(3):
        world.cycle()
        world.clock.advance(minutes=5)
    for minute in range(0, 60, 5):  # a run every 5 minutes for the last hour
        world.sim.put_run(good("crm-daily", world.clock.at - timedelta(minutes=minute)))
    world.cycle()
    world.clock.advance(minutes=5)
    world.sim.clear_requests()
    report = world.cycle()
    runs = [r for r in world.sim.requests if r.path == "/runs"]
    assert 1 <= len(runs) <= 4 and report.api_requests <= 6, [r.query for r in runs]
