"""`flowbot rules check` rejects a broken template with its file and line (issue 5, bad input)."""

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
