"""The `flowbot` command: parse, call, print, exit codes. Nothing else lives here.

Imports of the working modules happen inside each command, so that `flowbot --help`
starts fast. Every FlowbotError becomes one clear line on stderr: exit 2 for bad
configuration, 1 for everything else.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from flowbot import __version__
from flowbot.errors import ConfigError, FlowbotError

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(func: F) -> F:
    """Turn FlowbotError into one line on stderr and the right exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            click.echo(f"flowbot: {exc}", err=True)
            for problem in exc.problems if len(exc.problems) > 1 else []:
                click.echo(f"  {problem}", err=True)
            sys.exit(2)
        except FlowbotError as exc:
            click.echo(f"flowbot: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


class _OneLineUsage(click.ClickException):
    """A bad command line, said in one line (no usage block), exit 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(self.format_message(), err=True)


class _Group(click.Group):
    """The flowbot group: a bad argument anywhere below it is one line, exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError" or isinstance(exc, _OneLineUsage):
                raise
            words = (exc.ctx or ctx).command_path.split()[1:]
            where = " ".join(["flowbot", *words])
            raise _OneLineUsage(f"{where}: {_lower_first(exc.format_message())}") from None


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


class _Duration(click.ParamType):
    """30s, 15m, 4h, 2d: a duration as rules.yaml writes it."""

    name = "duration"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        from flowbot.rules_values import parse_duration

        try:
            delta = parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if delta.total_seconds() <= 0:
            self.fail("must be longer than zero", param, ctx)
        return delta


DURATION = _Duration()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flowbot")
def cli() -> None:
    """Watch Adobe Experience Platform dataflows and alert in Slack or by email."""


def main() -> None:
    cli(prog_name="flowbot")


# ---------------------------------------------------------------- rules (issue 3)


@cli.group()
def rules() -> None:
    """Check, test and describe rules.yaml."""


@rules.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@friendly_errors
def rules_check(file: str | None) -> None:
    """Validate FILE (default $FLOWBOT_RULES, then rules.yaml) and list its rules.

    Every problem names the file, line, column and key. Exit 0 when valid, 2 when not.
    """
    import os

    from flowbot.validate import validate

    path = file or os.environ.get("FLOWBOT_RULES") or "rules.yaml"
    ruleset = validate(path, os.environ.get("FLOWBOT_TEMPLATES"))
    sandboxes = ", ".join(ruleset.sandboxes)
    click.echo(f"{path}: {len(ruleset.rules)} rules, sandboxes {sandboxes}")
    for rule in ruleset.rules:
        off = "  (disabled)" if not rule.enabled else ""
        channels = ", ".join(rule.channels)
        click.echo(f"  {rule.name:<28} {rule.type:<15} {rule.severity:<9} -> {channels}{off}")
    for warning in ruleset.warnings:
        click.echo(f"warning: {warning}", err=True)


@rules.command("schema")
def rules_schema() -> None:
    """Print the JSON Schema of rules.yaml (for editors)."""
    import json

    from flowbot.rules import ruleset_json_schema

    click.echo(json.dumps(ruleset_json_schema(), indent=2, ensure_ascii=False))


@rules.command("test")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@friendly_errors
def rules_test(files: tuple[str, ...]) -> None:
    """Run rule tests: flows, runs and times in, expected alerts out.

    Exit 0 when all pass, 1 when one fails, 2 when a file is invalid.
    """
    from flowbot.rule_tests import run_test_file

    passed = failed = 0
    for path in files:
        for outcome in run_test_file(path):
            if outcome.passed:
                passed += 1
                click.echo(f"PASS  {path}: {outcome.name}")
                continue
            failed += 1
            click.echo(f"FAIL  {path}: {outcome.name}")
            for failure in outcome.failures:
                click.echo("  " + failure.replace("\n", "\n  "))
    click.echo(f"{passed} passed, {failed} failed")
    if failed:
        sys.exit(1)


# ---------------------------------------------------------------- sim (issue 2)


@cli.command()
@click.option(
    "--scenario",
    "kind",
    type=click.Choice(["random", "demo"]),
    default="random",
    show_default=True,
    help="A seeded random world, or the small demo world.",
)
@click.option("--flows", default=100, show_default=True, help="Flows in a random world.")
@click.option("--runs", default=1000, show_default=True, help="Runs in a random world.")
@click.option("--span", default="1d", show_default=True, help="Spread runs over this much time.")
@click.option("--seed", default=0, show_default=True, help="Seed of the random world.")
@click.option("--port", default=0, show_default=True, help="Port on 127.0.0.1 (0: a free one).")
@click.option("--page-size", default=100, show_default=True, help="Most items per page.")
def sim(kind: str, flows: int, runs: int, span: str, seed: int, port: int, page_size: int) -> None:
    """Serve a simulated Flow Service and IMS on 127.0.0.1 until Ctrl-C."""
    from flowbot.sim.scenario import build_scenario, demo_scenario, parse_span
    from flowbot.sim.server import Simulator, wait_for_signal

    try:
        window = parse_span(span)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--span") from exc
    if kind == "demo":
        world = demo_scenario()
    else:
        world = build_scenario(flows=flows, runs=runs, span=window, seed=seed)
    with Simulator(world, port=port, page_size=page_size) as server:
        click.echo(f"flowbot sim: {len(world.flows)} flows, {len(world.runs)} runs at {server.url}")
        click.echo("export " + " ".join(f"{k}={v}" for k, v in server.environment().items()))
        wait_for_signal()
    click.echo("flowbot sim: stopped")


# ---------------------------------------------------------------- cycle (issue 4)


def _load(rules_file: str | None, db: str | None, level: int = 20) -> tuple[Any, Any]:
    """Settings from the environment (with command-line overrides) and the rules; logs
    at `level` (20 = INFO) and above go to stderr."""
    from dataclasses import replace

    from flowbot.logs import setup_logging
    from flowbot.rules import load_rules
    from flowbot.settings import load_settings

    settings = load_settings()
    if rules_file:
        settings = replace(settings, rules=rules_file)
    if db:
        settings = replace(settings, db=db)
    setup_logging(settings.log_format, settings.secrets(), level=level)
    return settings, load_rules(settings.rules)


def _open_store(db: str | None, *, create: bool = True) -> Any:
    """The store at --db (default $FLOWBOT_DB). A command that only reads or changes
    what is there passes create=False: a missing file is one line, exit 2, and no empty
    database is left behind (a typo in --db must not look like "no alerts")."""
    from pathlib import Path

    from flowbot.settings import load_settings
    from flowbot.store import Store

    path = db or load_settings().db
    if not create and path != ":memory:" and not Path(path).is_file():
        raise ConfigError(f"no database at {path} (set --db or FLOWBOT_DB)")
    store = Store(path)
    store.migrate()
    return store


def _when(at: Any) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S") if at else "-"


rules_option = click.option(
    "--rules",
    "rules_file",
    metavar="FILE",
    help="Rules file (default: $FLOWBOT_RULES or rules.yaml).",
)
db_option = click.option(
    "--db", metavar="FILE", help="SQLite file (default: $FLOWBOT_DB or flowbot.db)."
)


@cli.command()
@click.option("--once", is_flag=True, help="Run one cycle now and exit (the only mode of check).")
@click.option("-v", "--verbose", is_flag=True, help="Also log retries and each message sent.")
@rules_option
@db_option
@friendly_errors
def check(once: bool, verbose: bool, rules_file: str | None, db: str | None) -> None:
    """Run one cycle now: read, evaluate, alert, send. Exit 1 if anything is undelivered
    or the API could not be read, 2 on bad configuration or while `flowbot run` watches
    the same database (the daemon sends; two senders would post twice). The summary says what went
    wrong in one line; --verbose shows the retries and each message as well."""
    from flowbot.dblock import AlreadyRunning, acquire_lock
    from flowbot.pipeline import build_deps, run_once

    settings, ruleset = _load(rules_file, db, level=20 if verbose else 40)
    try:  # one sender per database: a running daemon sends, check does not
        lock = acquire_lock(settings.db, "check")
    except AlreadyRunning as exc:
        click.echo(f"flowbot: {exc}", err=True)
        sys.exit(2)
    try:
        deps = build_deps(settings, ruleset)
        try:
            reports, delivery = run_once(deps, retry=True)  # an explicit run retries
        finally:
            deps.store.close()
    finally:
        lock.close()
    for r in reports:
        if r.ok:
            click.echo(
                f"{r.sandbox}: {r.runs_read} runs read, {r.runs_new} new, {r.findings} findings; "
                f"alerts {r.fired} fired, {r.repeated} repeated, {r.resolved} resolved, "
                f"{r.muted} muted; {r.queued} messages queued ({r.api_requests} API requests)"
            )
        else:
            click.echo(f"{r.sandbox}: cycle failed: {r.error}", err=True)
    click.echo(
        f"messages: {delivery.sent} sent, {delivery.failed} failed, {delivery.pending} pending"
    )
    if delivery.failed or delivery.pending or not all(r.ok for r in reports):
        sys.exit(1)


@cli.command()
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

    store = _open_store(db, create=False)
    start = datetime.now(UTC) - since if since else None
    alerts = store.alerts(flow=flow, rule=rule, since=start, limit=limit)
    messages = store.messages(alert_ids=[a.id for a in alerts], limit=limit * 20)
    by_alert: dict[int, list[Any]] = {}
    for m in messages:  # a grouped message belongs to each alert it speaks for
        for alert_id in [m.alert_id] if m.alert_id is not None else store.group_of(m.id):
            by_alert.setdefault(alert_id, []).append(m)
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
                        "first_seen": _when(a.first_seen), "last_seen": _when(a.last_seen),
                        "resolved": _when(a.resolved), "count": a.count, "reason": a.reason,
                        "messages": [
                            {"channel": m.channel, "event": m.event, "state": m.state,
                             "attempts": m.attempts, "error": m.error, "sent": _when(m.sent)}
                            for m in sent
                        ],
                    }
                )
            )  # fmt: skip
            continue
        muted = " (muted)" if a.muted else ""
        click.echo(
            f"#{a.id} {a.state.upper()}{muted} {a.rule} · {a.flow_name or a.flow_id} "
            f"({a.sandbox}) · first {_when(a.first_seen)} · last {_when(a.last_seen)} · "
            f"{a.count}× · {a.reason}"
        )
        for m in sent:
            error = f" · {m.error}" if m.error else ""
            click.echo(
                f"    {m.event:<8} → {m.channel}: {m.state} after {m.attempts} attempt(s) "
                f"{_when(m.sent)}{error}"
            )


@cli.group()
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

    from flowbot.errors import ConfigError
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
    store = _open_store(db)
    if flow:
        sandboxes = ruleset.sandboxes if ruleset else None
        if not flows_matching(flow, store, sandboxes):
            click.echo(
                f"note: no known flow matches {flow!r} yet; the silence applies when one does",
                err=True,
            )
    expires = now + duration
    sid = store.add_silence(rule=rule, flow=flow, reason=reason, now=now, expires=expires)
    click.echo(f"silence #{sid} until {_when(expires)} UTC")


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
    rows = _open_store(db, create=False).silences(now, include_expired=include_expired)
    if not rows:
        click.echo("no silences")
    for s in rows:
        state = "active" if s.expires > now else "expired"
        click.echo(
            f"#{s.id} {state} rule={s.rule or '*'} flow={s.flow or '*'} "
            f"until {_when(s.expires)} · {s.reason}"
        )


@silence.command("expire")
@click.argument("silence_id", type=int)
@db_option
@friendly_errors
def silence_expire(silence_id: int, db: str | None) -> None:
    """End a silence now."""
    from datetime import UTC, datetime

    from flowbot.errors import FlowbotError

    if not _open_store(db, create=False).expire_silence(silence_id, datetime.now(UTC)):
        raise FlowbotError(f"no active silence #{silence_id}")
    click.echo(f"silence #{silence_id} expired")


# ---------------------------------------------------------------- notify (issue 5)


@cli.group()
def notify() -> None:
    """Send a sample alert to a channel, or preview what a rule would send."""


NOTIFY_EVENTS = click.Choice(["firing", "repeat", "resolved", "grouped"])


def _templates_dir(settings: Any, ruleset: Any) -> Any:
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

    settings, ruleset = _load(rules_file, None)
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
    )
    ref = build_notifier(target, settings).send(Message(channel, target.kind, event, body), None)
    click.echo(
        f"sent a sample {event} alert to {channel} ({target.kind})"
        + (f": {dict(ref)}" if ref else "")
    )


@notify.command("preview")
@click.argument("rule")
@click.option("--event", type=NOTIFY_EVENTS, default="firing", show_default=True)
@click.option(
    "--kind",
    type=click.Choice(["slack", "webhook", "email", "file", "terminal"]),
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

    settings, ruleset = _load(rules_file, None)
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


# ---------------------------------------------------------------- daemon (issue 6)


@cli.command()
@friendly_errors
def demo() -> None:
    """Show what flowbot sends, without credentials: the simulator, the example rules,
    two cycles, every Slack and email message, then `flowbot history`."""
    import logging
    from pathlib import Path

    from flowbot.demo import run_demo
    from flowbot.logs import setup_logging

    setup_logging("text", level=logging.WARNING)

    def show_history(db: Path) -> None:
        click.get_current_context().invoke(history, db=str(db))

    run_demo(click.echo, show_history)


@cli.command()
@rules_option
@db_option
@click.option(
    "--stop-timeout",
    type=click.FloatRange(0, 3600),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="On SIGTERM, wait this long for the cycle in flight, then exit 0 without it.",
)
@friendly_errors
def run(rules_file: str | None, db: str | None, stop_timeout: float) -> None:
    """Run the daemon: a cycle every poll_every per sandbox until SIGTERM or Ctrl-C.

    SIGHUP (or an edit of the rules file or templates) reloads the rules; a bad edit is
    rejected and the previous rules keep running. With FLOWBOT_HTTP_PORT set it serves
    /healthz, /readyz and /metrics. Exit 0 after a stop (a cycle still running after
    --stop-timeout is abandoned: what it had not committed is read again at the next
    start), 2 on bad configuration or when another `flowbot run` uses the same database.
    """
    from flowbot.daemon import AlreadyRunning, serve

    settings, ruleset = _load(rules_file, db)
    try:
        code = serve(settings, ruleset, stop_timeout=stop_timeout)
    except AlreadyRunning as exc:
        click.echo(f"flowbot: {exc}", err=True)
        sys.exit(2)
    sys.exit(code)


from flowbot.cli_explain import explain  # noqa: E402 (a command in its own module)

cli.add_command(explain)
