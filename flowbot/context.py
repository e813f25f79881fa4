"""What a message is made of, as plain values: the template context of a notice
(what templates may use) and the file channel's structured record. No jinja2 here."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from markupsafe import Markup

from flowbot.models import Finding, Flow, Notice, Run, RunError

MAX_ERRORS = 10  # error lines shown per alert; the rest is "and N more"
MAX_LINKS = 10
MAX_ITEMS = 20  # flows listed in a grouped message
MAX_MESSAGE = 500  # characters of one error message

# The dataflow in the AEP UI. `{org}` is "@<imsOrgId>/" when the flow payload carries
# `imsOrgId`, else empty (the UI then opens the user's current organisation).
AEP_UI = "https://experience.adobe.com/#/{org}sname:{sandbox}/platform/source/dataflows/{flow_id}"

# Names a template may use at top level (check_templates reports any other).
CONTEXT_NAMES = frozenset(
    {
        "event",
        "rule",
        "rule_type",
        "severity",
        "owner",
        "sandbox",
        "count",
        "first_seen_at",
        "flow",
        "run",
        "resolved_by",
        "reason",
        "values",
        "expected_at",
        "last_run_at",
        "errors",
        "errors_total",
        "errors_more",
        "links",
        "links_more",
        "items",
        "items_total",
        "items_more",
        "flows_total",
        "timezone",
        "text",
    }
)


# ---------------------------------------------------------------- context


def aep_url(flow: Flow, sandbox: str = "") -> str:
    """The dataflow's page in the AEP UI (see AEP_UI)."""
    org = str(flow.raw.get("imsOrgId") or "") if flow.raw else ""
    return AEP_UI.format(
        org=f"@{org}/" if org else "",
        sandbox=flow.sandbox or sandbox or "prod",
        flow_id=flow.id,
    )


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _run(run: Run | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "id": run.id,
        "status": run.status,
        "started_at": run.started_at,
        "completed_at": run.completed_at,
        "duration": run.duration(),
        "input_records": run.input_records,
        "output_records": run.output_records,
        "failed_records": run.failed_records,
        "failed_share": run.failed_share,
        "activities": [
            {
                "id": a.id,
                "name": a.name,
                "status": a.status,
                "input_records": a.input_records,
                "output_records": a.output_records,
                "failed_records": a.failed_records,
            }
            for a in run.activities
        ],
    }


def _error(err: RunError) -> dict[str, Any]:
    return {
        "code": err.code,
        "message": cut(err.message, MAX_MESSAGE),
        "record_count": err.record_count,
        "activity": err.activity,
    }


def notice_context(notice: Notice, *, slack: bool = False) -> dict[str, Any]:
    """One notice as plain values for templates (the names in CONTEXT_NAMES)."""
    finding: Finding | None = notice.finding
    errors = finding.errors if finding else ()
    links = finding.links if finding else ()
    sandbox = notice.sandbox or notice.flow.sandbox
    owner: Any = notice.owner or ""
    if slack and owner:
        owner = Markup(owner)  # from rules.yaml: trusted, may be a <@U123> mention
    return {
        "event": notice.event,
        "rule": notice.rule,
        "rule_type": notice.rule_type,
        "severity": notice.severity,
        "owner": owner,
        "sandbox": sandbox,
        "count": notice.count,
        "first_seen_at": notice.first_seen_at,
        "flow": {
            "id": notice.flow.id,
            "name": notice.flow.name or notice.flow.id,
            "sandbox": sandbox,
            "state": notice.flow.state,
            "url": aep_url(notice.flow, sandbox),
        },
        "run": _run(finding.run if finding else None),
        "resolved_by": _run(notice.resolved_by),
        "reason": finding.reason if finding else "",
        "values": dict(finding.values) if finding else {},
        "expected_at": finding.expected_at if finding else None,
        "last_run_at": finding.last_run_at if finding else None,
        "errors": [_error(e) for e in errors[:MAX_ERRORS]],
        "errors_total": len(errors),
        "errors_more": max(len(errors) - MAX_ERRORS, 0),
        "links": [
            {"name": link.name, "url": link.url, "activity": link.activity}
            for link in links[:MAX_LINKS]
        ],
        "links_more": max(len(links) - MAX_LINKS, 0),
    }


def message_context(
    notices: Sequence[Notice], event: str, *, slack: bool = False, timezone: str = "UTC"
) -> dict[str, Any]:
    """The whole template context: the first notice's fields at top level, every
    notice (cut at MAX_ITEMS) in `items`, and `event` and `timezone`. `flows_total` is
    how many dataflows the notices are about: one for a flow's incident (several rules
    that matched it, the lead first), more for a storm."""
    items = [notice_context(n, slack=slack) for n in notices]
    context = dict(items[0])
    context.update(
        event=event,
        items=items[:MAX_ITEMS],
        items_total=len(items),
        items_more=max(len(items) - MAX_ITEMS, 0),
        flows_total=len({n.flow.id for n in notices}),
        timezone=timezone,
    )
    return context


# ---------------------------------------------------------------- file (structured)


def _iso(at: datetime | None) -> str | None:
    return at.astimezone(UTC).isoformat() if at else None


def _run_record(run: Run | None) -> dict[str, Any] | None:
    if run is None:
        return None
    took = run.duration()
    return {
        "id": run.id,
        "status": run.status,
        "started_at": _iso(run.started_at),
        "completed_at": _iso(run.completed_at),
        "duration_seconds": took.total_seconds() if took is not None else None,
        "input_records": run.input_records,
        "output_records": run.output_records,
        "failed_records": run.failed_records,
        "failed_share": run.failed_share,
    }


def _alert_record(notice: Notice) -> dict[str, Any]:
    finding = notice.finding
    sandbox = notice.sandbox or notice.flow.sandbox
    return {
        "rule": notice.rule,
        "rule_type": notice.rule_type,
        "severity": notice.severity,
        "owner": notice.owner,
        "count": notice.count,
        "first_seen_at": _iso(notice.first_seen_at),
        "flow": {
            "id": notice.flow.id,
            "name": notice.flow.name,
            "sandbox": sandbox,
            "url": aep_url(notice.flow, sandbox),
        },
        "run": _run_record(finding.run if finding else None),
        "resolved_by": _run_record(notice.resolved_by),
        "errors": [
            {
                "code": e.code,
                "message": e.message,
                "record_count": e.record_count,
                "activity": e.activity,
            }
            for e in (finding.errors if finding else ())
        ],
        "links": [
            {"name": link.name, "url": link.url, "activity": link.activity}
            for link in (finding.links if finding else ())
        ],
        "reason": finding.reason if finding else "",
        "values": _jsonable(dict(finding.values)) if finding else {},
        "expected_at": _iso(finding.expected_at) if finding else None,
        "last_run_at": _iso(finding.last_run_at) if finding else None,
    }


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    return str(value)


def file_body(notices: Sequence[Notice], event: str) -> dict[str, Any]:
    """The structured record of the file channel: one alert's fields; for a storm
    ("grouped", or a resolution of several flows) the rule's fields and every alert
    under "alerts"; for one flow's incident the lead alert's fields and every matched
    rule under "rules"."""
    first = notices[0]
    if event == "grouped" or len({n.flow.id for n in notices}) > 1:
        return {
            "event": event,
            "rule": first.rule,
            "severity": first.severity,
            "count": len(notices),
            "alerts": [_alert_record(n) for n in notices],
        }
    record = {"event": event, **_alert_record(first)}
    if len(notices) > 1:
        record["rules"] = [_rule_record(n) for n in notices]
    return record


def _rule_record(notice: Notice) -> dict[str, Any]:
    finding = notice.finding
    return {
        "rule": notice.rule,
        "rule_type": notice.rule_type,
        "severity": notice.severity,
        "event": notice.event,
        "reason": finding.reason if finding else "",
        "values": _jsonable(dict(finding.values)) if finding else {},
    }
