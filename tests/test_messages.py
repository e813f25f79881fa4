"""What each message kind says: notify test is marked as a test, preview samples fit the
rule's type, missing-run and stuck-run details, grouped lines per flow."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from flowbot.notifiers.sample import sample_for_rule, sample_notices
from flowbot.render import render
from flowbot.rule_types import (
    DurationRule,
    ErrorCodeRule,
    FailedRecordsRule,
    FailedRunsRule,
    MissingRunRule,
    StatusRule,
    ZeroRecordsRule,
)

KINDS = ("slack", "email", "terminal")


def text_of(body: dict) -> str:
    """Everything a reader sees of a rendered body, as one string."""
    if "blocks" in body:
        return "\n".join(str(b) for b in body["blocks"])
    return "\n".join(str(body.get(k, "")) for k in ("subject", "text", "html"))


@pytest.mark.parametrize("event", ["firing", "repeat", "resolved", "grouped"])
def test_a_test_notice_is_marked_test_in_subject_and_header_of_every_kind(event):
    notices = [replace(n, test=True) for n in sample_notices(event, rule="flowbot-test")]
    slack = render(notices, event, "slack")
    assert slack["blocks"][0]["text"]["text"].startswith(":test_tube: TEST — flowbot notify test")
    email = render(notices, event, "email")
    assert email["subject"].startswith("[TEST] flowbot notify test")
    assert "<title>[TEST]" in email["html"] and "no dataflow is affected" in email["text"]
    assert render(notices, event, "terminal")["text"].startswith("== TEST flowbot notify test")
    assert render(notices, event, "file")["test"] is True
    real = sample_notices(event)  # without the mark: the ordinary header
    assert "TEST" not in render(real, event, "slack")["blocks"][0]["text"]["text"]
    assert "test" not in render(real, event, "file")


RULES = {
    "status": StatusRule(name="r", status=("failed",)),
    "failed_records": FailedRecordsRule(name="r", above=0.2),
    "error_code": ErrorCodeRule(name="r", codes=("MAPPER-*",)),
    "duration": DurationRule(name="r", above=timedelta(hours=2)),
    "missing_run": MissingRunRule(name="r", every=timedelta(hours=6)),
    "failed_runs": FailedRunsRule(name="r", window=5, above=0.5),
    "zero_records": ZeroRecordsRule(name="r"),
}


@pytest.mark.parametrize("rule_type", sorted(RULES))
def test_preview_sample_is_a_finding_the_evaluator_makes_for_the_rule_type(rule_type):
    [notice] = sample_for_rule(RULES[rule_type])
    finding = notice.finding
    assert notice.rule_type == rule_type and finding and finding.reason
    run = finding.run
    if rule_type == "status":
        assert run and run.state == "failed"
    elif rule_type == "failed_records":
        assert run and run.state == "success" and run.failed_share > 0.2
    elif rule_type == "error_code":
        assert any(e.code.startswith("MAPPER-") for e in run.all_errors)
    elif rule_type == "duration":
        assert finding.values["stuck"] and run.is_running
        assert finding.values["duration"] > timedelta(hours=2)
    elif rule_type == "missing_run":
        assert finding.expected_at and finding.values["overdue"] > timedelta(0)
    elif rule_type == "failed_runs":
        assert finding.values["failed"] >= 3 and "of the last 5 runs failed" in finding.reason
    elif rule_type == "zero_records":
        assert run and run.state == "success" and run.input_records == 0


@pytest.mark.parametrize("kind", KINDS)
def test_missing_run_says_when_due_how_overdue_and_labels_the_last_run(kind):
    notices = sample_for_rule(RULES["missing_run"])
    overdue = notices[0].finding.values["overdue"]
    text = text_of(render(notices, "firing", kind, on_fallback=pytest.fail))
    assert "overdue by 1h 02m" in text and overdue == timedelta(hours=1, minutes=2)
    assert "Last run" in text and "9830305a-985f-47d0-b030-5a985fd7d004" in text
    assert "status *success*" not in text and "Run:" not in text and "Ended" not in text
    assert "Due" in text and "Diagnostics" not in text and "Errors" not in text


@pytest.mark.parametrize("kind", KINDS)
def test_a_stuck_run_says_how_long_it_has_been_running_never_ended_dash(kind):
    notices = sample_for_rule(RULES["duration"])
    text = text_of(render(notices, "firing", kind, on_fallback=pytest.fail))
    assert "2h 37m" in text and "not finished yet" in text
    assert "Ended" not in text and "took —" not in text
    record = render(notices, "firing", "file")
    assert record["run"]["finished"] is False
    assert record["run"]["duration_seconds"] == 2 * 3600 + 37 * 60


@pytest.mark.parametrize("kind", KINDS)
def test_grouped_lines_show_what_matters_per_flow(kind):
    for rule_type, wanted in (
        ("status", "CONNECTOR-1001-500"),
        ("failed_records", "failed (21 of 100; limit 20%)"),
        ("error_code", "error code MAPPER-1001"),
    ):
        notices = sample_for_rule(RULES[rule_type], "grouped")
        text = text_of(render(notices, "grouped", kind, on_fallback=pytest.fail))
        assert text.count(wanted) >= 3, (rule_type, text)
        assert "0 of 0 failed" not in text and "— of — failed" not in text
