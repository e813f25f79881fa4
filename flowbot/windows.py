"""Which start times a cycle reads runs for: pure, so each case is a plain test.

A run can become visible in the Flow Service some time after it started (Adobe fills
the listing in late under load). Re-reading the whole `late_arrival` window every cycle
would cost as many pages as the runs it holds, so a cycle reads:

- the fresh window: runs started since the last watermark, less a short `overlap`;
- for each age `a` in `late_ages` (from twice the overlap, doubling, up to
  `late_arrival`), the slice of start times that reached age `a` since the last cycle:
  `[previous − a, current − a)`.

Over successive cycles the slices of one age tile the time line, so a run that started
at T and became visible within `a` of T is read by the slice of age `a` at the latest;
each slice holds about as many runs as the fresh window, so a steady cycle costs a few
small pages more, not the whole window again. After downtime the slices overlap each
other and the fresh window; `plan` merges them so nothing is read twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

Window = tuple[datetime, datetime | None]  # [start, end); end None means "until now"


def late_ages(overlap: timedelta, late_arrival: timedelta) -> list[timedelta]:
    """2×overlap, 4×overlap, … while below `late_arrival`, then `late_arrival` itself.
    Nothing when `late_arrival` is within the overlap (the fresh window covers it)."""
    if late_arrival <= overlap or overlap <= timedelta(0):
        return []
    ages = []
    age = overlap * 2
    while age < late_arrival:
        ages.append(age)
        age *= 2
    ages.append(late_arrival)
    return ages


def plan(
    previous: datetime | None,
    current: datetime,
    *,
    overlap: timedelta,
    late_arrival: timedelta,
    lookback: timedelta,
) -> list[Window]:
    """The windows of start times to read, oldest first, none overlapping another.

    `previous` is the last watermark (None on the first cycle: read `lookback`);
    `current` is the watermark this cycle will set. Nothing older than `lookback`
    before `current` is ever read."""
    floor = current - lookback
    if previous is None:
        return [(floor, None)]
    windows: list[Window] = [(max(previous - overlap, floor), None)]
    for age in late_ages(overlap, late_arrival):
        start, end = max(previous - age, floor), current - age
        if start < end:
            windows.append((start, end))
    return _merge(windows)


def _merge(windows: list[Window]) -> list[Window]:
    def end_of(window: Window) -> datetime:
        return window[1] if window[1] is not None else datetime.max.replace(tzinfo=window[0].tzinfo)

    merged: list[Window] = []
    for window in sorted(windows, key=lambda w: w[0]):
        if merged and window[0] <= end_of(merged[-1]):
            last = merged[-1]
            end = window if end_of(window) > end_of(last) else last
            merged[-1] = (last[0], end[1])
        else:
            merged.append(window)
    return merged
