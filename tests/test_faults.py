"""The fault suite: outages of every outside system, driven cycle by cycle
with an injected clock through `pipeline.run_once`, against the simulator, the local
Slack look-alike and a real SMTP server on loopback. Nothing may be lost, a channel's
late messages arrive in order once it is back, monitoring says when it is degraded and
when it recovered, and the outbox stays bounded."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta

import pytest
from conftest import Clock
from servers import slack_server

from flowbot.aep.client import Clocks, Limits, RetryPolicy
from flowbot.notifiers import build_notifiers
from flowbot.pipeline import build_deps, run_once
from flowbot.rules import load_rules
from flowbot.settings import Secret
from flowbot.sim.payloads import make_flow, make_run
from flowbot.sim.scenario import Scenario
from flowbot.sim.server import Simulator
from flowbot.store import Store

RULES = """
sandboxes: [prod]
poll_every: 1m
channels:
  ops: {slack: "#data-ops"}
  mail: {email: [oncall@example.com]}
defaults:
  channels: [ops, mail]
  repeat_after: 4h
monitoring:
  channels: [ops, mail]
  after: 15m
rules:
  - {name: run-failed, type: status, status: [failed], severity: critical}
"""

FLOWS = [f"crm-{i:02d}" for i in range(6)]
SLACK_TOKEN = "xoxb-fault-suite-token"


def failed(name, at):
    return make_run(f"id-{name}", run_id=f"run-{name}-{int(at.timestamp())}", status="failed",
                    started_at=at, completed_at=at + timedelta(minutes=1),
                    errors=[{"code": "CONNECTOR-1001-500", "message": "copy failed"}])  # fmt: skip


def good(name, at):
    return make_run(f"id-{name}", run_id=f"run-{name}-{int(at.timestamp())}", started_at=at,
                    completed_at=at + timedelta(minutes=1))  # fmt: skip


class Bed:
    """Simulator + Slack + SMTP + a SQLite file + a clock; `cycle()` runs one cycle."""

    def __init__(self, tmp_path, sim, slack, smtp, clock):
        (tmp_path / "rules.yaml").write_text(RULES)
        self.sim, self.slack, self.smtp, self.clock = sim, slack, smtp, clock
        self.settings = sim.settings(
                        slack_bot_token=Secret(SLACK_TOKEN), slack_api_url=slack.url,
            smtp_host=smtp.host, smtp_port=smtp.port, smtp_starttls=False,
            db=str(tmp_path / "flowbot.db"),
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

    def cycle(self, minutes=1):
        reports, delivery = run_once(self.deps)
        self.clock.advance(minutes=minutes)
        return reports[0], delivery

    def slack_posts(self):
        """Texts of chat.postMessage calls Slack accepted (failures are answered first)."""
        return [c.body for c in self.slack.calls_to("chat.postMessage")]

    def close(self):
        for sandbox in self.ruleset.sandboxes:
            self.deps.client_for(sandbox).close()
        self.store.close()


@pytest.fixture
def bed(tmp_path, smtp):
    clock = Clock()
    scenario = Scenario(now=clock())
    for name in FLOWS:
        scenario.put_flow(make_flow(f"id-{name}", name=name, start_at=clock() - timedelta(days=3)))
        scenario.put_run(good(name, clock() - timedelta(hours=2)))
    with Simulator(scenario, page_size=5) as sim, slack_server() as slack:
        b = Bed(tmp_path, sim, slack, smtp, clock)
        yield b
        b.close()


def names_in(texts, names=FLOWS):
    """The flow names in the order their messages arrived (first mention per text)."""
    out = []
    for text in texts:
        found = [n for n in names if n in text]
        if found:
            out.append(found[0])
    return out


def slack_text(body):
    return str(body.get("text", "")) + str(body.get("blocks", ""))


def test_a_slack_429_storm_of_30_minutes_loses_nothing_and_keeps_the_order(bed):
    bed.slack.fail("chat.postMessage", status=429, retry_after=60, times=30)
    order = []
    for minute in range(45):
        if minute in (0, 5, 12, 20):
            name = FLOWS[len(order)]
            bed.sim.put_run(failed(name, bed.clock() - timedelta(minutes=1)))
            order.append(name)
        report, delivery = bed.cycle()
        assert report.ok
        # Email is not held back by Slack's outage.
        assert (
            names_in([m.get("Subject", "") + m.get_body().get_content() for m in bed.smtp.messages])
            == order
        )  # noqa: E501
    accepted = bed.slack_posts()[30:]
    assert names_in([slack_text(b) for b in accepted]) == order
    assert bed.store.outbox_counts().get("pending", 0) == 0
    assert len(accepted) == len(order)  # none twice


def test_smtp_down_for_ten_minutes_then_back_delivers_everything_in_order(bed):
    bed.smtp.stop()
    order = []
    for minute in range(10):
        if minute in (1, 4, 7):
            name = FLOWS[len(order)]
            bed.sim.put_run(failed(name, bed.clock() - timedelta(minutes=1)))
            order.append(name)
        report, delivery = bed.cycle()
        assert report.ok and delivery.failed == 0
    assert bed.smtp.messages == []
    assert names_in([slack_text(b) for b in bed.slack_posts()]) == order  # Slack went on
    pending = bed.store.outbox_counts().get("pending", 0)
    assert 0 < pending <= len(order)  # bounded: only the undelivered mail waits
    bed.smtp.start()
    for _ in range(20):  # backoff is at most 15 minutes
        bed.cycle()
    subjects = [m.get("Subject", "") + m.get_body().get_content() for m in bed.smtp.messages]
    assert names_in(subjects) == order
    assert bed.store.outbox_counts().get("pending", 0) == 0


def test_the_api_down_for_thirty_minutes_sends_the_meta_alert_then_its_recovery(bed):
    # 15 minutes of 500s, then 15 minutes of pages that never come in time.
    bed.sim.fail_next(15 * 2, status=500)  # two attempts per cycle
    bed.sim.put_run(failed("crm-03", bed.clock() + timedelta(minutes=3)))  # during the outage
    client = bed.deps.client_for("prod")
    client.limits = replace(client.limits, timeout=0.1)
    for minute in range(30):
        if minute == 15:
            client.retry = replace(client.retry, max_attempts=1)
            bed.sim.slow_next(15, seconds=0.3)
        report, delivery = bed.cycle()
        assert not report.ok, minute
    meta = [t for t in map(slack_text, bed.slack_posts()) if "degraded" in t]
    assert len(meta) == 1  # once, after monitoring.after, not every cycle
    assert not any("crm-03" in t for t in map(slack_text, bed.slack_posts()))
    assert bed.store.watermark("prod").runs_since is None  # the watermark stayed put
    time.sleep(0.3)  # let the last slow handlers finish
    report, delivery = bed.cycle()
    assert report.ok
    texts = [slack_text(b) for b in bed.slack_posts()]
    assert any("recovered" in t for t in texts)
    assert names_in(texts) == ["crm-03"]  # the failure during the outage was not lost
    mails = [m.get("Subject", "") + m.get_body().get_content() for m in bed.smtp.messages]
    assert sum("degraded" in m for m in mails) == 1 and any("recovered" in m for m in mails)


def test_a_token_that_expires_mid_cycle_is_renewed_and_the_cycle_completes(tmp_path, smtp):
    ticks = [0.0]

    def sim_clock():  # every token check is one tick: a token lives 4 requests
        ticks[0] += 1
        return ticks[0]

    clock = Clock()
    scenario = Scenario(now=clock())
    for name in FLOWS:
        scenario.put_flow(make_flow(f"id-{name}", name=name, start_at=clock() - timedelta(days=3)))
        scenario.put_run(failed(name, clock() - timedelta(minutes=30)))
    with (
        Simulator(scenario, page_size=2, token_lifetime=4, clock=sim_clock) as sim,
        slack_server() as slack,
    ):
        b = Bed(tmp_path, sim, slack, smtp, clock)
        try:
            report, delivery = b.cycle()
        finally:
            b.close()
        assert report.ok
        ims = [r for r in sim.requests if r.path.startswith("/ims")]
        assert len(ims) >= 2  # renewed after a 401 in the middle of the paging
        assert any(r.path == "/runs" for r in sim.requests[sim.requests.index(ims[1]) :])
        assert (
            sorted(names_in([slack_text(x.body) for x in slack.calls_to("chat.postMessage")]))
            == FLOWS
        )


def test_a_page_slower_than_the_timeout_is_retried_and_nothing_is_lost(bed):
    client = bed.deps.client_for("prod")
    client.limits = replace(
        client.limits, timeout=0.3
    )  # models the 25 s page against a 30 s timeout
    bed.sim.put_run(failed("crm-01", bed.clock() - timedelta(minutes=1)))
    bed.sim.slow_next(1, seconds=1.0)
    report, delivery = bed.cycle()
    assert report.ok
    assert names_in([slack_text(b) for b in bed.slack_posts()]) == ["crm-01"]
    assert delivery.pending == 0
