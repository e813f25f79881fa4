"""`Retry-After`, parsed strictly: the one parser for every HTTP client in flowbot
(the Flow Service client and the Slack notifier).

RFC 9110 allows two forms: a non-negative decimal number of seconds (`120`) or an
HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`). Anything else (`inf`, `nan`, `1e12`,
`-5`, `0x10`, a date that cannot be read) is ignored: the caller falls back to its own
backoff. A usable value is clamped to `cap`.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# Plain decimal seconds; 12 digits is already 31,000 years, so longer is garbage.
_SECONDS = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")


def parse_retry_after(value: object, *, now: datetime, cap: float) -> float | None:
    """Seconds to wait according to a `Retry-After` value, between 0 and `cap`, or
    None when the value is absent or unusable. `now` (aware) is the time an HTTP date
    is measured from; a date in the past means 0."""
    if not isinstance(value, str | bytes):
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    if not text or len(text) > 64:
        return None
    seconds = float(text) if _SECONDS.fullmatch(text) else _seconds_until(text, now)
    if seconds is None:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, max(cap, 0.0))


def _seconds_until(text: str, now: datetime) -> float | None:
    """An HTTP date → seconds from `now` (0 when in the past); None if not a date."""
    if not text[:1].isalpha():  # every HTTP date form starts with the day name
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def parse_http_date(value: object) -> datetime | None:
    """An HTTP date header (`Date`, `Last-Modified`) → aware UTC datetime, or None
    when it is absent or unreadable."""
    if not isinstance(value, str) or not value.strip()[:1].isalpha() or len(value) > 64:
        return None
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
