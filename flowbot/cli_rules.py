"""`flowbot rules`: check, test and describe rules.yaml."""

from __future__ import annotations

import sys

import click

from flowbot.cli_common import friendly_errors


@click.group()
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
