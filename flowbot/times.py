"""How flowbot writes a time in its own words: meta-alerts, reports, replies in Slack,
the status page. UTC to the minute, "2026-05-01 10:04 UTC". (Alert messages built from
templates use render's `time` filter: to the second, plus the local time of the rules
file's `timezone`.)"""

from __future__ import annotations

from datetime import datetime


def utc_minute(at: datetime) -> str:
    """`at` (an aware UTC time) as "2026-05-01 10:04 UTC"."""
    return at.strftime("%Y-%m-%d %H:%M UTC")
