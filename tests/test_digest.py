"""The digest: goldens of the Slack (Block Kit) and email bodies of a seeded week, a
quiet period in one line, the period its cron covers, and the daemon queueing and
sending it to a real file channel on its schedule."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from conftest import Clock
from seeded_store import NOW, seed

from flowbot import report
from flowbot.daemon import Daemon
from flowbot.digest import digest_body, digest_period, next_digest, slack_body
from flowbot.pipeline import build_deps
from flowbot.rules import load_rules
from flowbot.rules_parts import Digest
from flowbot.settings import Settings

GOLDEN = Path(__file__).parent / "golden" / "digest"
UPDATE = os.environ.get("FLOWBOT_UPDATE_GOLDEN") == "1"
WEEKDAYS_8 = Digest("0 8 * * 1-5", "Europe/Paris", ("ops",))


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


@pytest.fixture
def day(tmp_path):
    store = seed(tmp_path / "flowbot.db")
    try:
        yield report.gather(store, NOW - timedelta(days=1), NOW, ["prod", "dev"])
    finally:
        store.close()


def test_slack_digest_matches_its_golden_and_escapes_names(day):
    body = digest_body(day, "slack")
    golden("slack.json", json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    text = json.dumps(body)
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert len(body["blocks"]) <= 50
    assert all(b["type"] in {"header", "section", "context", "divider"} for b in body["blocks"])


def test_email_digest_is_an_escaped_html_table(day):
    body = digest_body(day, "email")
    golden("email.html", body["html"])
    golden("email.txt", f"Subject: {body['subject']}\n\n{body['text']}")
    assert "<table" in body["html"] and "<script>" not in body["html"]


def test_a_quiet_period_says_so_in_one_line(day):
    quiet = report.Report(day.since, day.until, (report.SandboxFigures("dev", runs=3),))
    blocks = slack_body(quiet)["blocks"]
    lines = [b for b in blocks if b["type"] in ("section", "context")][:-1]
    assert len(lines) == 1 and "quiet — 3 runs" in lines[0]["elements"][0]["text"]
    assert digest_body(quiet, "email")["subject"] == "[flowbot] digest: a quiet period"


def test_many_sandboxes_stay_within_slacks_fifty_blocks(day):
    many = report.Report(day.since, day.until, day.sandboxes[:1] * 40)
    body = slack_body(many)
    assert len(body["blocks"]) <= 50 and "and 25 more sandboxes" in json.dumps(body)


def test_the_period_is_the_one_the_latest_firing_ended():
    monday = datetime(2026, 11, 30, 7, 0, 30, tzinfo=UTC)  # 08:00:30 in Paris, a Monday
    since, until = digest_period(WEEKDAYS_8, monday)
    assert until == datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
    assert since == datetime(2026, 11, 27, 7, 0, tzinfo=UTC)  # Friday 08:00, Paris
    # cron's day numbers: 1-5 is Monday to Friday, so Friday's digest is next to Monday's
    assert next_digest(WEEKDAYS_8, monday) == datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    friday = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
    assert next_digest(WEEKDAYS_8, friday) == datetime(2026, 12, 7, 7, 0, tzinfo=UTC)


RULES = """
sandboxes: [prod, dev]
channels:
  audit: {file: alerts.jsonl}
  ops: {file: digest.jsonl}
defaults:
  channels: [audit]
digest:
  cron: "0 9 * * *"
  timezone: Europe/Paris
  channels: [ops]
rules:
  - name: run-failed
    type: status
    status: [failed]
"""


def test_the_daemon_schedules_the_digest_and_sends_it_to_its_channels(tmp_path):
    seed(tmp_path / "flowbot.db").close()
    (tmp_path / "rules.yaml").write_text(RULES)
    settings = Settings(db=str(tmp_path / "flowbot.db"), rules=str(tmp_path / "rules.yaml"))
    ruleset = load_rules(settings.rules)
    clock = Clock(NOW + timedelta(minutes=1))  # 09:01 in Paris: just after a firing
    deps = build_deps(settings, ruleset, clock=clock)
    daemon = Daemon(settings, ruleset, deps, scheduler=BackgroundScheduler(timezone=UTC))
    try:
        daemon.schedule()
        job = daemon.scheduler.get_job("digest")
        assert job is not None
        assert daemon.send_digest() == 1
        (line,) = (tmp_path / "digest.jsonl").read_text().splitlines()
        sent = json.loads(line)
        assert sent["event"] == "digest"
        assert sent["since"] == (NOW - timedelta(days=1)).isoformat()
        prod = next(s for s in sent["sandboxes"] if s["sandbox"] == "prod")
        assert prod["failures"] == 3 and prod["still_red_count"] == 1
        assert not (tmp_path / "alerts.jsonl").exists()
        nxt = daemon.scheduler.get_job("digest").trigger.run_date
        assert nxt == NOW + timedelta(days=1)
    finally:
        deps.store.close()
