"""Channels that misbehave (issue 10): Slack, webhooks and SMTP servers on loopback that
trickle, stall, answer garbage or refuse. Every answer becomes a NotifyError within the
exchange's deadline, and one channel's trouble never holds back the others."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from hostile_channels import answer, hostile_http, hostile_smtp, huge, raw, silence, trickle
from servers import slack_server

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
    return SlackNotifier(
        "ops", "#data-ops", settings, clock=time.monotonic, sleep=no_sleep, **kw
    )


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
    ["inf", "nan", "1e12", "-5", "1.5", "soon", "", " ", "0x10", "Infinity", "+30", None],
)
def test_an_unusable_retry_after_is_none(value):
    assert parse_retry_after(value, NOW, maximum=900) is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30", 30.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("901", 900.0),
        ("9" * 40, 900.0),
        ("Mon, 30 Nov 2026 12:01:00 GMT", 60.0),
        ("Mon, 30 Nov 2026 11:00:00 GMT", 0.0),
        ("Tue, 30 Nov 2027 12:00:00 GMT", 900.0),
    ],
)
def test_a_usable_retry_after_is_clamped(value, seconds):
    assert parse_retry_after(value, NOW, maximum=900) == seconds


def test_an_http_date_needs_a_clock():
    assert parse_retry_after("Mon, 30 Nov 2026 12:01:00 GMT", maximum=900) is None


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
    assert took < DEADLINE + 1.0


def test_a_webhook_that_never_answers_is_cut_at_the_deadline():
    with hostile_http(silence()) as server:
        started = time.monotonic()
        error = send_fails(webhook(server.webhook_url()), "webhook")
        took = time.monotonic() - started
    assert not error.permanent and took < DEADLINE + 1.0


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
        assert took < DEADLINE + 1.0


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
    "cut body": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"ok\"",
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
