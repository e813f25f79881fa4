"""`flowbot demo`: the simulator, the example rules, two cycles, every message shown.
Runs the real command: simulator over loopback HTTP, a real SQLite file, the real
renderer; only the channels are previews."""

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowbot.cli import cli
from flowbot.demo import Links, example_rules, plain_mrkdwn, slack_lines
from flowbot.sim.scenario import STORM

ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(autouse=True)
def keep_logging():
    """The command sets up flowbot's logger; give the next test the logger it had."""
    logger = logging.getLogger("flowbot")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.fixture(scope="module")
def output():
    result = CliRunner().invoke(cli, ["demo"])
    assert result.exception is None, result.output
    assert result.exit_code == 0
    logging.getLogger("flowbot").handlers.clear()
    return result.output


def boxes(text):
    """The message boxes: (title, body) in order."""
    found = re.findall(r"┌─ (.*)\n((?:│.*\n)*)└─", text)
    return [(title, body) for title, body in found]


def cycles(text):
    first, rest = text.split("═══ cycle 2", 1)
    second, history = rest.split("═══ flowbot history", 1)
    return first, second, history


def test_the_demo_exits_0_without_a_traceback_or_colour_when_not_a_tty(output):
    assert "Traceback" not in output
    assert not ANSI.search(output)
    assert "═══ cycle 1" in output and "═══ cycle 2" in output


def test_the_failed_flow_shows_its_error_codes_and_manifest_links(output):
    first, _, _ = cycles(output)
    crm = [body for title, body in boxes(first) if "crm-daily-import (prod)" in body]
    assert crm, "no message about crm-daily-import"
    body = crm[0]
    assert "CONNECTOR-2001-500" in body and "INGEST-1401-400" in body
    assert "failedRecords (API)[" in body
    assert re.search(r"\] https://platform\.adobe\.io/data/foundation/export/batches/\S+", body)
    assert re.search(
        r"\] https://experience\.adobe\.com/#/\S+/activity/\S+", body
    )  # the run in AEP


def test_the_lossy_success_the_late_flow_and_the_stuck_run_each_have_a_message(output):
    first, _, _ = cycles(output)
    titles_and_bodies = boxes(first)
    text = "\n".join(body for _, body in titles_and_bodies)
    assert "12% of records failed (600 of 5,000; limit 5%)" in text
    assert "hourly-import-missing: web-events-hourly" in text
    assert "still running after 5h" in text and "orders-backfill" in text
    emails = [body for title, body in titles_and_bodies if title.startswith("email to")]
    assert any("Subject: [WARNING] hourly-import-missing: web-events-hourly" in b for b in emails)


def test_the_storm_is_one_grouped_message_naming_every_flow(output):
    first, _, _ = cycles(output)
    grouped = [(t, b) for t, b in boxes(first) if t.startswith("Slack") and "grouped" in t]
    assert len(grouped) == 1
    body = grouped[0][1]
    assert all(name in body for name in STORM)
    assert "CONNECTOR-1001-500" in body
    singles = [t for t, b in boxes(first) if "run-failed: store-sync" in b]
    assert singles == []


def test_the_second_cycle_repeats_nothing_and_resolves_in_threads(output):
    _, second, _ = cycles(output)
    shown = boxes(second)
    assert shown, "the good runs resolved nothing"
    assert all("· resolved · in the alert's thread" in title for title, _ in shown)
    resolved = "\n".join(body for _, body in shown)
    # two rules had matched crm-contacts-sync's run: one incident, one resolution
    assert "resolved: too-many-bad-records and 1 more: crm-contacts-sync" in resolved
    assert "resolved: hourly-import-missing: web-events-hourly" in resolved
    assert "alerts still firing from the last cycle: not sent again" in second


def test_the_history_section_lists_alerts_and_their_messages(output):
    _, _, history = cycles(output)
    assert re.search(r"#\d+ RESOLVED too-many-bad-records · crm-contacts-sync", history)
    assert re.search(r"#\d+ FIRING slow-or-stuck · orders-backfill", history)
    assert "resolved → oncall: sent" in history


def test_on_a_tty_the_demo_is_coloured():
    result = CliRunner().invoke(cli, ["demo"], color=True)
    assert result.exit_code == 0
    assert ANSI.search(result.output)


def test_the_packaged_example_rules_are_the_repository_rules():
    packaged = example_rules()
    assert packaged.is_file()
    assert packaged.read_text() == (ROOT / "rules.yaml").read_text(), (
        "flowbot/examples/rules.yaml differs from rules.yaml: "
        "cp rules.yaml flowbot/examples/rules.yaml"
    )


def test_slack_text_reads_plainly_and_untrusted_text_stays_literal():
    links = Links()
    text = plain_mrkdwn(
        "run <https://x.example/a|failedRecords> · &lt;!channel&gt; &amp; <https://x.example/a|again>",
        links,
    )
    assert text == "run failedRecords[1] · <!channel> & again[1]"
    lines = slack_lines(
        {
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": ":red_circle: x"}},
                {"type": "divider"},
                {"type": "section", "fields": [{"type": "mrkdwn", "text": "*A* <https://b|b>"}]},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": "ctx"}]},
            ]
        }
    )
    plain = [ANSI.sub("", line) for line in lines]
    assert plain == ["🔴 x", "─" * 40, "*A* b[1]", "ctx", "[1] https://b"]


def test_the_installed_command_runs_within_30_seconds(tmp_path):
    env = {**os.environ, "FLOWBOT_DB": str(tmp_path / "never.db")}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "flowbot", "demo"],
        cwd=tmp_path,  # not the repository: the example rules come from the package
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "═══ flowbot history" in done.stdout
    assert took < 30
    assert not (tmp_path / "never.db").exists()
    assert list(tmp_path.iterdir()) == []  # nothing left behind where it ran
