"""The whole cycle end to end over real HTTP against the simulator, a real SQLite file
and the file channel: fire once, no repeat within repeat_after, repeat after,
resolve, missing run and late arrival, silence, storm grouping, crashes between steps."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from conftest import Clock

from flowbot.aep.client import Clocks, RetryPolicy
from flowbot.pipeline import build_deps, run_once
from flowbot.rules import load_rules
from flowbot.sim.payloads import make_flow, make_run
from flowbot.sim.scenario import Scenario
from flowbot.sim.server import Simulator
from flowbot.store import Store

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

RULES = """
sandboxes: [prod]
poll_every: 1m
lookback: 24h
group_at: 5
channels:
  audit: {file: alerts.jsonl}
defaults:
  channels: [audit]
  repeat_after: 4h
rules:
  - name: run-failed
    type: status
    status: [failed]
    severity: critical
    flows: {name: "crm-*"}
  - name: storm
    type: error_code
    codes: ["CONNECTOR-1001-*"]
    flows: {name: "store-*"}
  - name: hourly-missing
    type: missing_run
    every: 1h
    grace: 15m
    flows: {name: "web-*"}
"""


class World:
    """The simulator, the rules, the database and a clock: one cycle at a time."""

    def __init__(self, tmp_path, sim, rules=RULES):
        (tmp_path / "rules.yaml").write_text(rules)
        self.path = tmp_path
        self.sim = sim
        self.clock = Clock(NOW)
        self.settings = sim.settings(
                        db=str(tmp_path / "flowbot.db"),
        )  # fmt: skip
        self.ruleset = load_rules(tmp_path / "rules.yaml")
        self.store = Store(self.settings.db)
        self.store.migrate()

    def cycle(self, step=lambda name: None):
        deps = build_deps(self.settings, self.ruleset, clock=self.clock, store=self.store)
        deps.step = step
        return run_once(deps)

    def sent(self):
        path = self.path / "alerts.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def events(self, rule=None):
        out = []
        for m in self.sent():
            if rule and m["rule"] != rule:
                continue
            if m["event"] == "grouped":
                out.append(("grouped", m["rule"], len(m["alerts"])))
            else:
                out.append((m["event"], m["rule"], m["flow"]["name"]))
        return out


def flow(name, **kw):
    kw.setdefault("start_at", NOW - timedelta(days=10))
    return make_flow(name=name, flow_id=f"id-{name}", **kw)


def failed(name, at, code="CONNECTOR-2001-500", run_id=None):
    return make_run(
        f"id-{name}", run_id=run_id, status="failed", started_at=at,
        completed_at=at + timedelta(minutes=5), failed_records=0,
        errors=[{"code": code, "message": "Error in processing <!channel>"}],
    )  # fmt: skip


def good(name, at, run_id=None):
    return make_run(
        f"id-{name}", run_id=run_id, started_at=at, completed_at=at + timedelta(minutes=5)
    )


@pytest.fixture
def world(tmp_path):
    scenario = Scenario(now=NOW)
    for name in ("crm-daily", "crm-contacts", "web-hourly"):
        scenario.put_flow(flow(name))
    scenario.put_run(good("web-hourly", NOW - timedelta(minutes=20)))
    with Simulator(scenario, port=0, page_size=5) as sim:
        w = World(tmp_path, sim)
        yield w
        w.store.close()


def test_a_failure_fires_once_and_is_not_repeated_next_cycle(world):
    world.sim.put_run(failed("crm-daily", NOW - timedelta(minutes=30)))
    reports, delivery = world.cycle()
    assert reports[0].ok and reports[0].fired == 1
    assert world.events() == [("firing", "run-failed", "crm-daily")]
    assert delivery.sent == 1 and delivery.pending == 0
    world.clock.advance(minutes=5)
    reports, delivery = world.cycle()
    assert reports[0].runs_new == 0 and delivery.sent == 0
    assert len(world.sent()) == 1


def test_a_new_failure_repeats_only_after_repeat_after_then_a_good_run_resolves(world):
    world.sim.put_run(failed("crm-daily", NOW - timedelta(minutes=30)))
    world.cycle()
    world.clock.advance(hours=1)
    world.sim.put_run(failed("crm-daily", NOW + timedelta(minutes=50)))
    world.cycle()
    assert len(world.events("run-failed")) == 1  # within repeat_after: recorded, not sent
    world.clock.advance(hours=4)
    world.sim.put_run(failed("crm-daily", NOW + timedelta(hours=4, minutes=50)))
    world.cycle()
    assert world.events("run-failed")[-1] == ("repeat", "run-failed", "crm-daily")
    world.clock.advance(minutes=30)
    world.sim.put_run(good("crm-daily", NOW + timedelta(hours=5, minutes=20)))
    world.cycle()
    assert world.events("run-failed")[-1] == ("resolved", "run-failed", "crm-daily")
    assert [a.state for a in world.store.alerts(rule="run-failed")] == ["resolved"]
    assert world.store.alerts(rule="run-failed")[0].count == 3


def test_a_missing_run_fires_and_the_late_run_resolves_it(world):
    world.cycle()
    assert world.events() == []
    world.clock.advance(hours=1, minutes=30)  # last run 1h50m ago: over 1h + 15m grace
    world.cycle()
    assert world.events() == [("firing", "hourly-missing", "web-hourly")]
    world.clock.advance(minutes=10)
    world.sim.put_run(good("web-hourly", world.clock() - timedelta(minutes=2)))
    world.cycle()
    assert world.events()[-1] == ("resolved", "hourly-missing", "web-hourly")


def test_a_silence_mutes_sending_but_the_alert_is_recorded(world):
    world.store.add_silence(rule="run-failed", flow=None, reason="maintenance", now=NOW,
                            expires=NOW + timedelta(hours=1))  # fmt: skip
    world.sim.put_run(failed("crm-contacts", NOW - timedelta(minutes=10)))
    reports, _ = world.cycle()
    assert reports[0].muted == 1 and world.sent() == []
    [alert] = world.store.alerts(rule="run-failed")
    assert alert.state == "firing" and alert.muted
    # After the silence, the next finding announces it.
    world.clock.advance(hours=2)
    world.sim.put_run(failed("crm-contacts", NOW + timedelta(hours=1, minutes=50)))
    world.cycle()
    assert world.events("run-failed") == [("firing", "run-failed", "crm-contacts")]


def test_a_storm_becomes_one_grouped_message(world):
    for i in range(8):
        world.sim.put_flow(flow(f"store-{i:02}"))
        world.sim.put_run(
            failed(f"store-{i:02}", NOW - timedelta(minutes=15), code="CONNECTOR-1001-500")
        )
    reports, _ = world.cycle()
    assert reports[0].fired == 8
    assert world.events() == [("grouped", "storm", 8)]
    # The grouped message shows under each of its alerts in history.
    for alert in world.store.alerts(rule="storm"):
        [message] = world.store.messages(alert_ids=[alert.id])
        assert message.event == "grouped" and message.state == "sent"


def test_an_unreachable_api_keeps_the_watermark_and_exits_not_ok(world):
    world.sim.put_run(failed("crm-daily", NOW - timedelta(minutes=30)))
    world.sim.fail_next(2, status=503)
    options = {"clocks": Clocks(sleep=lambda s: None), "retry": RetryPolicy(max_attempts=2)}
    deps = build_deps(
        world.settings, world.ruleset, clock=world.clock, store=world.store, client_options=options
    )
    reports, delivery = run_once(deps)
    assert not reports[0].ok and "503" in reports[0].error
    assert world.store.watermark("prod").runs_since is None
    assert world.store.watermark("prod").failing_since == NOW
    reports, _ = world.cycle()
    assert reports[0].ok and world.events() == [("firing", "run-failed", "crm-daily")]


class Crash(BaseException):  # a process kill, not an error a stage could meet
    pass


STEPS = [
    "fetched", "stored", "evaluated", "committed",
    "send:1", "delivered:1", "sent:1", "send:2", "delivered:2", "sent:2",
]  # fmt: skip


@pytest.mark.parametrize("crash_at", STEPS)
def test_a_crash_between_any_two_steps_loses_nothing(world, crash_at):
    world.sim.put_run(failed("crm-daily", NOW - timedelta(minutes=30)))
    world.sim.put_run(failed("crm-contacts", NOW - timedelta(minutes=25)))

    def crash(name):
        if name == crash_at:
            raise Crash(name)

    with pytest.raises(Crash):
        world.cycle(step=crash)
    world.clock.advance(minutes=1)
    world.cycle()
    events = world.events()
    expected = {("firing", "run-failed", "crm-daily"), ("firing", "run-failed", "crm-contacts")}
    assert set(events) == expected
    allowed_duplicates = 1 if crash_at.startswith("delivered:") else 0
    assert len(events) == 2 + allowed_duplicates
    assert world.store.integrity_check() == "ok"
