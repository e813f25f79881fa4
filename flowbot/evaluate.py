"""Rules × flows × runs × now → findings. Pure: no I/O, no clock, no state.

One small function per rule type. Run-level rules (status, failed_records, duration,
error_code, zero_records) judge each new or changed run; flow-level rules
(failed_runs, missing_run) state each flow's condition on every evaluation.

Run-level rules page only for the flow's current state: its newest finished run (a
status rule that names running or waiting statuses: the newest run, finished or not),
or a run still going past a duration limit. A matching run that a later good run
already superseded (the first cycle, after downtime, a flow that runs faster than the
poll) is reported in `Evaluation.recovered`, never as a finding.

Besides findings, `evaluate` says which (rule, flow) pairs were checked and are fine
now (`Evaluation.clear`), so that firing alerts resolve:

- run-level: the flow's current run does not match (for duration: and no run is
  stuck).
- failed_runs: the failed share of the last `window` finished runs is back at or under
  `above`, or the newest finished runs no longer hold `in_a_row` failures.
- missing_run: the flow is not missing, is disabled, or its first run is not yet due.

A pair is never both found and clear: a finding wins (a later run of the same batch
clears it on the next evaluation).

Edge cases, decided:
- A run that started before `now - lookback` never produces a finding; a run with no
  start time is judged by when it was created, and if that is unknown too it counts as
  recent. A stuck run (duration) is judged whenever it is still running, whatever its
  age, since being old is the point.
- failed_records only judges runs whose input reaches `min_input` (and is above 0).
- failed_runs with `above` needs a full `window` of finished runs; with fewer it is not
  judged (neither finding nor clear). With `in_a_row: N` the streak counts failed runs
  from the newest finished run back; in-progress runs are skipped, a success ends it.
  Either way a finding needs the newest finished run to be within `lookback`.
- missing_run: the last start is the latest of the flow's `lastRunDetails` start and
  the newest run in history. `every`: due at last start + every. `cron`: due at the
  first cron time after the last start. `schedule: flow`: due at the first schedule
  tick (startTime + k × period) after the last start. A flow that never ran is due at
  its schedule's start time; with no start time either, it is not judged as missing.
  It is missing when `now` is past due + grace. Frequency `once` and disabled flows are
  never missing.
"""

from __future__ import annotations

import logging
import math
import zoneinfo
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import assert_never

from croniter import croniter

from flowbot.errors import reason_of
from flowbot.models import Evaluation, Finding, Flow, Run
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
from flowbot.rules import RuleSet
from flowbot.rules_schema import format_duration

log = logging.getLogger(__name__)

Key = tuple[str, str]
NEVER = datetime.min.replace(tzinfo=UTC)


def evaluate(
    ruleset: RuleSet,
    flows: Sequence[Flow],
    history: Mapping[str, Sequence[Run]],
    changed: Collection[str],
    now: datetime,
) -> Evaluation:
    """Judge every enabled rule against the flows and their recent runs at `now`.

    `history` maps a flow id to its recent runs (any order; sorted here newest first).
    `changed` holds the ids of runs that are new or changed since the last evaluation:
    only those can produce run-level findings.
    """
    known = {flow.id: flow for flow in flows}
    runs_by_flow = {flow_id: newest_first(runs) for flow_id, runs in history.items()}
    for flow_id, runs in runs_by_flow.items():
        if flow_id not in known and runs:
            known[flow_id] = Flow(id=flow_id, sandbox=runs[0].sandbox)
    changed_ids = set(changed)
    cutoff = now - ruleset.lookback
    findings: list[Finding] = []
    recovered: list[Finding] = []
    clear: set[Key] = set()
    skipped: list[tuple[str, str, str]] = []
    for rule in ruleset.rules:
        if not rule.enabled:
            continue
        for flow in known.values():
            if not rule.flows.matches(flow):
                continue
            runs = runs_by_flow.get(flow.id, [])
            try:
                found, fine = judge(rule, flow, runs, changed_ids, now, cutoff, ruleset)
            except Exception as exc:  # crash-loop guard: one bad rule × flow must not stop the rest
                reason = reason_of(exc, 200)
                log.warning(
                    "rule %s failed on flow %s (newest run %s); skipped: %s",
                    rule.name, flow.id, runs[0].id if runs else None, reason,
                )  # fmt: skip
                log.debug("rule %s on flow %s raised", rule.name, flow.id, exc_info=True)
                skipped.append((rule.name, flow.id, reason))
                continue
            live = [f for f in found if f.superseded_by is None]
            findings.extend(live)
            recovered.extend(f for f in found if f.superseded_by is not None)
            if fine and not live:
                clear.add((rule.name, flow.id))
    found_keys = {f.key for f in findings}
    return Evaluation(
        findings=tuple(findings),
        clear=frozenset(clear - found_keys),
        recovered=tuple(recovered),
        skipped=tuple(skipped),
    )


def judge(
    rule: Rule,
    flow: Flow,
    runs: Sequence[Run],
    changed: set[str],
    now: datetime,
    cutoff: datetime,
    ruleset: RuleSet,
) -> tuple[list[Finding], bool]:
    """One rule on one flow: its findings, and whether the pair is clear."""
    match rule:
        case FailedRunsRule():
            return judge_failed_runs(rule, flow, runs, cutoff)
        case MissingRunRule():
            return judge_missing_run(rule, flow, runs, now, ruleset.timezone)
        case _:
            return judge_runs(rule, flow, runs, changed, now, cutoff)


# -- run-level rules -------------------------------------------------------------------


def judge_runs(
    rule: RunLevelRule,
    flow: Flow,
    runs: Sequence[Run],
    changed: set[str],
    now: datetime,
    cutoff: datetime,
) -> tuple[list[Finding], bool]:
    """A run-level rule judges the flow's current state: its newest finished run (the
    newest run for a status rule about unfinished statuses), or a run still going past a
    duration limit (stuck). Only a new or changed current run is a finding; matching runs
    that a later good run already superseded come back marked `superseded_by` (history).
    """
    stuck: list[Run] = []
    if isinstance(rule, DurationRule):
        stuck = [r for r in runs if r.is_running and check_duration(rule, r, now)]
    findings = [_run_finding(rule, flow, run, now) for run in stuck]
    unfinished = isinstance(rule, StatusRule) and rule.judges_unfinished
    current = runs[0] if unfinished and runs else newest_finished(runs)
    if current is None:
        return findings, False
    if current not in stuck and current.id in changed and started(current) >= cutoff:
        findings.extend(f for f in [_run_finding(rule, flow, current, now)] if f.reason)
    fine = not stuck and check_run(rule, current, now) is None
    if fine:
        findings.extend(_superseded(rule, flow, runs, current, changed, now, cutoff))
    return findings, fine


def _superseded(
    rule: RunLevelRule,
    flow: Flow,
    runs: Sequence[Run],
    current: Run,
    changed: set[str],
    now: datetime,
    cutoff: datetime,
) -> list[Finding]:
    """New or changed matching runs older than the flow's good current run: already
    recovered, so history, never a page."""
    out = []
    for run in runs:
        if run is current or run.id not in changed or run.is_running:
            continue
        if started(run) >= started(current) or started(run) < cutoff:
            continue
        finding = _run_finding(rule, flow, run, now)
        if finding.reason:
            out.append(replace(finding, superseded_by=current))
    return out


def _run_finding(rule: RunLevelRule, flow: Flow, run: Run, now: datetime) -> Finding:
    """The finding of `run` for `rule`; its reason is empty when the run does not match."""
    reason, values = check_run(rule, run, now) or ("", {})
    return Finding(rule.name, rule.type, flow, run, reason, values)


Check = tuple[str, dict[str, object]] | None


def check_run(rule: RunLevelRule, run: Run, now: datetime) -> Check:
    """Whether `run` matches the run-level `rule` at `now`: the reason and the values
    templates see, or None when it does not match."""
    match rule:
        case StatusRule():
            return check_status(rule, run, now)
        case FailedRecordsRule():
            return check_failed_records(rule, run, now)
        case DurationRule():
            return check_duration(rule, run, now)
        case ErrorCodeRule():
            return check_error_code(rule, run, now)
        case ZeroRecordsRule():
            return check_zero_records(rule, run, now)
        case _:
            assert_never(rule)


def check_status(rule: StatusRule, run: Run, now: datetime) -> Check:
    if run.state not in rule.states:
        return None
    return f"run {run.status}", {"status": run.status, "statuses": rule.status}


def check_failed_records(rule: FailedRecordsRule, run: Run, now: datetime) -> Check:
    share = run.failed_share
    inputs = run.input_records or 0
    if share is None or inputs < max(rule.min_input, 1):
        return None
    limit = rule.above
    if share <= limit:
        return None
    reason = (
        f"{percent(share)} of records failed ({run.failed_records:,} of {inputs:,}; "
        f"limit {percent(limit)})"
    )
    values: dict[str, object] = {
        "failed_share": share,
        "above": limit,
        "input_records": inputs,
        "failed_records": run.failed_records,
        "output_records": run.output_records,
        "min_input": rule.min_input,
    }
    return reason, values


def check_duration(rule: DurationRule, run: Run, now: datetime) -> Check:
    limit = rule.above
    if run.is_running:
        took = run.duration(now)
        if took is None or took <= limit:
            return None
        reason = f"still running after {format_duration(took)} (limit {format_duration(limit)})"
        return reason, {"duration": took, "above": limit, "stuck": True}
    if not run.is_finished:
        return None
    took = run.duration()
    if took is None or took <= limit:
        return None
    reason = f"ran {format_duration(took)} (limit {format_duration(limit)})"
    return reason, {"duration": took, "above": limit, "stuck": False}


def check_error_code(rule: ErrorCodeRule, run: Run, now: datetime) -> Check:
    codes = []
    for error in run.all_errors:
        if error.code and error.code not in codes and matches_code(error.code, rule.codes):
            codes.append(error.code)
    if not codes:
        return None
    return f"error code {', '.join(codes)}", {"codes": tuple(codes), "patterns": rule.codes}


def matches_code(code: str, patterns: Sequence[str]) -> bool:
    """True when the code matches one of the globs (case-insensitive, as codes are)."""
    return any(fnmatchcase(code.upper(), pattern.upper()) for pattern in patterns)


def check_zero_records(rule: ZeroRecordsRule, run: Run, now: datetime) -> Check:
    if run.state != "success" or run.input_records:
        return None
    return "succeeded but read no records", {"input_records": run.input_records or 0}


# -- failed_runs -----------------------------------------------------------------------


def judge_failed_runs(
    rule: FailedRunsRule, flow: Flow, runs: Sequence[Run], cutoff: datetime
) -> tuple[list[Finding], bool]:
    finished = [r for r in runs if r.is_finished]
    if not finished:
        return [], False
    newest = finished[0]
    if rule.in_a_row is not None:
        streak = 0
        for run in finished:
            if run.state != "failed":
                break
            streak += 1
        if streak < rule.in_a_row:
            return [], True
        reason = f"the last {streak} runs failed in a row (limit {rule.in_a_row})"
        values: dict[str, object] = {"in_a_row": streak, "limit": rule.in_a_row}
    else:
        if len(finished) < rule.window:
            return [], False
        window = finished[: rule.window]
        failed = sum(1 for r in window if r.state == "failed")
        share = failed / len(window)
        limit = rule.above or 0.0
        if share <= limit:
            return [], True
        reason = (
            f"{failed} of the last {len(window)} runs failed ({percent(share)}; "
            f"limit {percent(limit)})"
        )
        values = {"failed": failed, "window": len(window), "share": share, "above": limit}
    if started(newest) < cutoff:
        return [], False
    finding = Finding(
        rule=rule.name, rule_type=rule.type, flow=flow, run=newest, reason=reason, values=values
    )
    return [finding], False


# -- missing_run -----------------------------------------------------------------------


def judge_missing_run(
    rule: MissingRunRule, flow: Flow, runs: Sequence[Run], now: datetime, display_zone: str
) -> tuple[list[Finding], bool]:
    if not flow.is_enabled:
        return [], True
    starts = [r.started_at for r in runs if r.started_at is not None]
    candidates = [t for t in (flow.last_run_started_at, max(starts, default=None)) if t]
    last = max(candidates, default=None)
    due = due_at(rule, flow, last)
    if due is None or now <= due + rule.grace:
        return [], True
    zone = zoneinfo.ZoneInfo(display_zone)
    since = f"no run since {show_time(last, zone)}" if last else "no run yet"
    reason = f"{since}; one was due at {show_time(due, zone)} (grace {format_duration(rule.grace)})"
    values: dict[str, object] = {
        "expected_at": due,
        "grace": rule.grace,
        "last_run_at": last,
        "overdue": now - due,
    }
    if rule.every:
        values["every"] = rule.every
    if rule.cron:
        values["cron"] = rule.cron
    finding = Finding(
        rule=rule.name,
        rule_type=rule.type,
        flow=flow,
        run=runs[0] if runs else None,
        reason=reason,
        values=values,
        expected_at=due,
        last_run_at=last,
    )
    return [finding], False


def next_due(ruleset: RuleSet, flow: Flow, runs: Sequence[Run], now: datetime) -> datetime | None:
    """The first moment after `now` a missing_run rule could find `flow` missing, if no
    run comes (its due time plus grace; None: never by time alone). Until then, and
    unless the flow, its runs or the rules change, judging the flow again finds nothing
    new: a flow already missing stays missing until a run or the flow changes."""
    if not flow.is_enabled:
        return None
    starts = [r.started_at for r in runs if r.started_at is not None]
    last = max(
        (t for t in (flow.last_run_started_at, max(starts, default=None)) if t), default=None
    )
    moments: list[datetime] = []
    for rule in ruleset.rules:
        if isinstance(rule, MissingRunRule) and rule.enabled and rule.flows.matches(flow):
            due = due_at(rule, flow, last)
            if due is not None and due + rule.grace >= now:
                moments.append(due + rule.grace)
    return min(moments, default=None)


def due_at(rule: MissingRunRule, flow: Flow, last: datetime | None) -> datetime | None:
    """When the next run after `last` was due, or None when none is expected."""
    if rule.every is not None:
        if last is not None:
            return last + rule.every
        return flow.schedule.start_at if flow.schedule else None
    if rule.cron is not None:
        base = last or (flow.schedule.start_at if flow.schedule else None)
        if base is None:
            return None
        zone = zoneinfo.ZoneInfo(rule.timezone)
        following = croniter(rule.cron, base.astimezone(zone)).get_next(datetime)
        return following.astimezone(UTC) if last else base
    schedule = flow.schedule
    if schedule is None or schedule.period is None or schedule.start_at is None:
        return None  # `once`, or no schedule: never missing
    period, start = schedule.period, schedule.start_at
    if last is None or last < start:
        return start
    ticks = math.floor((last - start) / period) + 1
    return start + ticks * period


# -- helpers ---------------------------------------------------------------------------


def started(run: Run) -> datetime:
    """When the run started (or was created); far in the future when unknown, so that
    a run without times counts as recent."""
    return run.started_at or run.created_at or datetime.max.replace(tzinfo=UTC)


def newest_first(runs: Sequence[Run]) -> list[Run]:
    """Runs sorted by start time, newest first; runs without a start go last."""
    return sorted(runs, key=lambda r: r.started_at or r.created_at or NEVER, reverse=True)


def newest_finished(runs: Sequence[Run]) -> Run | None:
    return next((r for r in runs if r.is_finished), None)


def percent(ratio: float) -> str:
    """0.125 → '12.5%', 0.05 → '5%'."""
    return f"{ratio * 100:.1f}".rstrip("0").rstrip(".") + "%"


def show_time(at: datetime, zone: zoneinfo.ZoneInfo) -> str:
    return at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
