"""The digest: per sandbox, the last period's figures (report.py) as a message for each
digest channel: Slack Block Kit built here (every value escaped), an email with an HTML
table, a record for the file kind, plain text for the terminal. Pure; the daemon
schedules it on its cron and queues what `digest_messages` returns in the outbox.

The period is the one that ended at the latest firing of the cron (in its time zone):
from the firing before it to it, so each digest covers what the previous one did not.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter
from markupsafe import Markup

from flowbot.blocks import SLACK_HEADER, SLACK_SECTION, escape_mrkdwn
from flowbot.channels import channel_kind
from flowbot.models import Message
from flowbot.report import (
    Report,
    SandboxFigures,
    as_dict,
    as_text,
    flaky_text,
    html_table,
    plural,
    quiet_line,
    red_line,
    span,
)
from flowbot.rules_parts import Channel, Digest
from flowbot.untrusted import cut

SANDBOXES_SHOWN = 15  # in Slack (3 blocks each, within Slack's 50); the rest are counted
FIELD_MAX = 2000  # characters of a section field (Slack's limit)


def digest_period(digest: Digest, now: datetime) -> tuple[datetime, datetime]:
    """[since, until): the period that ended at the cron's latest firing at or before
    `now`, in the digest's time zone (returned in `now`'s zone)."""
    zone = ZoneInfo(digest.timezone)
    it = croniter(digest.cron, now.astimezone(zone))
    until: datetime = it.get_prev(datetime)
    since: datetime = it.get_prev(datetime)
    return since.astimezone(now.tzinfo), until.astimezone(now.tzinfo)


def headline(report: Report) -> str:
    failed = sum(f.failures for f in report.sandboxes)
    red = sum(f.red_count for f in report.sandboxes)
    if all(f.quiet for f in report.sandboxes):
        return "flowbot digest: a quiet period"
    return f"flowbot digest: {plural(failed, 'failed run')}, {plural(red, 'flow')} still red"


def period_words(report: Report) -> str:
    return (
        f"{report.since.strftime('%a %d %b %H:%M')} → {report.until.strftime('%a %d %b %H:%M')} UTC"
    )


# ------------------------------------------------------------------ Slack


def _mrkdwn(text: str, limit: int = SLACK_SECTION) -> dict[str, str]:
    return {"type": "mrkdwn", "text": cut(text, limit)}


def _sandbox_blocks(f: SandboxFigures) -> list[dict[str, Any]]:
    name = escape_mrkdwn(f.sandbox)
    if f.quiet:
        line = quiet_line(f).split(": ", 1)[1]
        return [{"type": "context", "elements": [_mrkdwn(f"*{name}*: {escape_mrkdwn(line)}")]}]
    rate = f" ({f.failures / f.runs:.0%})" if f.runs else ""
    fields = [
        _mrkdwn(f"*Runs*\n{f.runs:,}, {f.failures:,} failed{rate}", FIELD_MAX),
        _mrkdwn(f"*Records lost*\n{f.records_lost:,} of {f.records_in:,}", FIELD_MAX),
        _mrkdwn(f"*Incidents*\n{f.opened} opened, {f.resolved} resolved", FIELD_MAX),
        _mrkdwn(
            f"*Time to resolve*\nmedian {span(f.resolve_median)}, "
            f"longest {span(f.resolve_longest)}",
            FIELD_MAX,
        ),
    ]
    detail = f"*Still red:* {escape_mrkdwn(red_line(f))}"
    if f.flaky:
        detail += "\n*Flakiest:* " + escape_mrkdwn("; ".join(flaky_text(x) for x in f.flaky))
    return [
        {"type": "section", "text": _mrkdwn(f"*{name}*"), "fields": fields},
        {"type": "section", "text": _mrkdwn(detail)},
    ]


def slack_body(report: Report) -> dict[str, Any]:
    title = cut(f"flowbot digest · {period_words(report)}", SLACK_HEADER)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title}}
    ]
    shown = report.sandboxes[:SANDBOXES_SHOWN]
    for i, f in enumerate(shown):
        if i:
            blocks.append({"type": "divider"})
        blocks += _sandbox_blocks(f)
    if not report.sandboxes:
        blocks.append({"type": "section", "text": _mrkdwn("No sandboxes in the database yet.")})
    hidden = len(report.sandboxes) - len(shown)
    footer = "`flowbot report` has the details"
    if hidden:
        footer = f"and {hidden} more sandboxes: {footer}"
    blocks.append({"type": "context", "elements": [_mrkdwn(footer)]})
    return {"text": escape_mrkdwn(headline(report)), "blocks": blocks}


# ------------------------------------------------------------------ email


def email_body(report: Report) -> dict[str, str]:
    html = Markup(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{}</title></head>'
        "<body><h1>{}</h1><p>{}</p>\n{}\n"
        "<p><small>flowbot report has the details.</small></p></body></html>\n"
    ).format(headline(report), headline(report), period_words(report), html_table(report))
    return {
        "subject": cut(f"[flowbot] {headline(report).removeprefix('flowbot ')}", 200),
        "text": as_text(report),
        "html": str(html),
    }


# ------------------------------------------------------------------ messages


def digest_body(report: Report, kind: str) -> Mapping[str, Any]:
    shape = channel_kind(kind).body
    if shape == "slack":
        return slack_body(report)
    if shape == "email":
        return email_body(report)
    if shape == "record":
        return {"event": "digest", **as_dict(report)}
    return {"text": as_text(report)}


def digest_messages(
    report: Report, digest: Digest, channels: Mapping[str, Channel]
) -> list[Message]:
    """One message per digest channel."""
    out = []
    for name in digest.channels:
        channel = channels[name]
        out.append(Message(name, channel.kind, "digest", digest_body(report, channel.kind)))
    return out


def next_digest(digest: Digest, now: datetime) -> datetime:
    """The cron's next firing after `now`, in its time zone (returned in `now`'s zone).
    Computed with croniter, whose day-of-week numbers are cron's (0 = Sunday)."""
    it = croniter(digest.cron, now.astimezone(ZoneInfo(digest.timezone)))
    fire: datetime = it.get_next(datetime)
    return fire.astimezone(now.tzinfo)
