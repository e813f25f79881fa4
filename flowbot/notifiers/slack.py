"""Slack: the Web API with a bot token, and incoming webhooks. The only slack_sdk importer.

Bot channels post with `chat.postMessage` (Block Kit plus a plain fallback); a message
with a thread goes into the first message's thread, and a resolution also rewrites the
first message with `chat.update`. Webhooks post a new message each time.

Each channel is paced to about one message a second; a 429 becomes a transient
NotifyError carrying `retry_after` (never a sleep of minutes here). slack_sdk's own
retry handlers are off: the outbox decides when to try again. Errors name the channel
and Slack's error code, never the token or the webhook URL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web import WebClient
from slack_sdk.webhook import WebhookClient

from flowbot.errors import NotifyError
from flowbot.models import Message
from flowbot.settings import Settings

log = logging.getLogger("flowbot.notify.slack")

TIMEOUT = 10  # seconds, every call
PACE = 1.0  # seconds between two calls on one channel
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
# chat.update failures that leave the first message as it was, but must not stop the
# resolution from being posted.
UPDATE_GIVE_UP = frozenset(
    {"message_not_found", "cant_update_message", "edit_window_closed", "msg_too_long"}
)
HINTS = {
    "invalid_auth": "the bot token is not valid (SLACK_BOT_TOKEN)",
    "not_authed": "no bot token was sent (SLACK_BOT_TOKEN)",
    "token_revoked": "the bot token was revoked (SLACK_BOT_TOKEN)",
    "account_inactive": "the bot token belongs to a deactivated user or app",
    "channel_not_found": "no such channel, or the bot cannot see it",
    "not_in_channel": "the bot is not a member of the channel: invite it",
    "is_archived": "the channel is archived",
    "missing_scope": "the bot token lacks the chat:write scope",
}


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


def _retry_after(headers: Mapping[str, Any] | None) -> float | None:
    for key, value in (headers or {}).items():
        if key.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) else value
            try:
                return max(float(raw), 0.0)
            except (TypeError, ValueError):
                return None
    return None


def api_error(channel: str, method: str, exc: SlackApiError) -> NotifyError:
    """A SlackApiError as a NotifyError: 429 and 5xx and Slack's own outages
    transient, every other refusal permanent."""
    status = getattr(exc.response, "status_code", 200)
    data = exc.response.data if isinstance(exc.response.data, dict) else {}
    code = str(data.get("error") or f"HTTP {status}")
    if status == 429 or code == "ratelimited":
        retry = _retry_after(exc.response.headers) or 1.0
        return NotifyError(
            f"slack channel {channel}: {method} rate limited, retry after {retry:g}s",
            retry_after=retry,
        )
    hint = HINTS.get(code)
    text = f"slack channel {channel}: {method} failed: {code}" + (f" ({hint})" if hint else "")
    transient = status >= 500 or code in TRANSIENT_ERRORS or code.startswith("Received a response")
    return NotifyError(text, permanent=not transient)


def client_error(channel: str, method: str, exc: Exception) -> NotifyError:
    """Connection errors and timeouts: transient, named by type only (the text of some
    of them quotes the URL)."""
    return NotifyError(f"slack channel {channel}: {method} failed: {type(exc).__name__}")


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
    ) -> None:
        self.name = name
        self.channel = channel
        self.pacer = Pacer(clock, sleep)
        token = settings.slack_bot_token.get()
        self.client = (
            WebClient(
                token=token, base_url=settings.slack_api_url, timeout=TIMEOUT, retry_handlers=[]
            )
            if token
            else None
        )

    def send(self, message: Message, thread: Mapping[str, str] | None) -> dict[str, str]:
        """Post the message (into `thread` when given; a resolution with a thread also
        updates the thread's first message). Returns {"channel": id, "ts": ts}."""
        body = message.body
        if thread and message.event == "resolved" and body.get("update"):
            self._update(thread, body["update"])
        kwargs: dict[str, Any] = {
            "channel": thread["channel"] if thread else self.channel,
            "text": body.get("text", ""),
            "blocks": body.get("blocks") or None,
            "unfurl_links": False,
            "unfurl_media": False,
        }
        if thread:
            kwargs["thread_ts"] = thread["ts"]
        data = self._call("chat.postMessage", kwargs)
        return {
            "channel": str(data.get("channel", kwargs["channel"])),
            "ts": str(data.get("ts", "")),
        }

    def _update(self, thread: Mapping[str, str], update: Mapping[str, Any]) -> None:
        """Rewrite the first message. Done before the reply so that a retry after a
        failed reply repeats only this idempotent call."""
        try:
            self._call(
                "chat.update",
                {
                    "channel": thread["channel"],
                    "ts": thread["ts"],
                    "text": update.get("text", ""),
                    "blocks": update.get("blocks") or None,
                },
            )
        except NotifyError as exc:
            if not exc.permanent:
                raise
            log.warning("%s; the resolution is posted in the thread anyway", exc)

    def _call(self, method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.client is None:
            raise NotifyError(
                f"slack channel {self.name}: SLACK_BOT_TOKEN is not set", permanent=True
            )
        self.pacer.wait()
        try:
            if method == "chat.update":
                response = self.client.chat_update(**kwargs)
            else:
                response = self.client.chat_postMessage(**kwargs)
        except SlackApiError as exc:
            raise api_error(self.name, method, exc) from None
        except (SlackClientError, OSError, ValueError) as exc:
            raise client_error(self.name, method, exc) from None
        return dict(response.data) if isinstance(response.data, dict) else {}


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
    ) -> None:
        self.name = name
        self.pacer = Pacer(clock, sleep)
        self.client = WebhookClient(url, timeout=TIMEOUT, retry_handlers=[])

    def send(self, message: Message, thread: Mapping[str, str] | None) -> None:
        """POST {"text", "blocks"}; returns None (webhooks have no threads)."""
        self.pacer.wait()
        try:
            response = self.client.send(
                text=message.body.get("text", ""), blocks=message.body.get("blocks") or None
            )
        except (SlackClientError, OSError, ValueError) as exc:
            raise client_error(self.name, "webhook", exc) from None
        status = response.status_code
        if status == 200:
            return None
        code = (response.body or "").strip()[:80] or f"HTTP {status}"
        if status == 429:
            retry = _retry_after(response.headers) or 1.0
            raise NotifyError(
                f"slack webhook {self.name}: rate limited, retry after {retry:g}s",
                retry_after=retry,
            )
        raise NotifyError(
            f"slack webhook {self.name}: failed: HTTP {status} {code}", permanent=status < 500
        )
