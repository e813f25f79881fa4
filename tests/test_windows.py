"""The read windows of a cycle: late runs are read once they are visible, steady cycles
read only small slices, and windows never overlap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from flowbot.windows import late_ages, plan

T0 = datetime(2026, 12, 1, tzinfo=UTC)
MIN = timedelta(minutes=1)
OVERLAP, LATE, LOOKBACK = 10 * MIN, 60 * MIN, timedelta(hours=24)


def windows(previous, current, late=LATE):
    return plan(previous, current, overlap=OVERLAP, late_arrival=late, lookback=LOOKBACK)


def test_ages_double_from_twice_the_overlap_and_end_at_late_arrival():
    assert late_ages(OVERLAP, LATE) == [20 * MIN, 40 * MIN, 60 * MIN]
    assert late_ages(OVERLAP, 20 * MIN) == [20 * MIN]
    assert late_ages(OVERLAP, OVERLAP) == []  # the fresh window's overlap covers it


def test_the_first_cycle_reads_the_lookback():
    assert windows(None, T0) == [(T0 - LOOKBACK, None)]


def test_a_steady_cycle_reads_the_fresh_window_and_one_poll_wide_slice_per_age():
    got = windows(T0, T0 + 5 * MIN)
    assert got == [
        (T0 - 60 * MIN, T0 - 55 * MIN),
        (T0 - 40 * MIN, T0 - 35 * MIN),
        (T0 - 20 * MIN, T0 - 15 * MIN),
        (T0 - OVERLAP, None),
    ]


def test_after_downtime_the_windows_merge_into_one():
    assert windows(T0, T0 + 3 * LATE) == [(T0 - LATE, None)]


def test_nothing_older_than_the_lookback_is_read():
    got = plan(T0, T0 + 5 * MIN, overlap=OVERLAP, late_arrival=LATE, lookback=30 * MIN)
    assert min(start for start, _ in got) >= T0 + 5 * MIN - 30 * MIN


@settings(max_examples=300, deadline=None)
@given(
    gaps=st.lists(st.integers(min_value=1, max_value=200), min_size=1, max_size=40),
    runs=st.lists(
        st.tuples(st.integers(min_value=0, max_value=2000), st.integers(min_value=0, max_value=60)),
        min_size=1,
        max_size=30,
    ),
)
def test_every_run_visible_within_late_arrival_is_read_and_no_window_overlaps(gaps, runs):
    """Cycles at random intervals (minutes); runs start at T and become visible d ≤ 60
    minutes later. Each run must fall in a window of a cycle at or after it is visible."""
    cycles = [T0]
    for gap in gaps:
        cycles.append(cycles[-1] + gap * MIN)
    read: set[int] = set()
    for previous, current in zip(cycles, cycles[1:], strict=False):
        got = windows(previous, current)
        for (_, end), (start, _) in zip(got, got[1:], strict=False):
            assert end is not None and end < start  # sorted, disjoint
        for i, (start_min, delay) in enumerate(runs):
            started = T0 + start_min * MIN - 100 * MIN
            if started + delay * MIN > current or started > current:
                continue  # not visible yet at this cycle
            if any(s <= started and (e is None or started < e) for s, e in got):
                read.add(i)
    last = cycles[-1]
    for i, (start_min, delay) in enumerate(runs):
        started = T0 + start_min * MIN - 100 * MIN
        # Runs that are visible by the last cycle and started after the first cycle's
        # window (T0 - overlap) must have been read, unless still younger than one age
        # (they will be read by a later cycle).
        if started >= T0 - OVERLAP and started + LATE < last and started + delay * MIN <= last:
            assert i in read, (started, delay, cycles)
