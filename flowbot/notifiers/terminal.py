"""The terminal channel: prints the text body (for `flowbot demo` and `check --once`)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING

from flowbot.models import Message

if TYPE_CHECKING:
    from flowbot.notifiers import ChannelLike, NotifierDeps


class TerminalNotifier:
    """Writes body["text"] and a blank line to `stream` (default: sys.stdout)."""

    def __init__(self, name: str, stream: IO[str] | None = None) -> None:
        self.name = name
        self.stream = stream

    def send(self, message: Message, thread: Mapping[str, str] | None) -> None:
        """Print the message; never fails."""
        stream = self.stream or sys.stdout
        stream.write(str(message.body.get("text", "")).rstrip() + "\n\n")
        stream.flush()
        return None


def from_channel(channel: ChannelLike, deps: NotifierDeps) -> TerminalNotifier:
    """The notifier of a `terminal: true` channel (flowbot.channels)."""
    return TerminalNotifier(channel.name, deps.stdout)
