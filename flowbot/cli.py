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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flowbot")
def cli() -> None:
    """Watch Adobe Experience Platform dataflows and alert in Slack or by email."""


def main() -> None:
    cli(prog_name="flowbot")


# ---------------------------------------------------------------- rules (issue 3)


@cli.group()
def rules() -> None:
    """Check, test and describe rules.yaml."""


# ---------------------------------------------------------------- sim (issue 2)


# ---------------------------------------------------------------- cycle (issue 4)


# ---------------------------------------------------------------- notify (issue 5)


@cli.group()
def notify() -> None:
    """Send a sample alert to a channel, or preview what a rule would send."""


# ---------------------------------------------------------------- daemon (issue 6)
