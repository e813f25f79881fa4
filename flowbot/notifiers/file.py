"""The file channel: one JSON object per message, appended to a JSON Lines file."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from flowbot.errors import NotifyError
from flowbot.models import Message

if TYPE_CHECKING:
    from flowbot.notifiers import ChannelLike, NotifierDeps


class FileNotifier:
    """Appends {"channel", "event", "sent_at", **body} and a newline, then fsyncs."""

    def __init__(self, name: str, path: str | Path, *, now: Callable[[], datetime]) -> None:
        self.name = name
        self.path = Path(path)
        self.now = now

    def send(self, message: Message, thread: Mapping[str, str] | None) -> None:
        """Append the message; creates parent directories. OSError → NotifyError
        (permanent for permissions, transient otherwise, e.g. a full disk)."""
        record = {
            "channel": self.name,
            "event": message.event,
            "sent_at": self.now().isoformat(),
            **message.body,
        }
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line)
                out.flush()
                os.fsync(out.fileno())
        except PermissionError as exc:
            raise NotifyError(
                f"channel {self.name}: cannot write {self.path}: {exc.strerror}", permanent=True
            ) from None
        except OSError as exc:
            raise NotifyError(
                f"channel {self.name}: cannot write {self.path}: {exc.strerror}"
            ) from None
        return None


def from_channel(channel: ChannelLike, deps: NotifierDeps) -> FileNotifier:
    """The notifier of a `file:` channel (flowbot.channels); the path is absolute."""
    return FileNotifier(channel.name, str(channel.target), now=deps.now)
