"""What the store keeps of outside data, bounded: pure functions, no SQLite.

Everything here comes from the Flow Service and is hostile until bounded:

- integers go into SQLite INTEGER columns clamped to its signed 64-bit range
  (`sqlite_int`), so a count of 10^20 is stored as the largest INTEGER, not a crash;
- the raw JSON kept per run (and per flow) is at most RAW_MAX_CHARS characters
  (`bound_raw`): each error list keeps ERRORS_KEPT entries (one per distinct code
  first, so error-code rules still see the codes) plus one "and K more" entry, strings
  are cut at TEXT_MAX characters, lists at ITEMS_MAX entries, objects at KEYS_MAX keys
  and nesting at DEPTH_MAX levels; when that is still too large, the limits tighten,
  and as a last resort only the fields rules read (ids, status, times, record counts
  and the first errors) are kept;
- short texts (an alert's reason, a cycle's last error) are cut at TEXT_MAX (`clip`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SQLITE_INT_MIN = -(2**63)
SQLITE_INT_MAX = 2**63 - 1

RAW_MAX_CHARS = 256_000  # the raw JSON of one run or flow, as stored
ERRORS_KEPT = 50  # entries kept per error list ("errors", "failedInfo")
TEXT_MAX = 2_000  # characters of one string
ITEMS_MAX = 200  # entries of any other list
KEYS_MAX = 200  # keys of one object
DEPTH_MAX = 32  # levels of nesting; deeper values become a short note

ERROR_LISTS = frozenset({"errors", "failedInfo"})


@dataclass(frozen=True, slots=True)
class Limits:
    errors: int
    text: int
    items: int
    keys: int


# Tried in order until the JSON fits RAW_MAX_CHARS.
PASSES = (
    Limits(ERRORS_KEPT, TEXT_MAX, ITEMS_MAX, KEYS_MAX),
    Limits(10, 500, 20, 100),
    Limits(3, 200, 5, 50),
)
# The fields rules and messages cannot do without, for the last resort.
ESSENTIAL = ("id", "flowId", "etag", "sandboxName", "createdAt", "updatedAt", "state", "name")
ESSENTIAL_METRICS = ("statusSummary", "durationSummary", "recordSummary")


def sqlite_int(value: int | None) -> int | None:
    """`value` clamped to SQLite's INTEGER range (None stays None)."""
    if value is None:
        return None
    return max(SQLITE_INT_MIN, min(SQLITE_INT_MAX, value))


def clip(text: str | None, limit: int = TEXT_MAX) -> str | None:
    """`text` cut at `limit` characters, saying how many more there were."""
    if text is None or len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def bound_raw(raw: Mapping[str, Any]) -> str:
    """The JSON text to store for one run or flow: at most RAW_MAX_CHARS characters.
    Raises ValueError when `raw` cannot be written as JSON at all."""
    for limits in PASSES:
        text = _dumps(_bound(raw, limits, 0))
        if len(text) <= RAW_MAX_CHARS:
            return text
    metrics = raw.get("metrics")
    essential: dict[str, Any] = {k: raw[k] for k in ESSENTIAL if k in raw}
    if isinstance(metrics, Mapping):
        essential["metrics"] = {k: metrics[k] for k in ESSENTIAL_METRICS if k in metrics}
    essential["flowbotTruncated"] = True
    text = _dumps(_bound(essential, PASSES[-1], 0))
    if len(text) > RAW_MAX_CHARS:  # only ids longer than the bound can get here
        raise ValueError(f"its JSON stays over {RAW_MAX_CHARS} characters")
    return text


def _dumps(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=True)
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:  # lone surrogates from "\ud800" escapes: keep them escaped
        return json.dumps(value, ensure_ascii=True, allow_nan=True)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"its JSON cannot be written ({type(exc).__name__})") from None


def _bound(value: Any, limits: Limits, depth: int, key: str = "") -> Any:
    if isinstance(value, str):
        return clip(value, limits.text)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        # JSON allows any integer; keep the text of huge ones short and parseable.
        return value if SQLITE_INT_MIN <= value <= SQLITE_INT_MAX else sqlite_int(value)
    if depth >= DEPTH_MAX:
        return "(nested too deep; not kept)"
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for i, (k, v) in enumerate(value.items()):
            if i >= limits.keys:
                out["flowbotOmittedKeys"] = len(value) - limits.keys
                break
            name = str(k)[: limits.text]
            out[name] = _bound(v, limits, depth + 1, name)
        return out
    if isinstance(value, list | tuple):
        if key in ERROR_LISTS:
            return _bound_errors(list(value), limits, depth)
        kept = [_bound(v, limits, depth + 1) for v in value[: limits.items]]
        if len(value) > limits.items:
            kept.append(f"and {len(value) - limits.items} more")
        return kept
    return clip(str(value), limits.text)


def _bound_errors(errors: list[Any], limits: Limits, depth: int) -> list[Any]:
    """At most `limits.errors` entries, the first of each distinct code before the
    rest, then one entry saying how many were left out."""
    if len(errors) <= limits.errors:
        return [_bound(e, limits, depth + 1) for e in errors]
    first: dict[Any, int] = {}
    for i, e in enumerate(errors):
        code = e.get("code") if isinstance(e, Mapping) else None
        if isinstance(code, str | int) and code not in first:
            first[code] = i
            if len(first) >= limits.errors:
                break
    chosen = sorted(first.values())[: limits.errors]
    taken = set(chosen)
    for i in range(len(errors)):
        if len(chosen) >= limits.errors:
            break
        if i not in taken:
            chosen.append(i)
    kept = [_bound(errors[i], limits, depth + 1) for i in sorted(chosen)]
    more = len(errors) - len(kept)
    kept.append({"code": "", "message": f"and {more} more errors (not kept by flowbot)"})
    return kept
