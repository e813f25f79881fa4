"""The nearest right key for a misspelt or synonymous one in rules.yaml."""

from __future__ import annotations

import difflib

# Words people reach for, and the key that means it here.
SYNONYMS = {
    "threshold": "above",
    "limit": "above",
    "max": "above",
    "over": "above",
    "more_than": "above",
    "greater_than": "above",
    "timeout": "above",
    "statuses": "status",
    "state": "status",
    "code": "codes",
    "error_codes": "codes",
    "channel": "channels",
    "notify": "channels",
    "flow": "flows",
    "selector": "flows",
    "match": "flows",
    "interval": "every",
    "period": "every",
    "schedule_every": "every",
    "tz": "timezone",
    "repeat": "repeat_after",
    "repeat_every": "repeat_after",
    "resolved": "send_resolved",
    "disabled": "enabled",
    "kind": "type",
    "ids": "id",
    "names": "name",
    "sandboxes": "sandbox",
}


def nearest(key: str, allowed: list[str]) -> list[str]:
    """The allowed key nearest to a typo, by spelling or by a known synonym."""
    words = {name: name for name in allowed}
    words.update({s: t for s, t in SYNONYMS.items() if t in allowed and s not in words})
    found = difflib.get_close_matches(key.lower(), list(words), n=1, cutoff=0.6)
    return [words[found[0]]] if found else []
