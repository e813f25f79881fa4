"""The shape of rules.yaml as pydantic models: one per part, one per rule type.

These models only validate what the user wrote (types, units, ranges, which keys go
together); `rules.py` turns them into the frozen values the rest of flowbot uses, and
checks what crosses parts (channel references, duplicate names). The same models give
the JSON Schema that editors use (`flowbot rules schema`).
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import timedelta
from typing import Annotated, Any, Literal

from croniter import croniter
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema

RUN_LEVEL_TYPES = frozenset({"status", "failed_records", "duration", "error_code", "zero_records"})
# Statuses the Flow Service reports (sources and destinations), lower case.
KNOWN_STATUSES = frozenset(
    {"success", "failed", "inprogress", "scheduled", "processing", "waiting", "completed"}
)

_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
DURATION_PATTERN = r"^\s*(\d+(\.\d+)?(ms|s|m|h|d|w)\s*)+$"
RATIO_PATTERN = r"^\s*\d+(\.\d+)?\s*%\s*$"
_EMAIL = re.compile(r"^[^@\s,;<>\"']+@[^@\s,;<>\"']+\.[^@\s,;<>\"']+$")


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """'30s', '15m', '4h', '2d', '1w' (or combined, '1h30m') → timedelta.

    A bare number is refused: without a unit nobody can tell seconds from minutes.
    Raises ValueError with a message meant for the user.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(
            f"a duration needs a unit, like {value}s or {value}m; got the number {value!r}"
        )
    text = value.strip()
    if not text or _DURATION.sub("", text).strip():
        raise ValueError(f"not a duration: {value!r}; write it like 30s, 15m, 4h or 2d")
    total = timedelta()
    for number, unit in _DURATION.findall(text):
        total += float(number) * _UNITS[unit]
    return total


def parse_ratio(value: str | int | float) -> float:
    """'5%' or 0.05 → 0.05. Anything outside 0–100% raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"a ratio must be a percentage like 5% or a number like 0.05, got {value}")
    if isinstance(value, str):
        text = value.strip()
        try:
            ratio = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(
                f"not a ratio: {value!r}; write a percentage like 5% or a number like 0.05"
            ) from None
    elif isinstance(value, int | float):
        ratio = float(value)
    else:
        raise ValueError(
            f"a ratio must be a percentage like 5% or a number like 0.05, got {value!r}"
        )
    if not 0 <= ratio <= 1:
        hint = (
            f" (did you mean {value}%?)" if isinstance(value, int | float) and ratio <= 100 else ""
        )
        raise ValueError(f"ratio {value} is outside 0–100%{hint}")
    return ratio


def format_duration(delta: timedelta) -> str:
    """timedelta → '2h', '1h30m', '45s' (the way rules.yaml writes them)."""
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return f"{delta.total_seconds():g}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def _positive(delta: timedelta) -> timedelta:
    if delta <= timedelta():
        raise ValueError("must be longer than zero")
    return delta


def _duration(value: Any) -> timedelta:
    return _positive(parse_duration(value))


def _duration_or_zero(value: Any) -> timedelta:
    delta = parse_duration(value)
    if delta < timedelta():
        raise ValueError("must not be negative")
    return delta


def _str_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


_DURATION_SCHEMA = {"type": "string", "pattern": DURATION_PATTERN, "examples": ["30s", "15m", "4h"]}
_RATIO_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": RATIO_PATTERN, "examples": ["5%"]},
        {"type": "number", "minimum": 0, "maximum": 1},
    ]
}
_STR_LIST_SCHEMA = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}

Duration = Annotated[timedelta, BeforeValidator(_duration), WithJsonSchema(_DURATION_SCHEMA)]
DurationOrZero = Annotated[
    timedelta, BeforeValidator(_duration_or_zero), WithJsonSchema(_DURATION_SCHEMA)
]
Ratio = Annotated[float, BeforeValidator(parse_ratio), WithJsonSchema(_RATIO_SCHEMA)]
StrList = Annotated[list[str], BeforeValidator(_str_list), WithJsonSchema(_STR_LIST_SCHEMA)]
Severity = Literal["info", "warning", "critical"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_zone(name: str | None) -> str | None:
    if name is None:
        return None
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name like UTC or Europe/Paris"
        ) from None
    return name


class ChannelSpec(_Model):
    """A destination: exactly one of slack, webhook, email, file or terminal."""

    slack: str | None = Field(None, description='Slack channel for the Web API, e.g. "#data-ops"')
    webhook: str | None = Field(None, description="Slack incoming-webhook URL")
    email: StrList | None = Field(None, description="one address or a list")
    file: str | None = Field(None, description="JSONL file, relative to rules.yaml")
    terminal: Literal[True] | None = Field(None, description="print to the terminal")

    @field_validator("slack")
    @classmethod
    def _slack(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or " " in value.strip()):
            raise ValueError(f'not a Slack channel: {value!r}; write it like "#data-ops"')
        return value

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://\S+$", value):
            raise ValueError("a webhook must be an http(s):// URL")
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("give at least one address")
            bad = [a for a in value if not _EMAIL.match(a)]
            if bad:
                raise ValueError(f"not an email address: {', '.join(repr(a) for a in bad)}")
        return value

    @field_validator("file")
    @classmethod
    def _file(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("give a file path")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> ChannelSpec:
        given = [k for k in ("slack", "webhook", "email", "file", "terminal") if getattr(self, k)]
        if len(given) != 1:
            found = f"found {', '.join(given)}" if given else "found none"
            raise ValueError(
                f"a channel takes exactly one of slack, webhook, email, file, terminal; {found}"
            )
        return self

    def kind_and_target(self) -> tuple[Any, str | tuple[str, ...]]:
        if self.slack:
            return "slack", self.slack
        if self.webhook:
            return "webhook", self.webhook
        if self.email:
            return "email", tuple(self.email)
        if self.file:
            return "file", self.file
        return "terminal", ""


class SelectorSpec(_Model):
    """Which flows a rule watches; all flows when absent. Keys AND, values OR."""

    id: StrList = Field(default_factory=list, description="flow ids")
    name: StrList = Field(default_factory=list, description="flow name globs, e.g. crm-*")
    sandbox: StrList = Field(default_factory=list, description="sandbox names")


class DefaultsSpec(_Model):
    """Values every rule gets unless it sets its own."""

    channels: StrList | None = None
    severity: Severity | None = None
    repeat_after: Duration | None = None
    send_resolved: bool | None = None


class MonitoringSpec(_Model):
    """The meta-alert about flowbot's own health."""

    channels: StrList = Field(default_factory=list)
    after: Duration = Field(timedelta(minutes=15), description="how long degraded before alerting")
    heartbeat_url: str | None = Field(None, description="URL pinged after each good cycle")


class RuleSpec(_Model):
    """The keys every rule takes."""

    name: str = Field(min_length=1, max_length=200, description="unique; names the alert")
    type: str
    flows: SelectorSpec | None = None
    severity: Severity | None = None
    channels: StrList | None = None
    repeat_after: Duration | None = None
    send_resolved: bool | None = None
    enabled: bool = True
    owner: str | None = Field(None, description='who to mention, e.g. "@data-oncall" or "<@U123>"')
    template: str | None = Field(None, description="template directory, relative to rules.yaml")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value != value.strip() or "\n" in value:
            raise ValueError(f"a rule name has no leading/trailing spaces or newlines: {value!r}")
        return value

    def rule_fields(self) -> dict[str, Any]:
        """The keyword arguments of rules.Rule this spec sets (None for unset ones)."""
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
    status: StrList = Field(min_length=1, description="failed, success, inProgress, ...")


class FailedRecordsRule(RuleSpec):
    """failedRecordCount / inputRecordCount of one run is above `above`."""

    type: Literal["failed_records"]
    above: Ratio
    min_input: int = Field(0, ge=0, description="judge only runs with at least this many inputs")


class FailedRunsRule(RuleSpec):
    """Among a flow's last `window` finished runs, the failed share is above `above`;
    or its last `in_a_row` finished runs all failed."""

    type: Literal["failed_runs"]
    above: Ratio | None = None
    window: int | None = Field(None, ge=1, le=1000)
    in_a_row: int | None = Field(None, ge=1, le=1000)

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

    type: Literal["missing_run"]
    every: Duration | None = None
    cron: str | None = Field(None, description='e.g. "0 * * * *"')
    timezone: str | None = Field(None, description="for cron; default UTC")
    schedule: Literal["flow"] | None = Field(None, description="use the flow's scheduleParams")
    grace: DurationOrZero | None = Field(None, description="default 15m")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and not croniter.is_valid(value):
            raise ValueError(f'not a cron expression: {value!r}; e.g. "0 * * * *"')
        return value

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
    codes: StrList = Field(min_length=1, description='globs, e.g. "MAPPER-*"')


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


class RulesFile(_Model):
    """The top level of rules.yaml. Channels and rules are validated one by one."""

    sandboxes: StrList = Field(default_factory=lambda: ["prod"], min_length=1)
    poll_every: Duration = timedelta(minutes=5)
    lookback: Duration = timedelta(hours=24)
    channels: dict[str, Any] = Field(default_factory=dict)
    defaults: Any = None  # DefaultsSpec, validated on its own
    rules: list[Any]
    group_at: int = Field(10, ge=1, description="flows firing one rule before they are grouped")
    timezone: str = Field("UTC", description="for times shown in messages")
    retention: Duration = Field(
        timedelta(days=30), description="how long runs and messages are kept"
    )
    templates: str | None = Field(None, description="template directory, relative to rules.yaml")
    monitoring: Any = None  # MonitoringSpec, validated on its own

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        _check_zone(value)
        return value


AnyRule = Annotated[
    StatusRule
    | FailedRecordsRule
    | FailedRunsRule
    | MissingRunRule
    | DurationRule
    | ErrorCodeRule
    | ZeroRecordsRule,
    Field(discriminator="type"),
]


class _RulesFileSchema(RulesFile):
    channels: dict[str, ChannelSpec] = Field(default_factory=dict)
    defaults: DefaultsSpec | None = None
    monitoring: MonitoringSpec | None = None
    rules: list[AnyRule]


class _SchemaGenerator(GenerateJsonSchema):
    """Shows duration defaults the way rules.yaml writes them ('5m', not 'PT5M')."""

    def encode_default(self, dflt: Any) -> Any:
        if isinstance(dflt, timedelta):
            return format_duration(dflt)
        return super().encode_default(dflt)


def rules_file_json_schema() -> dict[str, Any]:
    """The JSON Schema of the whole file."""
    schema = _RulesFileSchema.model_json_schema(schema_generator=_SchemaGenerator)
    schema["title"] = "flowbot rules.yaml"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
