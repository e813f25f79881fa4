"""Slack notifier against a local Web API look-alike (tests/servers.py)."""

from __future__ import annotations

import http.client
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from conftest import Ticks
from servers import slack_server

from flowbot.errors import NotifyError
from flowbot.models import Message, RunError
from flowbot.notifiers.exchange import proxy_for
from flowbot.notifiers.sample import sample_notices
from flowbot.notifiers.slack import SlackNotifier, WebhookNotifier
from flowbot.render import render
from flowbot.settings import Secret, Settings

TOKEN = "xoxb-123456-SECRET-token"


@pytest.fixture
def slack():
    with slack_server() as server:
        yield server


def notifier(slack, clock=None, token=TOKEN, channel="#data-ops"):
    clock = clock or Ticks(1000.0)
    settings = Settings(slack_bot_token=Secret(token), slack_api_url=slack.url)
    return SlackNotifier("data-ops", channel, settings, clock=clock, sleep=clock.sleep)


def message(event="firing", kind="slack", notices=None):
    body = render(notices or sample_notices(event), event, kind)
    return Message(channel="data-ops", kind=kind, event=event, body=body)


def test_first_message_is_posted_with_blocks_and_returns_its_reference(slack):
    ref = notifier(slack).send(message(), None)
    [call] = slack.calls
    assert call.method == "chat.postMessage"
    assert call.headers["Authorization"] == f"Bearer {TOKEN}"
    assert call.body["channel"] == "#data-ops"
    assert "thread_ts" not in call.body
    assert call.body["blocks"][0]["type"] == "header"
    assert "crm-daily-import" in call.body["text"]
    assert ref == {"channel": "C00000001", "ts": "1700000000.000001"}


def test_repeat_goes_into_the_thread_of_the_first_message(slack):
    send = notifier(slack)
    ref = send.send(message(), None)
    reply = send.send(message("repeat"), ref)
    second = slack.calls[1]
    assert second.body["thread_ts"] == ref["ts"]
    assert second.body["channel"] == ref["channel"]
    assert reply["ts"] != ref["ts"]


def test_resolution_updates_the_first_message_and_posts_in_the_thread(slack):
    send = notifier(slack)
    ref = send.send(message(), None)
    send.send(message("resolved"), ref)
    methods = [c.method for c in slack.calls]
    assert methods == ["chat.postMessage", "chat.update", "chat.postMessage"]
    update = slack.calls_to("chat.update")[0].body
    assert update["ts"] == ref["ts"] and update["channel"] == ref["channel"]
    assert "RESOLVED" in update["blocks"][0]["text"]["text"]
    assert slack.calls[2].body["thread_ts"] == ref["ts"]
    assert "resolved" in slack.calls[2].body["text"]


def test_resolution_without_a_thread_posts_a_new_message_only(slack):
    notifier(slack).send(message("resolved"), None)
    assert [c.method for c in slack.calls] == ["chat.postMessage"]


def test_a_first_message_that_cannot_be_updated_still_gets_the_resolution(slack):
    send = notifier(slack)
    ref = send.send(message(), None)
    slack.fail("chat.update", error="message_not_found")
    send.send(message("resolved"), ref)
    assert [c.method for c in slack.calls][-1] == "chat.postMessage"


def test_untrusted_text_arrives_escaped(slack):
    [notice] = sample_notices()
    evil = RunError("EVIL-1", "boom <!channel> & <https://evil.example|click>")
    run = replace(notice.finding.run, errors=(evil,), activities=())
    flow = replace(notice.flow, name="crm <!here>")
    notice = replace(notice, flow=flow, finding=replace(notice.finding, run=run, flow=flow))
    notifier(slack).send(message(notices=[notice]), None)
    sent = str(slack.calls[0].body)
    assert "<!channel>" not in sent and "<!here>" not in sent
    assert "<https://evil.example" not in sent
    assert "boom &lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;" in sent
    assert "crm &lt;!here&gt;" in sent


def test_messages_on_one_channel_are_paced_about_a_second_apart(slack):
    clock = Ticks(1000.0)
    send = notifier(slack, clock)
    send.send(message(), None)
    clock.now += 0.25
    send.send(message(), None)
    assert clock.slept == [pytest.approx(0.75)]
    assert len(slack.calls) == 2


def test_429_is_transient_with_retry_after_and_never_sleeps_it_out(slack):
    clock = Ticks(1000.0)
    slack.fail("chat.postMessage", status=429, retry_after=30)
    with pytest.raises(NotifyError) as caught:
        notifier(slack, clock).send(message(), None)
    assert not caught.value.permanent
    assert caught.value.retry_after == 30
    assert sum(clock.slept) < 2


def test_server_errors_are_transient(slack):
    slack.fail("chat.postMessage", status=500)
    with pytest.raises(NotifyError) as caught:
        notifier(slack).send(message(), None)
    assert not caught.value.permanent
    assert len(slack.calls) == 1  # slack-sdk's own retries are off


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        ("invalid_auth", "token is not valid"),
        ("channel_not_found", "no such channel"),
        ("not_in_channel", "invite"),
        ("msg_too_long", "msg_too_long"),
    ],
)
def test_refusals_are_permanent_with_a_clear_message_without_the_token(slack, error, hint):
    slack.fail("chat.postMessage", error=error)
    with pytest.raises(NotifyError) as caught:
        notifier(slack).send(message(), None)
    assert caught.value.permanent
    text = str(caught.value)
    assert error in text and hint in text and "data-ops" in text
    assert TOKEN not in text and "SECRET" not in text


def test_connection_refused_is_transient():
    with slack_server() as gone:
        url = gone.url
    clock = Ticks(1000.0)
    settings = Settings(slack_bot_token=Secret(TOKEN), slack_api_url=url)
    send = SlackNotifier("data-ops", "#x", settings, clock=clock, sleep=clock.sleep)
    with pytest.raises(NotifyError) as caught:
        send.send(message(), None)
    assert not caught.value.permanent
    assert TOKEN not in str(caught.value)


def test_missing_bot_token_is_permanent(slack):
    with pytest.raises(NotifyError, match="SLACK_BOT_TOKEN is not set") as caught:
        notifier(slack, token="").send(message(), None)
    assert caught.value.permanent
    assert slack.calls == []


def test_webhook_posts_blocks_and_has_no_threads(slack):
    clock = Ticks(1000.0)
    hook = WebhookNotifier("hook", slack.webhook_url(), clock=clock, sleep=clock.sleep)
    assert hook.send(message(kind="webhook"), None) is None
    assert hook.send(message("resolved", kind="webhook"), {"ts": "1"}) is None
    calls = slack.calls_to("webhook")
    assert len(calls) == 2
    assert calls[0].body["blocks"][0]["type"] == "header"
    assert "thread_ts" not in calls[1].body


@pytest.mark.parametrize(("status", "permanent"), [(404, True), (500, False)])
def test_webhook_errors_are_classified_and_hide_the_url(slack, status, permanent):
    clock = Ticks(1000.0)
    hook = WebhookNotifier("hook", slack.webhook_url(), clock=clock, sleep=clock.sleep)
    slack.fail("webhook", status=status, error="no_service")
    with pytest.raises(NotifyError) as caught:
        hook.send(message(kind="webhook"), None)
    assert caught.value.permanent is permanent
    assert "XXXXSECRET" not in str(caught.value)


def test_webhook_429_is_transient_with_retry_after(slack):
    clock = Ticks(1000.0)
    hook = WebhookNotifier("hook", slack.webhook_url(), clock=clock, sleep=clock.sleep)
    slack.fail("webhook", status=429, retry_after=12)
    with pytest.raises(NotifyError) as caught:
        hook.send(message(kind="webhook"), None)
    assert not caught.value.permanent and caught.value.retry_after == 12


class _Proxy(BaseHTTPRequestHandler):
    """A plain-HTTP forward proxy on loopback: records the absolute URL it was asked
    for and forwards the request to it."""

    disable_nagle_algorithm = True
    seen: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        _Proxy.seen.append(self.path)
        target = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=5)
        conn.request("POST", target.path, body=body, headers=dict(self.headers))
        answer = conn.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.getheader("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    def log_message(self, *args: object) -> None:
        pass


def test_slack_and_webhooks_go_through_the_environments_proxy(slack, monkeypatch):
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    _Proxy.seen.clear()
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        clock = Ticks(1000.0)
        hook = WebhookNotifier("hook", slack.webhook_url(), clock=clock, sleep=clock.sleep)
        assert hook.send(message(kind="webhook"), None) is None
        assert _Proxy.seen == [slack.webhook_url()]
        assert len(slack.calls_to("webhook")) == 1
        # NO_PROXY names the host: straight to it
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        hook.send(message(kind="webhook"), None)
        assert len(_Proxy.seen) == 1 and len(slack.calls_to("webhook")) == 2
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_only_http_proxies_are_used_and_no_proxy_is_honoured(monkeypatch):
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert proxy_for("https://slack.com/api/chat.postMessage") is None
    monkeypatch.setenv("HTTPS_PROXY", "proxy.corp:3128")
    found = proxy_for("https://slack.com/api/chat.postMessage")
    assert found is not None and (found.hostname, found.port) == ("proxy.corp", 3128)
    monkeypatch.setenv("HTTPS_PROXY", "socks5://proxy.corp:1080")
    assert proxy_for("https://slack.com/api/chat.postMessage") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", ".slack.com")
    assert proxy_for("https://hooks.slack.com/services/x") is None
