"""Notices → message bodies, one shape per channel kind. The only module importing jinja2.

Text comes from Jinja2 templates that ops teams can change (`templates/` at the
repository root; a `templates_dir` and a per-rule directory override them file by
file). Templates render in a sandbox with `StrictUndefined`, so they cannot reach
Python internals and a typo fails loudly in `check_templates` instead of rendering "".

Files, per kind (`event` is firing, repeat, resolved or grouped):

    slack/{event}.md.j2       Slack mrkdwn, turned into Block Kit by simple line rules:
                              "# text" a header, "---" a divider, "[context] text" a
                              context line, paragraphs (blank-line separated) sections
    slack/update.md.j2        the thread's first message once the alert resolved
    email/{event}.subject.j2, email/{event}.txt.j2, email/{event}.html.j2
    terminal/{event}.txt.j2

Webhooks use the Slack templates. The file kind is structured JSON, not a template.

Untrusted text (names and messages from the Flow Service) is escaped for its channel:
in Slack templates every `{{ … }}` goes through the mrkdwn escape (`& < >`), except
values marked trusted (the owner mention from rules.yaml, the `link` filter); email
HTML is HTML-escaped. A template that fails to render gives a minimal plain message
and a log line, never an exception.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import (
    ChoiceLoader,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateSyntaxError,
    meta,
    nodes,
    pass_context,
    select_autoescape,
)
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from flowbot.models import Finding, Flow, Notice, Run, RunError

log = logging.getLogger("flowbot.render")

DEFAULT_TEMPLATES = Path(__file__).resolve().parent / "templates"  # also ./templates
EVENTS = ("firing", "repeat", "resolved", "grouped")
KINDS = ("slack", "webhook", "email", "file", "terminal")

MAX_ERRORS = 10  # error lines shown per alert; the rest is "and N more"
MAX_LINKS = 10
MAX_ITEMS = 20  # flows listed in a grouped message
MAX_MESSAGE = 500  # characters of one error message
SLACK_BLOCKS = 50
SLACK_SECTION = 3000
SLACK_HEADER = 150
SUBJECT_MAX = 200

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
        "timezone",
        "text",
    }
)


# ---------------------------------------------------------------- escaping and filters


def escape_mrkdwn(text: str) -> str:
    """Slack's three control characters as entities: `<!channel>` shows, never pings."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _finalize_slack(value: Any) -> Any:
    if isinstance(value, Markup):
        return value
    return escape_mrkdwn("" if value is None else str(value))


def mrkdwn(value: Any) -> Markup:
    """Filter: escape for Slack explicitly (also what every `{{ }}` does in Slack)."""
    return value if isinstance(value, Markup) else Markup(_finalize_slack(value))


def slack_link(url: Any, label: Any = None) -> Markup:
    """Filter: a Slack link `<url|label>` with both parts escaped."""
    safe_url = escape_mrkdwn(str(url)).replace("|", "%7C")
    return Markup(f"<{safe_url}|{escape_mrkdwn(str(label or url))}>")


def duration(value: timedelta | float | int | None) -> str:
    """Filter: 55s, 12m 05s, 2h 03m, 3d 4h; '—' when unknown."""
    if value is None:
        return "—"
    seconds = int(value.total_seconds() if isinstance(value, timedelta) else value)
    if seconds < 0:
        return "—"
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def count(value: int | float | None) -> str:
    """Filter: 1,234,567; '—' when unknown."""
    return "—" if value is None else f"{value:,}"


def pct(value: float | None, digits: int = 1) -> str:
    """Filter: a share (0.012) as a percentage (1.2%); '—' when unknown."""
    if value is None:
        return "—"
    if 0 < value * 100 < 10**-digits:
        return f"<{10**-digits:.{digits}f}%"
    return f"{value * 100:.{digits}f}%"


def format_time(at: datetime | None, zone: str = "UTC") -> str:
    """2020-08-05 19:34:18 UTC, plus the local time when `zone` is not UTC."""
    if at is None:
        return "—"
    utc = at.astimezone(UTC)
    text = utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    if zone and zone.upper() != "UTC":
        try:
            local = at.astimezone(ZoneInfo(zone))
        except (ZoneInfoNotFoundError, ValueError):
            return text
        text += local.strftime(" (%Y-%m-%d %H:%M %Z)")
    return text


@pass_context
def _time_filter(context: Context, at: datetime | None) -> str:
    """Filter: a time in UTC and in the configured zone (`timezone`)."""
    return format_time(at, str(context.get("timezone") or "UTC"))


FILTERS = {"duration": duration, "count": count, "pct": pct, "time": _time_filter}


# ---------------------------------------------------------------- environments


@lru_cache(maxsize=32)
def _environment(dirs: tuple[str, ...], slack: bool) -> SandboxedEnvironment:
    loader = ChoiceLoader([FileSystemLoader(d) for d in dirs])
    options: dict[str, Any] = {
        "loader": loader,
        "undefined": StrictUndefined,
        "trim_blocks": True,
        "lstrip_blocks": True,
        "keep_trailing_newline": False,
    }
    if slack:
        env = SandboxedEnvironment(autoescape=False, finalize=_finalize_slack, **options)
        env.filters.update(mrkdwn=mrkdwn, link=slack_link)
    else:
        env = SandboxedEnvironment(
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
            **options,
        )
    env.filters.update(FILTERS)
    return env


def _dirs(templates_dir: Path | None, rule_template: Path | None) -> tuple[str, ...]:
    found = [rule_template, templates_dir, DEFAULT_TEMPLATES]
    return tuple(str(d) for d in found if d is not None)


# ---------------------------------------------------------------- context


def aep_url(flow: Flow, sandbox: str = "") -> str:
    """The dataflow's page in the AEP UI (see AEP_UI)."""
    org = str(flow.raw.get("imsOrgId") or "") if flow.raw else ""
    return AEP_UI.format(
        org=f"@{org}/" if org else "",
        sandbox=flow.sandbox or sandbox or "prod",
        flow_id=flow.id,
    )


def _cut(text: str, limit: int) -> str:
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
        "message": _cut(err.message, MAX_MESSAGE),
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
    notice (cut at MAX_ITEMS) in `items`, and `event` and `timezone`."""
    items = [notice_context(n, slack=slack) for n in notices]
    context = dict(items[0])
    context.update(
        event=event,
        items=items[:MAX_ITEMS],
        items_total=len(items),
        items_more=max(len(items) - MAX_ITEMS, 0),
        timezone=timezone,
    )
    return context


# ---------------------------------------------------------------- render


def render(
    notices: Sequence[Notice],
    event: str,
    kind: str,
    *,
    templates_dir: Path | None = None,
    rule_template: Path | None = None,
    timezone: str = "UTC",
) -> dict[str, Any]:
    """The Message.body for `kind` telling `event` about `notices` (one, or several of one
    rule when `event` is "grouped").

    slack/webhook: {"text", "blocks"} and, for "resolved", "update" (the new content of
    the thread's first message); email: {"subject", "text", "html"}; terminal:
    {"text"}; file: a structured JSON-able dict. Never raises on a template problem:
    it logs one line and returns a minimal plain message instead.
    """
    if not notices:
        raise ValueError("render needs at least one notice")
    if kind == "file":
        return file_body(notices, event)
    dirs = _dirs(templates_dir, rule_template)
    try:
        if kind in ("slack", "webhook"):
            return _slack_body(notices, event, dirs, timezone)
        context = message_context(notices, event, timezone=timezone)
        env = _environment(dirs, False)
        if kind == "email":
            subject = env.get_template(f"email/{event}.subject.j2").render(context)
            return {
                "subject": _cut(" ".join(subject.split()), SUBJECT_MAX),
                "text": env.get_template(f"email/{event}.txt.j2").render(context).strip() + "\n",
                "html": env.get_template(f"email/{event}.html.j2").render(context),
            }
        if kind == "terminal":
            return {"text": env.get_template(f"terminal/{event}.txt.j2").render(context).rstrip()}
    except (TemplateError, TypeError, ValueError, LookupError, AttributeError, OSError) as exc:
        log.error(
            "template for %s/%s of rule %s failed (%s: %s); sending a plain message",
            kind,
            event,
            notices[0].rule,
            type(exc).__name__,
            exc,
        )
        return fallback_body(notices, event, kind)
    raise ValueError(f"unknown channel kind {kind!r}")


def _slack_body(
    notices: Sequence[Notice], event: str, dirs: tuple[str, ...], timezone: str
) -> dict[str, Any]:
    context = message_context(notices, event, slack=True, timezone=timezone)
    env = _environment(dirs, True)
    body = slack_blocks(env.get_template(f"slack/{event}.md.j2").render(context))
    if event == "resolved":
        body["update"] = slack_blocks(env.get_template("slack/update.md.j2").render(context))
    return body


def slack_blocks(text: str) -> dict[str, Any]:
    """Rendered Slack text → {"text": fallback, "blocks": [...]} within Slack's limits
    (50 blocks, 3,000 characters a section, 150 a header)."""
    blocks: list[dict[str, Any]] = []
    paragraph: list[str] = []

    def flush() -> None:
        for section in _split_lines(paragraph, SLACK_SECTION):
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": section}})
        paragraph.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if line.startswith("# "):
            flush()
            header = _cut(line[2:].strip(), SLACK_HEADER)
            blocks.append({"type": "header", "text": {"type": "plain_text", "text": header}})
        elif stripped == "---":
            flush()
            blocks.append({"type": "divider"})
        elif line.startswith("[context]"):
            flush()
            note = _cut_lines(line[len("[context]") :].strip(), SLACK_SECTION)
            if note:
                blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]})
        elif not stripped:
            flush()
        else:
            paragraph.append(line.rstrip())
    flush()
    if len(blocks) > SLACK_BLOCKS:
        more = len(blocks) - SLACK_BLOCKS + 1
        blocks = blocks[: SLACK_BLOCKS - 1]
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"and {more} more blocks not shown"}],
            }
        )
    return {"text": _fallback_text(blocks), "blocks": blocks}


def _split_lines(lines: list[str], limit: int) -> list[str]:
    """Lines → texts of at most `limit` characters, split between lines (a line
    longer than `limit` alone is cut)."""
    out: list[str] = []
    current = ""
    for line in lines:
        line = _cut(line, limit)
        if current and len(current) + 1 + len(line) > limit:
            out.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        out.append(current)
    return out


def _cut_lines(text: str, limit: int) -> str:
    """Cut at a line boundary, so a link or an entity is never cut in half."""
    if len(text) <= limit:
        return text
    marker = "\n… (cut)"
    head = text[: limit - len(marker)]
    if "\n" in head:
        head = head[: head.rindex("\n")]
    return head + marker


def _fallback_text(blocks: list[dict[str, Any]]) -> str:
    """The notification text: the header, or else the first section."""
    for block in blocks:
        if block["type"] in ("header", "section"):
            return _cut(block["text"]["text"], 300)
    return "flowbot alert"


def fallback_body(notices: Sequence[Notice], event: str, kind: str) -> dict[str, Any]:
    """A minimal plain message built without templates, for when one fails."""
    first = notices[0]
    flows = ", ".join(f"{n.flow.name or n.flow.id} ({n.flow.id})" for n in notices[:MAX_ITEMS])
    if len(notices) > MAX_ITEMS:
        flows += f" and {len(notices) - MAX_ITEMS} more"
    sandbox = first.sandbox or first.flow.sandbox
    line = f"[{first.severity.upper()}] {first.rule} {event}: {flows} in {sandbox}"
    reason = first.finding.reason if first.finding else ""
    text = f"{line}\n{reason}".strip()
    if kind in ("slack", "webhook"):
        safe = escape_mrkdwn(text)
        return {
            "text": _cut(safe, 300),
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": _cut(safe, 3000)}}],
        }
    if kind == "email":
        html = str(Markup("<pre>{}</pre>").format(text))
        return {"subject": _cut(line, SUBJECT_MAX), "text": text + "\n", "html": html}
    return {"text": text}


def render_meta(text: str, kind: str) -> dict[str, Any]:
    """A body for a message about flowbot itself ("monitoring degraded for sandbox prod
    since …"), for any kind. `text` is flowbot's own but may quote an API error, so it
    is escaped like API text."""
    first = text.strip().splitlines()[0] if text.strip() else "flowbot"
    if kind in ("slack", "webhook"):
        safe = escape_mrkdwn(text)
        return {
            "text": _cut(escape_mrkdwn(first), 300),
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": _cut_lines(safe, 3000)}}
            ],
        }
    if kind == "email":
        return {
            "subject": _cut(f"[flowbot] {first}", SUBJECT_MAX),
            "text": text.rstrip() + "\n",
            "html": str(Markup("<p>{}</p>").format(text)),
        }
    if kind == "file":
        return {"event": "meta", "text": text}
    return {"text": text}


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
    """The structured record of the file channel: one alert's fields, or for "grouped"
    the rule's fields and every alert under "alerts"."""
    if event == "grouped":
        first = notices[0]
        return {
            "event": event,
            "rule": first.rule,
            "severity": first.severity,
            "count": len(notices),
            "alerts": [_alert_record(n) for n in notices],
        }
    return {"event": event, **_alert_record(notices[0])}


# ---------------------------------------------------------------- checks


def check_templates(templates_dir: Path | None) -> list[str]:
    """Problems of the templates in `templates_dir` (the defaults when None), each as
    "file:line: message": syntax errors, unknown variables, and errors raised when
    rendering a sample alert. An empty list means every template is fine."""
    root = templates_dir or DEFAULT_TEMPLATES
    problems: list[str] = []
    if not root.is_dir():
        return [f"{root}:0: not a directory"]
    for path in sorted(root.rglob("*.j2")):
        name = path.relative_to(root).as_posix()
        env = _environment(_dirs(templates_dir, None), name.startswith("slack/"))
        try:
            tree = env.parse(path.read_text(encoding="utf-8"), name, str(path))
        except TemplateSyntaxError as exc:
            problems.append(f"{path}:{exc.lineno}: {exc.message}")
            continue
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{path}:0: cannot read ({exc})")
            continue
        for unknown in sorted(meta.find_undeclared_variables(tree) - CONTEXT_NAMES):
            line = next((n.lineno for n in tree.find_all(nodes.Name) if n.name == unknown), 0)
            problems.append(f"{path}:{line}: unknown variable '{unknown}'")
        problems.extend(_trial_render(env, name, path))
    return problems


def _trial_render(env: SandboxedEnvironment, name: str, path: Path) -> list[str]:
    from flowbot.notifiers.sample import sample_notices  # a sample alert, for checks only

    event = name.split("/")[-1].split(".")[0]
    if event not in EVENTS and event != "update":
        return []  # partials: checked through the templates that include them
    notices = sample_notices(event if event in EVENTS else "resolved")
    context = message_context(notices, event, slack=name.startswith("slack/"))
    try:
        env.get_template(name).render(context)
    except TemplateError as exc:
        line = 0
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename == str(path) and frame.lineno:
                line = frame.lineno
        message = getattr(exc, "message", None) or str(exc)
        return [f"{path}:{line}: {message}"]
    return []
