"""Slack: the Web API with a bot token, and incoming webhooks.

Bot channels post with `chat.postMessage` (Block Kit plus a plain fallback); a message
with a thread goes into the first message's thread, and a resolution also rewrites the
first message with `chat.update`. Webhooks post a new message each time.

Every call is one bounded exchange (notifiers/exchange.py): at most `deadline` seconds
(20) from connect to the last byte, at most `max_bytes` (1 MiB) of answer. Each channel
is paced to about one message a second; a 429 becomes a transient NotifyError carrying
`retry_after` from a strictly parsed Retry-After, at most 15 minutes (an unusable one
leaves the outbox's own backoff). Nothing is retried here: the outbox decides when to
try again. Any answer (HTML, garbage, a 200 with ok:false, a cut connection) becomes a
NotifyError; errors name the channel and Slack's error code, never the token or the
webhook URL. A refusal that only the operator can fix (a bad token, a channel the bot
cannot post to) carries `problem`, which the outbox turns into a meta-alert.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flowbot.errors import NotifyError
from flowbot.models import Message
from flowbot.notifiers.exchange import DEADLINE, MAX_ANSWER, Answer, post
from flowbot.retry_after import parse_retry_after
from flowbot.settings import Settings

if TYPE_CHECKING:
    from flowbot.notifiers import ChannelLike, NotifierDeps

log = logging.getLogger("flowbot.notify.slack")

PACE = 1.0  # seconds between two calls on one channel
MAX_RETRY_AFTER = 900.0  # seconds: a longer Retry-After is cut to this
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
HINTS = {
    "invalid_auth": "the bot token is not valid: set SLACK_BOT_TOKEN to the bot user's OAuth token",
    "not_authed": "no bot token was sent: set SLACK_BOT_TOKEN",
    "token_revoked": "the bot token was revoked: install the app again and set SLACK_BOT_TOKEN",
    "account_inactive": "the bot token belongs to a deactivated user or app",
    "channel_not_found": "no such channel, or the bot cannot see it: check the channel "
    "name in rules.yaml, and invite the bot if the channel is private",
    "not_in_channel": "the bot is not a member of the channel: invite the bot to {channel}",
    "is_archived": "the channel is archived: unarchive it or change rules.yaml",
    "missing_scope": "the bot token lacks the chat:write scope: add it and reinstall the app",
}
# Refusals of the channel itself (not of one message): the operator must act.
REFUSALS = frozenset(HINTS)
WEBHOOK_REFUSALS = {
    403: "the webhook was refused (revoked or not allowed): create a new one",
    404: "the webhook does not exist: create a new one and update rules.yaml",
    410: "the webhook's channel is gone: create a new webhook",
}
_CODE = re.compile(r"[A-Za-z0-9_.-]{1,60}")


class Pacer:
    """At most one call per `interval` seconds, waiting with the injected `sleep`."""

    def __init__(
        self, clock: Callable[[], float], sleep: Callable[[float], None], interval: float = PACE
    ) -> None:
        self.clock = clock
        self.sleep = sleep
        self.interval = interval
        self.last: float | None = None

    def wait(self) -> None:
        if self.last is not None:
            left = self.interval - (self.clock() - self.last)
            if left > 0:
                self.sleep(left)
        self.last = self.clock()


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The answer's Retry-After in seconds, None when missing or unusable."""
    value = headers.get("retry-after")
    return parse_retry_after(value, now=datetime.now(UTC), cap=MAX_RETRY_AFTER)


def error_code(raw: Any) -> str:
    """An error code from an answer, or "unreadable_answer": untrusted text never goes
    further than a short token of letters, digits and `_.-`."""
    text = str(raw).strip() if raw is not None else ""
    return text if _CODE.fullmatch(text) else "unreadable_answer"


def _ref(raw: Any) -> str:
    """A channel id or ts from an answer, "" when it is not one."""
    text = str(raw) if isinstance(raw, str | int | float) else ""
    return text if _CODE.fullmatch(text) else ""


def rate_limited(what: str, answer: Answer) -> NotifyError:
    retry = retry_after(answer.headers)
    when = f"retry after {retry:g}s" if retry is not None else "retrying with backoff"
    return NotifyError(f"{what} rate limited, {when}", retry_after=retry)


def api_answer(channel: str, target: str, method: str, answer: Answer) -> dict[str, Any]:
    """The JSON of a Web API answer with ok:true, or a NotifyError: 429 and 5xx, Slack's
    own outages and unreadable answers transient, every other refusal permanent."""
    what = f"slack channel {channel}: {method}"
    if answer.status == 429:
        raise rate_limited(what, answer)
    try:
        data = json.loads(answer.body) if answer.body else None
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise NotifyError(f"{what} failed: HTTP {answer.status}, an answer that is not Slack's")
    if answer.status == 200 and data.get("ok") is True:
        return data
    code = error_code(data.get("error")) if data.get("error") else f"HTTP {answer.status}"
    if code == "ratelimited":
        raise rate_limited(what, answer)
    hint = HINTS.get(code, "").format(channel=target)
    text = f"{what} failed: {code}" + (f" ({hint})" if hint else "")
    if answer.status >= 500 or code in TRANSIENT_ERRORS:
        raise NotifyError(text)
    raise NotifyError(text, permanent=True, problem=code if code in REFUSALS else None)


def client_error(what: str, exc: Exception) -> NotifyError:
    """Connection errors, cut answers and deadlines: transient, named by type only (the
    text of some of them quotes the URL)."""
    return NotifyError(f"{what} failed: {type(exc).__name__}")


class SlackNotifier:
    """A bot channel (`slack: "#data-ops"`) through the Web API."""

    def __init__(
        self,
        name: str,
        channel: str,
        settings: Settings,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        deadline: float = DEADLINE,
        max_bytes: int = MAX_ANSWER,
    ) -> None:
        self.name = name
        self.channel = channel
        self.pacer = Pacer(clock, sleep)
        self.token = settings.slack_bot_token.get()
        self.base_url = settings.slack_api_url.rstrip("/") + "/"
        self.deadline = deadline
        self.max_bytes = max_bytes

    def send(self, message: Message, thread: Mapping[str, str] | None) -> dict[str, str]:
        """Post the message (into `thread` when given; a resolution with a thread also
        updates the thread's first message). Returns {"channel": id, "ts": ts}."""
        body = message.body
        if thread and message.event == "resolved" and body.get("update"):
            self._update(thread, body["update"])
        kwargs: dict[str, Any] = {
            "channel": thread["channel"] if thread else self.channel,
            "text": body.get("text", ""),
            "unfurl_links": False,
            "unfurl_media": False,
        }
        if body.get("blocks"):
            kwargs["blocks"] = body["blocks"]
        if thread:
            kwargs["thread_ts"] = thread["ts"]
        data = self._call("chat.postMessage", kwargs)
        return {
            "channel": _ref(data.get("channel")) or str(kwargs["channel"]),
            "ts": _ref(data.get("ts")),
        }

    def _update(self, thread: Mapping[str, str], update: Mapping[str, Any]) -> None:
        """Rewrite the first message. Done before the reply so that a retry after a
        failed reply repeats only this idempotent call."""
        kwargs: dict[str, Any] = {
            "channel": thread["channel"],
            "ts": thread["ts"],
            "text": update.get("text", ""),
        }
        if update.get("blocks"):
            kwargs["blocks"] = update["blocks"]
        try:
            self._call("chat.update", kwargs)
        except NotifyError as exc:
            if not exc.permanent:
                raise
            log.warning("%s; the resolution is posted in the thread anyway", exc)

    def _call(self, method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        if not self.token:
            raise NotifyError(
                f"slack channel {self.name}: SLACK_BOT_TOKEN is not set",
                permanent=True,
                problem="no_token",
            )
        self.pacer.wait()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Authorization": f"Bearer {self.token}",
        }
        body = json.dumps(kwargs, ensure_ascii=False).encode("utf-8")
        try:
            answer = post(
                self.base_url + method,
                body,
                headers,
                deadline=self.deadline,
                max_bytes=self.max_bytes,
            )
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise client_error(f"slack channel {self.name}: {method}", exc) from None
        return api_answer(self.name, self.channel, method, answer)


class WebhookNotifier:
    """An incoming webhook (`webhook: https://hooks.slack.com/services/…`): no threads.
    The URL is a secret: it never appears in errors."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        deadline: float = DEADLINE,
        max_bytes: int = MAX_ANSWER,
    ) -> None:
        self.name = name
        self.url = url
        self.pacer = Pacer(clock, sleep)
        self.deadline = deadline
        self.max_bytes = max_bytes

    def send(self, message: Message, thread: Mapping[str, str] | None) -> None:
        """POST {"text", "blocks"}; returns None (webhooks have no threads)."""
        what = f"slack webhook {self.name}"
        payload: dict[str, Any] = {"text": message.body.get("text", "")}
        if message.body.get("blocks"):
            payload["blocks"] = message.body["blocks"]
        self.pacer.wait()
        try:
            answer = post(
                self.url,
                json.dumps(payload, ensure_ascii=False).encode("utf-8"),
                {"Content-Type": "application/json; charset=utf-8"},
                deadline=self.deadline,
                max_bytes=self.max_bytes,
            )
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise client_error(what, exc) from None
        status = answer.status
        if status == 200:
            return None
        if status == 429:
            raise rate_limited(what, answer)
        code = error_code(answer.body.decode("utf-8", "replace")[:80])
        if code == "unreadable_answer":
            code = f"HTTP {status}"
        else:
            code = f"HTTP {status} {code}"
        hint = WEBHOOK_REFUSALS.get(status)
        text = f"{what}: failed: {code}" + (f" ({hint})" if hint else "")
        if status >= 500 or status < 400:
            raise NotifyError(text)
        raise NotifyError(text, permanent=True, problem=f"HTTP {status}" if hint else None)


def slack_from_channel(channel: ChannelLike, deps: NotifierDeps) -> SlackNotifier:
    """The notifier of a `slack:` channel (flowbot.channels)."""
    return SlackNotifier(
        channel.name, str(channel.target), deps.settings, clock=deps.clock, sleep=deps.sleep
    )


def webhook_from_channel(channel: ChannelLike, deps: NotifierDeps) -> WebhookNotifier:
    """The notifier of a `webhook:` channel (flowbot.channels)."""
    return WebhookNotifier(channel.name, str(channel.target), clock=deps.clock, sleep=deps.sleep)
