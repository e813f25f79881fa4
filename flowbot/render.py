"""Notices → message bodies, one shape per channel kind. The only module importing jinja2.

Text comes from Jinja2 templates that ops teams can change (`flowbot/templates/`,
linked from `templates/` at the repository root; a `templates_dir` and a per-rule
directory override them file by file). What templates see is built in `context.py`. Templates render in a sandbox with `StrictUndefined`, so they cannot reach
Python internals and a typo fails loudly in `check_templates` instead of rendering "".

Files, per body shape of a kind (flowbot.channels: `body` and the `templates` folder;
`event` is firing, repeat, resolved or grouped):

    slack/{event}.md.j2       Slack mrkdwn, turned into Block Kit by simple line rules:
                              "# text" a header, "---" a divider, "[context] text" a
                              context line, paragraphs (blank-line separated) sections
    slack/update.md.j2        the thread's first message once the alert resolved
    email/{event}.subject.j2, email/{event}.txt.j2, email/{event}.html.j2
    terminal/{event}.txt.j2   (a "text" kind: <its folder>/{event}.txt.j2)

Webhooks use the Slack templates. The file kind is structured JSON, not a template.

Untrusted text (names and messages from the Flow Service) is escaped for its channel:
in Slack templates every `{{ … }}` goes through the mrkdwn escape (`& < >`), except
values marked trusted (the owner mention from rules.yaml, the `link` filter); email
HTML is HTML-escaped. It arrives on one line (context.py), so it never makes structure.
The `link` filter makes a link of a trusted URL only (context.TrustedUrl: Adobe hosts
over https, the configured API/export origins); any other URL is shown as text.

Rendering is bounded (sandbox.py: output and values under 262,144 characters, one
message's templates under 2 s; `'x' * 300000000` is refused before it is computed). A
template that fails or passes a bound gives a minimal plain message and one log line
saying why, never an exception; `check_templates` trial-renders with the same bounds.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Sequence
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
    pass_eval_context,
    select_autoescape,
)
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from flowbot.blocks import (
    SLACK_SECTION,
    cut_lines,
    cut_mrkdwn,
    escape_mrkdwn,
    guard_markers,
    slack_blocks,
)
from flowbot.channels import KINDS, ChannelKind, channel_kind
from flowbot.context import (
    CONTEXT_NAMES,
    MAX_ITEMS,
    TrustedUrl,
    file_body,
    message_context,
)
from flowbot.models import Notice
from flowbot.sandbox import BoundedSandbox, bounded_filter, render_template, within_time
from flowbot.untrusted import cut, one_line

log = logging.getLogger("flowbot.render")

DEFAULT_TEMPLATES = Path(__file__).resolve().parent / "templates"  # also ./templates
EVENTS = ("firing", "repeat", "resolved", "grouped")

SUBJECT_MAX = 200
SHOWN_URL = 200  # characters of an untrusted URL shown as text

# ---------------------------------------------------------------- escaping and filters


def _finalize_slack(value: Any) -> Any:
    if isinstance(value, Markup):
        return value
    return guard_markers(escape_mrkdwn("" if value is None else str(value)))


def mrkdwn(value: Any) -> Markup:
    """Filter: escape for Slack explicitly (also what every `{{ }}` does in Slack)."""
    return value if isinstance(value, Markup) else Markup(_finalize_slack(value))


def slack_link(url: Any, label: Any = None) -> Markup:
    """Filter: a Slack link `<url|label>` with both parts escaped, when `url` is trusted;
    otherwise the label and the URL as text in a code span (Slack links neither)."""
    text = escape_mrkdwn(one_line(str(label or url)))
    if isinstance(url, TrustedUrl):
        safe_url = escape_mrkdwn(str(url)).replace("|", "%7C")
        return Markup(guard_markers(f"<{safe_url}|{text}>"))
    shown = escape_mrkdwn(cut(one_line(str(url)), SHOWN_URL)).replace("`", "'")
    return Markup(guard_markers(f"{text} `{shown}` (not an Adobe address, not linked)"))


@pass_eval_context
def html_link(eval_ctx: EvalContext, url: Any, label: Any = None) -> str:
    """Filter: in HTML, `<a href>` for a trusted URL, else the label and the URL as text;
    in plain text, "label: url" (marked when the URL is not trusted)."""
    text, shown = one_line(str(label or url)), cut(one_line(str(url)), SHOWN_URL)
    if not eval_ctx.autoescape:
        note = "" if isinstance(url, TrustedUrl) else " (not an Adobe address)"
        return f"{text}: {shown}{note}"
    if isinstance(url, TrustedUrl):
        return Markup('<a href="{}">{}</a>').format(str(url), bidi(text))
    return Markup("{} <code>{}</code> (not an Adobe address, not linked)").format(bidi(text), shown)


def bidi(value: Any) -> Markup:
    """Filter (HTML): untrusted text isolated with its own direction, so a right-to-left
    name cannot reorder what follows it."""
    return Markup('<bdi dir="auto">{}</bdi>').format(value)


def count_of(value: int | None, noun: str, plural: str | None = None) -> str:
    """Filter: "1 record", "1,234 records", "— records" when unknown."""
    many = plural or f"{noun}s"
    return f"{count(value)} {noun if value == 1 else many}"


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


FILTERS = {
    "duration": duration,
    "count": count,
    "count_of": count_of,
    "pct": pct,
    "time": _time_filter,
}


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
        env = BoundedSandbox(autoescape=False, finalize=_finalize_slack, **options)
        env.filters.update(mrkdwn=mrkdwn, link=slack_link)
    else:
        env = BoundedSandbox(
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
            **options,
        )
        env.filters.update(link=html_link, bidi=bidi)
    env.filters.update(FILTERS)
    env.filters = {name: bounded_filter(name, f) for name, f in env.filters.items()}
    return env


def _dirs(templates_dir: Path | None, rule_template: Path | None) -> tuple[str, ...]:
    found = [rule_template, templates_dir, DEFAULT_TEMPLATES]
    return tuple(str(d) for d in found if d is not None)


# ---------------------------------------------------------------- render

_RENDER_ERRORS = (
    TemplateError,
    TypeError,
    ValueError,
    LookupError,
    AttributeError,
    ArithmeticError,
    RecursionError,
    OSError,
)


def render(
    notices: Sequence[Notice],
    event: str,
    kind: str,
    *,
    templates_dir: Path | None = None,
    rule_template: Path | None = None,
    timezone: str = "UTC",
    link_origins: Sequence[str] = (),
    aep_org: str = "",
    on_fallback: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The Message.body for `kind` telling `event` about `notices` (one, or several of one
    rule when `event` is "grouped").

    slack/webhook: {"text", "blocks"} and, for "resolved", "update" (the new content of
    the thread's first message); email: {"subject", "text", "html"}; terminal:
    {"text"}; file: a structured JSON-able dict. `link_origins`: origins (the
    configured API and export URLs) whose diagnostic URLs may be links besides Adobe's
    hosts; `aep_org` is `aep_ui.org` from rules.yaml (the org part of AEP UI links).
    Never raises on a template problem: it returns a minimal plain message
    instead, and tells `on_fallback(reason)` (or, without it, logs one line).
    """
    if not notices:
        raise ValueError("render needs at least one notice")
    shape = channel_kind(kind)  # ValueError for a kind that does not exist
    if shape.body == "record":
        return file_body(notices, event, aep_org)
    dirs = _dirs(templates_dir, rule_template)
    try:
        body: dict[str, Any] = within_time(
            lambda: _body(notices, event, shape, dirs, timezone, link_origins, aep_org)
        )
        return body
    except _RENDER_ERRORS as exc:
        reason = (
            f"{type(exc).__name__}: {cut(one_line(str(getattr(exc, 'message', None) or exc)), 300)}"
        )
        if on_fallback is not None:
            on_fallback(reason)
        else:
            log.error(
                "template for %s/%s of rule %s failed (%s); sending a plain message",
                kind, event, notices[0].rule, reason,
            )  # fmt: skip
        return fallback_body(notices, event, kind)


def _body(
    notices: Sequence[Notice],
    event: str,
    kind: ChannelKind,
    dirs: tuple[str, ...],
    timezone: str,
    link_origins: Sequence[str],
    aep_org: str = "",
) -> dict[str, Any]:
    slack = kind.body == "slack"
    context = message_context(
        notices, event, slack=slack, timezone=timezone, link_origins=link_origins, aep_org=aep_org
    )
    env = _environment(dirs, slack)

    def text(name: str) -> str:
        return render_template(env.get_template(name), context)

    folder = kind.templates
    if slack:
        body = slack_blocks(text(f"{folder}/{event}.md.j2"))
        if event == "resolved":
            body["update"] = slack_blocks(text(f"{folder}/update.md.j2"))
        return body
    if kind.body == "email":
        subject = text(f"{folder}/{event}.subject.j2")
        return {
            "subject": cut(" ".join(one_line(subject).split()), SUBJECT_MAX),
            "text": text(f"{folder}/{event}.txt.j2").strip() + "\n",
            "html": text(f"{folder}/{event}.html.j2"),
        }
    return {"text": text(f"{folder}/{event}.txt.j2").rstrip()}


def fallback_body(notices: Sequence[Notice], event: str, kind: str) -> dict[str, Any]:
    """A minimal plain message built without templates, for when one fails."""
    first = notices[0]
    flows = ", ".join(f"{n.flow.name or n.flow.id} ({n.flow.id})" for n in notices[:MAX_ITEMS])
    if len(notices) > MAX_ITEMS:
        flows += f" and {len(notices) - MAX_ITEMS} more"
    sandbox = first.sandbox or first.flow.sandbox
    line = one_line(f"[{first.severity.upper()}] {first.rule} {event}: {flows} in {sandbox}")
    reason = one_line(first.finding.reason) if first.finding else ""
    text = f"{line}\n{reason}".strip()
    shape = channel_kind(kind).body
    if shape == "slack":
        safe = escape_mrkdwn(text)
        return {
            "text": cut_mrkdwn(safe, 300),
            "blocks": [
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": cut_lines(safe, SLACK_SECTION)},
                }
            ],
        }
    if shape == "email":
        html = str(Markup("<pre>{}</pre>").format(text))
        return {"subject": cut(line, SUBJECT_MAX), "text": text + "\n", "html": html}
    return {"text": text}


def render_diagnosis(
    diagnosis: Any, kind: str, *, title: str, templates_dir: Path | None = None
) -> dict[str, Any]:
    """The body of a thread reply that brings a run's diagnosis (`flowbot.diagnosis`)
    after its alert, for any kind, through the `_diagnosis` partials; `title` (it may
    quote API text) is escaped like API text. Falls back to the diagnosis's note."""
    from flowbot.diagnosis import template_values

    values = _clean_values(template_values(diagnosis))
    title = cut(one_line(title), SUBJECT_MAX)
    if kind == "file":
        return {"title": title, "diagnosis": values}
    dirs = _dirs(templates_dir, None)
    slack = kind in ("slack", "webhook")

    def text(name: str) -> str:
        env = _environment(dirs, slack)
        return render_template(env.get_template(name), {"diagnosis": values})

    try:
        if slack:
            return slack_blocks(
                f"# {escape_mrkdwn(title)}\n\n"
                + within_time(lambda: text("slack/_diagnosis.md.j2"))
            )
        plain = within_time(lambda: text("common/_diagnosis.txt.j2")).strip()
        if kind == "email":
            html = within_time(lambda: text("email/_diagnosis.html.j2"))
            head = Markup(
                '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{}</title>'
                '</head>\n<body style="font-family:sans-serif">\n'
            ).format(title)
            return {"subject": f"Re: {title}", "text": plain + "\n",
                    "html": str(head) + html + "\n</body></html>"}  # fmt: skip
        return {"text": f"== DIAGNOSIS {title}\n{plain}"}
    except _RENDER_ERRORS as exc:
        log.error("diagnosis template for %s failed (%s); sending its note", kind, exc)
        note = one_line(getattr(diagnosis, "note", "") or "row-level errors: see flowbot explain")
        return render_meta(f"{title}\n{note}", kind)


def _clean_values(value: Any) -> Any:
    if isinstance(value, str):
        return one_line(value)
    if isinstance(value, dict):
        return {k: _clean_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_values(v) for v in value]
    return value


def render_meta(text: str, kind: str) -> dict[str, Any]:
    """A body for a message about flowbot itself ("monitoring degraded for sandbox prod
    since …"), for any kind. `text` is flowbot's own but may quote an API error, so it
    is escaped like API text, and its lines are kept but cleaned of control characters."""
    text = "\n".join(one_line(line) for line in text.splitlines())
    first = text.strip().splitlines()[0] if text.strip() else "flowbot"
    shape = channel_kind(kind).body
    if shape == "slack":
        safe = escape_mrkdwn(text)
        return {
            "text": cut_mrkdwn(escape_mrkdwn(first), 300),
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": cut_lines(safe, 3000)}}
            ],
        }
    if shape == "email":
        return {
            "subject": cut(f"[flowbot] {first}", SUBJECT_MAX),
            "text": text.rstrip() + "\n",
            "html": str(Markup("<p>{}</p>").format(text)),
        }
    if shape == "record":
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
        env = _environment(_dirs(templates_dir, rule_template), _is_slack(name))
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


def _is_slack(name: str) -> bool:
    """True for a template in the folder of a kind whose body is Slack mrkdwn."""
    folder = name.split("/")[0]
    return any(k.templates == folder and k.body == "slack" for k in KINDS.values())


def _trial_render(env: SandboxedEnvironment, name: str, path: Path) -> list[str]:
    from flowbot.notifiers.sample import sample_notices  # a sample alert, for checks only

    event = name.split("/")[-1].split(".")[0]
    if event not in EVENTS and event != "update":
        return []  # partials: checked through the templates that include them
    notices = sample_notices(event if event in EVENTS else "resolved")
    context = message_context(notices, event, slack=_is_slack(name))
    try:
        within_time(lambda: render_template(env.get_template(name), context))
    except TemplateError as exc:
        line = 0
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename == str(path) and frame.lineno:
                line = frame.lineno
        message = getattr(exc, "message", None) or str(exc)
        return [f"{path}:{line}: {message}"]
    return []
