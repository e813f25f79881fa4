"""The shape of rules.yaml as pydantic models: one per part, one per rule type.

These models only validate what the user wrote (types, units, ranges, which keys go
together); `rules.py` turns them into the frozen values the rest of flowbot uses, and
checks what crosses parts (channel and rule references, duplicate names). The same
models give the published JSON Schema (`flowbot rules schema`, rules.schema.json), which
accepts exactly what these models accept wherever JSON Schema can say it; what it cannot
say is listed in SCHEMA_CANNOT_SAY and in the schema's description.
"""

from __future__ import annotations

import difflib
import zoneinfo
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from croniter import CroniterError, croniter
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

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
ChannelList = Annotated[list[str], Field(min_length=1)]


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
StatusName = Annotated[
    str, BeforeValidator(_status), WithJsonSchema({"type": "string", "pattern": _STATUS_PATTERN})
]


def check_cron(expression: str) -> str:
    """`expression` if it is a cron expression that fires; ValueError otherwise."""
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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


def _extra(**schema: Any) -> ConfigDict:
    return ConfigDict(extra="forbid", frozen=True, json_schema_extra=schema)


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


class ChannelSpec(_Model):
    """A destination: exactly one of the kinds of flowbot.channels, one field each (the
    field gives the value's shape; tests/test_channels.py keeps the two in step)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra=lambda schema: _channel_schema(schema)
    )

    slack: SlackChannel | None = Field(
        None, description='Slack channel for the Web API, e.g. "#data-ops"'
    )
    webhook: Url | None = Field(None, description="Slack incoming-webhook URL")
    email: Annotated[OneOrList[EmailAddress], Field(min_length=1)] | None = Field(
        None, description="one address or a list"
    )
    file: NonBlank | None = Field(None, description="JSONL file, relative to rules.yaml")
    terminal: Annotated[Literal[True], BeforeValidator(to_bool)] | None = Field(
        None, description="print to the terminal"
    )

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            empty = [k for k, v in data.items() if v is None]
            if empty:
                raise ValueError(f"{empty[0]} has no value; a channel takes exactly one kind")
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> ChannelSpec:
        given = [k for k in KIND_NAMES if getattr(self, k)]
        if len(given) != 1:
            found = f"found {', '.join(given)}" if given else "found none"
            raise ValueError(f"a channel takes exactly one of {', '.join(KIND_NAMES)}; {found}")
        return self

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


class SelectorSpec(_Model):
    """Which flows a rule watches; all flows when absent. Keys AND, values OR. Each key
    takes one value or a list."""

    id: OneOrList[FlowId] = Field(default_factory=list, description="flow ids")
    name: OneOrList[str] = Field(default_factory=list, description="flow name globs, e.g. crm-*")
    sandbox: OneOrList[SandboxName] = Field(default_factory=list, description="sandbox names")


class DefaultsSpec(_Model):
    """Values every rule gets unless it sets its own."""

    channels: ChannelList | None = None
    severity: Severity | None = None
    repeat_after: Duration | None = None
    send_resolved: Bool | None = None


class MonitoringSpec(_Model):
    """The meta-alert about flowbot's own health."""

    channels: list[str] = Field(default_factory=list)
    after: Duration = Field(timedelta(minutes=15), description="how long degraded before alerting")
    heartbeat_url: str | None = Field(None, description="URL pinged after each good cycle")


RuleName = Annotated[
    str,
    Text(
        r"[^\s](?:[^\n]*[^\s])?",
        "a rule name has no leading/trailing spaces or newlines",
        minLength=1,
        maxLength=200,
    ),
]


class RuleSpec(_Model):
    """The keys every rule takes."""

    name: Annotated[RuleName, Field(min_length=1, max_length=200)] = Field(
        description="unique; names the alert"
    )
    type: str
    flows: SelectorSpec | None = None
    severity: Severity | None = None
    channels: ChannelList | None = None
    repeat_after: Duration | None = None
    send_resolved: Bool | None = None
    enabled: Bool = True
    owner: str | None = Field(None, description='who to mention, e.g. "@data-oncall" or "<@U123>"')
    template: str | None = Field(None, description="template directory, relative to rules.yaml")
    runbook: Url | None = Field(None, description="a page about this alert, shown in messages")
    actions: list[Literal["retry"]] = Field(
        default_factory=list, description="buttons offered in Slack (retry a failed run)"
    )

    def rule_fields(self) -> dict[str, Any]:
        """The keyword arguments of this type's class in `rule_types` that the spec sets
        (None for unset ones), and `type`."""
        skip = {"flows", "channels", "template"}
        out: dict[str, Any] = {}
        for key in type(self).model_fields:
            if key in skip:
                continue
            value = getattr(self, key)
            out[key] = tuple(value) if isinstance(value, list) else value
        return out


class StatusRule(RuleSpec):
    """A run's status is one of `status` (case-insensitive)."""

    type: Literal["status"]
    status: list[StatusName] = Field(
        min_length=1, description="failed, success, inProgress, scheduled, processing, waiting"
    )


class FailedRecordsRule(RuleSpec):
    """failedRecordCount / inputRecordCount of one run is above `above`."""

    type: Literal["failed_records"]
    above: Ratio
    min_input: Annotated[int, IntIn(0, 10**15)] = Field(
        0, description="judge only runs with at least this many inputs"
    )


class FailedRunsRule(RuleSpec):
    """Among a flow's last `window` finished runs, the failed share is above `above`;
    or its last `in_a_row` finished runs all failed."""

    model_config = _extra(
        oneOf=[_given("above"), _given("in_a_row")],
        not_={"allOf": [_given("in_a_row"), _given("window")]},
    )

    type: Literal["failed_runs"]
    above: Ratio | None = None
    window: Annotated[int, IntIn(1, 1000)] | None = None
    in_a_row: Annotated[int, IntIn(1, 1000)] | None = None

    @model_validator(mode="after")
    def _one_measure(self) -> FailedRunsRule:
        if (self.above is None) == (self.in_a_row is None):
            raise ValueError("failed_runs takes either above (with window) or in_a_row, not both")
        if self.in_a_row is not None and self.window is not None:
            raise ValueError("window goes with above; in_a_row counts its own runs")
        return self

    def rule_fields(self) -> dict[str, Any]:
        out = super().rule_fields()
        out["window"] = self.window or 10
        return out


class MissingRunRule(RuleSpec):
    """No run started within the cadence plus `grace`."""

    model_config = _extra(
        oneOf=[_given("every"), _given("cron"), _given("schedule")],
        if_=_given("timezone"),
        then=_given("cron"),
    )

    type: Literal["missing_run"]
    every: Duration | None = None
    cron: str | None = Field(None, description='e.g. "0 * * * *"; must fire')
    timezone: str | None = Field(None, description="for cron; default UTC")
    schedule: Literal["flow"] | None = Field(None, description="use the flow's scheduleParams")
    grace: DurationOrZero | None = Field(None, description="default 15m")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else check_cron(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return _check_zone(value)

    @model_validator(mode="after")
    def _one_cadence(self) -> MissingRunRule:
        given = [k for k in ("every", "cron", "schedule") if getattr(self, k) is not None]
        if not given:
            raise ValueError(
                'missing_run needs a cadence: every: 1h, cron: "0 * * * *" or schedule: flow'
            )
        if len(given) > 1:
            raise ValueError(f"missing_run takes one cadence, found {' and '.join(given)}")
        if self.timezone is not None and self.cron is None:
            raise ValueError("timezone goes with cron")
        return self

    def rule_fields(self) -> dict[str, Any]:
        out = super().rule_fields()
        out["timezone"] = self.timezone or "UTC"
        if self.grace is None:
            out.pop("grace")
        return out


class DurationRule(RuleSpec):
    """A finished run took longer than `above`, or a running one has run longer."""

    type: Literal["duration"]
    above: Duration


class ErrorCodeRule(RuleSpec):
    """An error code of the run or its activities matches one of the globs."""

    type: Literal["error_code"]
    codes: list[str] = Field(min_length=1, description='globs, e.g. "MAPPER-*"')


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


class AepUiSpec(_Model):
    """What links into the AEP UI need."""

    org: Annotated[
        str, Text(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", "an org is letters, digits, . _ -")
    ] = Field(description="the IMS org's short name in experience.adobe.com links")


class DiagnosticsSpec(_Model):
    """Row-level errors of failed runs, read through the Data Access API."""

    enabled: Bool = False
    show_values: Bool = Field(False, description="record values (PII) stay out unless true")
    budget: Annotated[int, IntIn(0, 1000)] = Field(
        20, description="diagnostic requests per cycle, at most"
    )


class InhibitSpec(_Model):
    """While `source` fires for a flow, the `target` rules are muted for that flow."""

    source: str = Field(description="a rule name")
    target: list[str] = Field(min_length=1, description="rule names")


class SlackActionsSpec(_Model):
    """Who may press which button (Slack user or user-group ids)."""

    allow: list[SlackId] = Field(default_factory=list, description="may press any button")
    retry: list[SlackId] = Field(default_factory=list, description="may press Retry")


class DigestSpec(_Model):
    """A periodic summary message."""

    cron: str = Field(description='when, e.g. "0 8 * * 1-5"; must fire')
    timezone: str = Field("UTC", description="for cron")
    channels: ChannelList

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_cron(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        _check_zone(value)
        return value


class RulesFile(_Model):
    """The top level of rules.yaml. Channels and rules are validated one by one."""

    sandboxes: list[SandboxName] = Field(default_factory=lambda: ["prod"], min_length=1)
    poll_every: Duration = timedelta(minutes=5)
    lookback: Duration = timedelta(hours=24)
    late_arrival: DurationOrZero = Field(
        timedelta(hours=1), description="runs that show up this long after they started are judged"
    )
    channels: dict[str, Any] = Field(default_factory=dict)
    defaults: Any = None  # DefaultsSpec, validated on its own
    rules: list[Any]
    group_at: Annotated[int, IntIn(1, 100_000)] = Field(
        10, description="flows firing one rule before they are grouped"
    )
    timezone: str = Field("UTC", description="for times shown in messages")
    retention: Duration = Field(
        timedelta(days=30), description="how long runs and messages are kept"
    )
    templates: str | None = Field(None, description="template directory, relative to rules.yaml")
    monitoring: Any = None  # MonitoringSpec, validated on its own
    aep_ui: AepUiSpec | None = None
    diagnostics: DiagnosticsSpec = DiagnosticsSpec()
    inhibit: list[InhibitSpec] = Field(default_factory=list)
    slack_actions: SlackActionsSpec = SlackActionsSpec()
    digest: DigestSpec | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        _check_zone(value)
        return value
