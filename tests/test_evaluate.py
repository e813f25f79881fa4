"""evaluate: each rule type's firing, clearing and edge cases, with time injected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flowbot.evaluate import evaluate
from flowbot.models import Activity, Flow, Run, RunError, Schedule
from flowbot.rules import RuleSet, load_rules

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)


def ruleset(tmp_path: Path, rule: str, top: str = "") -> RuleSet:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "channels: {ops: {terminal: true}}\n"
        "defaults: {channels: [ops]}\n" + top + "rules:\n" + rule,
        encoding="utf-8",
    )
    return load_rules(path, environ={})


def run(
    run_id: str,
    status: str = "success",
    *,
    flow_id: str = "f1",
    started: timedelta = -H,
    took: timedelta | None = 10 * M,
    input_records: int | None = 1000,
    failed_records: int | None = 0,
    errors: tuple[RunError, ...] = (),
    activity_errors: tuple[RunError, ...] = (),
) -> Run:
    started_at = NOW + started
    finished = status.lower() in ("success", "failed")
    return Run(
        id=run_id,
        flow_id=flow_id,
        status=status,
        started_at=started_at,
        completed_at=started_at + took if finished and took is not None else None,
        input_records=input_records,
        failed_records=failed_records,
        errors=errors,
        activities=(Activity(id="a", name="Promotion", errors=activity_errors),)
        if activity_errors
        else (),
    )


def keys(evaluation):
    return sorted(f.key for f in evaluation.findings)


FLOW = Flow(id="f1", name="crm-daily", sandbox="prod")


def test_status_fires_on_a_changed_failed_run_case_insensitively(tmp_path):
    rules = ruleset(tmp_path, "  - {name: failed, type: status, status: [failed]}\n")
    out = evaluate(rules, [FLOW], {"f1": [run("r1", "Failed")]}, {"r1"}, NOW)
    assert keys(out) == [("failed", "f1")]
    assert out.findings[0].run.id == "r1"
    assert out.clear == frozenset()


def test_status_ignores_unchanged_and_too_old_runs(tmp_path):
    rules = ruleset(tmp_path, "  - {name: failed, type: status, status: [failed]}\n")
    old = run("r0", "failed", started=-25 * H)
    out = evaluate(rules, [FLOW], {"f1": [run("r1", "failed"), old]}, {"r0"}, NOW)
    assert out.findings == ()
    assert out.clear == frozenset()  # the newest finished run still matches


def test_status_clears_when_the_newest_finished_run_is_fine(tmp_path):
    rules = ruleset(tmp_path, "  - {name: failed, type: status, status: [failed]}\n")
    history = {
        "f1": [
            run("r1", "failed", started=-2 * H),
            run("r2", "success"),
            run("r3", "inProgress", started=-M),
        ]
    }
    out = evaluate(rules, [FLOW], history, {"r3"}, NOW)
    assert out.findings == () and out.clear == {("failed", "f1")}


def test_status_on_running_statuses_judges_the_newest_run(tmp_path):
    rules = ruleset(tmp_path, "  - {name: waiting, type: status, status: [Processing, waiting]}\n")
    out = evaluate(rules, [FLOW], {"f1": [run("r1", "processing")]}, {"r1"}, NOW)
    assert keys(out) == [("waiting", "f1")]
    out = evaluate(rules, [FLOW], {"f1": [run("r1", "Success")]}, {"r1"}, NOW)
    assert out.clear == {("waiting", "f1")}


def test_disabled_rules_and_unmatched_flows_produce_nothing(tmp_path):
    rules = ruleset(
        tmp_path,
        "  - {name: disabled, type: status, status: [failed], enabled: false}\n"
        "  - {name: web, type: status, status: [failed], flows: {name: 'web-*'}}\n",
    )
    out = evaluate(rules, [FLOW], {"f1": [run("r1", "failed")]}, {"r1"}, NOW)
    assert out.findings == () and out.clear == frozenset()


def test_a_run_of_an_unknown_flow_gets_a_minimal_flow(tmp_path):
    rules = ruleset(tmp_path, "  - {name: failed, type: status, status: [failed]}\n")
    out = evaluate(rules, [], {"f9": [run("r1", "failed", flow_id="f9")]}, {"r1"}, NOW)
    assert out.findings[0].flow.id == "f9"


FAILED_RECORDS = "  - {name: bad, type: failed_records, above: 5%, min_input: 100}\n"


@pytest.mark.parametrize(
    ("input_records", "failed", "fires"),
    [
        (1000, 51, True),
        (1000, 50, False),  # exactly 5%: thresholds are strict
        (99, 99, False),  # under min_input
        (100, 6, True),  # exactly min_input counts
        (0, 0, False),
        (None, None, False),
    ],
)
def test_failed_records_threshold_and_min_input(tmp_path, input_records, failed, fires):
    rules = ruleset(tmp_path, FAILED_RECORDS)
    r = run("r1", input_records=input_records, failed_records=failed)
    out = evaluate(rules, [FLOW], {"f1": [r]}, {"r1"}, NOW)
    assert bool(out.findings) is fires
    assert (("bad", "f1") in out.clear) is (not fires)
    if fires:
        values = out.findings[0].values
        assert values["failed_records"] == failed and values["input_records"] == input_records
        assert values["above"] == 0.05 and values["failed_share"] == failed / input_records
        assert "of records failed" in out.findings[0].reason


def test_duration_fires_for_a_slow_finished_run_and_a_stuck_one(tmp_path):
    rules = ruleset(tmp_path, "  - {name: slow, type: duration, above: 2h}\n")
    slow = run("r1", started=-5 * H, took=2 * H + M)
    out = evaluate(rules, [FLOW], {"f1": [slow]}, {"r1"}, NOW)
    assert out.findings[0].values["stuck"] is False
    exact = run("r1", started=-5 * H, took=2 * H)
    assert evaluate(rules, [FLOW], {"f1": [exact]}, {"r1"}, NOW).clear == {("slow", "f1")}
    # a stuck run is judged every time, changed or not, and keeps the alert from clearing
    stuck = run("r2", "inProgress", started=-3 * H)
    out = evaluate(rules, [FLOW], {"f1": [stuck, exact]}, set(), NOW)
    assert keys(out) == [("slow", "f1")] and out.findings[0].values["stuck"] is True
    assert "still running after 3h" in out.findings[0].reason
    young = run("r2", "inProgress", started=-H)
    out = evaluate(rules, [FLOW], {"f1": [young, exact]}, set(), NOW)
    assert out.findings == () and out.clear == {("slow", "f1")}


def test_error_code_globs_cover_the_run_and_its_activities(tmp_path):
    rules = ruleset(
        tmp_path, "  - {name: codes, type: error_code, codes: ['MAPPER-*', 'INGEST-1212-400']}\n"
    )
    in_activity = run("r1", activity_errors=(RunError("mapper-3002-400", activity="a"),))
    out = evaluate(rules, [FLOW], {"f1": [in_activity]}, {"r1"}, NOW)
    assert out.findings[0].values["codes"] == ("mapper-3002-400",)
    top = run("r1", "failed", errors=(RunError("INGEST-1212-400"), RunError("OTHER-1")))
    assert keys(evaluate(rules, [FLOW], {"f1": [top]}, {"r1"}, NOW)) == [("codes", "f1")]
    other = run("r1", errors=(RunError("INGEST-1212-500"),))
    assert evaluate(rules, [FLOW], {"f1": [other]}, {"r1"}, NOW).clear == {("codes", "f1")}


@pytest.mark.parametrize(
    ("status", "input_records", "fires"),
    [("success", 0, True), ("success", None, True), ("success", 1, False), ("failed", 0, False)],
)
def test_zero_records(tmp_path, status, input_records, fires):
    rules = ruleset(tmp_path, "  - {name: empty, type: zero_records}\n")
    r = run("r1", status, input_records=input_records)
    assert bool(evaluate(rules, [FLOW], {"f1": [r]}, {"r1"}, NOW).findings) is fires


def history_of(states: str) -> list[Run]:
    """'FFS' → newest first: failed, failed, success (an hour apart)."""
    status = {"F": "failed", "S": "success", "R": "inProgress"}
    return [run(f"r{i}", status[c], started=-(i + 1) * H) for i, c in enumerate(states)]


@pytest.mark.parametrize(
    ("states", "fires", "clear"),
    [
        ("FFFFFFSSSS", True, False),  # 60% > 50%
        ("FFFFFSSSSS", False, True),  # 50% is not above
        ("FFFFFF", False, False),  # fewer than a window: not judged
        ("RFFFFFFSSSS", True, False),  # running runs do not count
    ],
)
def test_failed_runs_share_over_a_window(tmp_path, states, fires, clear):
    rules = ruleset(tmp_path, "  - {name: flaky, type: failed_runs, above: 50%, window: 10}\n")
    out = evaluate(rules, [FLOW], {"f1": history_of(states)}, set(), NOW)
    assert bool(out.findings) is fires
    assert (("flaky", "f1") in out.clear) is clear


@pytest.mark.parametrize(
    ("states", "fires"),
    [("FFF", True), ("RFFFS", True), ("FFSF", False), ("FF", False), ("SFFF", False)],
)
def test_failed_runs_in_a_row(tmp_path, states, fires):
    rules = ruleset(tmp_path, "  - {name: streak, type: failed_runs, in_a_row: 3}\n")
    out = evaluate(rules, [FLOW], {"f1": history_of(states)}, set(), NOW)
    assert bool(out.findings) is fires
    assert (("streak", "f1") in out.clear) is (not fires)


def test_failed_runs_does_not_fire_on_runs_older_than_lookback(tmp_path):
    rules = ruleset(
        tmp_path, "  - {name: streak, type: failed_runs, in_a_row: 2}\n", "lookback: 30m\n"
    )
    out = evaluate(rules, [FLOW], {"f1": history_of("FF")}, set(), NOW)
    assert out.findings == ()


def hourly(**kw) -> Flow:
    return Flow(id="f1", name="crm-daily", state=kw.pop("state", "enabled"), **kw)


def test_missing_run_every_with_grace(tmp_path):
    rules = ruleset(tmp_path, "  - {name: gone, type: missing_run, every: 1h, grace: 15m}\n")
    last = run("r1", started=-(H + 15 * M))
    assert evaluate(rules, [hourly()], {"f1": [last]}, set(), NOW).clear == {("gone", "f1")}
    late = run("r1", started=-(H + 16 * M))
    out = evaluate(rules, [hourly()], {"f1": [late]}, set(), NOW)
    [finding] = out.findings
    assert finding.run.id == "r1" and finding.last_run_at == late.started_at
    assert finding.expected_at == late.started_at + H
    assert "no run since 2024-05-01 10:44 UTC" in finding.reason
    # flow.last_run_started_at counts too (the latest of the two)
    flow = hourly(last_run_started_at=NOW - 10 * M)
    assert evaluate(rules, [flow], {"f1": [late]}, set(), NOW).clear == {("gone", "f1")}


def test_missing_run_never_for_disabled_flows_or_flows_not_yet_due(tmp_path):
    rules = ruleset(tmp_path, "  - {name: gone, type: missing_run, every: 1h, grace: 0s}\n")
    assert evaluate(rules, [hourly(state="disabled")], {}, set(), NOW).clear == {("gone", "f1")}
    future = hourly(schedule=Schedule("hour", 1, NOW + H))
    assert evaluate(rules, [future], {}, set(), NOW).clear == {("gone", "f1")}
    never = hourly(schedule=Schedule("hour", 1, NOW - M))
    assert keys(evaluate(rules, [never], {}, set(), NOW)) == [("gone", "f1")]


def test_missing_run_from_the_flow_schedule(tmp_path):
    rules = ruleset(tmp_path, "  - {name: sched, type: missing_run, schedule: flow, grace: 10m}\n")
    start = NOW - 10 * H  # ticks at 02:00, 05:00, 08:00, 11:00 with interval 3
    flow = hourly(schedule=Schedule("hour", 3, start), last_run_started_at=NOW - 3 * H + 2 * M)
    # last run 09:02 (after the 08:00 tick) → next due 11:00, missing after 11:10
    [finding] = evaluate(rules, [flow], {}, set(), NOW).findings
    assert finding.expected_at == NOW - H
    flow = hourly(schedule=Schedule("hour", 3, start), last_run_started_at=NOW - 55 * M)
    assert evaluate(rules, [flow], {}, set(), NOW).clear == {("sched", "f1")}
    once = hourly(schedule=Schedule("once", 1, start))
    assert evaluate(rules, [once], {}, set(), NOW).clear == {("sched", "f1")}
    assert evaluate(rules, [hourly()], {}, set(), NOW).clear == {("sched", "f1")}


def test_missing_run_cron_in_a_time_zone(tmp_path):
    rules = ruleset(
        tmp_path,
        "  - {name: nightly, type: missing_run, cron: '0 2 * * *', timezone: Europe/Paris, grace: 30m}\n",
    )
    # 02:00 Paris is 00:00 UTC in May; last run the night before
    last = datetime(2024, 4, 30, 0, 5, tzinfo=UTC)
    flow = hourly(last_run_started_at=last)
    at = datetime(2024, 5, 1, 0, 29, tzinfo=UTC)
    assert evaluate(rules, [flow], {}, set(), at).clear == {("nightly", "f1")}
    [finding] = evaluate(rules, [flow], {}, set(), at + 2 * M).findings
    assert finding.expected_at == datetime(2024, 5, 1, 0, 0, tzinfo=UTC)


def test_a_failure_superseded_by_a_later_good_run_is_history_not_a_finding(tmp_path):
    rules = ruleset(tmp_path, "  - {name: failed, type: status, status: [failed]}\n")
    # a failed run 14 h ago, then good runs 10 h and 6 h ago, all seen at once
    history = {
        "f1": [
            run("r3", "success", started=-6 * H),
            run("r2", "success", started=-10 * H),
            run("r1", "failed", started=-14 * H),
        ]
    }
    out = evaluate(rules, [FLOW], history, {"r1", "r2", "r3"}, NOW)
    assert keys(out) == [] and out.clear == {("failed", "f1")}
    [recovered] = out.recovered
    assert recovered.run.id == "r1" and recovered.superseded_by.id == "r3"


def test_only_the_current_run_is_judged_when_several_match(tmp_path):
    rules = ruleset(tmp_path, "  - {name: failed, type: status, status: [failed]}\n")
    history = {"f1": [run("r2", "failed", started=-M), run("r1", "failed", started=-H)]}
    out = evaluate(rules, [FLOW], history, {"r1", "r2"}, NOW)
    assert [f.run.id for f in out.findings] == ["r2"] and out.recovered == ()


def test_a_current_failure_is_not_found_again_when_unchanged(tmp_path):
    rules = ruleset(tmp_path, "  - {name: failed, type: status, status: [failed]}\n")
    history = {"f1": [run("r2", "failed", started=-M)]}
    out = evaluate(rules, [FLOW], history, set(), NOW)
    assert keys(out) == [] and out.clear == frozenset()  # neither: a firing alert stays


def test_a_good_current_run_clears_without_being_new(tmp_path):
    # a firing alert's flow whose current run is good resolves, new run or not
    rules = ruleset(tmp_path, "  - {name: failed, type: status, status: [failed]}\n")
    history = {"f1": [run("r2", "success", started=-M), run("r1", "failed", started=-H)]}
    out = evaluate(rules, [FLOW], history, set(), NOW)
    assert out.clear == {("failed", "f1")} and out.recovered == ()


def test_a_stuck_run_is_current_even_after_a_newer_finished_one(tmp_path):
    rules = ruleset(tmp_path, "  - {name: slow, type: duration, above: 2h}\n")
    history = {"f1": [run("r2", "success", started=-M), run("r1", "inProgress", started=-3 * H)]}
    out = evaluate(rules, [FLOW], history, set(), NOW)
    assert [f.run.id for f in out.findings] == ["r1"] and out.clear == frozenset()


def test_a_rule_that_raises_for_one_flow_is_logged_and_skipped(tmp_path, caplog):
    rules = ruleset(
        tmp_path,
        "  - {name: gone, type: missing_run, every: 1h}\n  - {name: empty, type: zero_records}\n",
    )
    # a naive datetime from a broken payload makes the comparison raise
    broken = Flow(id="f2", name="broken", last_run_started_at=datetime(2024, 5, 1, 10, 0))
    history = {"f1": [run("r1", input_records=0)]}
    out = evaluate(rules, [FLOW, broken], history, {"r1"}, NOW)
    assert ("empty", "f1") in {f.key for f in out.findings}
    assert "rule gone failed on flow f2" in caplog.text
