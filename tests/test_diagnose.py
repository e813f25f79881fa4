"""Row-level errors in messages, over loopback: the simulator's Data Access API, the
Slack look-alike, aiosmtpd and a real SQLite file. Goldens in tests/golden/diagnosis-*
(UPDATE_GOLDEN=1 to accept a change)."""

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import Clock
from servers import slack_server

from flowbot import diagnosis as dx
from flowbot.aep.client import Clocks, Limits, RetryPolicy
from flowbot.cli import cli
from flowbot.notifiers import build_notifiers
from flowbot.pipeline import build_deps, run_once
from flowbot.rules import load_rules
from flowbot.settings import Secret
from flowbot.sim.payloads import make_flow, make_run
from flowbot.sim.scenario import Scenario
from flowbot.sim.server import Simulator
from flowbot.store import Store

GOLDEN = Path(__file__).parent / "golden"
RULES = """
sandboxes: [prod]
poll_every: 1m
group_at: 1000
diagnostics: {{enabled: true, show_values: {show}, budget: {budget}}}
channels:
  ops: {{slack: "#data-ops"}}
  mail: {{email: [oncall@example.com]}}
defaults: {{channels: [ops, mail]}}
rules:
  - {{name: run-failed, type: status, status: [failed], severity: critical}}
"""
VALUES = ("person0@example.com", "31/02/1900", "missingQuotes")


def failed_run(i, at, batch):
    return make_run(
        f"flow-{i}", run_id=f"run-{i}", status="failed", started_at=at - timedelta(minutes=20),
        completed_at=at - timedelta(minutes=10), input_records=10, failed_records=5,
        batch_id=batch, etag='"e"', target_id="target",
        errors=[{"code": "CONNECTOR-2001-500", "message": "Error occurred at promotion activity."}],
        activity_errors=[
            {"code": "INGEST-1401-400", "message": "corrupt rows", "recordCount": 2},
            {"code": "MAPPER-3700-400", "message": "Mapper Transform Error", "recordCount": 3},
        ],
    )  # fmt: skip


class Bed:
    def __init__(self, tmp_path, sim, slack, smtp, clock, show="false", budget=20):
        (tmp_path / "rules.yaml").write_text(RULES.format(show=show, budget=budget))
        self.sim, self.slack, self.smtp, self.clock = sim, slack, smtp, clock
        self.settings = sim.settings(
                        slack_bot_token=Secret("xoxb-diag"),
            slack_api_url=slack.url, smtp_host=smtp.host, smtp_port=smtp.port,
            smtp_starttls=False, db=str(tmp_path / "flowbot.db"),
        )  # fmt: skip
        self.ruleset = load_rules(tmp_path / "rules.yaml")
        self.store = Store(self.settings.db)
        self.store.migrate()
        options = {
            "clocks": Clocks(sleep=lambda s: None),
            "retry": RetryPolicy(max_attempts=2),
            "limits": Limits(timeout=2.0),
        }
        self.deps = build_deps(
            self.settings, self.ruleset, clock=clock, store=self.store, client_options=options
        )
        self.deps.notifiers = build_notifiers(
            self.ruleset.channels, self.settings, sleep=lambda s: None, now=clock
        )

    def cycle(self):
        reports, delivery = run_once(self.deps)
        self.clock.advance(minutes=1)
        return reports[0], delivery

    def posts(self):
        return [c.body for c in self.slack.calls_to("chat.postMessage")]

    def export_requests(self):
        return [(r.path, r.query.get("path", [""])[0]) for r in self.sim.requests
                if r.path.startswith("/export/")]  # fmt: skip

    def close(self):
        self.deps.client_for("prod").close()
        self.store.close()


@pytest.fixture
def world(tmp_path, smtp):
    beds = []

    def make(runs=1, **options):
        clock = Clock()
        scenario = Scenario(now=clock())
        for i in range(runs):
            scenario.put_flow(make_flow(f"flow-{i}", name=f"crm-{i:03d}", etag='"f"',
                                        start_at=clock() - timedelta(days=3),
                                        connection_ids=("s", "t")))  # fmt: skip
            scenario.put_run(failed_run(i, clock(), f"BATCH{i:04d}"))
        sim = Simulator(scenario).start()
        slack = slack_server()
        bed = Bed(tmp_path, sim, slack.__enter__(), smtp, clock, **options)
        beds.append((bed, slack))
        return bed

    yield make
    for bed, slack in beds:
        bed.close()
        bed.sim.stop()
        slack.__exit__(None, None, None)


def slack_text(post):
    return "\n".join(b.get("text", {}).get("text", "") for b in post["blocks"] if "text" in b)


def golden(name, text):
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed (UPDATE_GOLDEN=1 to accept)"


def diagnosis_part(text, start="Row-level errors"):
    return text[text.index(start) :]


def test_failed_run_messages_carry_error_kinds_and_fields_but_no_values(world):
    bed = world()
    report, delivery = bed.cycle()
    assert report.ok and delivery.sent == 2
    slack = slack_text(bed.posts()[0])
    mail = bed.smtp.messages[0]
    text = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = mail.get_body(("html",)).get_content().replace("\r\n", "\n")
    golden("diagnosis-slack.txt", slack[slack.index("*Row-level errors*") :])
    golden("diagnosis-email.txt", diagnosis_part(text).split("\n\nFirst seen")[0])
    golden(
        "diagnosis-email.html", html[html.index("<h3>Row-level errors") : html.index("</table>")]
    )
    for body in (slack, text):
        assert "3 rows" in body and "2 rows" in body and "person.birthDate" in body
    assert "<tr><td>3</td><td><code>3700</code>" in html and "<code>person.birthDate</code>" in html
    for body in (slack, text, html):
        assert not any(value in body for value in VALUES)


def test_show_values_lets_truncated_values_in(world):
    bed = world(show="true")
    bed.cycle()
    slack = slack_text(bed.posts()[0])
    assert "missingQuotes" in slack and "person0@example.com" in slack
    long_row = next(line for line in slack.splitlines() if "person0@example.com" in line)
    example = long_row.split("e.g. ", 1)[1]
    assert len(example) <= dx.MAX_VALUE and example.endswith("…")


def test_403_still_delivers_the_alert_at_once_with_one_explanatory_line(world):
    bed = world()
    bed.sim.data_access.deny_next(1, 403)
    report, delivery = bed.cycle()
    assert report.ok and delivery.sent == 2
    slack = slack_text(bed.posts()[0])
    lines = [line for line in slack.splitlines() if "no access to row errors" in line]
    assert len(lines) == 1 and "View Datasets" in lines[0]
    assert bed.export_requests() == [("/export/batches/BATCH0000/meta", "row_errors")]
    bed.cycle()  # a denied batch is not asked again
    assert len(bed.export_requests()) == 1


def test_slow_diagnostics_alert_first_then_reply_in_the_thread(world):
    bed = world()
    bed.deps.diagnose_seconds = 0.3
    bed.sim.data_access.slow_next(1, 1.0)
    report, delivery = bed.cycle()
    assert delivery.sent == 2 and report.seconds < 2
    first = bed.posts()[0]
    assert "follows in this thread" in slack_text(first)
    bed.cycle()
    reply = bed.posts()[1]
    assert reply.get("thread_ts") and "3 rows" in slack_text(reply)
    assert len(bed.smtp.messages) == 2 and "Re:" in bed.smtp.messages[1]["Subject"]


def test_a_hundred_failed_runs_stay_within_the_budget_and_each_batch_is_read_once(world):
    bed = world(runs=100, budget=20)
    counts = []
    for _ in range(40):
        before = len(bed.export_requests())
        report, _ = bed.cycle()
        counts.append(len(bed.export_requests()) - before)
        assert report.diagnostic_requests == counts[-1] <= 20
        if counts[-1] == 0:
            break
    requests = bed.export_requests()
    assert len(requests) == len(set(requests)) == 300  # a listing and two files, each once
    assert counts[0] > 0 and counts[1] > 0  # the rest came in later cycles
    replies = [p for p in bed.posts() if p.get("thread_ts")]
    assert len(replies) == 100 - counts[0] // 3  # the first cycle's ran in the alerts


def test_huge_and_malformed_answers_are_said_not_raised(world):
    bed = world()
    bed.sim.data_access.malformed_next(1)
    bed.cycle()  # the listing is not JSON: tried again next cycle
    bed.sim.data_access.huge_next(1, 9 * 2**20)
    bed.cycle()
    row = bed.store._rows("SELECT summary FROM diagnoses")[0]
    found = dx.from_json(row["summary"])
    assert found.state == dx.DONE and any("larger than" in n for n in found.notes)


def test_explain_prints_run_errors_diagnosis_and_labelled_links(world, tmp_path):
    bed = world()
    env = {**bed.sim.environment(), "FLOWBOT_DB": str(tmp_path / "explain.db"),
           "FLOWBOT_RULES": str(tmp_path / "none.yaml")}  # fmt: skip
    result = CliRunner().invoke(cli, ["explain", "run-0", "--sandbox", "prod"], env=env)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Run run-0" in out and "CONNECTOR-2001-500" in out
    assert "3 rows: 3700" in out and "[field person.birthDate]" in out
    assert "AEP UI (dataflow): https://experience.adobe.com/" in out
    assert "failedRecords [Promotion Activity] (Data Access API, needs a token" in out
    assert not any(value in out for value in VALUES)
    missing = CliRunner().invoke(cli, ["explain", "no-such-run"], env=env)
    assert missing.exit_code == 1 and "404" in missing.output


# ---------------------------------------------------------------- pure


def test_summarise_groups_masks_and_ranks():
    rows = [
        {"_corrupt_record": "a", "_errors": [{"code": "1555", "message": "value 'x1' bad in column 'age'"}]},
        {"_corrupt_record": "b", "_errors": [{"code": "1555", "message": "value 'x2' bad in column 'age'"}]},
        {"_corrupt_record": "c", "_errors": [{"code": "1401", "message": "corrupt", "path": "a.b"}]},
    ]  # fmt: skip
    body = "\n".join(json.dumps(r) for r in rows) + "\nnot json\n"
    parsed = dx.parse_error_file("conversion_errors_0.json", body.encode())
    assert parsed.malformed == 1
    found = dx.summarise("B", [parsed], files_total=1)
    first, second = found.kinds
    assert (first.code, first.rows, first.path) == ("1555", 2, "age")
    assert "x1" not in first.message and "'age'" in first.message
    assert (second.path, second.example) == ("a.b", "conversion_errors_0.json, row 3")
    assert found.notes == ("conversion_errors_0.json: 1 unreadable lines skipped",)
    assert dx.from_json(dx.to_json(found)) == found
