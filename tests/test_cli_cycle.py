"""`flowbot check --once`, `history` and `silence` as a user runs them."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from flowbot.cli import cli
from flowbot.sim.payloads import make_flow, make_run
from flowbot.sim.scenario import Scenario
from flowbot.sim.server import Simulator

RULES = """
sandboxes: [prod]
poll_every: 1m
lookback: 24h
channels:
  audit: {file: alerts.jsonl}
defaults:
  channels: [audit]
rules:
  - name: run-failed
    type: status
    status: [failed]
"""


@pytest.fixture
def env(tmp_path):
    now = datetime.now(UTC)
    scenario = Scenario(now=now)
    scenario.put_flow(make_flow("f-crm", name="crm-daily"))
    scenario.put_run(
        make_run("f-crm", status="failed", started_at=now - timedelta(minutes=20),
                 completed_at=now - timedelta(minutes=15),
                 errors=[{"code": "CONNECTOR-1001-500", "message": "copy failed"}])
    )  # fmt: skip
    (tmp_path / "rules.yaml").write_text(RULES)
    with Simulator(scenario, port=0) as sim:
        yield (
            {
                **sim.environment(),
                "FLOWBOT_RULES": str(tmp_path / "rules.yaml"),
                "FLOWBOT_DB": str(tmp_path / "flowbot.db"),
            },
            tmp_path,
            sim,
        )


def invoke(args, env):
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


def test_check_once_alerts_then_stays_quiet(env):
    variables, tmp_path, _ = env
    first = invoke(["check", "--once"], variables)
    assert first.exit_code == 0, first.output
    assert "1 fired" in first.output and "1 sent, 0 failed, 0 pending" in first.output
    [line] = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert json.loads(line)["rule"] == "run-failed"
    second = invoke(["check", "--once"], variables)
    assert second.exit_code == 0 and "0 fired" in second.output
    assert len((tmp_path / "alerts.jsonl").read_text().splitlines()) == 1


def test_check_once_exits_1_when_the_api_is_unreachable(env):
    variables, _, _ = env
    variables = {**variables, "FLOWBOT_API_URL": "http://127.0.0.1:9"}
    result = CliRunner().invoke(cli, ["check", "--once"], env=variables)
    assert result.exit_code == 1
    assert "cycle prod: FAILED" in result.output and "Traceback" not in result.output
    assert variables["ADOBE_CLIENT_SECRET"] not in result.output


def test_check_once_exits_2_on_bad_rules(env, tmp_path):
    variables, _, _ = env
    bad = tmp_path / "bad.yaml"
    bad.write_text("sandboxes: [prod]\nrules:\n  - name: x\n    type: status\n    treshold: 5\n")
    result = CliRunner().invoke(cli, ["check", "--once", "--rules", str(bad)], env=variables)
    assert result.exit_code == 2 and "bad.yaml" in result.output
    assert "Traceback" not in result.output


def test_history_shows_alerts_and_their_messages(env):
    variables, _, _ = env
    invoke(["check", "--once"], variables)
    result = invoke(["history"], variables)
    assert result.exit_code == 0
    assert "FIRING run-failed · crm-daily" in result.output
    assert "firing   → audit: sent" in result.output
    assert "no alerts" in invoke(["history", "--rule", "other"], variables).output
    [record] = [json.loads(x) for x in invoke(["history", "--json"], variables).output.splitlines()]
    assert record["flow"] == "crm-daily" and record["messages"][0]["state"] == "sent"


def test_silence_add_list_expire_and_it_mutes(env):
    variables, tmp_path, _ = env
    added = invoke(
        ["silence", "add", "--flow", "crm-*", "--for", "1h", "--reason", "maintenance"], variables
    )
    assert added.exit_code == 0 and "silence #1" in added.output
    assert "#1 active rule=* flow=crm-*" in invoke(["silence", "list"], variables).output
    result = invoke(["check", "--once"], variables)
    assert "1 muted" in result.output and not (tmp_path / "alerts.jsonl").exists()
    assert "(muted)" in invoke(["history"], variables).output
    assert invoke(["silence", "expire", "1"], variables).exit_code == 0
    assert "no silences" in invoke(["silence", "list"], variables).output
    again = CliRunner().invoke(cli, ["silence", "expire", "1"], env=variables)
    assert again.exit_code == 1 and "no active silence #1" in again.output


def test_silence_needs_a_rule_or_a_flow(env):
    variables, _, _ = env
    result = CliRunner().invoke(cli, ["silence", "add", "--reason", "x"], env=variables)
    assert result.exit_code == 2 and "--rule or --flow" in result.output


def test_check_once_with_a_bad_environment_value_is_one_line_and_exit_2(env):
    variables, _, _ = env
    result = CliRunner().invoke(cli, ["check", "--once"], env={**variables, "SMTP_PORT": "abc"})
    assert result.exit_code == 2 and "SMTP_PORT" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_check_once_in_a_sandbox_without_access_names_it_and_exits_1(env, tmp_path):
    variables, _, _ = env
    rules = tmp_path / "other.yaml"
    rules.write_text(RULES.replace("sandboxes: [prod]", "sandboxes: [staging]"))
    result = CliRunner().invoke(cli, ["check", "--once", "--rules", str(rules)], env=variables)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "staging" in result.output and "403" in result.output
    assert variables["ADOBE_CLIENT_SECRET"] not in result.output
    [line] = [x for x in result.output.splitlines() if "403" in x]  # one clear line
    assert line.startswith("cycle staging: FAILED (Flow Service GET /flows in sandbox 'staging'")
