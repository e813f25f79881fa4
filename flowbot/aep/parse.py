"""Flow Service JSON → models. Lenient: real payloads vary, so nothing here trusts them.

A missing, null, string-typed or unknown field never raises; it becomes None, "" or ()
instead. Only a payload that is not an object, or that has no id, raises ValueError,
and the caller logs and skips it. Timestamps are epoch milliseconds, sometimes seconds
(even within one object), so each is normalised by its magnitude; `-1` means unknown.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, overload

from flowbot.models import Activity, Flow, Link, Run, RunError, Schedule

log = logging.getLogger("flowbot.aep")

# Below this an epoch number is seconds (1e11 s is the year 5138; 1e11 ms is 1973);
# from it up to MICROS it is milliseconds; above, microseconds.
MILLIS = 10**11
MICROS = 10**14
MAX_COUNT = 2**63 - 1  # SQLite's largest INTEGER: a larger count is treated as unknown
LEGACY_PREFIX = "xdm:"
ALERT_STATES = frozenset({"firing", "inactive"})


# ---------------------------------------------------------------- scalars


def parse_time(value: Any) -> datetime | None:
    """An epoch number (s, ms or µs, by magnitude; int, float or digit string) or an
    ISO 8601 string → aware UTC datetime. None, zero, negatives and junk → None."""
    if type(value) is int:
        return _epoch(value)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        number = _number(text)
        if number is None:
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                return None
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        value = number
    if not isinstance(value, int | float):
        return None
    return _epoch(value)


@lru_cache(maxsize=8192)  # a run repeats its times in its activities
def _epoch(value: int | float) -> datetime | None:
    if not value > 0:  # also NaN
        return None
    try:
        seconds = value if value < MILLIS else value / 1000 if value < MICROS else value / 10**6
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def parse_count(value: Any) -> int | None:
    """A record or file count: int, integral float or digit string. Negative (-1 is
    Adobe's 'unknown'), beyond MAX_COUNT (more than SQLite can store), missing or junk
    → None: unknown, for this value only."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        value = _number(value.strip()[:32])
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_COUNT:
        value = int(value)
    if not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        return None
    return value


def _number(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def _text(value: Any) -> str:
    if value is None or isinstance(value, dict | list):
        return ""
    return str(value)


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _path(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _unprefix(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """Legacy I/O events say `xdm:flowId`, `xdm:metrics`: drop the prefix, keeping the
    plain key when both are present."""
    if "id" in obj and "flowId" in obj:  # the usual, modern payload
        return obj
    out = dict(obj)
    for key, value in obj.items():
        if isinstance(key, str) and key.startswith(LEGACY_PREFIX):
            out.setdefault(key[len(LEGACY_PREFIX) :], value)
    return out


# ---------------------------------------------------------------- errors and links


def parse_errors(items: Any, activity: str | None = None) -> tuple[RunError, ...]:
    """`[{code, message|description, recordCount|count}]` → RunErrors; entries with
    neither a code nor a message are dropped."""
    if not items:
        return ()
    out: list[RunError] = []
    for item in _list(items):
        if not isinstance(item, dict):
            continue
        code = _text(item.get("code"))
        message = _text(item.get("message")) or _text(item.get("description"))
        if not code and not message:
            continue
        count = parse_count(item.get("recordCount", item.get("count")))
        out.append(RunError(code, message, count, activity))
    return tuple(out)


def _status_errors(
    status: Mapping[str, Any], records: Mapping[str, Any], activity: str | None
) -> tuple[RunError, ...]:
    extensions = _dict(status.get("extensions"))
    found = (
        *parse_errors(status.get("errors"), activity),
        *(parse_errors(extensions.get("errors"), activity) if extensions else ()),
        *parse_errors(records.get("failedInfo"), activity),
    )
    return tuple(dict.fromkeys(found)) if len(found) > 1 else found


def parse_links(activity: Mapping[str, Any], name: str | None = None) -> tuple[Link, ...]:
    """Diagnostic links of one activity: statusSummary.extensions.manifest
    (failedRecords, sampleErrors, ...) and fileSummary's manifest.fileInfo (a URL, or a
    list of URLs or {path})."""
    out: list[Link] = []
    manifest = _dict(_path(activity, "statusSummary", "extensions", "manifest"))
    for key, value in manifest.items():
        if isinstance(value, str) and value:
            out.append(Link(str(key), value, name))
    files = _dict(activity.get("fileSummary"))
    holders = (_path(files, "extensions", "manifest"), files.get("manifest")) if files else ()
    for holder in holders:
        info = _dict(holder).get("fileInfo")
        for entry in info if isinstance(info, list) else [info]:
            url = entry.get("path") if isinstance(entry, dict) else entry
            if isinstance(url, str) and url:
                out.append(Link("fileInfo", url, name))
    return tuple(dict.fromkeys(out)) if len(out) > 1 else tuple(out)


# ---------------------------------------------------------------- runs


def parse_activity(obj: Mapping[str, Any], index: int = 0) -> Activity:
    """One `activities[]` entry. An activity without an id gets `activity-<index>`."""
    activity_id = _text(obj.get("id")) or f"activity-{index}"
    name = _text(obj.get("name")) or activity_id
    status = _dict(obj.get("statusSummary"))
    records = _dict(obj.get("recordSummary"))
    duration = _dict(obj.get("durationSummary"))
    return Activity(
        id=activity_id,
        name=name,
        status=_text(status.get("status")),
        started_at=parse_time(duration.get("startedAtUTC")),
        completed_at=parse_time(duration.get("completedAtUTC", duration.get("stoppedAtUTC"))),
        input_records=parse_count(records.get("inputRecordCount")),
        output_records=parse_count(records.get("outputRecordCount")),
        failed_records=parse_count(records.get("failedRecordCount")),
        errors=_status_errors(status, records, name),
        links=parse_links(obj, name),
    )


class LazyActivities(Sequence[Activity]):
    """A run's activities, parsed on first use: listing 100,000 runs reads only the
    run-level fields, and a cycle looks inside the activities of the few runs it judges."""

    __slots__ = ("_items", "_parsed")

    def __init__(self, items: list[Any]) -> None:
        self._items = items
        self._parsed: tuple[Activity, ...] | None = None

    def _all(self) -> tuple[Activity, ...]:
        if self._parsed is None:
            self._parsed = tuple(
                parse_activity(item, i)
                for i, item in enumerate(self._items)
                if isinstance(item, dict)
            )
        return self._parsed

    @overload
    def __getitem__(self, index: int) -> Activity: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Activity, ...]: ...
    def __getitem__(self, index: int | slice) -> Activity | tuple[Activity, ...]:
        return self._all()[index]

    def __len__(self) -> int:
        return len(self._all())

    def __iter__(self) -> Iterator[Activity]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return self._all() == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._all())

    def __repr__(self) -> str:
        return repr(self._all())


def parse_run(obj: Any) -> Run:
    """A run object (`GET /runs` item, I/O event value, alert payload) → Run, whose
    fields other than its id and flow id are read from `obj` on first use (a listing
    of 100,000 runs costs little more than decoding it).

    Raises ValueError when `obj` is not an object or has no id (nor `flowRunId`).
    """
    if not isinstance(obj, dict):
        raise ValueError(f"a run must be a JSON object, not {type(obj).__name__}")
    run = _unprefix(obj)
    run_id = _text(run.get("id")) or _text(run.get("flowRunId"))
    if not run_id:
        raise ValueError("a run without an id")
    return LazyRun.of(obj, run_id, _text(run.get("flowId")))


def _parse_run_now(obj: dict[str, Any], run_id: str) -> Run:
    run = _unprefix(obj)
    metrics = _dict(run.get("metrics"))
    duration = _dict(metrics.get("durationSummary"))
    records = _dict(metrics.get("recordSummary"))
    status = _dict(metrics.get("statusSummary"))
    activities = LazyActivities(_list(run.get("activities")))
    return Run(
        id=run_id,
        flow_id=_text(run.get("flowId")),
        status=_text(status.get("status")) or _text(run.get("state")),
        started_at=parse_time(duration.get("startedAtUTC")),
        completed_at=parse_time(duration.get("completedAtUTC", duration.get("stoppedAtUTC"))),
        created_at=parse_time(run.get("createdAt")),
        updated_at=parse_time(run.get("updatedAt")),
        input_records=parse_count(records.get("inputRecordCount")),
        output_records=parse_count(records.get("outputRecordCount")),
        failed_records=parse_count(records.get("failedRecordCount")),
        skipped_records=parse_count(records.get("skippedRecordCount")),
        errors=_status_errors(status, records, None),
        activities=activities,
        etag=_text(run.get("etag")),
        sandbox=_text(run.get("sandboxName")),
        raw=obj,
    )


class LazyRun(Run):
    """A Run read from its JSON on first use of any field but `id` and `flow_id`.
    Equal to (and hashed like) the Run with the same fields; `dataclasses.replace`
    gives a LazyRun holding those fields."""

    __slots__ = ("_obj", "_run")
    _obj: tuple[dict[str, Any], str, str] | None  # the JSON, its id and flow id
    _run: Run | None  # every field, once read

    def __init__(self, **fields: Any) -> None:  # what dataclasses.replace calls
        object.__setattr__(self, "_obj", None)
        object.__setattr__(self, "_run", Run(**fields))

    @classmethod
    def of(cls, obj: dict[str, Any], run_id: str, flow_id: str) -> LazyRun:
        self = cls.__new__(cls)
        object.__setattr__(self, "_obj", (obj, run_id, flow_id))
        object.__setattr__(self, "_run", None)
        return self

    def _full(self) -> Run:
        run: Run | None = self._run
        if run is None:
            assert self._obj is not None
            obj, run_id, _ = self._obj
            run = _parse_run_now(obj, run_id)
            object.__setattr__(self, "_run", run)
        return run

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazyRun):
            other = other._full()
        return isinstance(other, Run) and self._full() == other

    def __hash__(self) -> int:
        return hash(self._full())

    def __repr__(self) -> str:
        return repr(self._full())


def _lazy(name: str) -> property:
    def get(self: LazyRun) -> Any:
        return getattr(self._full(), name)

    return property(get)


def _eager(name: str, index: int) -> property:
    def get(self: LazyRun) -> Any:
        if self._run is not None or self._obj is None:
            return getattr(self._full(), name)
        return self._obj[index]

    return property(get)


_EAGER = {"id": 1, "flow_id": 2}  # known without reading the rest: their place in _obj
for _field in fields(Run):
    _index = _EAGER.get(_field.name)
    setattr(
        LazyRun, _field.name, _lazy(_field.name) if _index is None else _eager(_field.name, _index)
    )


# ---------------------------------------------------------------- flows


def parse_schedule(obj: Any) -> Schedule | None:
    """`scheduleParams` → Schedule; values may be strings. Destination exports say
    `timeUnit` instead of `frequency`. None when there is no frequency."""
    params = _dict(obj)
    frequency = _text(params.get("frequency") or params.get("timeUnit")).strip().lower()
    if not frequency:
        return None
    interval = parse_count(params.get("interval"))
    return Schedule(
        frequency=frequency,
        interval=interval if interval else 1,
        start_at=parse_time(params.get("startTime")),
    )


def parse_flow(obj: Any) -> Flow:
    """A flow object (`GET /flows` item) → Flow. Raises ValueError when `obj` is not an
    object or has no id."""
    if not isinstance(obj, dict):
        raise ValueError(f"a flow must be a JSON object, not {type(obj).__name__}")
    flow = _unprefix(obj)
    flow_id = _text(flow.get("id"))
    if not flow_id:
        raise ValueError("a flow without an id")
    last = _dict(flow.get("lastRunDetails"))
    return Flow(
        id=flow_id,
        name=_text(flow.get("name")),
        state=_text(flow.get("state")),
        sandbox=_text(flow.get("sandboxName")),
        schedule=parse_schedule(flow.get("scheduleParams")),
        flow_spec_id=_text(_path(flow, "flowSpec", "id")),
        last_run_id=_text(last.get("id")) or None,
        last_run_state=_text(last.get("state")) or None,
        last_run_started_at=parse_time(last.get("startedAtUTC")),
        etag=_text(flow.get("etag")),
        raw=obj,
    )


# ---------------------------------------------------------------- envelopes


def objects_in(payload: Any) -> Iterator[dict[str, Any]]:
    """Every object inside the envelopes Adobe wraps them in: a list, `{"items": [...]}`,
    an I/O event list `[{"messages": [{"value": obj}]}]` or `[{..., "value": obj}]`, and
    `{"event_id", "event": obj}`. Anything else is yielded as it is."""
    if isinstance(payload, list):
        for item in payload:
            yield from objects_in(item)
        return
    if not isinstance(payload, dict):
        return
    if isinstance(payload.get("items"), list):
        yield from objects_in(payload["items"])
    elif isinstance(payload.get("messages"), list):
        yield from objects_in(payload["messages"])
    elif isinstance(payload.get("value"), dict) and (
        "msgType" in payload or "_eventNotificationMeta" in payload
    ):
        yield from objects_in(payload["value"])
    elif isinstance(payload.get("event"), dict):
        yield from objects_in(payload["event"])
    else:
        yield payload


def is_run(obj: Mapping[str, Any]) -> bool:
    """A run names its flow; an alert object (status FIRING/INACTIVE, no metrics) does
    too but is not a run."""
    plain = _unprefix(obj)
    if "flowId" not in plain:
        return False
    alert_status = _text(plain.get("status")).lower() in ALERT_STATES
    return not (alert_status and "metrics" not in plain)


def is_flow(obj: Mapping[str, Any]) -> bool:
    """A flow has an id and no flowId, and something only flows carry."""
    plain = _unprefix(obj)
    markers = ("flowSpec", "scheduleParams", "sourceConnectionIds", "lastRunDetails", "state")
    return "flowId" not in plain and "id" in plain and any(k in plain for k in markers)


def runs_in(payload: Any) -> list[Run]:
    """Every run inside `payload` (see `objects_in`). Objects that are not runs are
    ignored; a run that cannot be parsed is logged and skipped."""
    runs = []
    for obj in objects_in(payload):
        if not is_run(obj):
            continue
        try:
            runs.append(parse_run(obj))
        except ValueError as exc:
            log.warning("skipping a run of flow %s: %s", _text(obj.get("flowId")), exc)
    return runs


def flows_in(payload: Any) -> list[Flow]:
    """Every flow inside `payload` (see `objects_in`); others are ignored."""
    flows = []
    for obj in objects_in(payload):
        if is_flow(obj):
            flows.append(parse_flow(obj))
    return flows
