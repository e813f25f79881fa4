"""`flowbot notify`: send a sample alert to a channel, or preview what a rule sends."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import click

from flowbot.channels import KIND_NAMES
from flowbot.cli_common import friendly_errors, load, rules_option
from flowbot.errors import ConfigError

if TYPE_CHECKING:
    from flowbot.models import Event
    from flowbot.rules import RuleSet
    from flowbot.settings import Settings


@click.group()
def notify() -> None:
    """Send a sample alert to a channel, or preview what a rule would send."""


NOTIFY_EVENTS = click.Choice(["firing", "repeat", "resolved", "grouped"])


def _templates_dir(settings: Settings, ruleset: RuleSet) -> Path | None:
    from flowbot.validate import templates_dir

    return templates_dir(ruleset, settings.templates)


@notify.command("test")
@click.argument("channel")
@click.option("--event", type=NOTIFY_EVENTS, default="firing", show_default=True)
@rules_option
@friendly_errors
def notify_test(channel: str, event: str, rules_file: str | None) -> None:
    """Send a sample alert (sample 01: a run with failed records) to CHANNEL, a channel
    of rules.yaml, marked as a test in its subject and header. Exit 1 when the channel
    refuses it, 2 on bad configuration."""
    from dataclasses import replace

    from flowbot.models import Message
    from flowbot.notifiers import build_notifier
    from flowbot.notifiers.sample import sample_notices
    from flowbot.render import render

    settings, ruleset = load(rules_file, None)
    target = ruleset.channels.get(channel)
    if target is None:
        known = ", ".join(sorted(ruleset.channels)) or "none"
        raise ConfigError(f"no channel {channel!r} in {settings.rules} (channels: {known})")
    notices = [replace(n, test=True) for n in sample_notices(event, rule="flowbot-test")]
    body = render(
        notices,
        event,
        target.kind,
        templates_dir=_templates_dir(settings, ruleset),
        timezone=ruleset.timezone,
        aep_org=ruleset.aep_ui.org if ruleset.aep_ui else "",
    )
    sent = Message(channel, target.kind, cast("Event", event), body)  # NOTIFY_EVENTS checked it
    ref = build_notifier(target, settings).send(sent, None)
    click.echo(
        f"sent a sample {event} alert to {channel} ({target.kind})"
        + (f": {dict(ref)}" if ref else "")
    )


@notify.command("preview")
@click.argument("rule")
@click.option("--event", type=NOTIFY_EVENTS, default="firing", show_default=True)
@click.option(
    "--kind",
    type=click.Choice(KIND_NAMES),
    help="Only this channel kind (default: the kinds of the rule's channels).",
)
@rules_option
@friendly_errors
def notify_preview(rule: str, event: str, kind: str | None, rules_file: str | None) -> None:
    """Print what RULE would send for a sample alert of its type (a failed run for
    status, an overdue flow for missing_run, …), per channel kind, without sending
    anything: check a template change before it ships."""
    import json

    from flowbot.notifiers.sample import sample_for_rule
    from flowbot.render import render

    settings, ruleset = load(rules_file, None)
    found = ruleset.rule(rule)
    if found is None:
        known = ", ".join(r.name for r in ruleset.rules) or "none"
        raise ConfigError(f"no rule {rule!r} in {settings.rules} (rules: {known})")
    kinds = [kind] if kind else sorted({ruleset.channels[c].kind for c in found.channels})
    notices = sample_for_rule(found, event, timezone=ruleset.timezone)
    for each in kinds:
        body = render(
            notices,
            event,
            each,
            templates_dir=_templates_dir(settings, ruleset),
            rule_template=found.template,
            timezone=ruleset.timezone,
            aep_org=ruleset.aep_ui.org if ruleset.aep_ui else "",
        )
        click.echo(f"==== {each} · {event} · {rule}")
        if each == "email":
            click.echo(
                f"Subject: {body['subject']}\n\n{body['text']}\n---- html ----\n{body['html']}"
            )
        elif each == "terminal":
            click.echo(body["text"])
        else:
            click.echo(json.dumps(body, indent=2, ensure_ascii=False))
