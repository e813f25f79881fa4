"""A strict reader of the HTTP `Retry-After` header.

RFC 9110 allows two forms: a whole number of seconds (`120`) or an HTTP date (`Fri,
31 Dec 2027 23:59:59 GMT`). Anything else (`inf`, `nan`, `1e12`, `-5`, `1.5`, text) is
unusable, and the caller falls back to its own backoff. A usable value is clamped to
`maximum`, so that no server can park a sender for longer than its owner allows.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

_SECONDS = re.compile(r"[0-9]+")
_LONGEST = 12  # digits read as a number; a longer run of digits is "very long": the maximum


def parse_retry_after(
    value: str | None, now: datetime | None = None, *, maximum: float
) -> float | None:
    """Seconds to wait, between 0 and `maximum`, or None when `value` is missing or not
    a valid Retry-After. An HTTP date needs `now` (aware UTC); a date in the past is 0."""
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > 64:
        return None
    if _SECONDS.fullmatch(text):
        if len(text) > _LONGEST:
            return float(maximum)
        return min(float(int(text)), float(maximum))
    if now is None or not text[0].isalpha():
        return None
    try:
        at = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if at is None:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    seconds = (at - now).total_seconds()
    return min(max(seconds, 0.0), float(maximum))
