"""The alert lifecycle as a pure function (DESIGN §4)."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from flowbot.alerts import decide, is_silenced, plan
from flowbot.models import Evaluation, Finding, Flow, Run, RunError
from flowbot.rules_parts import Inhibit
from flowbot.store import AlertRow, Silence

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
FLOW = Flow(id="f1", name="crm-daily-import", sandbox="prod")


@dataclass(frozen=True)
class FakeRule:
    name: str = "run-failed"
    type: str = "status"
    severity: str = "critical"
    enabled: bool = True
    send_resolved: bool = True
    owner: str | None = "@oncall"
    repeat_after: timedelta = timedelta(hours=4)


@dataclass(frozen=True)
class FakeRules:
    rules: tuple = (FakeRule(),)
    group_at: int = 10
    extra: dict = field(default_factory=dict)
    inhibit: tuple = ()

    def rule(self, name):
        return next((r for r in self.rules if r.name == name), None)


def finding(flow=FLOW, run_id="r1", minutes_ago=5, rule="run-failed", code="CONNECTOR-1001-500"):
    started = NOW - timedelta(minutes=minutes_ago)
    errors = (RunError(code, "failed"),) if code else ()
    run = Run(id=run_id, flow_id=flow.id, status="failed", started_at=started, errors=errors)
    return Finding(rule, "status", flow, run, "run failed")


def alert(last_notified=NOW - timedelta(hours=1), count=1, muted=False, rule="run-failed"):
    return AlertRow(
        7,
        rule,
        "f1",
        "prod",
        "crm-daily-import",
        "firing",
        NOW - timedelta(hours=1),
        NOW - timedelta(hours=1),
        last_notified,
        None,
        count,
        "r0",
        "run failed",
        muted,
    )


def test_first_finding_opens_and_notifies():
    [change] = decide(FakeRules(), [], Evaluation((finding(),)), [], {}, {}, NOW)
    assert change.action == "open" and change.notice.event == "firing"
    assert change.fields["last_notified"] == NOW and change.notice.owner == "@oncall"


def test_a_new_failure_within_repeat_after_is_recorded_not_sent():
    [change] = decide(FakeRules(), [alert()], Evaluation((finding(run_id="r2"),)), [], {}, {}, NOW)
    assert change.action == "update" and change.notice is None
    assert change.fields["count"] == 2 and change.fields["last_run_id"] == "r2"


def test_a_new_failure_after_repeat_after_repeats():
    old = alert(last_notified=NOW - timedelta(hours=5))
    [change] = decide(FakeRules(), [old], Evaluation((finding(run_id="r2"),)), [], {}, {}, NOW)
    assert change.notice.event == "repeat" and change.fields["last_notified"] == NOW


def test_clear_resolves_with_the_good_run():
    good = Run(id="r9", flow_id="f1", status="success")
    evaluation = Evaluation(clear=frozenset({("run-failed", "f1")}))
    [change] = decide(FakeRules(), [alert()], evaluation, [], {"f1": FLOW}, {"f1": [good]}, NOW)
    assert change.action == "resolve" and change.notice.event == "resolved"
    assert change.notice.resolved_by == good and change.fields["state"] == "resolved"


def test_resolution_is_quiet_without_send_resolved():
    rules = FakeRules(rules=(FakeRule(send_resolved=False),))
    evaluation = Evaluation(clear=frozenset({("run-failed", "f1")}))
    [change] = decide(rules, [alert()], evaluation, [], {}, {}, NOW)
    assert change.action == "resolve" and change.notice is None


def test_a_removed_rule_resolves_its_alerts_quietly():
    [change] = decide(FakeRules(rules=()), [alert()], Evaluation(), [], {}, {}, NOW)
    assert change.action == "resolve" and change.notice is None


def test_an_alert_neither_found_nor_clear_is_left_alone():
    assert decide(FakeRules(), [alert()], Evaluation(), [], {}, {}, NOW) == []


def test_silence_mutes_sending_but_not_the_alert():
    silence = Silence(1, None, "crm-*", "maintenance", NOW, NOW + timedelta(hours=1))
    [change] = decide(FakeRules(), [], Evaluation((finding(),)), [silence], {}, {}, NOW)
    assert change.action == "open" and change.muted and change.notice is None
    assert "last_notified" not in change.fields


def test_a_muted_alert_is_announced_once_the_silence_ends():
    muted = alert(last_notified=None, muted=True)
    [change] = decide(FakeRules(), [muted], Evaluation((finding(run_id="r2"),)), [], {}, {}, NOW)
    assert change.notice.event == "firing" and not change.muted


def test_silence_matching():
    s = Silence(1, "run-*", None, "x", NOW, NOW)
    assert is_silenced([s], "run-failed", FLOW)
    assert not is_silenced([s], "too-many-bad-records", FLOW)
    by_id = Silence(2, None, "f1", "x", NOW, NOW)
    assert is_silenced([by_id], "anything", FLOW)
    assert not is_silenced([by_id], "anything", Flow(id="f2", name="other"))
    both = Silence(3, "run-failed", "web-*", "x", NOW, NOW)
    assert not is_silenced([both], "run-failed", FLOW)


def test_a_storm_becomes_one_grouped_message():
    flows = [Flow(id=f"f{i}", name=f"store-sync-{i:02}", sandbox="prod") for i in range(12)]
    evaluation = Evaluation(tuple(finding(flow=f, run_id=f"r{i}") for i, f in enumerate(flows)))
    changes = decide(FakeRules(), [], evaluation, [], {}, {}, NOW)
    [grouped] = plan(changes, group_at=10)
    assert grouped.event == "grouped" and len(grouped.notices) == 12 and len(grouped.keys) == 12


def test_below_group_at_every_flow_gets_its_own_message():
    flows = [Flow(id=f"f{i}", name=f"store-sync-{i:02}", sandbox="prod") for i in range(3)]
    evaluation = Evaluation(tuple(finding(flow=f, run_id=f"r{i}") for i, f in enumerate(flows)))
    out = plan(decide(FakeRules(), [], evaluation, [], {}, {}, NOW), group_at=10)
    assert [o.event for o in out] == ["firing"] * 3


def test_a_different_error_is_not_buried_in_a_storm():
    flows = [Flow(id=f"s{i}", name=f"store-sync-{i:02}", sandbox="prod") for i in range(10)]
    storm = [finding(flow=f, run_id=f"r{i}") for i, f in enumerate(flows)]
    other = finding(flow=FLOW, run_id="rx", code="CONNECTOR-2001-500")
    out = plan(decide(FakeRules(), [], Evaluation((*storm, other)), [], {}, {}, NOW), group_at=10)
    assert sorted((o.event, len(o.notices)) for o in out) == [("firing", 1), ("grouped", 10)]
    [single] = [o for o in out if o.event == "firing"]
    assert single.keys == (("run-failed", "f1"),)


# ---------------------------------------------------------------- incidents and inhibit


THREE = (
    FakeRule(name="mapping-errors", type="error_code", severity="warning"),
    FakeRule(),
    FakeRule(name="bad-records", type="failed_records", severity="info"),
)


def test_rules_matching_one_flow_become_one_incident_highest_severity_first():
    found = [finding(rule=r.name) for r in THREE]
    [incident] = plan(
        decide(FakeRules(rules=THREE), [], Evaluation(tuple(found)), [], {}, {}, NOW), 10
    )
    assert incident.event == "firing" and incident.rule == "run-failed"
    assert [n.rule for n in incident.notices] == ["run-failed", "mapping-errors", "bad-records"]


def test_a_new_match_follows_the_thread_of_the_flow_already_firing():
    rules = FakeRules(rules=THREE)
    old = alert(last_notified=NOW - timedelta(hours=5))  # run-failed, repeat due
    found = (finding(run_id="r2"), finding(run_id="r2", rule="mapping-errors"))
    [incident] = plan(decide(rules, [old], Evaluation(found), [], {}, {}, NOW), 10)
    assert incident.event == "firing" and incident.thread_key == ("run-failed", "f1")


def test_inhibit_mutes_the_target_while_the_source_fires():
    rules = FakeRules(rules=THREE, inhibit=(Inhibit("run-failed", ("bad-records",)),))
    found = Evaluation(tuple(finding(rule=r.name) for r in THREE))
    changes = {c.rule: c for c in decide(rules, [], found, [], {}, {}, NOW)}
    assert changes["bad-records"].muted and changes["bad-records"].notice is None
    assert not changes["mapping-errors"].muted
    # the source already firing (not found again) still inhibits
    only_target = Evaluation((finding(rule="bad-records"),))
    [change] = decide(rules, [alert()], only_target, [], {}, {}, NOW)
    assert change.muted


def test_a_superseded_match_is_recorded_resolved_without_a_notice():
    good = Run(id="r9", flow_id="f1", status="success")
    from dataclasses import replace

    old = replace(finding(run_id="r1"), superseded_by=good)
    evaluation = Evaluation(clear=frozenset({("run-failed", "f1")}), recovered=(old,))
    [change] = decide(FakeRules(), [], evaluation, [], {}, {}, NOW)
    assert change.action == "recover" and change.notice is None
    assert (
        change.fields["state"] == "resolved"
        and "already recovered by run r9" in change.fields["reason"]
    )
    # a firing pair resolves instead: no second row
    [resolve] = decide(FakeRules(), [alert()], evaluation, [], {}, {}, NOW)
    assert resolve.action == "resolve"


def test_resolutions_are_one_item_never_a_grouped_firing():
    flows = [Flow(id=f"f{i}", name=f"s{i}", sandbox="prod") for i in range(12)]
    firing = [replace_id(alert(), i, f.id) for i, f in enumerate(flows)]
    clear = frozenset(("run-failed", f.id) for f in flows)
    out = plan(decide(FakeRules(), firing, Evaluation(clear=clear), [], {}, {}, NOW), 10)
    assert [(o.event, len(o.notices)) for o in out] == [("resolved", 12)]


def replace_id(row, i, flow_id):
    from dataclasses import replace

    return replace(row, id=100 + i, flow_id=flow_id)
