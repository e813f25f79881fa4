"""Channels that deliver rendered messages: a `Notifier` per channel, built by kind.

Each kind lives in its own module and is the only importer of its library (email.py:
smtplib); slack.py speaks to the Web API and webhooks through exchange.py, which bounds
every exchange in time and size. `send` returns a reference to what it posted, which
the caller stores and hands back as `thread` for the alert's later messages, and
raises NotifyError: `permanent` errors are not retried, others may be (after
`retry_after` seconds when the channel said so).

Adding a kind: write `notifiers/<kind>.py` with a class that has `send` and a
`build(channel, deps)` function, and add the kind to `flowbot/channels.py` (CONTRIBUTING.md
lists the other places, and tests/test_channels.py checks them).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, Protocol

from flowbot.channels import channel_kind
from flowbot.models import Message
from flowbot.settings import Settings


class Notifier(Protocol):
    def send(self, message: Message, thread: Mapping[str, str] | None) -> Mapping[str, str] | None:
        """Deliver `message`. `thread` is the reference returned when this alert's first
        message was sent on this channel (None: this is the first). Returns the
        reference of what was posted (Slack {"channel", "ts"}, email {"message_id"}),
        or None when the channel has no threads. Raises NotifyError."""
        ...


class ChannelLike(Protocol):
    """What build_notifiers needs of a rules.yaml channel (flowbot.rules.Channel)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def target(self) -> Any: ...  # str, or a tuple of str (email addresses)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class NotifierDeps:
    """What a kind's `build` may use: `clock`/`sleep` pace Slack (about one message a
    second per channel), `now` stamps file records and email dates, `stdout` is where
    terminal channels print (None: sys.stdout at send time)."""

    settings: Settings
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], datetime] = utc_now
    stdout: IO[str] | None = None


def build_notifier(
    channel: ChannelLike,
    settings: Settings,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = utc_now,
    stdout: IO[str] | None = None,
) -> Notifier:
    """The notifier of one channel, from its kind's builder (flowbot.channels). Never
    fails for missing credentials: such a notifier raises a permanent NotifyError when
    it is used, so other channels work. ValueError for a kind that does not exist."""
    try:
        kind = channel_kind(channel.kind)
    except ValueError as exc:
        raise ValueError(f"channel {channel.name!r}: {exc}") from None
    module, function = kind.builder.split(":")
    build: Callable[[ChannelLike, NotifierDeps], Notifier] = getattr(
        importlib.import_module(module), function
    )
    deps = NotifierDeps(settings, clock=clock, sleep=sleep, now=now, stdout=stdout)
    return build(channel, deps)


def build_notifiers(
    channels: Mapping[str, ChannelLike],
    settings: Settings,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = utc_now,
    stdout: IO[str] | None = None,
) -> dict[str, Notifier]:
    """A notifier for every channel, by channel name. `clock`/`sleep` pace Slack (about
    one message a second per channel), `now` stamps file records and email dates,
    `stdout` is where terminal channels print (default: sys.stdout at send time)."""
    return {
        name: build_notifier(channel, settings, clock=clock, sleep=sleep, now=now, stdout=stdout)
        for name, channel in channels.items()
    }
