"""The loaded rules: one frozen value per rule type, and their union `Rule`.

Every rule carries the keys all types share (RuleBase: name, flows, severity,
channels, ...) and its type's own parameters, each with the type it means: a ratio is
a float, a limit on time is a timedelta. `rule.type` is the name written in rules.yaml
(what templates and the alert history see).

    Rule = StatusRule | FailedRecordsRule | FailedRunsRule | MissingRunRule
         | DurationRule | ErrorCodeRule | ZeroRecordsRule

Run-level rules (RunRule) judge one run at a time; flow-level rules (failed_runs,
missing_run) judge a flow's recent runs or their absence. Adding a rule type: see
CONTRIBUTING.md ("Adding a rule type"); tests/test_rule_types.py fails while a place
is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import ClassVar, Literal, TypeAlias, get_args

from flowbot.rules_parts import Selector

Severity = Literal["info", "warning", "critical"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleBase:
    """The keys every rule takes, with the defaults of rules.yaml applied."""

    type: ClassVar[str]
    is_run_level: ClassVar[bool] = False

    name: str
    flows: Selector = Selector()
    severity: Severity = "warning"
    channels: tuple[str, ...] = ()
    repeat_after: timedelta = timedelta(hours=4)
    send_resolved: bool = True
    enabled: bool = True
    owner: str | None = None
    template: Path | None = None
    runbook: str | None = None
    actions: tuple[str, ...] = ()

    @property
    def runs_needed(self) -> int:
        """How many of a flow's newest runs the rule needs to see (0: no particular
        number, the default history depth serves)."""
        return 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRule(RuleBase):
    """A rule that judges one run at a time (the flow's current run, or a stuck one)."""

    is_run_level: ClassVar[bool] = True


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusRule(RunRule):
    """A run's status is one of `status` (compared in lower case)."""

    type: ClassVar[str] = "status"
    status: tuple[str, ...]

    @property
    def states(self) -> frozenset[str]:
        """The `status` values in lower case."""
        return frozenset(s.lower() for s in self.status)

    @property
    def judges_unfinished(self) -> bool:
        """True when the rule names running or waiting statuses: it judges the newest
        run, finished or not (other run-level rules judge the newest finished run)."""
        from flowbot.models import FINISHED_STATES  # not loaded by `rules check`

        return not self.states <= FINISHED_STATES


@dataclass(frozen=True, slots=True, kw_only=True)
class FailedRecordsRule(RunRule):
    """A run's failed share of records (0..1) is above `above`, among runs whose input
    reaches `min_input` (and is above 0)."""

    type: ClassVar[str] = "failed_records"
    above: float
    min_input: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class DurationRule(RunRule):
    """A finished run took longer than `above`, or a running one has run longer."""

    type: ClassVar[str] = "duration"
    above: timedelta


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorCodeRule(RunRule):
    """An error code of the run or its activities matches one of the globs `codes`."""

    type: ClassVar[str] = "error_code"
    codes: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ZeroRecordsRule(RunRule):
    """A successful run read no records."""

    type: ClassVar[str] = "zero_records"


@dataclass(frozen=True, slots=True, kw_only=True)
class FailedRunsRule(RuleBase):
    """Among a flow's last `window` finished runs the failed share is above `above`; or,
    with `in_a_row`, its newest finished runs hold that many failures in a row (then
    `above` is None)."""

    type: ClassVar[str] = "failed_runs"
    above: float | None = None
    window: int = 10
    in_a_row: int | None = None

    @property
    def runs_needed(self) -> int:
        """The window, or the streak when it is longer."""
        return max(self.window, self.in_a_row or 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class MissingRunRule(RuleBase):
    """No run started within the cadence plus `grace`. The cadence is one of `every`,
    `cron` (read in `timezone`) or `schedule: flow` (the flow's own schedule)."""

    type: ClassVar[str] = "missing_run"
    every: timedelta | None = None
    cron: str | None = None
    timezone: str = "UTC"
    schedule: Literal["flow"] | None = None
    grace: timedelta = timedelta(minutes=15)


RunLevelRule: TypeAlias = (
    StatusRule | FailedRecordsRule | DurationRule | ErrorCodeRule | ZeroRecordsRule
)
Rule: TypeAlias = RunLevelRule | FailedRunsRule | MissingRunRule

RULE_TYPES: dict[str, type[Rule]] = {cls.type: cls for cls in get_args(Rule)}
"""Each rule type's name in rules.yaml → its class."""
