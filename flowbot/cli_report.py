"""`flowbot report`: the figures of a period (what the digest sends) in the terminal or
a file."""

from __future__ import annotations

from datetime import timedelta

import click

from flowbot.cli_common import DURATION, db_option, friendly_errors, open_store


@click.command()
@click.option(
    "--since",
    type=DURATION,
    default="7d",
    show_default=True,
    metavar="DURATION",
    help="The period: this long until now, e.g. 24h, 7d.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "md", "json", "html"]),
    default="text",
    show_default=True,
    help="Plain text, Markdown, JSON or an HTML page.",
)
@click.option("--sandbox", "sandboxes", multiple=True, help="Only this sandbox (repeatable).")
@click.option("--output", "-o", metavar="FILE", help="Write to FILE instead of stdout.")
@db_option
@friendly_errors
def report(
    since: timedelta, fmt: str, sandboxes: tuple[str, ...], output: str | None, db: str | None
) -> None:
    """Per sandbox: runs, failures, records lost, incidents opened and resolved (with
    time to resolve), flows still red and the flakiest flows. Reads the database only."""
    from datetime import UTC, datetime
    from pathlib import Path

    from flowbot import report as figures

    store = open_store(db, create=False)
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        text = figures.render(figures.gather(store, now - since, now, sandboxes), fmt)
    finally:
        store.close()
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"report written to {output}", err=True)
    else:
        click.echo(text, nl=False)
