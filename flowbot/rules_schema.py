"""The shape of rules.yaml as specs (`spec.py`): one per part, one per rule type.

These specs only validate what the user wrote (types, units, ranges, which keys go
together); `rules.py` turns them into the frozen values the rest of flowbot uses, and
checks what crosses parts (channel and rule references, duplicate names). The same
specs give the published JSON Schema (`flowbot rules schema`, rules.schema.json), which
accepts exactly what these specs accept wherever JSON Schema can say it; what it cannot
say is listed in SCHEMA_CANNOT_SAY and in the schema's description.
"""

# No `from __future__ import annotations`: the specs' field types are built once here,
# not parsed from strings on first use.
import difflib
import zoneinfo
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from flowbot.channels import KIND_NAMES, KINDS
from flowbot.rules_parts import Channel
from flowbot.rules_values import (
    MAX_DURATION,
    Bool,
    Duration,
    DurationOrZero,
    IntIn,
    OneOrList,
    Ratio,
    Text,
    format_duration,
    parse_duration,
    parse_ratio,
    to_bool,
)
from flowbot.spec import Before, Length, Schema, Spec, key

__all__ = ["format_duration", "parse_duration", "parse_ratio"]

# Run statuses the Flow Service reports: sources spell them success, failed, inProgress,
# scheduled; destinations Success, Failed, Processing, Waiting. Compared in lower case.
STATUS_SPELLINGS = ("success", "failed", "inProgress", "scheduled", "processing", "waiting")
KNOWN_STATUSES = frozenset(s.lower() for s in STATUS_SPELLINGS)
# A cron expression must fire within this long after any moment (29 February: 4 years).
CRON_HORIZON = timedelta(days=5 * 366)

SCHEMA_CANNOT_SAY = (
    "what JSON Schema cannot say is checked by `flowbot rules check` only: channel names "
    "used by rules, defaults, monitoring and digest are defined under channels; rule names "
    "are unique; inhibit names existing rules and no rule inhibits itself; template "
    "directories exist; time zones are IANA names; cron expressions are valid and fire "
    f"(within {CRON_HORIZON.days // 366} years); durations are at most "
    f"{MAX_DURATION.days}d; every ${{NAME}} is set in the environment and its value is "
    "valid where it is used; YAML keys are not duplicated"
)

SEVERITIES = ("info", "warning", "critical")
Severity = Literal["info", "warning", "critical"]
_EMAIL = r"[^@\s,;<>\"']+@[^@\s,;<>\"']+\.[^@\s,;<>\"']+"
NonBlank = Annotated[str, Text(r"[\s\S]*\S[\s\S]*", "must not be blank")]
Url = Annotated[str, Text(r"https?://\S+", "must be an http:// or https:// URL")]
SandboxName = Annotated[
    str,
    Text(
        r"[A-Za-z0-9_-]+",
        "a sandbox name has letters, digits, - and _ only (several sandboxes: [prod, dev])",
    ),
]
FlowId = Annotated[str, Text(r"[^\s,]+", "a flow id has no spaces or commas (several ids: [a, b])")]
SlackId = Annotated[
    str, Text(r"[UWS][A-Z0-9]{2,30}", "not a Slack user (U…, W…) or user-group (S…) id")
]
SlackChannel = Annotated[
    str, Text(r"\S+", 'not a Slack channel: {value}; write it like "#data-ops"')
]
EmailAddress = Annotated[str, Text(_EMAIL, "not an email address")]
ChannelList = Annotated[list[str], Length(min=1)]


def _case_free(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


def _status(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() not in KNOWN_STATUSES:
        hint = difflib.get_close_matches(value.strip(), STATUS_SPELLINGS, n=1, cutoff=0.5)
        suffix = f"; did you mean '{hint[0]}'?" if hint else ""
        raise ValueError(
            f"'{value}' is not a run status; one of {', '.join(STATUS_SPELLINGS)} "
            f"(any case){suffix}"
        )
    return value


_STATUS_PATTERN = r"^\s*(?:" + "|".join(_case_free(s) for s in STATUS_SPELLINGS) + r")\s*(?![\s\S])"
StatusName = Annotated[str, Before(_status), Schema({"type": "string", "pattern": _STATUS_PATTERN})]


def check_cron(expression: str) -> str:
    """`expression` if it is a cron expression that fires; ValueError otherwise."""
    from croniter import CroniterError, croniter  # only files with a cron pay for it

    try:
        valid = croniter.is_valid(expression)
    except (CroniterError, ValueError, TypeError, OverflowError):
        valid = False
    if not valid:
        raise ValueError(f'not a cron expression: {expression!r}; e.g. "0 * * * *"')
    start = datetime(2001, 1, 1, tzinfo=UTC)
    try:
        following = croniter(expression, start).get_next(datetime)
    except (CroniterError, ValueError, OverflowError):
        following = None
    if following is None or following - start > CRON_HORIZON:
        raise ValueError(f"cron expression {expression!r} never fires (no such date)")
    return expression


def _check_zone(name: str | None) -> str | None:
    if name is None:
        return None
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name like UTC or Europe/Paris"
        ) from None
    return name


def _given(key: str) -> dict[str, Any]:
    """JSON Schema: `key` is present and not null."""
    return {"required": [key], "properties": {key: {"not": {"type": "null"}}}}


def _extra(**schema: Any) -> dict[str, Any]:
    """JSON Schema keywords of a spec; not_ and if_ stand for not and if."""
    return {k.rstrip("_") if k in ("not_", "if_") else k: v for k, v in schema.items()}


Cron = Annotated[str, Before(lambda value: check_cron(value) if isinstance(value, str) else value)]
Zone = Annotated[str, Before(lambda value: _check_zone(value) if isinstance(value, str) else value)]


def _no_null_keys(schema: dict[str, Any]) -> None:
    """A channel's one key always has a value: no `null` in the schema, one key only."""
    for prop in schema["properties"].values():
        kinds = prop.pop("anyOf", None)
        if kinds:
            prop.update(next(k for k in kinds if k.get("type") != "null"))
        prop.pop("default", None)
    schema.update(minProperties=1, maxProperties=1)


def _channel_schema(schema: dict[str, Any]) -> None:
    schema["description"] = f"A destination: exactly one of {', '.join(KIND_NAMES)}."
    _no_null_keys(schema)


@dataclass(kw_only=True, eq=False)
class ChannelSpec(Spec):
    """A destination: exactly one of the kinds of flowbot.channels, one field each (the
    field gives the value's shape; tests/test_channels.py keeps the two in step)."""

    schema_extra: ClassVar[Any] = _channel_schema

    slack: SlackChannel | None = key(None, doc='Slack channel for the Web API, e.g. "#data-ops"')
    webhook: Url | None = key(None, doc="Slack incoming-webhook URL")
    email: Annotated[OneOrList[EmailAddress], Length(min=1)] | None = key(
        None, doc="one address or a list"
    )
    file: NonBlank | None = key(None, doc="JSONL file, relative to rules.yaml")
    terminal: Annotated[Literal[True], Before(to_bool)] | None = key(
        None, doc="print to the terminal"
    )

    @classmethod
    def before_check(cls, data: dict[str, Any]) -> dict[str, Any]:
        empty = [k for k, v in data.items() if v is None]
        if empty:
            raise ValueError(f"{empty[0]} has no value; a channel takes exactly one kind")
        return data

    def cross_check(self) -> None:
        given = [k for k in KIND_NAMES if getattr(self, k)]
        if len(given) != 1:
            found = f"found {', '.join(given)}" if given else "found none"
            raise ValueError(f"a channel takes exactly one of {', '.join(KIND_NAMES)}; {found}")

    def channel(self, name: str, base: Path) -> Channel:
        """The loaded channel called `name`; a path target is resolved against `base`
        (the folder of rules.yaml)."""
        kind = next(KINDS[k] for k in KIND_NAMES if getattr(self, k))
        value = getattr(self, kind.name)
        target: str | tuple[str, ...]
        if kind.target == "addresses":
            target = (value,) if isinstance(value, str) else tuple(value)
        elif kind.target == "path":
            target = str((base / str(value)).resolve())
        elif kind.target == "flag":
            target = ""
        else:
            target = str(value)
        return Channel(name=name, kind=kind.name, target=target)


@dataclass(kw_only=True, eq=False)
class SelectorSpec(Spec):
    """Which flows a rule watches; all flows when absent. Keys AND, values OR. Each key
    takes one value or a list."""

    id: OneOrList[FlowId] = key(factory=list, doc="flow ids")
    name: OneOrList[str] = key(factory=list, doc="flow name globs, e.g. crm-*")
    sandbox: OneOrList[SandboxName] = key(factory=list, doc="sandbox names")


@dataclass(kw_only=True, eq=False)
class DefaultsSpec(Spec):
    """Values every rule gets unless it sets its own."""

    channels: ChannelList | None = None
    severity: Severity | None = None
    repeat_after: Duration | None = None
    send_resolved: Bool | None = None


@dataclass(kw_only=True, eq=False)
class MonitoringSpec(Spec):
    """The meta-alert about flowbot's own health."""

    channels: list[str] = key(factory=list)
    after: Duration = key(timedelta(minutes=15), doc="how long degraded before alerting")
    heartbeat_url: str | None = key(None, doc="URL pinged after each good cycle")


RuleName = Annotated[
    str,
    Text(
        r"[^\s](?:[^\n]*[^\s])?",
        "a rule name has no leading/trailing spaces or newlines",
        minLength=1,
        maxLength=200,
    ),
    Length(min=1, max=200),
]


@dataclass(kw_only=True, eq=False)
class RuleSpec(Spec):
    """The keys every rule takes."""

    name: RuleName = key(doc="unique; names the alert")
    type: str
    flows: SelectorSpec | None = None
    severity: Severity | None = None
    channels: ChannelList | None = None
    repeat_after: Duration | None = None
    send_resolved: Bool | None = None
    enabled: Bool = True
    owner: str | None = key(None, doc='who to mention, e.g. "@data-oncall" or "<@U123>"')
    template: str | None = key(None, doc="template directory, relative to rules.yaml")
    runbook: Url | None = key(None, doc="a page about this alert, shown in messages")
    actions: list[Literal["retry"]] = key(
        factory=list, doc="buttons offered in Slack (retry a failed run)"
    )

    def rule_fields(self) -> dict[str, Any]:
        """The keyword arguments of this type's class in `rule_types` that the spec sets
        (None for unset ones), and `type`."""
        skip = {"flows", "channels", "template"}
        out: dict[str, Any] = {}
        for field in fields(self):
            if field.name in skip:
                continue
            value = getattr(self, field.name)
            out[field.name] = tuple(value) if isinstance(value, list) else value
        return out


@dataclass(kw_only=True, eq=False)
class StatusRule(RuleSpec):
    """A run's status is one of `status` (case-insensitive)."""

    type: Literal["status"]
    status: Annotated[list[StatusName], Length(min=1)] = key(
        doc="failed, success, inProgress, scheduled, processing, waiting"
    )


@dataclass(kw_only=True, eq=False)
class FailedRecordsRule(RuleSpec):
    """failedRecordCount / inputRecordCount of one run is above `above`."""

    type: Literal["failed_records"]
    above: Ratio
    min_input: Annotated[int, IntIn(0, 10**15)] = key(
        0, doc="judge only runs with at least this many inputs"
    )


@dataclass(kw_only=True, eq=False)
class FailedRunsRule(RuleSpec):
    """Among a flow's last `window` finished runs, the failed share is above `above`;
    or its last `in_a_row` finished runs all failed."""

    schema_extra: ClassVar[Any] = _extra(
        oneOf=[_given("above"), _given("in_a_row")],
        not_={"allOf": [_given("in_a_row"), _given("window")]},
    )

    type: Literal["failed_runs"]
    above: Ratio | None = None
    window: Annotated[int, IntIn(1, 1000)] | None = None
    in_a_row: Annotated[int, IntIn(1, 1000)] | None = None

    def cross_check(self) -> None:
        if (self.above is None) == (self.in_a_row is None):
            raise ValueError("failed_runs takes either above (with window) or in_a_row, not both")
        if self.in_a_row is not None and self.window is not None:
            raise ValueError("window goes with above; in_a_row counts its own runs")

    def rule_fields(self) -> dict[str, Any]:
        out = super().rule_fields()
        out["window"] = self.window or 10
        return out


@dataclass(kw_only=True, eq=False)
class MissingRunRule(RuleSpec):
    """No run started within the cadence plus `grace`."""

    schema_extra: ClassVar[Any] = _extra(
        oneOf=[_given("every"), _given("cron"), _given("schedule")],
        if_=_given("timezone"),
        then=_given("cron"),
    )

    type: Literal["missing_run"]
    every: Duration | None = None
    cron: Cron | None = key(None, doc='e.g. "0 * * * *"; must fire')
    timezone: Zone | None = key(None, doc="for cron; default UTC")
    schedule: Literal["flow"] | None = key(None, doc="use the flow's scheduleParams")
    grace: DurationOrZero | None = key(None, doc="default 15m")

    def cross_check(self) -> None:
        given = [k for k in ("every", "cron", "schedule") if getattr(self, k) is not None]
        if not given:
            raise ValueError(
                'missing_run needs a cadence: every: 1h, cron: "0 * * * *" or schedule: flow'
            )
        if len(given) > 1:
            raise ValueError(f"missing_run takes one cadence, found {' and '.join(given)}")
        if self.timezone is not None and self.cron is None:
            raise ValueError("timezone goes with cron")

    def rule_fields(self) -> dict[str, Any]:
        out = super().rule_fields()
        out["timezone"] = self.timezone or "UTC"
        if self.grace is None:
            out.pop("grace")
        return out


@dataclass(kw_only=True, eq=False)
class DurationRule(RuleSpec):
    """A finished run took longer than `above`, or a running one has run longer."""

    type: Literal["duration"]
    above: Duration


@dataclass(kw_only=True, eq=False)
class ErrorCodeRule(RuleSpec):
    """An error code of the run or its activities matches one of the globs."""

    type: Literal["error_code"]
    codes: Annotated[list[str], Length(min=1)] = key(doc='globs, e.g. "MAPPER-*"')


@dataclass(kw_only=True, eq=False)
class ZeroRecordsRule(RuleSpec):
    """A successful run that read no records."""

    type: Literal["zero_records"]


RULE_MODELS: dict[str, type[RuleSpec]] = {
    "status": StatusRule,
    "failed_records": FailedRecordsRule,
    "failed_runs": FailedRunsRule,
    "missing_run": MissingRunRule,
    "duration": DurationRule,
    "error_code": ErrorCodeRule,
    "zero_records": ZeroRecordsRule,
}


@dataclass(kw_only=True, eq=False)
class AepUiSpec(Spec):
    """What links into the AEP UI need."""

    org: Annotated[
        str, Text(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", "an org is letters, digits, . _ -")
    ] = key(doc="the IMS org's short name in experience.adobe.com links")


@dataclass(kw_only=True, eq=False)
class DiagnosticsSpec(Spec):
    """Row-level errors of failed runs, read through the Data Access API."""

    enabled: Bool = False
    show_values: Bool = key(False, doc="record values (PII) stay out unless true")
    budget: Annotated[int, IntIn(0, 1000)] = key(20, doc="diagnostic requests per cycle, at most")


@dataclass(kw_only=True, eq=False)
class InhibitSpec(Spec):
    """While `source` fires for a flow, the `target` rules are muted for that flow."""

    source: str = key(doc="a rule name")
    target: Annotated[list[str], Length(min=1)] = key(doc="rule names")


@dataclass(kw_only=True, eq=False)
class SlackActionsSpec(Spec):
    """Who may press which button (Slack user or user-group ids)."""

    allow: list[SlackId] = key(factory=list, doc="may press any button")
    retry: list[SlackId] = key(factory=list, doc="may press Retry")


@dataclass(kw_only=True, eq=False)
class DigestSpec(Spec):
    """A periodic summary message."""

    cron: Cron = key(doc='when, e.g. "0 8 * * 1-5"; must fire')
    timezone: Zone = key("UTC", doc="for cron")
    channels: ChannelList


@dataclass(kw_only=True, eq=False)
class RulesFile(Spec):
    """The top level of rules.yaml. Channels and rules are validated one by one."""

    sandboxes: Annotated[list[SandboxName], Length(min=1)] = key(factory=lambda: ["prod"])
    poll_every: Duration = timedelta(minutes=5)
    lookback: Duration = timedelta(hours=24)
    late_arrival: DurationOrZero = key(
        timedelta(hours=1), doc="runs that show up this long after they started are judged"
    )
    channels: dict[str, Any] = key(factory=dict)
    defaults: Any = None  # DefaultsSpec, validated on its own
    rules: list[Any]
    group_at: Annotated[int, IntIn(1, 100_000)] = key(
        10, doc="flows firing one rule before they are grouped"
    )
    timezone: Zone = key("UTC", doc="for times shown in messages")
    retention: Duration = key(timedelta(days=30), doc="how long runs and messages are kept")
    templates: str | None = key(None, doc="template directory, relative to rules.yaml")
    monitoring: Any = None  # MonitoringSpec, validated on its own
    aep_ui: AepUiSpec | None = None
    diagnostics: DiagnosticsSpec = DiagnosticsSpec()
    inhibit: list[InhibitSpec] = key(factory=list)
    slack_actions: SlackActionsSpec = SlackActionsSpec()
    digest: DigestSpec | None = None
