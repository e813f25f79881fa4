"""The parts of a loaded RuleSet besides its rules: plain frozen values.

Selector, Channel and Monitoring are used by the pipeline; AepUi, Diagnostics, Inhibit,
SlackActions and Digest (the keys added in 0.2) are parsed and validated, and nothing
uses them yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # not imported at run time: `rules check` loads no run model
    from flowbot.models import Flow


@dataclass(frozen=True, slots=True)
class Selector:
    """Which flows a rule watches: ids, name globs and sandboxes, all optional.

    Within one key any value may match; across keys all must. An empty selector
    matches every flow. Name globs are fnmatch patterns, case-sensitive.
    """

    ids: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    sandboxes: tuple[str, ...] = ()

    def matches(self, flow: Flow) -> bool:
        """True when the flow is one this selector picks."""
        if self.ids and flow.id not in self.ids:
            return False
        if self.names and not any(fnmatchcase(flow.name, glob) for glob in self.names):
            return False
        return not (self.sandboxes and flow.sandbox not in self.sandboxes)

    @property
    def is_empty(self) -> bool:
        return not (self.ids or self.names or self.sandboxes)


@dataclass(frozen=True, slots=True)
class Channel:
    """A named destination. `kind` is a key of flowbot.channels.KINDS; `target` is a
    Slack channel, webhook URL, file path (absolute), a tuple of email addresses, or ""
    for the terminal."""

    name: str
    kind: str
    target: str | tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Monitoring:
    """Where the meta-alert about degraded monitoring goes, and after how long."""

    channels: tuple[str, ...] = ()
    after: timedelta = timedelta(minutes=15)
    heartbeat_url: str | None = None


@dataclass(frozen=True, slots=True)
class AepUi:
    """What links into the AEP UI need: the org's short name."""

    org: str


@dataclass(frozen=True, slots=True)
class Diagnostics:
    """Row-level errors of failed runs via the Data Access API; off unless enabled."""

    enabled: bool = False
    show_values: bool = False
    budget: int = 20


@dataclass(frozen=True, slots=True)
class Inhibit:
    """While rule `source` fires for a flow, the `target` rules are muted for it."""

    source: str
    target: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SlackActions:
    """Slack user or user-group ids that may press buttons (any / Retry)."""

    allow: tuple[str, ...] = ()
    retry: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Digest:
    """A periodic summary: when (cron in `timezone`) and to which channels."""

    cron: str
    timezone: str = "UTC"
    channels: tuple[str, ...] = ()
