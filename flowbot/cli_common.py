"""What the `flowbot` commands share: error handling, the duration type, the --rules and
--db options, loading settings and rules, and opening the store. Only click is imported
at module level, so that `flowbot --help` stays fast."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import wraps
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click

from flowbot.errors import ConfigError, FlowbotError

if TYPE_CHECKING:
    from flowbot.rules import RuleSet
    from flowbot.settings import Settings
    from flowbot.store import Store

P = ParamSpec("P")
R = TypeVar("R")


def friendly_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn FlowbotError into one line on stderr and the right exit code."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
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

    return wrapper


class _Duration(click.ParamType[timedelta]):
    """30s, 15m, 4h, 2d: a duration as rules.yaml writes it."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        from flowbot.rules_values import parse_duration

        try:
            delta = parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if delta.total_seconds() <= 0:
            self.fail("must be longer than zero", param, ctx)
        return delta


DURATION = _Duration()


def load(rules_file: str | None, db: str | None, level: int = 20) -> tuple[Settings, RuleSet]:
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


def open_store(db: str | None, *, create: bool = True) -> Store:
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


def when(at: datetime | None) -> str:
    """A time as the commands print it (UTC, to the second), "-" for none."""
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
