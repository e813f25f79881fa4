"""evaluate: each rule type's firing, clearing and edge cases, with time injected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from flowbot.evaluate import evaluate
from flowbot.models import Activity, Flow, Run, RunError
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
