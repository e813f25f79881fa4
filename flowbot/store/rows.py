"""The store's values and how rows become them: times as epoch milliseconds, the
watermark, alert, outbox and silence records, and runs and flows rebuilt from columns."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, overload

from flowbot.models import Event, Flow, Run, Schedule


@overload
def to_ms(at: datetime) -> int: ...


@overload
def to_ms(at: None) -> None: ...


@overload
def to_ms(at: datetime | None) -> int | None: ...


def to_ms(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp() * 1000)


@overload
def from_ms(value: int) -> datetime: ...


@overload
def from_ms(value: None) -> None: ...


@overload
def from_ms(value: int | None) -> datetime | None: ...


def from_ms(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, tz=UTC)


# The columns a run is rebuilt from without parsing its raw JSON.
LIGHT_COLUMNS = (
    "id, flow_id, sandbox, status, finished, started, completed, "
    "input_records, output_records, failed_records, etag"
)

# ------------------------------------------------------------------ values


@dataclass(frozen=True, slots=True)
class Watermark:
    sandbox: str
    runs_since: datetime | None = None
    flows_refreshed: datetime | None = None
    last_cycle: datetime | None = None
    last_ok: datetime | None = None
    failing_since: datetime | None = None
    degraded_announced: bool = False
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class AlertRow:
    id: int
    rule: str
    flow_id: str
    sandbox: str
    flow_name: str
    state: str
    first_seen: datetime
    last_seen: datetime
    last_notified: datetime | None
    resolved: datetime | None
    count: int
    last_run_id: str | None
    reason: str
    muted: bool


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    alert_id: int | None
    channel: str
    kind: str
    event: Event
    body: Mapping[str, Any]
    created: datetime
    attempts: int
    next_attempt: datetime
    state: str
    error: str | None
    sent: datetime | None
    held_until: datetime | None = None  # the channel's Retry-After holds it until then


@dataclass(frozen=True, slots=True)
class ChannelProblem:
    """A channel's refusal (an operator must act), announced on `announced_to`."""

    channel: str
    problem: str
    error: str | None
    since: datetime
    announced_to: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Silence:
    id: int
    rule: str | None
    flow: str | None  # a flow id or a name glob
    reason: str
    created: datetime
    expires: datetime


# ------------------------------------------------------------------ row → value


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def light_run(r: Mapping[str, Any]) -> Run:
    return Run(
        id=r["id"],
        flow_id=r["flow_id"],
        status=r["status"] or "",
        started_at=from_ms(r["started"]),
        completed_at=from_ms(r["completed"]),
        input_records=r["input_records"],
        output_records=r["output_records"],
        failed_records=r["failed_records"],
        etag=r["etag"] or "",
        sandbox=r["sandbox"],
    )


def flow_from_row(r: Mapping[str, Any]) -> Flow:
    schedule = None
    if r["frequency"]:
        schedule = Schedule(r["frequency"], r["interval"] or 1, from_ms(r["schedule_start"]))
    return Flow(
        id=r["id"],
        name=r["name"] or "",
        state=r["state"] or "",
        sandbox=r["sandbox"],
        schedule=schedule,
        last_run_id=r["last_run_id"],
        last_run_state=r["last_run_state"],
        last_run_started_at=from_ms(r["last_run_started"]),
        etag=r["etag"] or "",
        raw={"imsOrgId": r["org_id"]} if r["org_id"] else {},
    )


def alert_from_row(r: Mapping[str, Any]) -> AlertRow:
    return AlertRow(
        id=r["id"],
        rule=r["rule"],
        flow_id=r["flow_id"],
        sandbox=r["sandbox"] or "",
        flow_name=r["flow_name"] or "",
        state=r["state"],
        first_seen=from_ms(r["first_seen"]),
        last_seen=from_ms(r["last_seen"]),
        last_notified=from_ms(r["last_notified"]),
        resolved=from_ms(r["resolved"]),
        count=r["count"],
        last_run_id=r["last_run_id"],
        reason=r["reason"] or "",
        muted=bool(r["muted"]),
    )


def outbox_from_row(r: Mapping[str, Any]) -> OutboxRow:
    return OutboxRow(
        id=r["id"],
        alert_id=r["alert_id"],
        channel=r["channel"],
        kind=r["kind"],
        event=r["event"],
        body=json.loads(r["body"]),
        created=from_ms(r["created"]),
        attempts=r["attempts"],
        next_attempt=from_ms(r["next_attempt"]),
        state=r["state"],
        error=r["error"],
        sent=from_ms(r["sent"]),
        held_until=from_ms(r.get("held_until")),
    )
