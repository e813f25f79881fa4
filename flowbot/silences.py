"""What a new silence would match: the rules its --rule names, the flows its --flow names.

Matching is the one the pipeline uses to mute (`alerts.is_silenced`): a rule glob against
rule names, a flow id exactly or a glob against flow names, case-sensitive.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from typing import Any

from flowbot.models import Flow


def rules_matching(pattern: str, names: Iterable[str]) -> list[str]:
    """The rule names that `pattern` (a name or a glob) silences."""
    return [name for name in names if fnmatchcase(name, pattern)]


def flow_matches(pattern: str, flow: Flow) -> bool:
    """True when a silence with --flow `pattern` mutes this flow."""
    return pattern == flow.id or bool(flow.name and fnmatchcase(flow.name, pattern))


def flows_matching(pattern: str, store: Any, sandboxes: Sequence[str] | None) -> list[Flow]:
    """The flows the store knows in `sandboxes` that `pattern` would mute. With no
    sandboxes known (None), nothing can be checked: every flow is assumed to match."""
    if sandboxes is None:
        return [Flow(id=pattern)]
    return [f for s in sandboxes for f in store.flows(s) if flow_matches(pattern, f)]
