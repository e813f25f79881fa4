"""Plain values shared by every stage of the pipeline.

Nothing here talks to the world. Times are aware UTC datetimes in fields ending `_at`;
durations are timedeltas. Statuses keep the Flow Service's spelling in `status` and
compare through `state`, which is lower case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from flowbot.diagnosis import Diagnosis

# Run statuses, lower-cased. Sources use the first four; destinations Success, Failed,
# Processing, Waiting.
FAILED_STATES = frozenset({"failed"})
FINISHED_STATES = frozenset({"success", "failed"})
RUNNING_STATES = frozenset({"inprogress", "processing"})
WAITING_STATES = frozenset({"scheduled", "waiting"})

AlertState = Literal["firing", "resolved"]
Event = Literal["firing", "repeat", "resolved", "grouped", "meta", "diagnosis", "digest"]


@dataclass(frozen=True, slots=True)
class RunError:
    """One error code with its message, from a run or one of its activities."""

    code: str
    message: str = ""
    record_count: int | None = None
    activity: str | None = None  # the activity's name or id; None for the run itself


@dataclass(frozen=True, slots=True)
class Link:
    """A diagnostic link: `failedRecords`, `sampleErrors`, `fileInfo` and the like."""

    name: str
    url: str
    activity: str | None = None


@dataclass(frozen=True, slots=True)
class Activity:
    id: str
    name: str
    status: str = ""
    started_at: datetime | None = None
    completed_at: datetime | None = None
    input_records: int | None = None
    output_records: int | None = None
    failed_records: int | None = None
    errors: tuple[RunError, ...] = ()
    links: tuple[Link, ...] = ()


@dataclass(frozen=True, slots=True)
class Run:
    """A dataflow run as the Flow Service reports it (`GET /runs`)."""

    id: str
    flow_id: str
    status: str = ""
    started_at: datetime | None = None
    completed_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    input_records: int | None = None
    output_records: int | None = None
    failed_records: int | None = None
    skipped_records: int | None = None
    errors: tuple[RunError, ...] = ()  # metrics.statusSummary.errors
    activities: Sequence[Activity] = ()  # a tuple, or parsed on first use (aep.parse)
    etag: str = ""
    sandbox: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def state(self) -> str:
        """The status in lower case, for comparisons."""
        return self.status.lower()

    @property
    def is_finished(self) -> bool:
        return self.state in FINISHED_STATES

    @property
    def is_running(self) -> bool:
        return self.state in RUNNING_STATES

    def duration(self, now: datetime | None = None) -> timedelta | None:
        """Completed runs: start to end. Running ones: start to `now` when given."""
        if self.started_at is None:
            return None
        end = self.completed_at or (now if not self.is_finished else None)
        return end - self.started_at if end else None

    @property
    def failed_share(self) -> float | None:
        """failedRecordCount / inputRecordCount, or None when it cannot be computed."""
        if not self.input_records or self.failed_records is None or self.input_records <= 0:
            return None
        return max(self.failed_records, 0) / self.input_records

    @property
    def all_errors(self) -> tuple[RunError, ...]:
        """The run's own errors, then each activity's, without repeats: an activity error
        that only restates a run-level one (same code and message, no record count) is
        left out, since Adobe copies the run's error into the activity that raised it."""
        run_level = {(e.code, e.message) for e in self.errors}
        seen: set[tuple[str, str, int | None, str | None]] = set()
        out: list[RunError] = list(self.errors)
        for err in (e for a in self.activities for e in a.errors):
            key = (err.code, err.message, err.record_count, err.activity)
            restated = (err.code, err.message) in run_level and err.record_count is None
            if key not in seen and not restated:
                seen.add(key)
                out.append(err)
        return tuple(out)

    @property
    def links(self) -> tuple[Link, ...]:
        return tuple(link for a in self.activities for link in a.links)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A flow's `scheduleParams`: frequency once/minute/hour/day/week and interval."""

    frequency: str
    interval: int = 1
    start_at: datetime | None = None

    @property
    def period(self) -> timedelta | None:
        unit = {
            "minute": timedelta(minutes=1),
            "hour": timedelta(hours=1),
            "day": timedelta(days=1),
            "week": timedelta(weeks=1),
        }.get(self.frequency.lower())
        return unit * max(self.interval, 1) if unit else None


@dataclass(frozen=True, slots=True)
class Flow:
    """A dataflow (`GET /flows`)."""

    id: str
    name: str = ""
    state: str = ""  # enabled, disabled, ...
    sandbox: str = ""
    schedule: Schedule | None = None
    flow_spec_id: str = ""
    last_run_id: str | None = None
    last_run_state: str | None = None
    last_run_started_at: datetime | None = None
    etag: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def is_enabled(self) -> bool:
        return self.state.lower() in ("enabled", "")


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule found a problem with a flow: what a message needs to say why.

    `run` is the run that matched (None for missing_run); `values` holds the figures
    that crossed the threshold, e.g. {"failed_share": 0.12, "above": 0.05,
    "input_records": 1000, "failed_records": 120}; `reason` is one human line.
    """

    rule: str
    rule_type: str
    flow: Flow
    run: Run | None
    reason: str
    values: Mapping[str, Any] = field(default_factory=dict)
    expected_at: datetime | None = None  # missing_run: when a run was due
    last_run_at: datetime | None = None  # missing_run: when the last one started
    superseded_by: Run | None = None  # a later good run already recovered: history only

    @property
    def key(self) -> tuple[str, str]:
        """The alert identity: (rule, flow id)."""
        return (self.rule, self.flow.id)

    @property
    def errors(self) -> tuple[RunError, ...]:
        return self.run.all_errors if self.run else ()

    @property
    def links(self) -> tuple[Link, ...]:
        return self.run.links if self.run else ()


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What `evaluate` decided for one cycle.

    `findings`: one per matching run (run-level rules) or per flow (flow-level rules).
    `clear`: the (rule, flow id) pairs that were checked and are fine now, so that a
    firing alert for them resolves.
    `recovered`: run-level matches that a later good run of the same flow already
    superseded (each with `superseded_by`): history to record, never a page.
    `skipped`: the pairs whose judging raised, with the reason; neither found nor clear.
    """

    findings: tuple[Finding, ...] = ()
    clear: frozenset[tuple[str, str]] = frozenset()
    recovered: tuple[Finding, ...] = ()
    skipped: tuple[tuple[str, str, str], ...] = ()  # (rule, flow id, reason) that raised


@dataclass(frozen=True, slots=True)
class Notice:
    """One alert's news, as templates see it (an item of a message)."""

    event: Literal["firing", "repeat", "resolved"]
    rule: str
    rule_type: str
    severity: str
    flow: Flow
    finding: Finding | None  # the latest finding; None for a resolution with no run
    first_seen_at: datetime
    owner: str | None = None
    resolved_by: Run | None = None  # the good run that resolved it, when there is one
    count: int = 1  # matching runs or cycles seen while firing
    sandbox: str = ""
    test: bool = False  # a sample sent by `flowbot notify test`, never a real incident
    runbook: str | None = None  # the rule's `runbook` URL (rules.yaml), shown in messages
    diagnosis: Diagnosis | None = None  # the run's row-level errors, when read


@dataclass(frozen=True, slots=True)
class Message:
    """A rendered message for one channel, ready for the outbox.

    `body` depends on the channel kind: Slack {"text", "blocks"}, email {"subject",
    "text", "html"}, file {...structured alert...}, terminal {"text"}.
    """

    channel: str
    kind: str  # slack, webhook, email, file, terminal
    event: Event
    body: Mapping[str, Any]
    alert_id: int | None = None  # threads follow the alert's first message
    group: tuple[int, ...] = ()  # a grouped message: the alerts it speaks for
