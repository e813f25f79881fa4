"""Bad command lines are one line and exit 2; read-only commands never create a
database; `silence add` checks its rule and says when its flow matches nothing yet."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowbot.cli import cli
from flowbot.models import Flow
from flowbot.store import Store

ROOT = Path(__file__).resolve().parent.parent

RULES = """\
channels: {audit: {file: alerts.jsonl}}
defaults: {channels: [audit]}
rules:
  - {name: run-failed, type: status, status: [failed]}
  - {name: run-slow, type: duration, above: 2h}
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "rules.yaml").write_text(RULES)
    return {"FLOWBOT_RULES": str(tmp_path / "rules.yaml"), "FLOWBOT_DB": str(tmp_path / "f.db")}


def invoke(args: list[str], env: dict[str, str]):
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


def one_line_exit_2(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "Usage:" not in result.output
    [line] = result.output.strip().splitlines()
    return line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["silence", "add", "--flow", "x", "--for", "4", "--reason", "r"],
         "flowbot silence add: invalid value for '--for': '4' needs a unit, like 4m"),
        (["history", "--since", "7"], "flowbot history: invalid value for '--since': '7'"),
        (["history", "--since", "99999999999999d"], "longer than the longest duration"),
        (["history", "--limit", "0"], "invalid value for '--limit'"),
        (["silence", "add", "--flow", "x", "--for", "0s", "--reason", "r"], "longer than zero"),
        (["silence", "add", "--flow", "x"], "missing option '--reason'"),
        (["silence", "expire", "one"], "'one' is not a valid integer"),
        (["history", "--nope"], "flowbot history: no such option '--nope'"),
        (["nosuch"], "no such command 'nosuch'"),
    ],
)  # fmt: skip
def test_a_bad_argument_is_one_line_and_exit_2(env, args, expected):
    assert expected in one_line_exit_2(invoke(args, env))


@pytest.mark.parametrize(
    "args", [["history"], ["silence", "list"], ["silence", "expire", "1"], ["history", "--json"]]
)
def test_read_only_commands_never_create_a_database(env, tmp_path, args):
    typo = tmp_path / "typo.db"
    line = one_line_exit_2(invoke([*args, "--db", str(typo)], env))
    assert line == f"flowbot: no database at {typo} (set --db or FLOWBOT_DB)"
    assert not typo.exists() and not (tmp_path / "f.db").exists()


def test_silence_add_refuses_an_unknown_rule_with_did_you_mean(env, tmp_path):
    line = one_line_exit_2(invoke(["silence", "add", "--rule", "run-faild", "--reason", "r"], env))
    assert line == (
        f"flowbot: --rule: no rule 'run-faild' in {tmp_path / 'rules.yaml'}; "
        "did you mean 'run-failed'?"
    )
    line = one_line_exit_2(invoke(["silence", "add", "--rule", "zzz*", "--reason", "r"], env))
    assert line.endswith("(rules: run-failed, run-slow)")
    assert not (tmp_path / "f.db").exists()


def test_silence_add_takes_a_rule_glob_that_matches(env):
    result = invoke(["silence", "add", "--rule", "run-*", "--reason", "deploy"], env)
    assert result.exit_code == 0 and "silence #1 until" in result.stdout
    assert "note:" not in result.output


def test_silence_add_notes_a_flow_pattern_that_matches_no_known_flow(env, tmp_path):
    result = invoke(["silence", "add", "--flow", "crm-*", "--reason", "r"], env)
    assert result.exit_code == 0 and "silence #1" in result.stdout
    assert (
        result.stderr
        == "note: no known flow matches 'crm-*' yet; the silence applies when one does\n"
    )
    store = Store(tmp_path / "f.db")
    store.upsert_flows([Flow(id="f1", name="crm-daily", sandbox="prod")], datetime.now(UTC))
    store.close()
    for pattern in ("crm-*", "f1"):
        again = invoke(["silence", "add", "--flow", pattern, "--reason", "r"], env)
        assert again.exit_code == 0 and again.stderr == ""
    other = invoke(["silence", "add", "--flow", "web-*", "--reason", "r"], env)
    assert "no known flow matches 'web-*'" in other.stderr
    listed = invoke(["silence", "list"], env)
    assert listed.exit_code == 0 and len(listed.stdout.splitlines()) == 4


def test_help_loads_no_working_module():
    """`flowbot --help` imports only the command modules: each command imports what it
    uses when it runs, so the help of every command comes fast."""
    import subprocess
    import sys

    heavy = ["jinja2", "requests", "sqlite_utils", "apscheduler", "yaml", "croniter"]
    code = (
        "import sys\nfrom flowbot.cli import cli\n"
        "for args in ([], ['check'], ['rules', 'check'], ['notify', 'preview'], ['silence']):\n"
        "    cli.main([*args, '--help'], standalone_mode=False)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_rules_check_loads_no_engine_it_does_not_need():
    """`flowbot rules check` of a file without templates of its own loads neither the
    template engine nor the HTTP, database or scheduler libraries, nor the run models:
    what keeps it fast to start (bench/results.md measures the time)."""
    import subprocess
    import sys

    unwanted = [
        "jinja2",
        "requests",
        "sqlite_utils",
        "apscheduler",
        "flowbot.render",
        "flowbot.models",
    ]
    code = (
        "import sys\nfrom flowbot.cli import cli\n"
        "try:\n    cli.main(['rules', 'check', 'rules.yaml'], standalone_mode=False)\n"
        "finally:\n"
        f"    print(sorted(m for m in {unwanted!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert "rules.yaml: 10 rules" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"
