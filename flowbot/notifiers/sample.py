"""Sample alerts for `flowbot notify test`, `notify preview` and template checks.

The run is sample 01 of the shared Flow Service samples
(`01-sources-run-success-with-row-errors.json`: a sources run that succeeded with 1 of
100 records failed, a CONNECTOR error at run level and INGEST/MAPPER errors in the
promotion activity, with its failedRecords, sampleErrors and fileInfo links), written
parsed from the copy of Adobe's sample shipped as package data (`flowbot/samples/`).
`notify preview RULE` dresses a sample that fits the rule's type (sample_finding).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import assert_never

from flowbot.models import FINISHED_STATES, Finding, Flow, Notice, Run, RunError, Schedule
from flowbot.rule_types import (
    DurationRule,
    ErrorCodeRule,
    FailedRecordsRule,
    FailedRunsRule,
    MissingRunRule,
    Rule,
    RunLevelRule,
    StatusRule,
    ZeroRecordsRule,
)

EXPORT = "https://platform.adobe.io/data/foundation/export/batches/01EF01X41KJD82Y9ZX6ET54PCZ"
FLOW_ID = "c9cef9cb-c934-4467-8ef9-cbc934546741"
SAMPLE_01 = "01-sources-run-success-with-row-errors.json"
SAMPLE_07 = "07-alert-sources-flow-run-failure-sftp.json"


def _ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def sample_flow(name: str = "crm-daily-import", flow_id: str = FLOW_ID) -> Flow:
    """The flow of sample 01 (the sample has no flow payload: the name is made up)."""
    return Flow(
        id=flow_id,
        name=name,
        state="enabled",
        sandbox="prod",
        schedule=Schedule("hour", 1),
    )


def sample_run() -> Run:
    """Run 9830305a-… of sample 01, parsed from the copy shipped in `flowbot/samples/`."""
    return _parsed(SAMPLE_01)


def _parsed(sample: str) -> Run:
    from flowbot.aep.parse import runs_in

    text = resources.files("flowbot.samples").joinpath(sample).read_text(encoding="utf-8")
    return runs_in(json.loads(text))[0]


def sample_notices(event: str = "firing", *, rule: str = "too-many-bad-records") -> list[Notice]:
    """Notices about sample 01 for `event` (firing, repeat, resolved or grouped; grouped
    gives three flows of one rule)."""
    run = sample_run()
    flow = sample_flow()
    finding = Finding(
        rule=rule,
        rule_type="failed_records",
        flow=flow,
        run=run,
        reason="1.0% of 100 input records failed (above 0.5%)",
        values={"failed_share": 0.01, "above": 0.005, "input_records": 100, "failed_records": 1},
    )
    notice = Notice(
        event="firing",
        rule=rule,
        rule_type="failed_records",
        severity="critical",
        flow=flow,
        finding=finding,
        first_seen_at=run.completed_at or _ms(1596656113306),
        owner="@data-oncall",
        sandbox="prod",
    )
    if event == "repeat":
        return [replace(notice, event="repeat", count=3)]
    if event == "resolved":
        good = replace(
            run,
            id="5d1f6c0e-4a8b-4c6e-9d0a-2f3b4c5d6e7f",
            started_at=run.started_at + timedelta(hours=1) if run.started_at else None,
            completed_at=run.completed_at + timedelta(hours=1) if run.completed_at else None,
            output_records=100,
            failed_records=0,
            errors=(),
            activities=(),
        )
        return [replace(notice, event="resolved", resolved_by=good, count=3)]
    if event == "grouped":
        out = [notice]
        for i, name in enumerate(("crm-hourly-contacts", "erp-orders-import"), start=1):
            other = sample_flow(name, f"{FLOW_ID[:-2]}{i:02d}")
            out.append(replace(notice, flow=other, finding=replace(finding, flow=other)))
        return out
    return [notice]


def sample_for_rule(rule: Rule, event: str = "firing", *, timezone: str = "UTC") -> list[Notice]:
    """Sample notices for `rule`, for `flowbot notify preview RULE`: a finding of the
    rule's own type, judged by the evaluator's own checks (see sample_finding), on the
    flows of `sample_notices(event)`."""
    finding, now = sample_finding(rule, timezone)
    return [
        replace(
            n,
            rule_type=rule.type,
            severity=rule.severity,
            owner=rule.owner,
            runbook=rule.runbook,
            first_seen_at=now,
            finding=replace(finding, flow=n.flow),
        )
        for n in sample_notices(event, rule=rule.name)
    ]


def sample_finding(rule: Rule, timezone: str = "UTC") -> tuple[Finding, datetime]:
    """A finding that fits `rule`'s type, and the time it was found: the evaluator judges
    a sample made to match (status: the failed run of sample 07; failed_records: sample 01
    with failed records above the threshold; error_code: sample 07 carrying a matching
    code; duration: sample 01 still running past the limit; zero_records: sample 01
    with no records; missing_run: no run since sample 01, overdue; failed_runs: the flow's
    recent runs, enough of them failed)."""
    from flowbot.evaluate import check_run

    flow = sample_flow()
    match rule:
        case MissingRunRule():
            return _missing_run(rule, flow, timezone)
        case FailedRunsRule():
            return _failed_runs(rule, flow)
        case _:
            run, now = _run_for(rule)
            found = check_run(rule, run, now)
            reason, values = found or (f"sample alert for rule {rule.name}", {})
            return Finding(rule.name, rule.type, flow, run, reason, values), now


def _run_for(rule: RunLevelRule) -> tuple[Run, datetime]:
    """A run that matches a run-level `rule`, and a `now` to judge it at."""
    ok = sample_run()
    end = ok.completed_at or _ms(1596656113306)
    match rule:
        case StatusRule() | ErrorCodeRule():
            run = failed_run()
            if isinstance(rule, StatusRule) and rule.states and run.state not in rule.states:
                status = rule.status[0]
                finished = status.lower() in FINISHED_STATES
                completed = run.completed_at if finished else None
                run = replace(run, status=status, completed_at=completed)
            if isinstance(rule, ErrorCodeRule) and rule.codes:
                run = _with_code(run, rule.codes)
            at = run.completed_at or run.started_at or ok.started_at or end
            return run, at + timedelta(minutes=2)
        case FailedRecordsRule():
            inputs = max(100, rule.min_input)
            failed = min(inputs, int(inputs * rule.above) + 1)
            run = replace(
                ok, input_records=inputs, failed_records=failed, output_records=inputs - failed
            )
            return run, end + timedelta(minutes=2)
        case DurationRule():
            start = ok.started_at or _ms(1596656058000)
            run = replace(ok, status="inProgress", completed_at=None, output_records=None)
            return run, start + rule.above + timedelta(minutes=37)
        case ZeroRecordsRule():
            run = replace(
                ok, input_records=0, output_records=0, failed_records=0, errors=(), activities=()
            )
            return run, end + timedelta(minutes=2)
        case _:
            assert_never(rule)


def _with_code(run: Run, patterns: Sequence[str]) -> Run:
    """`run` with its first run-level error carrying a code that matches `patterns`
    (unchanged when one already does)."""
    from flowbot.evaluate import matches_code

    if any(e.code and matches_code(e.code, patterns) for e in run.all_errors):
        return run
    code = patterns[0].replace("*", "1001").replace("?", "0").replace("[", "").replace("]", "")
    errors = list(run.errors) or [RunError(code=code, message="sample error")]
    errors[0] = replace(errors[0], code=code)
    return replace(run, errors=tuple(errors), activities=())


def _missing_run(rule: MissingRunRule, flow: Flow, timezone: str) -> tuple[Finding, datetime]:
    """No run since sample 01 started; the next was due an hour later (or when `rule`
    says), and `now` is 47 minutes past its grace."""
    from flowbot.evaluate import due_at, judge_missing_run

    last = sample_run()
    started = last.started_at or _ms(1596656058000)
    due = due_at(rule, flow, started) or started + timedelta(hours=1)
    now = due + rule.grace + timedelta(minutes=47)
    findings, _ = judge_missing_run(rule, flow, [last], now, timezone)
    if findings:
        return findings[0], now
    reason = f"no run since {started:%Y-%m-%d %H:%M} UTC; one was due at {due:%Y-%m-%d %H:%M} UTC"
    values = {"expected_at": due, "last_run_at": started, "overdue": now - due}
    finding = Finding(rule.name, rule.type, flow, last, reason, values, due, started)
    return finding, now


def _failed_runs(rule: FailedRunsRule, flow: Flow) -> tuple[Finding, datetime]:
    """The flow's last runs, hourly, newest first: enough of them failed (sample 07)
    to cross the rule's limit, the others succeeded (sample 01)."""
    from flowbot.evaluate import judge_failed_runs

    bad, good = failed_run(), sample_run()
    count = rule.in_a_row or rule.window
    above = (rule.above or 0.0) if rule.in_a_row is None else 1.0
    failing = count if rule.in_a_row else min(count, int(count * above) + 1)
    newest = bad.started_at or _ms(1693538422921)
    runs = []
    for i in range(count):
        base = bad if i < failing else good
        shift = timedelta(hours=i)
        runs.append(
            replace(
                base,
                id=f"{base.id[:-4]}{i:04d}",
                started_at=newest - shift,
                completed_at=(newest - shift + timedelta(minutes=24)),
            )
        )
    findings, _ = judge_failed_runs(rule, flow, runs, newest - timedelta(days=365))
    now = newest + timedelta(minutes=26)
    if findings:
        return findings[0], now
    return Finding(rule.name, rule.type, flow, runs[0], f"{failing} of {count} runs failed"), now


def failed_run() -> Run:
    """Run f0b809c5-… of sample 07: an SFTP sources run that failed (CONNECTOR-1001-500)."""
    return _parsed(SAMPLE_07)
