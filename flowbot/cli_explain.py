"""`flowbot explain RUN_ID [--sandbox S]`: one run, its errors, its diagnosis and links.

The run comes from the Flow Service; its row-level errors from the database when a
cycle already read its batch, else from the Data Access API now (then remembered).
Record values stay out unless the rules say `diagnostics.show_values: true`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from flowbot.errors import ConfigError, FlowbotError

EXPLAIN_BUDGET = 10  # Data Access requests explain may make (a listing and its files)
EXPLAIN_SECONDS = 60.0


@click.command("explain")
@click.argument("run_id")
@click.option(
    "--sandbox", metavar="S", help="The run's sandbox (default: the first in the rules, or prod)."
)
@click.option(
    "--rules",
    "rules_file",
    metavar="FILE",
    help="Rules file (default: $FLOWBOT_RULES or rules.yaml).",
)
@click.option("--db", metavar="FILE", help="SQLite file (default: $FLOWBOT_DB or flowbot.db).")
def explain(run_id: str, sandbox: str | None, rules_file: str | None, db: str | None) -> None:
    """Print a run: its status and records, its errors, the row-level errors of its
    batch (the diagnosis) and its links. Exit 1 when the run cannot be read."""
    try:
        click.echo(explain_text(run_id, sandbox, rules_file, db))
    except ConfigError as exc:
        click.echo(f"flowbot: {exc}", err=True)
        sys.exit(2)
    except FlowbotError as exc:
        click.echo(f"flowbot: {exc}", err=True)
        sys.exit(1)


def explain_text(run_id: str, sandbox: str | None, rules_file: str | None, db: str | None) -> str:
    from dataclasses import replace

    from flowbot.aep.auth import client_from_settings
    from flowbot.settings import load_settings

    settings = load_settings()
    if db:
        settings = replace(settings, db=db)
    ruleset = _rules(rules_file or settings.rules, required=rules_file is not None)
    sandbox = sandbox or (ruleset.sandboxes[0] if ruleset and ruleset.sandboxes else "prod")
    show_values = bool(ruleset and ruleset.diagnostics.show_values)
    with client_from_settings(settings, sandbox) as client:
        run = client.get_run(run_id)
        found = _diagnosis(client, settings, sandbox, run, show_values)
    return render_explain(run, sandbox, found, settings)


def _rules(path: str, *, required: bool) -> Any:
    from flowbot.rules import load_rules

    if not required and not Path(path).is_file():
        return None
    return load_rules(path)


def _diagnosis(client: Any, settings: Any, sandbox: str, run: Any, show_values: bool) -> Any:
    """The run's diagnosis: remembered in the database, else read now (and kept)."""
    import time
    from datetime import UTC, datetime

    from flowbot import diagnosis as dx
    from flowbot.aep.diagnostics import Budget, DataAccess
    from flowbot.diagnose import read_one
    from flowbot.store import Store
    from flowbot.store import diagnoses as table

    batch = dx.batch_of(run)
    if batch is None:
        return None
    store = Store(settings.db if Path(settings.db).is_file() else ":memory:")
    try:
        store.migrate()
        row = table.by_runs(store, [run.id]).get(run.id)
        if row is None or row.state == dx.PENDING:
            now = datetime.now(UTC)
            table.queue(store, sandbox, [(batch, run.id, run.started_at)], now)
            row = table.by_runs(store, [run.id])[run.id]
            budget = Budget(EXPLAIN_BUDGET, time.monotonic() + EXPLAIN_SECONDS)
            with DataAccess(client, settings.export_url, budget) as reader:
                read_one(reader, store, row, now, show_values, sandbox)
            row = table.by_runs(store, [run.id])[run.id]
        if row.state == dx.PENDING or row.summary is None:
            return dx.pending(batch)
        return dx.from_json(row.summary)
    finally:
        store.close()


def render_explain(run: Any, sandbox: str, found: Any, settings: Any) -> str:
    """The terminal text of `flowbot explain` (pure)."""
    from flowbot.context import aep_url
    from flowbot.models import Flow
    from flowbot.render import count, pct, render_diagnosis
    from flowbot.untrusted import one_line

    def when(at: Any) -> str:
        return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at else "—"

    lines = [
        f"Run {one_line(run.id)} of dataflow {one_line(run.flow_id)} in sandbox {sandbox}: "
        f"{one_line(run.status) or 'unknown status'}",
        f"Started {when(run.started_at)}, ended {when(run.completed_at)}",
        f"Records: {count(run.input_records)} in, {count(run.output_records)} out, "
        f"{count(run.failed_records)} failed ({pct(run.failed_share)})",
    ]
    errors = run.all_errors
    if errors:
        lines += ["", f"Errors ({len(errors)}):"]
        for e in errors[:20]:
            where = f" [{one_line(e.activity)}]" if e.activity else ""
            rows = f" ({e.record_count:,} records)" if e.record_count is not None else ""
            lines.append(f"  - {one_line(e.code)}: {one_line(e.message)[:300]}{where}{rows}")
    lines.append("")
    if found is None:
        lines.append("Row-level errors: none to read (the run names no batch)")
    else:
        templates = Path(settings.templates) if settings.templates else None
        body = render_diagnosis(found, "terminal", title="", templates_dir=templates)
        lines.append(body["text"].split("\n", 1)[-1].strip() or "Row-level errors: none")
    lines += [
        "",
        "Links:",
        f"  AEP UI (dataflow): {aep_url(Flow(id=run.flow_id, sandbox=sandbox))}",
    ]
    for link in run.links[:20]:
        where = f" [{one_line(link.activity)}]" if link.activity else ""
        lines.append(
            f"  {one_line(link.name)}{where} (Data Access API, needs a token; "
            f"`flowbot explain` reads it for you): {one_line(link.url)[:300]}"
        )
    return "\n".join(lines)
