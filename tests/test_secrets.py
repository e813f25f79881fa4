"""Secrets never leak: across end-to-end `flowbot` processes with failures
(Flow Service 500s and a rejected token, Slack refusing a message, an SMTP server that
refuses to log in), no configured secret value (client secret, access token, Slack bot
token, SMTP password) appears in stdout or stderr (text and JSON logs), in any message
(file channel, what the Slack server received in its bodies, what the SMTP server
received), in `flowbot history`, or anywhere in the database."""

from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
import subprocess
import sys
from base64 import b64encode, urlsafe_b64encode
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, quote, quote_plus

from servers import slack_server

from flowbot.aep.auth import TokenProvider
from flowbot.settings import Secret, Settings, load_settings, redact, secret_forms
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


# A secret full of the characters that encodings change (tests/conftest.py scans every
# log record of every test for it, in each of its encodings).
HOSTILE_SECRET = "p+q/r=s%t&u+V/W=X%Y&Z9"


def test_redact_finds_a_secret_in_every_encoding():
    secret, pair = HOSTILE_SECRET, f"client-id:{HOSTILE_SECRET}"
    spellings = [
        secret, quote(secret, safe=""), quote(secret), quote_plus(secret),
        quote_plus(secret).replace("%2B", "%2b"), json.dumps(secret)[1:-1],
        json.dumps(secret)[1:-1].replace("/", "\\/"), b64encode(secret.encode()).decode(),
        b64encode(pair.encode()).decode(), urlsafe_b64encode(pair.encode()).decode(),
        b64encode(f"x{secret}y".encode()).decode(),
    ]  # fmt: skip
    for text in spellings:
        shown = redact(f"before {text} after", [secret])
        assert shown.startswith("before ") and shown.endswith(" after") and "***" in shown, text
        assert text not in shown
    assert redact("see https://bob:hunter2@ims.example/x", []) == "see https://***@ims.example/x"


def test_a_password_in_the_ims_url_is_never_shown():
    settings = load_settings({"FLOWBOT_IMS_URL": "https://bob:hunter22@ims.example/ims/token/v3"})
    assert "hunter22" not in repr(settings) and "bob" not in repr(settings)
    assert "hunter22" in settings.secrets()
    tokens = TokenProvider(ims_url=settings.ims_url, client_id="c", client_secret="s" * 8)
    assert tokens.ims_where == "https://ims.example/ims/token/v3"
    tokens.close()


ECHO_RULES = """
sandboxes: [prod]
channels:
  audit: {file: alerts.jsonl}
defaults:
  channels: [audit]
monitoring:
  channels: [audit]
  after: 1m
rules:
  - {name: run-failed, type: status, status: [failed]}
"""


def test_an_ims_error_echoing_the_request_leaks_the_secret_nowhere(tmp_path, clock, caplog):
    from hostile_servers import HostileServer

    from flowbot.logs import JsonFormatter, RedactSecrets
    from flowbot.pipeline import build_deps, run_once
    from flowbot.rules import load_rules

    def echo(h):  # IMS answers 400 with everything it was sent, in several encodings
        basic = b64encode(f"cid-1:{HOSTILE_SECRET}".encode()).decode()
        h.json(400, {"error": "invalid_client", "error_description": f"bad request {h.seen.body}",
                     "message": f"{json.dumps(parse_qs(h.seen.body))} Basic {basic}"})  # fmt: skip

    (tmp_path / "rules.yaml").write_text(ECHO_RULES)
    with HostileServer() as ims:
        ims.on("/ims/token/v3", echo)
        settings = Settings(
            api_url=ims.url, ims_url=ims.url.replace("//", "//ops:" + quote("pw+/=%&", safe="") + "@") + "/ims/token/v3",
            client_id="cid-1", client_secret=Secret(HOSTILE_SECRET), org_id="org",
            db=str(tmp_path / "flowbot.db"),
        )  # fmt: skip
        deps = build_deps(settings, load_rules(tmp_path / "rules.yaml"), clock=clock)
        with caplog.at_level("INFO"):
            first, _ = run_once(deps)
            clock.advance(minutes=2)
            second, delivery = run_once(deps)
        deps.store.close()
        sent = ims.requests[0].body
    assert "client_secret=" + quote_plus(HOSTILE_SECRET) in sent  # IMS did get the secret
    assert not first[0].ok and "answered 400: invalid_client" in first[0].error
    text_log = io.StringIO()
    json_log = io.StringIO()
    for stream, formatter in ((text_log, logging.Formatter()), (json_log, JsonFormatter())):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        handler.addFilter(RedactSecrets(settings.secrets()))
        for record in caplog.records:
            handler.handle(logging.makeLogRecord(record.__dict__))
    alerts = (tmp_path / "alerts.jsonl").read_text()
    assert "monitoring degraded" in alerts and "invalid_client" in alerts  # the meta-alert
    with sqlite3.connect(tmp_path / "flowbot.db") as conn:
        dump = "\n".join(conn.iterdump())
    conn.close()
    everything = "\n".join([text_log.getvalue(), json_log.getvalue(), alerts, dump,
                            first[0].error, second[0].error or "", repr(settings)])  # fmt: skip
    assert "invalid_client" in text_log.getvalue() and "invalid_client" in json_log.getvalue()
    for secret in (HOSTILE_SECRET, "pw+/=%&", f"cid-1:{HOSTILE_SECRET}"):
        leaked = [form for form in secret_forms(secret) if form in everything]
        assert not leaked, f"{secret!r} leaked as {leaked}"
