"""Secrets never leak (issue 7): across end-to-end `flowbot` processes with failures
(Flow Service 500s and a rejected token, Slack refusing a message, an SMTP server that
refuses to log in), no configured secret value (client secret, access token, Slack bot
token, SMTP password) appears in stdout or stderr (text and JSON logs), in any message
(file channel, what the Slack server received in its bodies, what the SMTP server
received), in `flowbot history`, or anywhere in the database."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from servers import slack_server

from flowbot.sim.payloads import make_flow, make_run
from flowbot.sim.scenario import Scenario
from flowbot.sim.server import Simulator

ROOT = Path(__file__).resolve().parent.parent
SLACK_TOKEN = "xoxb-1111-SLACKSECRETVALUE"
SMTP_PASSWORD = "smtp-PASSWORD-secret-42"
RULES = """
sandboxes: [prod]
channels:
  ops: {slack: "#data-ops"}
  mail: {email: [oncall@example.com]}
  audit: {file: alerts.jsonl}
defaults:
  channels: [ops, mail, audit]
monitoring:
  channels: [audit]
  after: 1s
rules:
  - {name: run-failed, type: status, status: [failed]}
"""


def flowbot(env, *args):
    done = subprocess.run([sys.executable, "-m", "flowbot", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    return done.stdout + done.stderr


def test_no_configured_secret_appears_in_any_output_of_an_end_to_end_run(tmp_path, smtp):
    (tmp_path / "rules.yaml").write_text(RULES)
    now = datetime.now(UTC)
    scenario = Scenario(now=now)
    for i in range(3):
        name = f"crm-{i}"
        scenario.put_flow(make_flow(f"id-{name}", name=name, start_at=now - timedelta(days=2)))
        scenario.put_run(make_run(f"id-{name}", status="failed", started_at=now - timedelta(minutes=20),
                                  completed_at=now - timedelta(minutes=10),
                                  errors=[{"code": "CONNECTOR-1001-500", "message": "copy failed"}]))  # fmt: skip
    outputs = []
    with Simulator(scenario) as sim, slack_server() as slack:
        base = {
            **os.environ, **sim.environment(), "SLACK_BOT_TOKEN": SLACK_TOKEN,
            "FLOWBOT_SLACK_API_URL": slack.url, "SMTP_HOST": smtp.host,
            "SMTP_PORT": str(smtp.port), "SMTP_STARTTLS": "false", "SMTP_USER": "flowbot",
            "SMTP_PASSWORD": SMTP_PASSWORD, "FLOWBOT_DB": str(tmp_path / "flowbot.db"),
            "FLOWBOT_RULES": str(tmp_path / "rules.yaml"),
        }  # fmt: skip
        sim.fail_next(5, status=500)  # the API is down for one cycle (5 attempts)
        outputs.append(flowbot(base, "check", "--once"))
        slack.fail("chat.postMessage", error="invalid_auth")
        outputs.append(flowbot({**base, "FLOWBOT_LOG_FORMAT": "json"}, "check", "--once"))
        outputs.append(flowbot(base, "check", "--once"))
        static = sim.static_token
        sim.expire_tokens()  # a configured access token that the API now rejects
        with_token = {**base, "ADOBE_ACCESS_TOKEN": static}
        outputs.append(flowbot(with_token, "check", "--once"))
        outputs.append(flowbot(with_token, "history"))
        outputs.append(flowbot(with_token, "history", "--json"))
        outputs.append(flowbot(with_token, "--help"))
        secrets = {sim.client_secret, static, SLACK_TOKEN, SMTP_PASSWORD}
        outputs += [str(c.body) for c in slack.calls]
        outputs += [m.as_string() for m in smtp.messages]
        assert any("Bearer " + SLACK_TOKEN == c.headers.get("Authorization") for c in slack.calls)
    outputs.append((tmp_path / "alerts.jsonl").read_text())
    with sqlite3.connect(tmp_path / "flowbot.db") as conn:
        outputs.append("\n".join(conn.iterdump()))
    conn.close()
    everything = "\n".join(outputs)
    # The run did go through the failure paths it is meant to cover.
    assert "500" in outputs[0] and "invalid_auth" in everything and "degraded" in everything
    assert "crm-0" in everything and len(slack.calls) >= 2
    for secret in secrets:
        assert secret not in everything, f"a secret of {len(secret)} characters leaked"
