"""Notices → message bodies, one shape per channel kind. The only module importing jinja2.

Text comes from Jinja2 templates that ops teams can change (`flowbot/templates/`,
linked from `templates/` at the repository root; a `templates_dir` and a per-rule
directory override them file by file). What templates see is built in `context.py`. Templates render in a sandbox with `StrictUndefined`, so they cannot reach
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

from flowbot.context import CONTEXT_NAMES, MAX_ITEMS, cut, file_body, message_context
from flowbot.models import Notice

log = logging.getLogger("flowbot.render")

DEFAULT_TEMPLATES = Path(__file__).resolve().parent / "templates"  # also ./templates
EVENTS = ("firing", "repeat", "resolved", "grouped")
KINDS = ("slack", "webhook", "email", "file", "terminal")

SLACK_BLOCKS = 50
SLACK_SECTION = 3000
SLACK_HEADER = 150
SUBJECT_MAX = 200

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
                "subject": cut(" ".join(subject.split()), SUBJECT_MAX),
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
            header = cut(line[2:].strip(), SLACK_HEADER)
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
        line = cut(line, limit)
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
            return cut(block["text"]["text"], 300)
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
            "text": cut(safe, 300),
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": cut(safe, 3000)}}],
        }
    if kind == "email":
        html = str(Markup("<pre>{}</pre>").format(text))
        return {"subject": cut(line, SUBJECT_MAX), "text": text + "\n", "html": html}
    return {"text": text}


def render_meta(text: str, kind: str) -> dict[str, Any]:
    """A body for a message about flowbot itself ("monitoring degraded for sandbox prod
    since …"), for any kind. `text` is flowbot's own but may quote an API error, so it
    is escaped like API text."""
    first = text.strip().splitlines()[0] if text.strip() else "flowbot"
    if kind in ("slack", "webhook"):
        safe = escape_mrkdwn(text)
        return {
            "text": cut(escape_mrkdwn(first), 300),
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": _cut_lines(safe, 3000)}}
            ],
        }
    if kind == "email":
        return {
            "subject": cut(f"[flowbot] {first}", SUBJECT_MAX),
            "text": text.rstrip() + "\n",
            "html": str(Markup("<p>{}</p>").format(text)),
        }
    if kind == "file":
        return {"event": "meta", "text": text}
    return {"text": text}


# ---------------------------------------------------------------- checks


def check_templates(templates_dir: Path | None, rule_template: Path | None = None) -> list[str]:
    """Problems of the templates in `rule_template` (else `templates_dir`, else the
    defaults), found through the same folders as `render`, each as "file:line: message":
    syntax errors, unknown variables, and errors raised when rendering a sample alert.
    An empty list means every template is fine."""
    root = rule_template or templates_dir or DEFAULT_TEMPLATES
    problems: list[str] = []
    if not root.is_dir():
        return [f"{root}:0: not a directory"]
    for path in sorted(root.rglob("*.j2")):
        name = path.relative_to(root).as_posix()
        env = _environment(_dirs(templates_dir, rule_template), name.startswith("slack/"))
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
