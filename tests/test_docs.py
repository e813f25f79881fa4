"""The README documents what exists: every command, every environment variable, every
key and rule type of rules.yaml. A new command, variable or key
without documentation fails here, with its name."""

import re
from pathlib import Path

import click
import pytest

from flowbot.cli import cli
from flowbot.rules import ruleset_json_schema
from flowbot.settings import ENVIRONMENT

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = README + "".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))


def commands(group=cli, path=()):
    """Every leaf command as its words after `flowbot`, e.g. ("silence", "add")."""
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield (*path, name), command


COMMANDS = list(commands())


def schema_keys():
    """Every property name the rules schema accepts, at any depth, and every rule type."""
    schema = ruleset_json_schema()
    keys, types = set(), set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in (node.get("properties") or {}).items():
                keys.add(key)
                if key == "type" and isinstance(value, dict) and "const" in value:
                    types.add(value["const"])
                if key == "type" and isinstance(value, dict) and "enum" in value:
                    types.update(value["enum"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return sorted(keys), sorted(types)


KEYS, RULE_TYPES = schema_keys()


def test_the_walk_finds_the_commands_and_the_schema_its_keys():
    names = {" ".join(words) for words, _ in COMMANDS}
    assert {"check", "rules check", "silence add", "demo"} <= names
    assert {"sandboxes", "rules", "above", "grace", "heartbeat_url"} <= set(KEYS)
    assert {"status", "missing_run", "zero_records"} <= set(RULE_TYPES)


@pytest.mark.parametrize("words", [w for w, _ in COMMANDS], ids=" ".join)
def test_every_command_is_in_the_readme_with_an_example(words):
    name = "flowbot " + " ".join(words)
    assert name in README, f"{name} is not in README.md"
    assert re.search(rf"^\s*(\$ )?{re.escape(name)}\b", README, re.M), f"no example of {name}"


@pytest.mark.parametrize("words,command", COMMANDS, ids=[" ".join(w) for w, _ in COMMANDS])
def test_every_command_has_help_text(words, command):
    assert (command.help or "").strip(), f"flowbot {' '.join(words)} has no help"


@pytest.mark.parametrize("variable", sorted(ENVIRONMENT))
def test_every_environment_variable_is_in_the_readme_table(variable):
    row = re.search(rf"^\|[^|\n]*`{variable}`[^\n]*\|[^\n]*\|[^\n]*\|$", README, re.M)
    assert row, f"{variable} is not in the environment table of README.md"


@pytest.mark.parametrize("key", KEYS)
def test_every_rules_key_is_documented(key):
    assert re.search(rf"(`{key}`|^\s*(- )?{key}:|\{{{key}:|[{{,] ?{key}:)", DOCS, re.M), (
        f"rules.yaml key {key!r} is not documented in README.md or docs/"
    )


@pytest.mark.parametrize("rule_type", RULE_TYPES)
def test_every_rule_type_has_an_example(rule_type):
    assert re.search(rf"^\s*type: {rule_type}\b", DOCS, re.M), f"no example of type {rule_type}"


def test_the_readme_shows_the_editor_schema_line_and_the_two_setup_commands():
    assert "# yaml-language-server: $schema=./rules.schema.json" in README
    setup = README.split("## Set-up", 1)[1].split("##", 1)[0]
    assert "make demo" in setup and "make test" in setup
