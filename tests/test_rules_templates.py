"""`flowbot rules check` rejects a broken template with its file and line."""

from click.testing import CliRunner

from flowbot.cli import cli

RULES = """
sandboxes: [prod]
templates: tpl
channels:
  audit: {file: alerts.jsonl}
defaults:
  channels: [audit]
rules:
  - name: run-failed
    type: status
    status: [failed]
"""


def test_a_template_syntax_error_is_reported_with_file_and_line(tmp_path):
    (tmp_path / "tpl" / "email").mkdir(parents=True)
    (tmp_path / "tpl" / "email" / "firing.subject.j2").write_text("ok\n{% if %}\n")
    (tmp_path / "rules.yaml").write_text(RULES)
    result = CliRunner().invoke(cli, ["rules", "check", str(tmp_path / "rules.yaml")])
    assert result.exit_code == 2, result.output
    assert "firing.subject.j2:2" in result.output
    assert "Traceback" not in result.output


def test_good_templates_pass(tmp_path):
    (tmp_path / "tpl").mkdir()
    (tmp_path / "rules.yaml").write_text(RULES)
    result = CliRunner().invoke(cli, ["rules", "check", str(tmp_path / "rules.yaml")])
    assert result.exit_code == 0, result.output
    assert "run-failed" in result.output


# ---------------------------------------------------------------- one check for all

RULE_FOLDER = """
sandboxes: [prod]
poll_every: 1s
channels:
  audit: {file: alerts.jsonl}
  ops: {file: ops.jsonl}
defaults:
  channels: [audit]
monitoring:
  channels: [ops]
rules:
  - name: run-failed
    type: status
    status: [failed]
    template: own
"""

BROKEN = "{{ flow.name }\n"  # a syntax error on line 1


def broken_rule_folder(tmp_path):
    (tmp_path / "own" / "slack").mkdir(parents=True)
    (tmp_path / "own" / "slack" / "firing.md.j2").write_text(BROKEN)
    (tmp_path / "rules.yaml").write_text(RULE_FOLDER)


def test_rules_check_refuses_a_broken_template_in_a_rules_own_folder(tmp_path):
    broken_rule_folder(tmp_path)
    result = CliRunner().invoke(cli, ["rules", "check", str(tmp_path / "rules.yaml")])
    assert result.exit_code == 2, result.output
    assert "own/slack/firing.md.j2:1" in result.output


def test_flowbot_run_refuses_it_at_start_up_with_the_same_words(tmp_path):
    import os
    import subprocess
    import sys

    broken_rule_folder(tmp_path)
    checked = CliRunner().invoke(cli, ["rules", "check", str(tmp_path / "rules.yaml")])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWBOT_", "ADOBE_"))}
    env.update(FLOWBOT_RULES=str(tmp_path / "rules.yaml"), FLOWBOT_DB=str(tmp_path / "f.db"))
    run = subprocess.run(
        [sys.executable, "-m", "flowbot", "run"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    first = run.stderr.strip().splitlines()[0]
    assert "own/slack/firing.md.j2:1" in first
    assert first in checked.output  # the very line `rules check` prints
    assert "Traceback" not in run.stderr
