"""The Flow Service query language, as the simulator understands it (pure functions).

`property=<path><op><value>` filters, ANDed when repeated:
- `path` is dotted (`metrics.statusSummary.status`); `name[]` steps into every element
  of an array, and the filter matches when any reached value matches.
- `==` takes a comma list meaning "any of"; `>`, `<`, `>=`, `<=` take one value.
- Values compare as numbers when both sides read as numbers (`startTime` is often a
  digit string), otherwise as strings; string equality ignores case
  (the docs filter `status==Failed` while payloads say `failed`).
- A missing field never matches.

`orderby=field`, `+field` (ascending) or `-field` (descending); items without the field
come last, ties keep id order. Without `orderby` the order is `-createdAt` (newest
first, as the destinations spec documents), then id.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

OPERATORS = ("==", ">=", "<=", ">", "<")
DEFAULT_ORDER = "-createdAt"


class QueryError(ValueError):
    """A query the Flow Service would refuse with a 400; `code` is its error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Filter:
    """One `property=` filter: a path, an operator and its value(s)."""

    path: tuple[str, ...]
    op: str
    values: tuple[str, ...]

    @property
    def field(self) -> str:
        return ".".join(self.path)


def parse_filter(text: str) -> Filter:
    """Parse `path<op>value`; raise QueryError for a malformed or unknown operator."""
    start = next((i for i, char in enumerate(text) if char in "=<>!~"), -1)
    if start <= 0:
        raise QueryError("FLOW-1431-400", f"Invalid property filter '{text}'.")
    op = next((op for op in OPERATORS if text.startswith(op, start)), None)
    if op is None:
        bad = text[start : start + 2]
        raise QueryError("FLOW-1450-400", f"Operator '{bad}' is invalid.")
    raw = text[start + len(op) :]
    values = tuple(raw.split(",")) if op == "==" else (raw,)
    if op != "==" and "," in raw:
        raise QueryError("FLOW-1443-400", f"Operator '{op}' is not allowed for multiple values.")
    if raw == "":
        raise QueryError("FLOW-1453-400", f"Invalid query value {text}.")
    return Filter(path=tuple(text[:start].split(".")), op=op, values=values)


def parse_orderby(text: str | None) -> tuple[tuple[str, ...], bool]:
    """Parse `orderby` into (path, descending); None gives the default order."""
    text = (text or DEFAULT_ORDER).strip()
    descending = text.startswith("-")
    field = text.lstrip("+-").strip()
    if not field or any(char in field for char in "=<>,"):
        raise QueryError("FLOW-1432-400", f"Invalid orderby '{text}'.")
    return tuple(field.split(".")), descending


def values_at(item: Any, path: tuple[str, ...]) -> list[Any]:
    """Every value found at `path` in `item` (several when the path crosses `[]`)."""
    found = [item]
    for step in path:
        spread = step.endswith("[]")
        key = step[:-2] if spread else step
        reached: list[Any] = []
        for node in found:
            if not isinstance(node, dict) or key not in node:
                continue
            value = node[key]
            if spread and isinstance(value, list):
                reached.extend(value)
            elif value is not None:
                reached.append(value)
        found = reached
    return found


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _compare(actual: Any, op: str, wanted: str) -> bool:
    if isinstance(actual, dict | list):
        return False
    left, right = _number(actual), _number(wanted)
    a: Any
    b: Any
    if left is not None and right is not None:
        a, b = left, right
    elif isinstance(actual, bool):
        a, b = ("true" if actual else "false"), wanted.lower()
    else:
        a, b = str(actual).lower(), wanted.lower()
    if op == "==":
        return bool(a == b)
    if op == ">":
        return bool(a > b)
    if op == "<":
        return bool(a < b)
    if op == ">=":
        return bool(a >= b)
    return bool(a <= b)


def matches(item: dict[str, Any], flt: Filter) -> bool:
    """Whether `item` passes one filter."""
    return any(
        _compare(actual, flt.op, wanted)
        for actual in values_at(item, flt.path)
        for wanted in flt.values
    )


def select(items: Iterable[dict[str, Any]], filters: list[Filter]) -> list[dict[str, Any]]:
    """The items that pass every filter, in their given order."""
    return [item for item in items if all(matches(item, flt) for flt in filters)]


def _sort_key(value: Any) -> tuple[int, Any]:
    number = _number(value)
    if number is not None:
        return (0, number)
    return (1, str(value))


def order(items: list[dict[str, Any]], path: tuple[str, ...], descending: bool) -> list[str]:
    """Ids of `items` sorted by the value at `path`; missing values last, ties by id."""
    present: list[tuple[tuple[int, Any], str]] = []
    missing: list[str] = []
    for item in sorted(items, key=lambda item: str(item.get("id", ""))):
        found = values_at(item, path)
        if found and not isinstance(found[0], dict | list):
            present.append((_sort_key(found[0]), item["id"]))
        else:
            missing.append(item["id"])
    present.sort(key=lambda pair: pair[0], reverse=descending)
    return [item_id for _, item_id in present] + missing
