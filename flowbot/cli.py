"""The `flowbot` command: parse, call, print, exit codes. Nothing else lives here.

This module holds the group and the commands that run cycles (run, check, sim, demo);
cli_rules.py (`rules`), cli_alerts.py (`history`, `silence`) and cli_notify.py
(`notify`) hold the others, cli_common.py what they share. Imports of the working
modules happen inside each command, so that `flowbot --help` starts fast. Every
FlowbotError becomes one clear line on stderr: exit 2 for bad configuration, 1 for
everything else.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from flowbot import __version__
from flowbot.cli_alerts import history, silence
from flowbot.cli_common import db_option, friendly_errors, load, rules_option
from flowbot.cli_notify import notify
from flowbot.cli_report import report
from flowbot.cli_rules import rules


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


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flowbot")
def cli() -> None:
    """Watch Adobe Experience Platform dataflows and alert in Slack or by email."""


def main() -> None:
    cli(prog_name="flowbot")


cli.add_command(rules)
cli.add_command(history)
cli.add_command(silence)
cli.add_command(notify)
cli.add_command(report)


# ---------------------------------------------------------------- cycles


@cli.command()
@click.option(
    "--once",
    is_flag=True,
    expose_value=False,
    help="Say it explicitly: check always runs one cycle and exits.",
)
@click.option("-v", "--verbose", is_flag=True, help="Also log retries and each message sent.")
@rules_option
@db_option
@friendly_errors
def check(verbose: bool, rules_file: str | None, db: str | None) -> None:
    """Run one cycle now, then exit: read, evaluate, alert, send (written `flowbot check
    --once`; `flowbot run` is the daemon). Exit 1 if anything is undelivered or the API
    could not be read, 2 on bad configuration or while `flowbot run` watches the same
    database (the daemon sends; two senders would post twice). The summary says what
    went wrong in one line; --verbose shows the retries and each message as well."""
    from flowbot.dblock import AlreadyRunning, acquire_lock
    from flowbot.pipeline import build_deps, run_once
    from flowbot.summary import delivery_line, summary_line

    settings, ruleset = load(rules_file, db, level=20 if verbose else 40)
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
        click.echo(summary_line(r), err=not r.ok)
    click.echo(delivery_line(delivery))
    if delivery.failed or delivery.pending or not all(r.ok for r in reports):
        sys.exit(1)


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

    settings, ruleset = load(rules_file, db)
    try:
        code = serve(settings, ruleset, stop_timeout=stop_timeout)
    except AlreadyRunning as exc:
        click.echo(f"flowbot: {exc}", err=True)
        sys.exit(2)
    sys.exit(code)


from flowbot.cli_explain import explain  # noqa: E402 (a command in its own module)

cli.add_command(explain)
