"""Channels that misbehave: Slack, webhooks and SMTP servers on loopback that
trickle, stall, answer garbage or refuse. Every answer becomes a NotifyError within the
exchange's deadline, and one channel's trouble never holds back the others."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from hostile_channels import answer, hostile_http, hostile_smtp, huge, raw, silence, trickle
from servers import slack_server

from flowbot.aep.client import Clocks, Limits, RetryPolicy
from flowbot.errors import NotifyError
from flowbot.models import Message
from flowbot.notifiers.email import EmailNotifier
from flowbot.notifiers.slack import MAX_RETRY_AFTER, SlackNotifier, WebhookNotifier
from flowbot.retry_after import parse_retry_after
from flowbot.settings import Secret, Settings

TOKEN = "xoxb-hostile-token"
DEADLINE = 1.0
OK = answer("200 OK", b'{"ok": true, "channel": "C1", "ts": "1.1"}')


def no_sleep(seconds: float) -> None:
    return None


def slack(url: str, **kw) -> SlackNotifier:
    settings = Settings(slack_bot_token=Secret(TOKEN), slack_api_url=url)
    return SlackNotifier("ops", "#data-ops", settings, clock=time.monotonic, sleep=no_sleep, **kw)


def webhook(url: str) -> WebhookNotifier:
    return WebhookNotifier("hook", url, clock=time.monotonic, sleep=no_sleep, deadline=DEADLINE)


def message(kind: str = "slack") -> Message:
    body = {"text": "run failed", "subject": "run failed", "blocks": []}
    return Message("ops", kind, "firing", body)  # type: ignore[arg-type]


def send_fails(notifier, kind: str = "slack") -> NotifyError:
    with pytest.raises(NotifyError) as caught:
        notifier.send(message(kind), None)
    text = str(caught.value)
    assert TOKEN not in text and "XXXXSECRET" not in text
    return caught.value


# ---------------------------------------------------------------- Retry-After


NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    ["inf", "nan", "1e12", "-5", "soon", "", " ", "0x10", "Infinity", "+30", "9" * 40, None],
)
def test_an_unusable_retry_after_is_none(value):
    assert parse_retry_after(value, now=NOW, cap=900) is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30", 30.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("901", 900.0),
        ("1.5", 1.5),
        ("Mon, 30 Nov 2026 12:01:00 GMT", 60.0),
        ("Mon, 30 Nov 2026 11:00:00 GMT", 0.0),
        ("Tue, 30 Nov 2027 12:00:00 GMT", 900.0),
    ],
)
def test_a_usable_retry_after_is_clamped(value, seconds):
    assert parse_retry_after(value, now=NOW, cap=900) == seconds


@pytest.mark.parametrize("value", ["inf", "nan", "1e12", "-1", "garbage"])
def test_slack_429_with_an_unusable_retry_after_leaves_our_backoff(value):
    with slack_server() as server:
        server.fail("chat.postMessage", status=429, retry_after=value)
        error = send_fails(slack(server.url))
    assert not error.permanent and error.retry_after is None


def test_slack_429_with_a_long_retry_after_is_clamped():
    with slack_server() as server:
        server.fail("chat.postMessage", status=429, retry_after="86400")
        error = send_fails(slack(server.url))
    assert error.retry_after == MAX_RETRY_AFTER


def test_webhook_429_with_retry_after_inf_leaves_our_backoff():
    with slack_server() as server:
        server.fail("webhook", status=429, retry_after="inf")
        error = send_fails(webhook(server.webhook_url()), "webhook")
    assert not error.permanent and error.retry_after is None


# ---------------------------------------------------------------- deadlines and sizes


def test_a_slack_answer_trickled_a_byte_every_two_seconds_is_cut_at_the_deadline():
    with hostile_http(trickle(OK, every=2.0)) as server:
        started = time.monotonic()
        error = send_fails(slack(server.url, deadline=DEADLINE))
        took = time.monotonic() - started
    assert not error.permanent and "DeadlineExceeded" in str(error)
    assert took < DEADLINE + 2.5


def test_a_webhook_that_never_answers_is_cut_at_the_deadline():
    with hostile_http(silence()) as server:
        started = time.monotonic()
        error = send_fails(webhook(server.webhook_url()), "webhook")
        took = time.monotonic() - started
    assert not error.permanent and took < DEADLINE + 2.5


def test_a_slack_answer_larger_than_the_limit_is_refused():
    with hostile_http(huge(5 * 1024 * 1024)) as server:
        error = send_fails(slack(server.url, deadline=5.0, max_bytes=64 * 1024))
    assert not error.permanent and "AnswerTooLarge" in str(error)


def test_an_smtp_server_that_stalls_mid_dialogue_is_cut_at_the_deadline():
    settings_for = lambda s: Settings(  # noqa: E731
        smtp_host=s.host, smtp_port=s.port, smtp_starttls=False, smtp_from="bot@example.com"
    )
    for server_options in ({"stall_after": 2}, {"trickle_every": 2.0}):
        with hostile_smtp(**server_options) as server:
            mail = EmailNotifier(
                "mail", ("oncall@example.com",), settings_for(server),
                now=lambda: NOW, deadline=DEADLINE,
            )  # fmt: skip
            started = time.monotonic()
            error = send_fails(mail, "email")
            took = time.monotonic() - started
        assert server.requests == 1
        assert not error.permanent and "within 1s" in str(error), server_options
        assert took < DEADLINE + 2.5


# ---------------------------------------------------------------- garbage answers


GARBAGE = {
    "not JSON": answer("200 OK", b"{ok: true,,"),
    "an HTML error page": answer("200 OK", b"<html><body>Bad gateway</body></html>"),
    "HTML with 502": answer("502 Bad Gateway", b"<html>bad gateway</html>"),
    "a JSON list": answer("200 OK", b"[1, 2, 3]"),
    "JSON nested deep": answer("200 OK", b"[" * 200_000),
    "ok false, no error": answer("200 OK", b'{"ok": false}'),
    "ok false, hostile code": answer("200 OK", b'{"ok": false, "error": "<!channel>\\nX"}'),
    "a closed connection": b"",
    "cut headers": b"HTTP/1.1 200 OK\r\nContent-Len",
    "cut body": b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"ok"',
    "not HTTP": b"SSH-2.0-OpenSSH_9.6\r\n",
    "a bad status line": b"HTTP/1.1 abc\r\n\r\n",
    "a huge header": b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(GARBAGE))
def test_no_answer_from_slack_or_a_webhook_is_a_traceback(name):
    with hostile_http(raw(GARBAGE[name])) as server:
        api = send_fails(slack(server.url, deadline=DEADLINE))
        try:  # a webhook's 200 is an acceptance, whatever its body says
            webhook(server.webhook_url()).send(message("webhook"), None)
            hook = None
        except NotifyError as exc:
            hook = exc
    whole_200 = GARBAGE[name].startswith(b"HTTP/1.1 200 OK") and name not in (
        "cut body",
        "a huge header",
    )
    assert whole_200 or hook is not None
    for error in (api, hook):
        assert "<!channel>" not in str(error) and "\n" not in str(error)
        assert TOKEN not in str(error) and "XXXXSECRET" not in str(error)
    if name.startswith("ok false"):
        assert api.permanent and api.problem is None  # refused this message, not the channel
    else:
        assert not api.permanent  # an answer that is not Slack's: tried again later


# ---------------------------------------------------------------- in a cycle

RULES = """
sandboxes: [prod]
poll_every: 1m
channels:
  ops: {slack: "#data-ops"}
  mail: {email: [oncall@example.com]}
  hook: {webhook: "WEBHOOK"}
  audit: {file: alerts.jsonl}
defaults:
  channels: [ops, mail, hook, audit]
monitoring:
  channels: [MONITORING]
  after: 15m
rules:
  - {name: run-failed, type: status, status: [failed], severity: critical}
"""


class Cycle:
    """Simulator, a Slack (look-alike or hostile), a webhook, SMTP and a file channel."""

    def __init__(self, tmp_path, sim, slack_url, webhook_url, smtp, clock, monitoring):
        from flowbot.notifiers import build_notifiers
        from flowbot.pipeline import build_deps
        from flowbot.rules import load_rules
        from flowbot.store import Store

        rules = RULES.replace("WEBHOOK", webhook_url).replace("MONITORING", monitoring)
        (tmp_path / "rules.yaml").write_text(rules)
        self.tmp_path, self.sim, self.smtp, self.clock = tmp_path, sim, smtp, clock
        self.settings = sim.settings(
                        slack_bot_token=Secret(TOKEN), slack_api_url=slack_url,
            smtp_host=smtp.host, smtp_port=smtp.port, smtp_starttls=False,
            db=str(tmp_path / "flowbot.db"),
        )  # fmt: skip
        self.ruleset = load_rules(tmp_path / "rules.yaml")
        self.store = Store(self.settings.db)
        self.store.migrate()
        options = {
            "clocks": Clocks(sleep=no_sleep),
            "retry": RetryPolicy(max_attempts=1),
            "limits": Limits(timeout=2.0),
        }
        self.deps = build_deps(
            self.settings, self.ruleset, clock=clock, store=self.store, client_options=options
        )
        notifiers = build_notifiers(self.ruleset.channels, self.settings, sleep=no_sleep, now=clock)
        notifiers["ops"] = SlackNotifier(
            "ops", "#data-ops", self.settings, clock=time.monotonic, sleep=no_sleep,
            deadline=DEADLINE,
        )  # fmt: skip
        self.deps.notifiers = notifiers

    def run(self, retry=False):
        from flowbot.pipeline import run_once

        reports, delivery = run_once(self.deps, retry=retry)
        return reports[0], delivery

    def file_lines(self):
        import json

        path = self.tmp_path / "alerts.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def mails(self):
        return [
            m.get("Subject", "") + m.get_body(("plain",)).get_content() for m in self.smtp.messages
        ]

    def close(self):
        self.deps.client_for("prod").close()
        self.store.close()


@pytest.fixture
def world(tmp_path, smtp, clock):
    from datetime import timedelta

    from flowbot.sim.payloads import make_flow, make_run
    from flowbot.sim.scenario import Scenario
    from flowbot.sim.server import Simulator

    scenario = Scenario(now=clock())
    scenario.put_flow(make_flow("id-crm", name="crm-daily", start_at=clock() - timedelta(days=3)))
    scenario.put_run(
        make_run("id-crm", run_id="run-1", status="failed",
                 started_at=clock() - timedelta(minutes=5),
                 completed_at=clock() - timedelta(minutes=4),
                 errors=[{"code": "CONNECTOR-1001-500", "message": "copy failed"}])
    )  # fmt: skip
    built = []

    def make(slack_url, webhook_url, monitoring="ops, mail"):
        cycle = Cycle(tmp_path, sim, slack_url, webhook_url, smtp, clock, monitoring)
        built.append(cycle)
        return cycle

    with Simulator(scenario, page_size=5) as sim:
        yield make
        for cycle in built:
            cycle.close()


def test_a_trickling_slack_holds_back_no_other_channel(world):
    with (
        hostile_http(trickle(OK, every=2.0)) as bad_slack,
        slack_server() as hooks,
    ):
        cycle = world(bad_slack.url, hooks.webhook_url())
        started = time.monotonic()
        report, delivery = cycle.run()
        took = time.monotonic() - started
    assert report.ok and report.queued == 4
    assert all("crm-daily" in str(record) for record in cycle.file_lines())
    assert len(cycle.file_lines()) == 1 and len(cycle.mails()) == 1
    assert len(hooks.calls_to("webhook")) == 1
    assert delivery.sent == 3 and delivery.deferred == 1 and delivery.pending == 1
    assert took < DEADLINE + 3.0  # Slack's deadline, not its trickle, bounds the cycle


@pytest.mark.parametrize("value", ["inf", "nan", "1e12"])
def test_slack_429_with_a_hostile_retry_after_leaves_the_others_delivering(world, clock, value):
    with slack_server() as slack:
        slack.fail("chat.postMessage", status=429, retry_after=value)
        cycle = world(slack.url, slack.webhook_url())
        report, delivery = cycle.run()
        assert report.ok and delivery.sent == 3 and delivery.pending == 1
        [held] = cycle.store.pending()
        assert held.channel == "ops" and held.held_until is None  # our backoff, not theirs
        clock.advance(minutes=1)  # the first backoff is 30 s
        report, delivery = cycle.run()
        assert delivery.sent == 1 and delivery.pending == 0
        assert len(slack.calls_to("chat.postMessage")) == 2


def test_a_refusing_slack_is_announced_once_on_the_monitoring_channels_then_its_recovery(
    world, clock
):
    with slack_server() as slack:
        slack.fail("chat.postMessage", error="not_in_channel", times=2)
        cycle = world(slack.url, slack.webhook_url())
        report, delivery = cycle.run()
        assert delivery.failed == 1
        [meta] = [m for m in cycle.mails() if "refuses" in m]
        assert "ops" in meta and "not_in_channel" in meta and "invite the bot to #data-ops" in meta
        assert TOKEN not in meta
        assert not any("refuses" in str(r) for r in cycle.file_lines())  # not a monitoring channel

        # The run recovers: its resolution is refused too, the same problem, and not
        # announced again, even after a restart (a new store and deps, same database).
        cycle.close()
        from datetime import timedelta

        from flowbot.sim.payloads import make_run

        cycle.sim.put_run(
            make_run("id-crm", run_id="run-2", started_at=clock(),
                     completed_at=clock() + timedelta(minutes=1))
        )  # fmt: skip
        clock.advance(minutes=5)
        again = world(slack.url, slack.webhook_url())
        report, delivery = again.run()
        assert report.resolved == 1 and delivery.failed == 1
        assert sum("refuses" in m for m in again.mails()) == 1

        # The bot is invited: the next message goes through, and the recovery is told.
        again.store.enqueue([Message("ops", "slack", "meta", {"text": "hello"})], clock())  # type: ignore[arg-type]
        report, delivery = again.run()
        assert delivery.failed == 0 and delivery.by_channel["ops"] == {"sent": 1}
        recovered = [m for m in again.mails() if "channel ops delivers again" in m]
        assert len(recovered) == 1 and "not_in_channel" in recovered[0]
        assert again.store.channel_problem("ops") is None


def test_when_the_only_monitoring_channel_refuses_the_other_channels_are_told(world):
    with slack_server() as slack:
        slack.fail("chat.postMessage", error="invalid_auth")
        cycle = world(slack.url, slack.webhook_url(), monitoring="ops")
        cycle.run()
        told = [m for m in cycle.mails() if "refuses" in m]
        assert len(told) == 1 and "SLACK_BOT_TOKEN" in told[0] and TOKEN not in told[0]
        assert sum("refuses" in str(r) for r in cycle.file_lines()) == 1
        assert sum("refuses" in str(c.body) for c in slack.calls_to("webhook")) == 1


def test_smtp_550_raises_the_meta_alert_on_slack(world):
    with slack_server() as slack:
        cycle = world(slack.url, slack.webhook_url())
        cycle.smtp.fail_next(550)
        report, delivery = cycle.run()
        assert delivery.failed == 1
        told = [
            c.body["text"]
            for c in slack.calls_to("chat.postMessage")
            if "refuses" in c.body["text"]
        ]
        assert len(told) == 1 and "mail" in told[0] and "SMTP 550" in told[0]


def test_an_explicit_run_retries_what_our_backoff_held_but_not_a_retry_after(world, clock):
    with slack_server() as slack:
        slack.fail("chat.postMessage", status=500)
        cycle = world(slack.url, slack.webhook_url())
        report, delivery = cycle.run()
        assert delivery.pending == 1
        # The daemon honours the backoff: nothing is tried before it ends.
        report, delivery = cycle.run()
        assert delivery.pending == 1 and len(slack.calls_to("chat.postMessage")) == 1
        # An explicit run does not wait for it.
        report, delivery = cycle.run(retry=True)
        assert delivery.sent == 1 and delivery.pending == 0

        cycle.store.enqueue([Message("ops", "slack", "meta", {"text": "held"})], clock())  # type: ignore[arg-type]
        slack.fail("chat.postMessage", status=429, retry_after=600)
        cycle.run(retry=True)
        cycle.run(retry=True)  # Slack asked for 10 minutes: an explicit run waits too
        assert len(cycle.store.pending()) == 1
        clock.advance(minutes=11)
        report, delivery = cycle.run(retry=True)
        assert delivery.pending == 0


def test_check_once_after_a_slack_outage_sends_the_held_message_at_once(tmp_path):
    from datetime import timedelta

    from click.testing import CliRunner

    from flowbot.cli import cli
    from flowbot.sim.payloads import make_flow, make_run
    from flowbot.sim.scenario import Scenario
    from flowbot.sim.server import Simulator

    now = datetime.now(UTC)
    scenario = Scenario(now=now)
    scenario.put_flow(make_flow("f-crm", name="crm-daily"))
    scenario.put_run(
        make_run("f-crm", status="failed", started_at=now - timedelta(minutes=20),
                 completed_at=now - timedelta(minutes=15))
    )  # fmt: skip
    (tmp_path / "rules.yaml").write_text(
        "sandboxes: [prod]\nchannels:\n  ops: {slack: '#data-ops'}\n"
        "defaults:\n  channels: [ops]\n"
        "rules:\n  - {name: run-failed, type: status, status: [failed]}\n"
    )
    with Simulator(scenario, port=0) as sim, slack_server() as slack:
        env = {
            **sim.environment(),
            "FLOWBOT_RULES": str(tmp_path / "rules.yaml"),
            "FLOWBOT_DB": str(tmp_path / "flowbot.db"),
            "SLACK_BOT_TOKEN": TOKEN,
            "FLOWBOT_SLACK_API_URL": slack.url,
        }
        slack.fail("chat.postMessage", status=503)
        down = CliRunner().invoke(cli, ["check", "--once"], env=env)
        assert down.exit_code == 1 and "0 sent, 0 failed, 1 pending" in down.output
        back = CliRunner().invoke(cli, ["check", "--once"], env=env)
        assert back.exit_code == 0, back.output
        assert "1 sent, 0 failed, 0 pending" in back.output
        assert len(slack.calls_to("chat.postMessage")) == 2
        assert "Traceback" not in down.output + back.output
