"""`flowbot history` and `flowbot silence`: what was alerted, and muting it."""

from __future__ import annotations

from typing import Any

import click

from flowbot.cli_common import DURATION, db_option, friendly_errors, open_store, rules_option, when
from flowbot.errors import ConfigError


@click.command()
@click.option("--flow", help="A flow id or name (glob with *).")
@click.option("--rule", help="A rule name.")
@click.option(
    "--since", type=DURATION, metavar="DURATION", help="Only alerts seen in this span, e.g. 24h."
)
@click.option(
    "--limit",
    type=click.IntRange(1, 100_000),
    default=50,
    show_default=True,
    help="At most this many alerts.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per alert.")
@db_option
@friendly_errors
def history(
    flow: str | None, rule: str | None, since: Any, limit: int, as_json: bool, db: str | None
) -> None:
    """What was alerted and when, with the messages sent for each alert."""
    import json
    from datetime import UTC, datetime

    store = open_store(db, create=False)
    start = datetime.now(UTC) - since if since else None
    alerts = store.alerts(flow=flow, rule=rule, since=start, limit=limit)
    messages = store.messages(alert_ids=[a.id for a in alerts], limit=limit * 20)
    by_alert: dict[int, list[Any]] = {}
    for m in messages:  # a grouped message belongs to each alert it speaks for
        for alert_id in [m.alert_id] if m.alert_id is not None else store.group_of(m.id):
            by_alert.setdefault(alert_id, []).append(m)
    from flowbot.store.actions import actions as slack_actions

    acted: dict[int | None, list[Any]] = {}
    for action in slack_actions(store, alert_ids=[a.id for a in alerts], limit=limit * 20):
        acted.setdefault(action.alert_id, []).append(action)
    if not alerts:
        click.echo("no alerts")
    for a in alerts:
        sent = sorted(by_alert.get(a.id, []), key=lambda m: m.id)
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "id": a.id, "rule": a.rule, "flow_id": a.flow_id, "flow": a.flow_name,
                        "sandbox": a.sandbox, "state": a.state, "muted": a.muted,
                        "first_seen": when(a.first_seen), "last_seen": when(a.last_seen),
                        "resolved": when(a.resolved), "count": a.count, "reason": a.reason,
                        "messages": [
                            {"channel": m.channel, "event": m.event, "state": m.state,
                             "attempts": m.attempts, "error": m.error, "sent": when(m.sent)}
                            for m in sent
                        ],
                        "slack_actions": [
                            {"action": x.action, "user": x.user, "at": when(x.at),
                             "outcome": x.outcome, "detail": x.detail}
                            for x in reversed(acted.get(a.id, []))
                        ],
                    }
                )
            )  # fmt: skip
            continue
        muted = " (muted)" if a.muted else ""
        click.echo(
            f"#{a.id} {a.state.upper()}{muted} {a.rule} · {a.flow_name or a.flow_id} "
            f"({a.sandbox}) · first {when(a.first_seen)} · last {when(a.last_seen)} · "
            f"{a.count}× · {a.reason}"
        )
        for m in sent:
            error = f" · {m.error}" if m.error else ""
            click.echo(
                f"    {m.event:<8} → {m.channel}: {m.state} after {m.attempts} attempt(s) "
                f"{when(m.sent)}{error}"
            )
        for x in reversed(acted.get(a.id, [])):
            detail = f" · {x.detail}" if x.detail else ""
            click.echo(f"    {x.action:<8} ← Slack {x.user} {when(x.at)}: {x.outcome}{detail}")


@click.group()
def silence() -> None:
    """Mute sending for a rule, a flow or a flow-name glob, until an expiry."""


@silence.command("add")
@click.option("--rule", help="A rule name or glob.")
@click.option("--flow", help="A flow id or a flow-name glob (e.g. 'crm-*').")
@click.option(
    "--for",
    "duration",
    type=DURATION,
    default="2h",
    show_default=True,
    help="How long, e.g. 30m, 4h, 2d.",
)
@click.option("--reason", required=True, help="Why: shown in `silence list` and history.")
@rules_option
@db_option
@friendly_errors
def silence_add(
    rule: str | None,
    flow: str | None,
    duration: Any,
    reason: str,
    rules_file: str | None,
    db: str | None,
) -> None:
    """Add a silence. --rule must name a rule of the rules file (a glob must match one);
    a --flow that matches no flow seen yet is accepted, with a note."""
    from datetime import UTC, datetime

    from flowbot.silences import flows_matching, rules_matching

    if not rule and not flow:
        raise ConfigError("a silence needs --rule or --flow (or both)")
    from flowbot.rules import load_rules
    from flowbot.settings import load_settings

    ruleset = None
    try:
        ruleset = load_rules(rules_file or load_settings().rules)
    except ConfigError:
        if rule:  # a rule can only be checked against the rules
            raise
    if rule and ruleset:
        known = [r.name for r in ruleset.rules]
        if not rules_matching(rule, known):
            raise ConfigError(_unknown_rule(rule, known, str(ruleset.source)))
    now = datetime.now(UTC)
    store = open_store(db)
    if flow:
        sandboxes = ruleset.sandboxes if ruleset else None
        if not flows_matching(flow, store, sandboxes):
            click.echo(
                f"note: no known flow matches {flow!r} yet; the silence applies when one does",
                err=True,
            )
    expires = now + duration
    sid = store.add_silence(rule=rule, flow=flow, reason=reason, now=now, expires=expires)
    click.echo(f"silence #{sid} until {when(expires)} UTC")


def _unknown_rule(rule: str, known: list[str], source: str) -> str:
    import difflib

    hint = difflib.get_close_matches(rule, known, n=1, cutoff=0.5)
    suffix = f"; did you mean '{hint[0]}'?" if hint else f" (rules: {', '.join(known) or 'none'})"
    return f"--rule: no rule {rule!r} in {source}{suffix}"


@silence.command("list")
@click.option("--all", "include_expired", is_flag=True, help="Include expired silences.")
@db_option
@friendly_errors
def silence_list(include_expired: bool, db: str | None) -> None:
    """List active silences."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    rows = open_store(db, create=False).silences(now, include_expired=include_expired)
    if not rows:
        click.echo("no silences")
    for s in rows:
        state = "active" if s.expires > now else "expired"
        click.echo(
            f"#{s.id} {state} rule={s.rule or '*'} flow={s.flow or '*'} "
            f"until {when(s.expires)} · {s.reason}"
        )


@silence.command("expire")
@click.argument("silence_id", type=int)
@db_option
@friendly_errors
def silence_expire(silence_id: int, db: str | None) -> None:
    """End a silence now."""
    from datetime import UTC, datetime

    from flowbot.errors import FlowbotError

    if not open_store(db, create=False).expire_silence(silence_id, datetime.now(UTC)):
        raise FlowbotError(f"no active silence #{silence_id}")
    click.echo(f"silence #{silence_id} expired")
