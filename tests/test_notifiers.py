"""The notifier registry, the file and terminal channels, and the contract every
notifier keeps: permanent vs transient errors, no secret in any error, and one
failing channel never stopping another."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from servers import free_port, slack_server, smtp_server

from flowbot.errors import NotifyError
from flowbot.models import Message
from flowbot.notifiers import build_notifiers
from flowbot.notifiers.email import EmailNotifier
from flowbot.notifiers.file import FileNotifier
from flowbot.notifiers.sample import sample_notices
from flowbot.notifiers.slack import SlackNotifier, WebhookNotifier
from flowbot.notifiers.terminal import TerminalNotifier
from flowbot.render import render
from flowbot.settings import Secret, Settings

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TOKEN = "xoxb-999-SECRET"
PASSWORD = "smtp-SECRET-pw"


@dataclass(frozen=True)
class Channel:
    name: str
    kind: str
    target: object


def message(kind: str, event: str = "firing", channel: str = "x") -> Message:
    return Message(channel, kind, event, render(sample_notices(event), event, kind))


def no_sleep(seconds: float) -> None:
    raise AssertionError("first messages need no pacing")


def test_build_notifiers_makes_one_notifier_per_channel_by_kind(tmp_path):
    channels = {
        "data-ops": Channel("data-ops", "slack", "#data-ops"),
        "hook": Channel("hook", "webhook", "https://hooks.example/services/T/B/X"),
        "oncall": Channel("oncall", "email", ("a@example.com",)),
        "audit": Channel("audit", "file", str(tmp_path / "a.jsonl")),
        "screen": Channel("screen", "terminal", ""),
    }
    built = build_notifiers(channels, Settings())
    assert [type(n) for n in built.values()] == [
        SlackNotifier,
        WebhookNotifier,
        EmailNotifier,
        FileNotifier,
        TerminalNotifier,
    ]
    assert built["oncall"].recipients == ("a@example.com",)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="channel 'x': unknown channel kind 'pager'"):
        build_notifiers({"x": Channel("x", "pager", "")}, Settings())


def test_file_channel_appends_one_json_object_per_message(tmp_path):
    path = tmp_path / "deep" / "dir" / "alerts.jsonl"
    send = FileNotifier("audit", path, now=lambda: NOW)
    assert send.send(message("file"), None) is None
    send.send(message("file", "resolved"), {"ts": "1"})
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert first["channel"] == "audit" and first["event"] == "firing"
    assert first["sent_at"] == "2024-05-01T12:00:00+00:00"
    assert first["flow"]["id"] == "c9cef9cb-c934-4467-8ef9-cbc934546741"
    assert first["run"]["failed_records"] == 1
    assert [e["code"] for e in first["errors"]][-1] == "MAPPER-3700-400"
    assert {link["name"] for link in first["links"]} == {
        "failedRecords",
        "sampleErrors",
        "fileInfo",
    }
    assert second["event"] == "resolved" and second["resolved_by"]["failed_records"] == 0


def test_file_channel_that_cannot_write_raises_notify_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    send = FileNotifier("audit", blocker / "alerts.jsonl", now=lambda: NOW)
    with pytest.raises(NotifyError, match="audit"):
        send.send(message("file"), None)


def test_terminal_channel_prints_the_text():
    out = io.StringIO()
    TerminalNotifier("screen", out).send(message("terminal"), None)
    assert out.getvalue().startswith("== FIRING [CRITICAL] too-many-bad-records")


def test_one_failing_channel_does_not_stop_another(tmp_path):
    """Sends each message to every channel the way the pipeline does: a failure is
    caught per channel, and the channels after it still get their message."""
    with slack_server() as slack, smtp_server() as smtp:
        slack.fail("chat.postMessage", error="channel_not_found")
        settings = Settings(
            slack_bot_token=Secret(TOKEN),
            slack_api_url=slack.url,
            smtp_host=smtp.host,
            smtp_port=smtp.port,
            smtp_starttls=False,
        )
        channels = {
            "data-ops": Channel("data-ops", "slack", "#gone"),
            "oncall": Channel("oncall", "email", ("a@example.com",)),
            "audit": Channel("audit", "file", str(tmp_path / "a.jsonl")),
        }
        notifiers = build_notifiers(channels, settings, sleep=no_sleep, now=lambda: NOW)
        outcomes = {}
        for name, channel in channels.items():
            try:
                outcomes[name] = notifiers[name].send(message(channel.kind, channel=name), None)
            except NotifyError as exc:
                outcomes[name] = exc
        assert isinstance(outcomes["data-ops"], NotifyError) and outcomes["data-ops"].permanent
        assert outcomes["oncall"]["message_id"]
        assert len(smtp.messages) == 1
        assert (tmp_path / "a.jsonl").read_text().count("\n") == 1


@pytest.mark.parametrize("kind", ["slack", "webhook", "email"])
@pytest.mark.parametrize(("failure", "permanent"), [("refused", True), ("outage", False)])
def test_contract_errors_are_classified_and_never_leak_secrets(kind, failure, permanent):
    with slack_server() as slack, smtp_server() as smtp:
        settings = Settings(
            slack_bot_token=Secret(TOKEN),
            slack_api_url=slack.url,
            smtp_host=smtp.host,
            smtp_port=smtp.port,
            smtp_starttls=False,
            smtp_password=Secret(PASSWORD),  # no user: no login, the server has no AUTH
        )
        target = {
            "slack": "#data-ops",
            "webhook": slack.webhook_url(),
            "email": ("a@example.com",),
        }[kind]
        if kind == "email":
            if failure == "refused":
                smtp.fail_next(550)
            else:
                settings = Settings(smtp_host="127.0.0.1", smtp_port=free_port())
        elif failure == "refused":
            slack.fail(None, status=404 if kind == "webhook" else 200, error="invalid_auth")
        else:
            slack.fail(None, status=503)
        [notifier] = build_notifiers(
            {"c": Channel("c", kind, target)}, settings, now=lambda: NOW
        ).values()
        with pytest.raises(NotifyError) as caught:
            notifier.send(message("email" if kind == "email" else "slack"), None)
        assert caught.value.permanent is permanent
        if kind == "email" and failure == "refused":
            assert "550" in str(caught.value)
        for secret in (TOKEN, PASSWORD, "XXXXSECRET"):
            assert secret not in str(caught.value)


RULES = """\
sandboxes: [prod]
channels:
  audit:
    file: out/alerts.jsonl
  data-ops:
    slack: "#data-ops"
rules:
  - name: run-failed
    type: status
    status: [failed]
    severity: critical
    owner: "<!subteam^S1|ops>"
    channels: [audit, data-ops]
"""


def cli_env(tmp_path, **extra):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    return {"FLOWBOT_RULES": str(rules), "FLOWBOT_DB": str(tmp_path / "f.db"), **extra}


def test_notify_test_sends_a_sample_to_a_named_channel(tmp_path):
    from click.testing import CliRunner

    from flowbot.cli import cli

    with slack_server() as slack:
        env = cli_env(tmp_path, SLACK_BOT_TOKEN=TOKEN, FLOWBOT_SLACK_API_URL=slack.url)
        result = CliRunner().invoke(cli, ["notify", "test", "data-ops"], env=env)
        assert result.exit_code == 0, result.output
        assert "sent a sample firing alert to data-ops (slack)" in result.output
        [call] = slack.calls
        assert call.body["channel"] == "#data-ops"
        header = call.body["blocks"][0]["text"]["text"]
        assert header.startswith(":test_tube: TEST — flowbot notify test:"), header
        assert "CRITICAL" not in call.body["text"] and "no dataflow is affected" in str(call.body)
        result = CliRunner().invoke(cli, ["notify", "test", "audit"], env=env)
        assert result.exit_code == 0, result.output
        [line] = (tmp_path / "out" / "alerts.jsonl").read_text().splitlines()
        assert json.loads(line)["test"] is True


def test_notify_test_exits_1_when_the_channel_refuses_and_2_for_unknown_channels(tmp_path):
    from click.testing import CliRunner

    from flowbot.cli import cli

    with slack_server() as slack:
        slack.fail("chat.postMessage", error="not_in_channel")
        env = cli_env(tmp_path, SLACK_BOT_TOKEN=TOKEN, FLOWBOT_SLACK_API_URL=slack.url)
        result = CliRunner().invoke(cli, ["notify", "test", "data-ops"], env=env)
        assert result.exit_code == 1
        assert "not_in_channel" in result.output and TOKEN not in result.output
        result = CliRunner().invoke(cli, ["notify", "test", "nope"], env=env)
        assert result.exit_code == 2 and "audit, data-ops" in result.output


def test_notify_preview_prints_each_kind_of_the_rules_channels_without_sending(tmp_path):
    from click.testing import CliRunner

    from flowbot.cli import cli

    result = CliRunner().invoke(cli, ["notify", "preview", "run-failed"], env=cli_env(tmp_path))
    assert result.exit_code == 0, result.output
    assert "==== file · firing · run-failed" in result.output
    assert "==== slack · firing · run-failed" in result.output
    assert "<!subteam^S1|ops>" in result.output  # the owner mention is trusted
    assert not (tmp_path / "out").exists()
    result = CliRunner().invoke(cli, ["notify", "preview", "nope"], env=cli_env(tmp_path))
    assert result.exit_code == 2 and "run-failed" in result.output
