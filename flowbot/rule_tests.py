"""Rule unit tests (`flowbot rules test`): given flows, runs and a time, expect alerts.

A test file names the rules file and lists tests; each test has steps, evaluated in
order like cycles of the daemon:

    rules: rules.yaml                 # relative to this file
    tests:
      - name: a failed run fires, the next good one resolves
        at: 2024-05-01T12:00:00Z      # when step 0 is evaluated
        flows: [{id: f1, name: crm-daily}]
        runs: [{flow: f1, status: failed, started: -30m}]   # times relative to `at`
        steps:
          - expect: {findings: [{rule: run-failed, flow: crm-daily}]}
          - at: +1h                   # relative to the test's `at`
            runs: [{flow: f1, status: success, started: -10m}]
            expect: {findings: [], firing: []}

Flows and runs are given in a compact form, turned into real Flow Service payloads
(`flowbot.sim.payloads`) and parsed like the API's (`flowbot.aep.parse`), or loaded
from a JSON file with `{file: runs.json}`. A step's `runs` are added to (or replace,
by id) what the test holds, and they are the runs "changed" in that step; the test's
own `runs` are changed in step 0. `firing` folds the steps: (firing ∪ findings) − clear.
Expectations left out are not checked; `flow` is a flow's name or id. As in the daemon,
flows and runs of a sandbox the rules do not watch (`sandboxes:`) are never seen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from flowbot.errors import ConfigError
from flowbot.models import Flow, Run
from flowbot.rules import RuleSet, load_rules
from flowbot.rules_schema import parse_duration
from flowbot.rules_yaml import Located, format_path, parse_yaml, read_text
from flowbot.spec import Before, Length, Problem, Spec, check, key

Key = tuple[str, str]


def _pairs(value: Any) -> Any:
    for item in value if isinstance(value, list) else []:
        if not isinstance(item, dict) or set(item) != {"rule", "flow"}:
            raise ValueError(f"each expected alert is {{rule, flow}}, got {item}")
    return value


def _aware(value: Any) -> Any:
    """A time as YAML gives it (a timestamp, a date, ISO text or Unix seconds), in UTC
    when it names no zone."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"not a date and time: {value!r}; e.g. 2026-05-01T10:00:00Z") from None
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


Pairs = Annotated[list[dict[str, str]], Before(_pairs)]


@dataclass(kw_only=True, eq=False)
class Expect(Spec):
    findings: Pairs | None = None
    firing: Pairs | None = None


@dataclass(kw_only=True, eq=False)
class Step(Spec):
    at: str | None = None
    flows: list[dict[str, Any]] = key(factory=list)
    runs: list[dict[str, Any]] = key(factory=list)
    expect: Expect = Expect()


@dataclass(kw_only=True, eq=False)
class Case(Spec):
    name: str
    at: Annotated[datetime, Before(_aware)]
    flows: list[dict[str, Any]] = key(factory=list)
    runs: list[dict[str, Any]] = key(factory=list)
    steps: Annotated[list[Step], Length(min=1)]


@dataclass(kw_only=True, eq=False)
class TestFile(Spec):
    rules: str
    tests: Annotated[list[Case], Length(min=1)]


@dataclass
class Outcome:
    """One test's result: `failures` holds a readable diff per failing step."""

    name: str
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def run_test_file(path: str | Path) -> list[Outcome]:
    """Load a test file and its rules, run every test. Raises ConfigError when the
    test file or the rules are invalid (not when a test fails)."""
    source = Path(path)
    located, problems = parse_yaml(read_text(source, str(path)), str(path), {})
    spec, errors = check(TestFile, located.data)
    problems += [_describe(located, error) for error in errors]
    if problems or spec is None:
        message = problems[0] if len(problems) == 1 else f"{path}: {len(problems)} problems"
        raise ConfigError(message, problems=problems)
    ruleset = load_rules(source.parent / spec.rules)
    outcomes = []
    for index, case in enumerate(spec.tests):
        try:
            outcomes.append(run_case(case, ruleset, source.parent))
        except (ValueError, OSError) as exc:
            where = located.where(("tests", index))
            raise ConfigError(f"tests[{index}] '{case.name}': {exc} ({where})") from None
    return outcomes


def run_case(case: Case, ruleset: RuleSet, base: Path) -> Outcome:
    """Evaluate one test's steps in order and compare with what each step expects."""
    from flowbot.evaluate import evaluate

    outcome = Outcome(case.name)
    flows: dict[str, Flow] = {}
    runs: dict[str, Run] = {}
    firing: set[Key] = set()
    counter = [0]
    for index, step in enumerate(case.steps):
        now = case.at + (_offset(step.at) if step.at else timedelta())
        new_flows = [*case.flows, *step.flows] if index == 0 else step.flows
        for flow in build_flows(new_flows, now, base):
            flows[flow.id] = flow
        new_runs = [*case.runs, *step.runs] if index == 0 else step.runs
        changed = []
        for run in build_runs(new_runs, now, base, flows, counter):
            runs[run.id] = run
            changed.append(run.id)
        # The daemon reads only the sandboxes the rules watch: the rest never alerts.
        watched = set(ruleset.sandboxes)
        history: dict[str, list[Run]] = {}
        for run in runs.values():
            if run.sandbox in watched:
                history.setdefault(run.flow_id, []).append(run)
        seen = [f for f in flows.values() if f.sandbox in watched]
        changed = [r for r in changed if runs[r].sandbox in watched]
        result = evaluate(ruleset, seen, history, changed, now)
        found = {f.key for f in result.findings}
        firing = (firing | found) - set(result.clear)
        names = {f.id: f.name or f.id for f in flows.values()}
        reasons = {f.key: f.reason for f in result.findings}
        diffs = []
        for label, expected, got in (
            ("findings", step.expect.findings, found),
            ("firing", step.expect.firing, firing),
        ):
            if expected is None:
                continue
            want = {(e["rule"], _flow_id(e["flow"], flows)) for e in expected}
            if want != got:
                diffs.append(_diff(label, want, got, names, reasons))
        if diffs:
            outcome.failures.append(f"step {index} (at {now.isoformat()}):\n" + "\n".join(diffs))
    return outcome


def build_flows(items: list[dict[str, Any]], now: datetime, base: Path) -> list[Flow]:
    """Compact flows → Flow values, through real payloads and the API parser.

    Keys: id, name, state, sandbox, frequency (once/minute/hour/day/week or none),
    interval, start (relative time of scheduleParams.startTime), last_run (relative
    start of lastRunDetails), or file (a JSON file of flows)."""
    from flowbot.aep.parse import flows_in, parse_flow
    from flowbot.sim.payloads import make_flow, ms

    out = []
    for item in items:
        if "file" in item:
            out.extend(flows_in(_read_json(base / item["file"])))
            continue
        _check_keys(
            item, {"id", "name", "state", "sandbox", "frequency", "interval", "start", "last_run"}
        )
        flow_id = str(item.get("id") or item.get("name") or "")
        if not flow_id:
            raise ValueError(f"a flow needs an id or a name: {item}")
        last_run = None
        if "last_run" in item:
            last_run = {"state": "success", "startedAtUTC": ms(now + _offset(item["last_run"]))}
        frequency = item.get("frequency", "hour")
        payload = make_flow(
            flow_id,
            name=str(item.get("name", flow_id)),
            state=str(item.get("state", "enabled")),
            sandbox=str(item.get("sandbox", "prod")),
            frequency=None if frequency in (None, "none") else str(frequency),
            interval=int(item.get("interval", 1)),
            start_at=now + _offset(item["start"]) if "start" in item else None,
            last_run=last_run,
        )
        out.append(parse_flow(payload))
    return out


def build_runs(
    items: list[dict[str, Any]],
    now: datetime,
    base: Path,
    flows: dict[str, Flow],
    counter: list[int],
) -> list[Run]:
    """Compact runs → Run values. Keys: id, flow (name or id), status, started
    (relative, default -10m), duration (default 5m for finished runs), input, failed,
    errors and activity_errors (codes, or {code, message}), sandbox; or file."""
    from flowbot.aep.parse import parse_run, runs_in
    from flowbot.sim.payloads import make_run

    out = []
    for item in items:
        if "file" in item:
            out.extend(runs_in(_read_json(base / item["file"])))
            continue
        _check_keys(
            item,
            {"id", "flow", "status", "started", "duration", "input", "failed", "errors",
             "activity_errors", "sandbox"},
        )  # fmt: skip
        if "flow" not in item:
            raise ValueError(f"a run needs its flow (a name or id): {item}")
        flow_id = _flow_id(str(item["flow"]), flows)
        if flow_id not in flows:
            flows[flow_id] = Flow(id=flow_id, name=flow_id, state="enabled", sandbox="prod")
        counter[0] += 1
        status = str(item.get("status", "success"))
        started = now + _offset(item.get("started", "-10m"))
        finished = status.lower() in ("success", "failed")
        took = parse_duration(item["duration"]) if "duration" in item else timedelta(minutes=5)
        payload = make_run(
            flow_id,
            run_id=str(item.get("id") or f"run-{counter[0]}"),
            status=status,
            started_at=started,
            completed_at=started + took if finished else None,
            input_records=item.get("input", 100),
            failed_records=int(item.get("failed", 0)),
            errors=_errors(item.get("errors")),
            activity_errors=_errors(item.get("activity_errors")),
            sandbox=str(item.get("sandbox", flows[flow_id].sandbox or "prod")),
        )
        out.append(parse_run(payload))
    return out


def _errors(value: Any) -> list[dict[str, Any]] | None:
    if not value:
        return None
    out = []
    for item in value:
        if isinstance(item, dict):
            out.append({"code": str(item["code"]), "message": str(item.get("message", ""))})
        else:
            out.append({"code": str(item), "message": f"{item} (rule test)"})
    return out


def _offset(text: Any) -> timedelta:
    """'+1h', '-30m', '0m' → timedelta."""
    value = str(text).strip()
    sign = -1 if value.startswith("-") else 1
    value = value.lstrip("+-")
    if value in ("0", ""):
        return timedelta()
    return sign * parse_duration(value)


def _flow_id(ref: str, flows: dict[str, Flow]) -> str:
    if ref in flows:
        return ref
    return next((f.id for f in flows.values() if f.name == ref), ref)


def _check_keys(item: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise ValueError(
            f"unknown key {unknown[0]!r} in {item}; allowed: {', '.join(sorted(allowed))}"
        )


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _diff(
    label: str, want: set[Key], got: set[Key], names: dict[str, str], reasons: dict[Key, str]
) -> str:
    def show(key: Key) -> str:
        reason = f"  ({reasons[key]})" if key in reasons else ""
        return f"{key[0]} @ {names.get(key[1], key[1])}{reason}"

    lines = [f"  {label} differ:"]
    lines += [f"    - expected, missing:  {show(k)}" for k in sorted(want - got)]
    lines += [f"    + got, not expected:  {show(k)}" for k in sorted(got - want)]
    lines += [f"      expected and got:   {show(k)}" for k in sorted(want & got)]
    return "\n".join(lines)


def _describe(located: Located, error: Problem) -> str:
    loc = error.loc
    if error.kind == "unknown_key":
        return f"unknown key '{loc[-1]}' in {format_path(loc[:-1])} ({located.where(loc)})"
    if error.kind == "missing":
        return f"missing key '{loc[-1]}' in {format_path(loc[:-1])} ({located.where(loc[:-1])})"
    return f"{format_path(loc)}: {error.message} ({located.where(loc)})"
