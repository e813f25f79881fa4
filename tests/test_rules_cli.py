"""`flowbot rules check|schema|test` through click's CliRunner, with real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowbot.cli import cli

ROOT = Path(__file__).resolve().parent.parent
BAD = Path(__file__).parent / "testdata" / "rules"


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_check_lists_each_rule_with_type_severity_and_channels():
    result = invoke("rules", "check", str(ROOT / "rules.yaml"))
    assert result.exit_code == 0, result.output
    assert "10 rules, sandboxes prod" in result.output
    line = next(x for x in result.output.splitlines() if "run-failed" in x)
    assert line.split() == ["run-failed", "status", "critical", "->", "data-ops,", "audit"]
    assert "(disabled)" in next(x for x in result.output.splitlines() if "off-schedule" in x)


def test_check_defaults_to_flowbot_rules(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "poll_every: 10s\nchannels: {t: {terminal: true}}\ndefaults: {channels: [t]}\n"
        "rules: [{name: z, type: zero_records}]\n"
    )
    result = invoke("rules", "check", env={"FLOWBOT_RULES": str(path)})
    assert result.exit_code == 0
    assert "z" in result.stdout and "zero_records" in result.stdout
    assert "warning: poll_every: 10s is below a minute" in result.stderr


def test_check_exits_2_and_lists_every_problem():
    path = BAD / "missing-run.yaml"
    result = invoke("rules", "check", str(path))
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0] == f"flowbot: {path}: 5 problems"
    assert lines[1].startswith("  rules[0]: missing_run needs a cadence")
    assert "Traceback" not in result.output


def test_check_of_a_single_problem_prints_it():
    path = BAD / "no-channels.yaml"
    result = invoke("rules", "check", str(path))
    assert result.exit_code == 2
    assert result.stderr.startswith("flowbot: rules[0]: rule 'failed' sends to no channel")


def test_check_of_a_missing_file(tmp_path):
    result = invoke("rules", "check", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert "nope.yaml: no such file" in result.stderr


def test_schema_prints_the_committed_schema():
    result = invoke("rules", "schema")
    assert result.exit_code == 0
    assert json.loads(result.output) == json.loads((ROOT / "rules.schema.json").read_text())


def test_the_example_rule_tests_pass():
    result = invoke("rules", "test", str(ROOT / "rules.test.yaml"))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "8 passed, 0 failed"


def write_test(tmp_path: Path, expect: str) -> Path:
    (tmp_path / "rules.yaml").write_text(
        "channels: {t: {terminal: true}}\ndefaults: {channels: [t]}\n"
        "rules: [{name: failed, type: status, status: [failed]}]\n"
    )
    path = tmp_path / "rules.test.yaml"
    path.write_text(
        "rules: rules.yaml\n"
        "tests:\n"
        "  - name: one failure\n"
        "    at: 2024-05-01T12:00:00Z\n"
        "    flows: [{id: f1, name: crm}]\n"
        "    runs: [{flow: crm, status: failed}]\n"
        f"    steps: [{{expect: {expect}}}]\n"
    )
    return path


def test_a_failing_rule_test_prints_a_diff_and_exits_1(tmp_path):
    path = write_test(tmp_path, "{findings: [{rule: failed, flow: other}]}")
    result = invoke("rules", "test", str(path))
    assert result.exit_code == 1
    out = result.output
    assert f"FAIL  {path}: one failure" in out
    assert "- expected, missing:  failed @ other" in out
    assert "+ got, not expected:  failed @ crm  (run failed)" in out
    assert out.splitlines()[-1] == "0 passed, 1 failed"


def test_a_passing_rule_test_by_flow_id(tmp_path):
    path = write_test(
        tmp_path, "{findings: [{rule: failed, flow: f1}], firing: [{rule: failed, flow: crm}]}"
    )
    result = invoke("rules", "test", str(path))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "1 passed, 0 failed"


def test_runs_from_a_json_file(tmp_path):
    from datetime import UTC, datetime

    from flowbot.sim.payloads import make_run

    run = make_run("f1", status="failed", started_at=datetime(2024, 5, 1, 11, 0, tzinfo=UTC))
    (tmp_path / "runs.json").write_text(json.dumps({"items": [run]}))
    path = write_test(tmp_path, "{findings: [{rule: failed, flow: crm}]}")
    path.write_text(
        path.read_text().replace("[{flow: crm, status: failed}]", "[{file: runs.json}]")
    )
    result = invoke("rules", "test", str(path))
    assert result.exit_code == 0, result.output


def test_an_invalid_test_file_exits_2_with_its_place(tmp_path):
    path = write_test(tmp_path, "{findngs: []}")
    result = invoke("rules", "test", str(path))
    assert result.exit_code == 2
    assert f"unknown key 'findngs' in tests[0].steps[0].expect ({path}:7:" in result.stderr


def test_a_test_file_with_bad_rules_exits_2(tmp_path):
    path = write_test(tmp_path, "{}")
    (tmp_path / "rules.yaml").write_text("rules: [{name: a, type: nope}]\n")
    result = invoke("rules", "test", str(path))
    assert result.exit_code == 2
    assert "unknown rule type 'nope'" in result.stderr


def test_a_run_in_a_sandbox_the_rules_do_not_watch_never_alerts(tmp_path):
    path = write_test(tmp_path, "{findings: [], firing: []}")
    path.write_text(
        path.read_text().replace(
            "{flow: crm, status: failed}", "{flow: crm, status: failed, sandbox: dev}"
        )
    )
    result = invoke("rules", "test", str(path))
    assert result.exit_code == 0, result.output
    (tmp_path / "rules.yaml").write_text(
        "sandboxes: [prod, dev]\n" + (tmp_path / "rules.yaml").read_text()
    )
    result = invoke("rules", "test", str(path))
    assert result.exit_code == 1 and "+ got, not expected:  failed @ crm" in result.output


@pytest.mark.parametrize("at", ["2024-05-01", "1714564800"])
def test_a_test_time_may_be_a_date_or_unix_seconds(tmp_path, at):
    path = write_test(tmp_path, "{findings: [{rule: failed, flow: crm}]}")
    path.write_text(path.read_text().replace("2024-05-01T12:00:00Z", at))
    result = invoke("rules", "test", str(path))
    assert result.exit_code == 0, result.output
    assert "1 passed, 0 failed" in result.output
