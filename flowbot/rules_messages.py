"""Words for rules.yaml problems: pydantic's error types in the words of a YAML file,
and the nearest right key for a misspelt or synonymous one."""

from __future__ import annotations

import difflib
from typing import Any

import pydantic

# pydantic's wording for type errors, in the words of a YAML file.
PLAIN_MESSAGES = {
    "model_type": "must be a mapping (key: value)",
    "model_attributes_type": "must be a mapping (key: value)",
    "dict_type": "must be a mapping (key: value)",
    "list_type": "must be a list, like [a, b]",
    "string_type": "must be text",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
}

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


def field_names(model: type[pydantic.BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed at `loc` inside `model` (following nested models)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        info = getattr(current, "model_fields", {}).get(part)
        if info is None:
            return []
        current = nested_model(info.annotation)
    fields = getattr(current, "model_fields", {})
    return [info.alias or name for name, info in fields.items()]


def nested_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = nested_model(arg)
        if found is not None:
            return found
    return None
