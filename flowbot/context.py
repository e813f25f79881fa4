"""What a message is made of, as plain values: the template context of a notice
(what templates may use) and the file channel's structured record. No jinja2 here.

Every string from outside reaches templates through `untrusted.one_line` (no control
character, no line break: API text can never make a line, a header or a mail header of
its own), and every URL as `TrustedUrl` only when `untrusted.is_trusted_url` allows it;
the `link` filters make links of TrustedUrl values only. The file record keeps the raw
text (JSON escapes it) but is bounded: MAX_FILE_ERRORS errors and MAX_FILE_LINKS links
per alert, MAX_FILE_ALERTS alerts per grouped record, MAX_FILE_TEXT characters a string.

Links into the AEP UI follow the routes of Adobe's own alert payloads (Experience
League, "Standard alert rules": the `url` of the Ingestion Failure and Ingestion Delay
alerts): the dataflow's runs at `…/platform/source/dataflows/{flow}/activity` and one
run at `…/activity/{run}`. The org part is `aep_ui.org` from rules.yaml when set, else
the flow payload's `imsOrgId` (as in Adobe's payloads), else left out. The manifest's
links are Data Access API URLs: templates label them as API links that need a token
and name the command that fetches them (`explain`). Each error carries what Adobe's
documentation says it means and what to try first (flowbot.error_codes).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast
from urllib.parse import quote

from markupsafe import Markup

from flowbot.diagnosis import template_values
from flowbot.error_codes import lookup
from flowbot.models import Finding, Flow, Link, Notice, Run, RunError
from flowbot.untrusted import cut, is_configured_link, is_trusted_url, one_line

_T = TypeVar("_T")

MAX_ERRORS = 10  # error lines shown per alert; the rest is "and N more"
MAX_LINKS = 10
MAX_ITEMS = 20  # flows listed in a grouped message
MAX_MESSAGE = 500  # characters of one error message
MAX_FILE_ERRORS = 50  # errors kept per alert in a file record; the rest is counted
MAX_FILE_LINKS = 50
MAX_FILE_ALERTS = 100  # alerts kept in a grouped file record
MAX_FILE_TEXT = 2000  # characters of any one string in a file record

# The dataflow's runs in the AEP UI, and one run (see the module docstring). `{org}` is
# "@<org>/" when an org is known, else empty.
AEP_UI = (
    "https://experience.adobe.com/#/{org}sname:{sandbox}/platform/source/dataflows/{flow_id}"
    "/activity"
)
AEP_UI_RUN = AEP_UI + "/{run_id}"
EXPLAIN = "flowbot explain {run_id} --sandbox {sandbox}"  # fetches the API links

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
        "last_run",
        "overdue",
        "test",
        "errors",
        "errors_total",
        "errors_more",
        "links",
        "links_more",
        "runbook",
        "items",
        "items_total",
        "items_more",
        "flows_total",
        "timezone",
        "text",
        "diagnosis",
    }
)


# ---------------------------------------------------------------- context


class TrustedUrl(str):
    """A URL that may be shown as a link (flowbot built it, or is_trusted_url allowed it)."""

    __slots__ = ()


def _ui_parts(flow: Flow, sandbox: str, org: str) -> dict[str, str]:
    known = org or (str(flow.raw.get("imsOrgId") or "") if flow.raw else "")
    return {
        "org": f"@{quote(known, safe='@')}/" if known else "",
        "sandbox": quote(flow.sandbox or sandbox or "prod", safe=""),
        "flow_id": quote(flow.id, safe=""),
    }


def aep_url(flow: Flow, sandbox: str = "", org: str = "") -> TrustedUrl:
    """The dataflow's runs in the AEP UI (see AEP_UI); `org` is `aep_ui.org` from
    rules.yaml. The parts from the API are percent-encoded, so the link always stays on
    experience.adobe.com."""
    return TrustedUrl(AEP_UI.format(**_ui_parts(flow, sandbox, org)))


def aep_run_url(flow: Flow, run_id: str, sandbox: str = "", org: str = "") -> TrustedUrl:
    """One run of the dataflow in the AEP UI (see AEP_UI_RUN)."""
    parts = _ui_parts(flow, sandbox, org)
    return TrustedUrl(AEP_UI_RUN.format(run_id=quote(run_id, safe=""), **parts))


def explain_command(run_id: str, sandbox: str) -> str:
    """The command that prints a run's errors, diagnosis and links in the terminal."""
    return EXPLAIN.format(run_id=run_id, sandbox=sandbox or "prod")


def runbook_url(url: str | None) -> TrustedUrl | str | None:
    """A rule's runbook (from rules.yaml) as a link when it is well formed, else as text."""
    if not url:
        return None
    return TrustedUrl(url) if is_configured_link(url) else one_line(url)


def _link(link: Link, origins: Sequence[str]) -> dict[str, Any]:
    url = one_line(link.url)
    return {
        "name": one_line(link.name),
        "url": TrustedUrl(url) if is_trusted_url(link.url, origins) else url,
        "trusted": is_trusted_url(link.url, origins),
        "activity": one_line(link.activity) if link.activity else link.activity,
    }


def _clean(value: _T) -> _T:
    """Every string inside `value` through one_line (Markup and TrustedUrl kept as they are)."""
    if isinstance(value, (Markup, TrustedUrl)):
        return value
    if isinstance(value, str):
        return cast(_T, one_line(value))
    if isinstance(value, dict):
        return cast(_T, {k: _clean(v) for k, v in value.items()})
    if isinstance(value, list):
        return cast(_T, [_clean(v) for v in value])
    return value


def _run(
    run: Run | None, running_for: Any = None, *, flow: Flow, sandbox: str, org: str
) -> dict[str, Any] | None:
    """A run as template values, with its page in the AEP UI (`url`) and the command
    that fetches its API links (`explain`). `finished` is False for a run still going;
    its `duration` is then how long it has been running (`running_for`, when the
    evaluator measured it), else unknown."""
    if run is None:
        return None
    return {
        "id": run.id,
        "url": aep_run_url(flow, run.id, sandbox, org),
        "explain": explain_command(one_line(run.id), sandbox),
        "status": run.status,
        "finished": run.is_finished,
        "started_at": run.started_at,
        "completed_at": run.completed_at,
        "duration": run.duration() if run.is_finished else running_for,
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


def _help(code: str) -> dict[str, str] | None:
    found = lookup(code)
    if found is None:
        return None
    return {"meaning": found.meaning, "first_step": found.first_step, "source": found.source}


def _error(err: RunError) -> dict[str, Any]:
    return {
        "code": err.code,
        "message": cut(err.message, MAX_MESSAGE),
        "record_count": err.record_count,
        "activity": err.activity,
        "help": _help(err.code),
    }


def notice_context(
    notice: Notice, *, slack: bool = False, link_origins: Sequence[str] = (), aep_org: str = ""
) -> dict[str, Any]:
    """One notice as plain values for templates (the names in CONTEXT_NAMES), every
    string on one line; `link_origins` are origins whose URLs may be links besides
    Adobe's hosts (the configured API and export URLs); `aep_org` is `aep_ui.org`."""
    finding: Finding | None = notice.finding
    # a missing run has no errors of its own: the last run's would read as the cause
    quiet = notice.rule_type == "missing_run"
    errors = finding.errors if finding and not quiet else ()
    links = finding.links if finding and not quiet else ()
    sandbox = notice.sandbox or notice.flow.sandbox
    owner: Any = notice.owner or ""
    if slack and owner:
        owner = Markup(one_line(owner))  # from rules.yaml: trusted, may be a <@U123> mention
    values = dict(finding.values) if finding else {}
    missing = notice.rule_type == "missing_run"
    run = finding.run if finding else None
    where: dict[str, Any] = {"flow": notice.flow, "sandbox": sandbox, "org": aep_org}
    context = {
        "event": notice.event,
        "test": notice.test,
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
            "url": aep_url(notice.flow, sandbox, aep_org),
        },
        "run": None if missing else _run(run, values.get("duration"), **where),
        "last_run": _run(run, **where) if missing else None,
        "overdue": values.get("overdue") if missing else None,
        "resolved_by": _run(notice.resolved_by, **where),
        "reason": finding.reason if finding else "",
        "values": values,
        "expected_at": finding.expected_at if finding else None,
        "last_run_at": finding.last_run_at if finding else None,
        "errors": [_error(e) for e in errors[:MAX_ERRORS]],
        "errors_total": len(errors),
        "errors_more": max(len(errors) - MAX_ERRORS, 0),
        "links": [_link(link, link_origins) for link in links[:MAX_LINKS]],
        "links_more": max(len(links) - MAX_LINKS, 0),
        "runbook": runbook_url(notice.runbook),
        "diagnosis": template_values(notice.diagnosis),
    }
    cleaned: dict[str, Any] = _clean(context)
    return cleaned


def message_context(
    notices: Sequence[Notice],
    event: str,
    *,
    slack: bool = False,
    timezone: str = "UTC",
    link_origins: Sequence[str] = (),
    aep_org: str = "",
) -> dict[str, Any]:
    """The whole template context: the first notice's fields at top level, every
    notice (cut at MAX_ITEMS) in `items`, and `event` and `timezone`. `flows_total` is
    how many dataflows the notices are about: one for a flow's incident (several rules
    that matched it, the lead first), more for a storm."""
    items = [
        notice_context(n, slack=slack, link_origins=link_origins, aep_org=aep_org)
        for n in notices[:MAX_ITEMS]
    ]
    context = dict(items[0])
    context.update(
        event=event,
        items=items,
        items_total=len(notices),
        items_more=max(len(notices) - MAX_ITEMS, 0),
        flows_total=len({n.flow.id for n in notices}),
        timezone=timezone,
    )
    return context


# ---------------------------------------------------------------- file (structured)


def _iso(at: datetime | None) -> str | None:
    return at.astimezone(UTC).isoformat() if at else None


def _run_record(
    run: Run | None, running_for: Any = None, *, flow: Flow, sandbox: str, org: str
) -> dict[str, Any] | None:
    if run is None:
        return None
    took = _seconds(run.duration() if run.is_finished else running_for)
    return {
        "id": run.id,
        "url": str(aep_run_url(flow, run.id, sandbox, org)),
        "explain": explain_command(one_line(run.id), sandbox),
        "status": run.status,
        "finished": run.is_finished,
        "started_at": _iso(run.started_at),
        "completed_at": _iso(run.completed_at),
        "duration_seconds": took,
        "input_records": run.input_records,
        "output_records": run.output_records,
        "failed_records": run.failed_records,
        "failed_share": run.failed_share,
    }


def _alert_record(notice: Notice, org: str) -> dict[str, Any]:
    finding = notice.finding
    sandbox = notice.sandbox or notice.flow.sandbox
    where: dict[str, Any] = {"flow": notice.flow, "sandbox": sandbox, "org": org}
    errors = finding.errors if finding else ()
    links = finding.links if finding else ()
    values = dict(finding.values) if finding else {}
    missing = notice.rule_type == "missing_run"
    run = finding.run if finding else None
    overdue = values.get("overdue") if missing else None
    record: dict[str, Any] = _bounded(
        {
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
                "url": str(aep_url(notice.flow, sandbox, org)),
            },
            "run": None if missing else _run_record(run, values.get("duration"), **where),
            "last_run": _run_record(run, **where) if missing else None,
            "overdue_seconds": _seconds(overdue),
            "resolved_by": _run_record(notice.resolved_by, **where),
            "errors": [
                {
                    "code": e.code,
                    "message": e.message,
                    "record_count": e.record_count,
                    "activity": e.activity,
                    "help": _help(e.code),
                }
                for e in errors[:MAX_FILE_ERRORS]
            ],
            "errors_total": len(errors),
            "errors_more": max(len(errors) - MAX_FILE_ERRORS, 0),
            "links": [
                {"name": link.name, "url": link.url, "activity": link.activity, "api": True}
                for link in links[:MAX_FILE_LINKS]
            ],
            "links_more": max(len(links) - MAX_FILE_LINKS, 0),
            "runbook": notice.runbook,
            "reason": finding.reason if finding else "",
            "values": _jsonable(values),
            "expected_at": _iso(finding.expected_at) if finding else None,
            "last_run_at": _iso(finding.last_run_at) if finding else None,
        }
    )
    return record


def _seconds(value: Any) -> float | None:
    """A timedelta, or seconds as a number (values read back from the store), as seconds."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value) if isinstance(value, (int, float)) else None


def _bounded(value: _T) -> _T:
    """Every string inside `value` cut at MAX_FILE_TEXT characters."""
    if isinstance(value, str):
        return cast(_T, cut(value, MAX_FILE_TEXT))
    if isinstance(value, dict):
        return cast(_T, {k: _bounded(v) for k, v in value.items()})
    if isinstance(value, list):
        return cast(_T, [_bounded(v) for v in value])
    return value


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    return str(value)


def file_body(notices: Sequence[Notice], event: str, aep_org: str = "") -> dict[str, Any]:
    """The structured record of the file channel: one alert's fields; for a storm
    ("grouped", or a resolution of several flows) the rule's fields and the alerts under
    "alerts" (the first MAX_FILE_ALERTS; the rest counted in "alerts_more"); for one
    flow's incident the lead alert's fields and every matched rule under "rules".
    `aep_org` is `aep_ui.org` (see aep_url). Bounded: see the module docstring."""
    first = notices[0]
    if event == "grouped" or len({n.flow.id for n in notices}) > 1:
        return {
            "event": event,
            **({"test": True} if first.test else {}),
            "rule": first.rule,
            "severity": first.severity,
            "count": len(notices),
            "alerts": [_alert_record(n, aep_org) for n in notices[:MAX_FILE_ALERTS]],
            "alerts_more": max(len(notices) - MAX_FILE_ALERTS, 0),
        }
    record = {
        "event": event,
        **({"test": True} if first.test else {}),
        **_alert_record(first, aep_org),
    }
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
