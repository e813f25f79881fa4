"""One bad item affects only itself, end to end over loopback: the simulator serves
failed runs beside poisoned ones (a count of 10^20, an id SQLite cannot hold, 10,000
errors, a flow whose template raises), a Slack look-alike and a file channel receive
what the cycle sends, and a real SQLite file keeps it. Every other flow still alerts,
the poisoned items are logged and counted by stage, and what the store keeps stays
bounded."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from daemon_harness import Running, wait_until
from servers import slack_server

from flowbot.notifiers import build_notifiers
from flowbot.pipeline import CLOCK_SKEW, build_deps, run_cycle, run_once
from flowbot.rules import load_rules
from flowbot.settings import Secret
from flowbot.sim.payloads import make_flow, make_run
from flowbot.sim.scenario import Scenario
from flowbot.sim.server import Simulator
from flowbot.store import Store
from flowbot.store.bounds import RAW_MAX_CHARS

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
FAILED = [f"crm-{i}" for i in range(1, 6)]

RULES = """
sandboxes: [prod]
poll_every: 1m
lookback: 24h
group_at: 50
templates: templates
monitoring: {channels: [audit], after: 2m}
channels:
  audit: {file: alerts.jsonl}
  ops: {slack: "#ops"}
defaults:
  channels: [audit, ops]
rules:
  - {name: run-failed, type: status, status: [failed], severity: critical}
"""
# A Slack template that raises for one flow's name (rules check renders a sample flow).
POISONED_TEMPLATE = (
    '{% if flow.name == "crm-template" %}{{ 1 // 0 }}{% endif %}'
    "{{ rule }} is firing for {{ flow.name }}\n"
)


def failed_run(flow_id, run_id=None, minutes=30, **kw):
    at = NOW - timedelta(minutes=minutes)
    kw.setdefault("errors", [{"code": "CONNECTOR-2001-500", "message": "upstream refused"}])
    return make_run(
        flow_id, run_id=run_id, status="failed", started_at=at,
        completed_at=at + timedelta(minutes=5), **kw,
    )  # fmt: skip


def scenario_with_poison():
    scenario = Scenario(now=NOW)
    names = [*FAILED, "crm-huge", "crm-bad", "crm-template", "crm-noisy"]
    for name in names:
        scenario.put_flow(make_flow(name=name, flow_id=f"id-{name}",
                                    start_at=NOW - timedelta(days=10)))  # fmt: skip
    for name in FAILED:
        scenario.put_run(failed_run(f"id-{name}"))
    scenario.put_run(failed_run("id-crm-huge", input_records=10**20, failed_records=10**20))
    scenario.put_run(failed_run("id-crm-bad", run_id="run-\ud800-bad"))
    scenario.put_run(failed_run("id-crm-template"))
    noisy = [
        {"code": f"MAPPER-{i % 7}", "message": f"row {i}: " + "x" * 300} for i in range(10_000)
    ]
    scenario.put_run(failed_run("id-crm-noisy", errors=noisy, activity_errors=noisy))
    return scenario


class World:
    def __init__(self, tmp_path, sim, slack):
        (tmp_path / "rules.yaml").write_text(RULES)
        (tmp_path / "templates" / "slack").mkdir(parents=True)
        (tmp_path / "templates" / "slack" / "firing.md.j2").write_text(POISONED_TEMPLATE)
        self.path = tmp_path
        self.settings = sim.settings(
                        db=str(tmp_path / "flowbot.db"), slack_bot_token=Secret("xoxb-test"),
            slack_api_url=slack.url,
        )  # fmt: skip
        self.ruleset = load_rules(tmp_path / "rules.yaml")
        self.store = Store(self.settings.db)
        self.store.migrate()
        self.now = NOW

    def deps(self):
        clock = lambda: self.now  # noqa: E731
        deps = build_deps(self.settings, self.ruleset, clock=clock, store=self.store)
        # Slack's one-message-a-second pace, without waiting for it
        deps.notifiers = build_notifiers(
            self.ruleset.channels, self.settings, sleep=lambda s: None, now=clock
        )
        return deps

    def sent(self):
        path = self.path / "alerts.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line) for line in lines]


@pytest.fixture
def world(tmp_path):
    with Simulator(scenario_with_poison(), port=0, page_size=4) as sim, slack_server() as slack:
        w = World(tmp_path, sim, slack)
        w.slack = slack
        yield w
        w.store.close()


def test_five_failed_runs_beside_poisoned_ones_still_give_five_alerts(world, caplog):
    with caplog.at_level(logging.WARNING, logger="flowbot"):
        [report], delivery = run_once(world.deps())

    assert report.ok, report.error
    fired = {m["flow"]["name"] for m in world.sent() if m["event"] == "firing"}
    assert set(FAILED) <= fired
    # The poisoned ones alert too: huge counts are unknown counts, a lone surrogate in
    # the run id is read as U+FFFD, 10,000 errors are bounded, a raising template falls
    # back to plain text.
    assert fired == {*FAILED, "crm-huge", "crm-bad", "crm-template", "crm-noisy"}
    assert (
        world.store.db.execute(
            "SELECT count(*) FROM runs WHERE id = ?", ["run-\ufffd-bad"]
        ).fetchone()[0]
        == 1
    )
    posted = [c.body["text"] for c in world.slack.calls_to("chat.postMessage")]
    assert len(posted) == 9 and delivery.failed == 0 and delivery.pending == 0
    assert any("crm-template" in text for text in posted)  # the plain fallback went out
    assert report.skipped == {"render": 1}
    # Each skipped item is logged once, with its id and reason, without a traceback.
    skipped = [r for r in caplog.records if "skipped at" in r.getMessage()]
    assert len(skipped) == 1 and not any(r.exc_info for r in skipped)
    render_line = skipped[0].getMessage()
    assert "crm-template" in render_line and "ZeroDivisionError" in render_line
    assert world.store.watermark("prod").runs_since == NOW - CLOCK_SKEW  # advanced


def test_what_the_store_keeps_of_a_hostile_run_is_bounded(world):
    run_once(world.deps())
    db = world.store.db
    huge = db.execute(
        "SELECT input_records, failed_records FROM runs WHERE flow_id = 'id-crm-huge'"
    ).fetchone()
    assert huge == (None, None)  # unknown counts (parse); the store's clamp: test_store
    [(raw,)] = db.execute("SELECT raw FROM runs WHERE flow_id = 'id-crm-noisy'").fetchall()
    assert len(raw) <= RAW_MAX_CHARS
    assert "and 9950 more errors" in raw  # the first 50, one per code first, then a count
    codes = {f"MAPPER-{i}" for i in range(7)}
    assert all(code in raw for code in codes)
    largest = db.execute("SELECT max(length(raw)) FROM runs").fetchone()[0]
    assert largest <= RAW_MAX_CHARS
    # The message built from the stored run is bounded too.
    [noisy] = [m for m in world.sent() if m["flow"]["name"] == "crm-noisy"]
    assert len(json.dumps(noisy)) < 100_000


def test_an_unexpected_failure_in_a_stage_fails_the_cycle_cleanly_and_feeds_the_meta_alert(
    world, caplog
):
    deps = world.deps()

    def explode(step):
        if step == "evaluated":
            raise KeyError("a bug in a stage")

    deps.step = explode
    with caplog.at_level(logging.DEBUG, logger="flowbot"):
        report = run_cycle(deps, "prod")
    assert not report.ok and report.error == "evaluate stage: KeyError: 'a bug in a stage'"
    mark = world.store.watermark("prod")
    assert mark.runs_since is None and mark.failing_since == NOW
    assert world.store.alerts() == []  # the stage's transaction was rolled back
    errors = [
        r for r in caplog.records
        if r.levelno >= logging.WARNING and "skipped at" not in r.getMessage()
    ]  # fmt: skip
    assert [r.getMessage() for r in errors] == [
        "cycle for sandbox prod failed: evaluate stage: KeyError: 'a bug in a stage'"
    ]
    assert not any(r.exc_info for r in errors)  # the traceback is at debug only
    assert any(r.exc_info for r in caplog.records if r.levelno == logging.DEBUG)

    # Past monitoring.after the meta-alert is queued and sent, built without templates.
    world.now = NOW + timedelta(minutes=3)
    report = run_cycle(deps, "prod")
    assert not report.ok
    delivery = run_once(world.deps())[1]
    meta = [m for m in world.sent() if m["event"] == "meta" and "degraded" in m["text"]]
    assert len(meta) == 1 and "monitoring degraded for sandbox prod" in meta[0]["text"]
    assert delivery.failed == 0


DAEMON_RULES = """
sandboxes: [prod]
poll_every: 1s
lookback: 24h
channels:
  audit: {file: alerts.jsonl}
  ops: {file: ops.jsonl}
defaults:
  channels: [audit]
monitoring: {channels: [ops], after: 2s}
rules:
  - {name: run-failed, type: status, status: [failed]}
"""


def test_the_daemon_alerts_every_flow_beside_poisoned_runs_and_stays_ready(tmp_path):
    """One run with inputRecordCount 10^20 and one whose id is not valid text beside
    failed runs, in `flowbot run` with its health endpoint."""
    now = datetime.now(UTC).replace(microsecond=0)
    scenario = Scenario(now=now)
    for name in [*FAILED, "crm-huge", "crm-bad"]:
        scenario.put_flow(make_flow(name=name, flow_id=f"id-{name}",
                                    start_at=now - timedelta(days=3)))  # fmt: skip
    for name in FAILED:
        scenario.put_run(make_run(f"id-{name}", status="failed", started_at=now - timedelta(minutes=9),
                                  completed_at=now - timedelta(minutes=8)))  # fmt: skip
    scenario.put_run(make_run("id-crm-huge", started_at=now - timedelta(minutes=9),
                              input_records=10**20, failed_records=0))  # fmt: skip
    scenario.put_run(make_run("id-crm-bad", run_id="run-\ud800", status="failed",
                              started_at=now - timedelta(minutes=9)))  # fmt: skip
    with Simulator(scenario, port=0) as sim, Running(tmp_path, sim, DAEMON_RULES, http=True) as bot:
        wait_until(lambda: len(bot.events()) >= 6, what="six alerts")
        bot.wait_cycles(2)
        assert sorted(m["flow"]["name"] for m in bot.events()) == sorted([*FAILED, "crm-bad"])
        status, _, body = bot.get("/readyz")
        assert status == 200, body
        _, _, metrics = bot.get("/metrics")
        assert "flowbot_items_skipped_total{" not in metrics
        assert "flowbot_outbox_depth 0" in metrics
        assert bot.events("ops.jsonl") == []  # nothing degraded
        assert "Traceback" not in bot.log()
        assert bot.stop() == 0


def test_a_broken_store_fails_the_cycle_in_one_line_saying_no_meta_alert_was_queued(world, caplog):
    world.store.db.conn.close()  # every statement now fails
    with caplog.at_level(logging.WARNING, logger="flowbot"):
        report = run_cycle(world.deps(), "prod")
    assert not report.ok and "closed database" in report.error
    [line] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "could not be recorded (no meta-alert queued)" in line.getMessage()
    assert line.exc_info is None
