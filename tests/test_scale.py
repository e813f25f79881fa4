"""Cost follows change: a quiet cycle judges no flow that has nothing due, however many
flows are watched; a flow is judged again when its missing-run time comes due, when a
run of it arrives, or when the rules change. Counted (flows judged, findings made,
requests), never timed."""

from datetime import UTC, datetime, timedelta

import pytest

from flowbot.pipeline import build_deps, run_once
from flowbot.rules import load_rules
from flowbot.settings import Secret, Settings
from flowbot.sim.payloads import make_flow, make_run
from flowbot.sim.scenario import Scenario
from flowbot.sim.server import Simulator
from flowbot.store import Store

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
FLOWS = 3000
RULES = """
sandboxes: [prod]
poll_every: 5m
lookback: 24h
channels:
  audit: {file: alerts.jsonl}
defaults:
  channels: [audit]
  repeat_after: 4h
rules:
  - {name: run-failed, type: status, status: [failed]}
  - {name: flaky, type: failed_runs, in_a_row: 2}
  - {name: daily-missing, type: missing_run, every: 1d, grace: 1h}
"""


class Clock:
    def __init__(self, at):
        self.at = at

    def __call__(self):
        return self.at


@pytest.fixture
def world(tmp_path):
    """3,000 daily flows; flow i last ran 23 h ago less i seconds (so none is due yet,
    and the first is due first); every 10th flow's run failed; flow 7 never ran."""
    scenario = Scenario(now=NOW)
    for i in range(FLOWS):
        fid = f"f-{i:05d}"
        scenario.put_flow(
            make_flow(fid, name=fid, frequency="day", start_at=NOW - timedelta(days=9))
        )
        if i == 7:
            continue
        at = NOW - timedelta(hours=23, seconds=FLOWS - i)
        status = "failed" if i % 10 == 0 else "success"
        scenario.put_run(make_run(fid, run_id=f"r-{i}", status=status, started_at=at,
                                  completed_at=at + timedelta(minutes=1)))  # fmt: skip
    (tmp_path / "rules.yaml").write_text(RULES)
    with Simulator(scenario, page_size=100) as sim:
        settings = Settings(
            api_url=sim.url, client_id=sim.client_id, org_id=sim.org_id,
            access_token=Secret(sim.static_token), db=str(tmp_path / "flowbot.db"),
        )  # fmt: skip
        store = Store(settings.db)
        store.migrate()
        clock = Clock(NOW)
        deps = build_deps(settings, load_rules(tmp_path / "rules.yaml"), clock=clock, store=store)
        try:
            yield sim, deps, clock
        finally:
            store.close()


def cycle(deps):
    [report], _ = run_once(deps)
    assert report.ok, report.error
    return report


def test_a_quiet_cycle_judges_no_flow_with_nothing_due(world):
    sim, deps, clock = world
    first = cycle(deps)
    assert first.judged == FLOWS and first.fired == 300 + 1  # the failed runs, flow 7

    clock.at += timedelta(minutes=5)
    quiet = cycle(deps)
    assert quiet.runs_new == 0
    assert quiet.judged == 0 and quiet.findings == 0  # not 3,000 flows × 3 rules again
    assert quiet.fired == quiet.resolved == quiet.queued == 0

    # a run of flow 5 arrives: that flow alone is judged
    clock.at += timedelta(minutes=5)
    at = clock.at - timedelta(minutes=7)
    sim.put_run(make_run("f-00005", run_id="r-new", status="failed", started_at=at,
                         completed_at=at + timedelta(minutes=1)))  # fmt: skip
    ran = cycle(deps)
    assert ran.runs_new == 1 and ran.judged == 1 and ran.fired == 1


def test_a_flow_is_judged_again_when_its_missing_run_comes_due(world):
    sim, deps, clock = world
    cycle(deps)
    # flow i is due at 1 h (grace) after its run + 1 d: 2 h after NOW less (3,000 − i) s
    clock.at = NOW + timedelta(hours=2) - timedelta(seconds=FLOWS - 10, milliseconds=500)
    report = cycle(deps)
    # flows 0-9 came due and are missing, but 7, missing and firing since the first cycle
    assert report.judged == 9 and report.fired == 9
    clock.at += timedelta(milliseconds=400)  # flow 10 comes due 0.5 s after the last cycle
    assert cycle(deps).judged == 0  # 0-9 are missing and firing: nothing new until a run
    clock.at += timedelta(seconds=5)
    assert cycle(deps).judged == 5  # flows 10-14 came due


def test_a_rules_change_judges_every_flow_once(world, tmp_path):
    sim, deps, clock = world
    cycle(deps)
    (tmp_path / "rules.yaml").write_text(RULES.replace("grace: 1h", "grace: 2h"))
    deps.ruleset = load_rules(tmp_path / "rules.yaml")
    clock.at += timedelta(minutes=5)
    assert cycle(deps).judged == FLOWS
    clock.at += timedelta(minutes=5)
    assert cycle(deps).judged == 0
