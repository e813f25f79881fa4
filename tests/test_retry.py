"""flowbot.aep.retry: the retry decision as a pure function of the attempt, the answer's
Retry-After, the time spent and left, and the jitter; the fetch budget on a fake clock.
No HTTP: the client's HTTP behaviour is tested in test_client.py and test_hostile_api.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from flowbot.aep.retry import FetchBudget, RetryPolicy

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def low(a: float, b: float) -> float:
    return a


def high(a: float, b: float) -> float:
    return b


def test_backoff_doubles_from_the_first_step_and_stops_at_the_cap():
    policy = RetryPolicy(backoff=0.5, max_backoff=4.0, jitter=high)
    assert [policy.backoff_for(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert policy.backoff_for(10**6) == 4.0  # a huge attempt number neither overflows nor grows


def test_backoff_keeps_half_fixed_and_draws_the_other_half():
    drawn: list[tuple[float, float]] = []

    def record(a: float, b: float) -> float:
        drawn.append((a, b))
        return a

    policy = RetryPolicy(backoff=1.0, max_backoff=30.0, jitter=record)
    assert policy.backoff_for(3) == 2.0  # delay 4: 2 fixed + the draw (its lowest, 0)
    assert drawn == [(0, 2.0)]
    assert RetryPolicy(backoff=1.0, jitter=high).backoff_for(3) == 4.0


def test_retry_after_in_seconds_replaces_the_backoff_and_is_capped():
    policy = RetryPolicy(max_retry_after=60.0, deadline=1000.0, jitter=low)
    assert policy.next_wait(1, elapsed=0, retry_after="7", now=NOW) == 7.0
    assert policy.next_wait(1, elapsed=0, retry_after="86400", now=NOW) == 60.0


def test_retry_after_as_an_http_date_counts_from_the_given_now():
    policy = RetryPolicy(jitter=low)
    later = format_datetime(NOW + timedelta(seconds=20), usegmt=True)
    assert policy.next_wait(1, elapsed=0, retry_after=later, now=NOW) == 20.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "inf", "nan", "1e12", "0"])
def test_an_unusable_or_zero_retry_after_falls_back_to_the_backoff(value):
    policy = RetryPolicy(backoff=2.0, jitter=low)
    assert policy.next_wait(2, elapsed=0, retry_after=value, now=NOW) == 2.0  # delay 4, low half


def test_the_last_attempt_gives_up():
    policy = RetryPolicy(max_attempts=3, jitter=low)
    assert policy.next_wait(2, elapsed=0, now=NOW) is not None
    assert policy.next_wait(3, elapsed=0, now=NOW) is None
    assert RetryPolicy(max_attempts=0).next_wait(1, elapsed=0, now=NOW) is None  # at least one


def test_a_wait_that_would_pass_the_deadline_gives_up():
    policy = RetryPolicy(deadline=20.0, max_attempts=50, jitter=low)
    assert policy.next_wait(1, elapsed=10.0, retry_after="10", now=NOW) == 10.0
    assert policy.next_wait(1, elapsed=10.5, retry_after="10", now=NOW) is None


def test_a_wait_longer_than_the_budget_left_gives_up():
    policy = RetryPolicy(jitter=low)
    assert policy.next_wait(1, elapsed=0, budget_left=6.0, retry_after="5", now=NOW) == 5.0
    assert policy.next_wait(1, elapsed=0, budget_left=4.0, retry_after="5", now=NOW) is None


def test_time_left_is_the_lesser_of_deadline_and_budget():
    policy = RetryPolicy(deadline=120.0)
    assert policy.time_left(100.0, float("inf")) == 20.0
    assert policy.time_left(0.0, 3.0) == 3.0
    assert policy.time_left(130.0, 3.0) <= 0


def test_only_429_and_5xx_gateway_errors_are_retryable():
    policy = RetryPolicy()
    assert [s for s in (200, 400, 401, 403, 404, 429, 500, 501, 502, 503, 504) if policy.is_retryable(s)] == [429, 500, 502, 503, 504]  # fmt: skip


class Monotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_fetch_budget_is_unlimited_outside_a_block_and_spent_inside():
    clock = Monotonic()
    budget = FetchBudget(clock)
    assert budget.left() == float("inf") and not budget.is_spent
    with budget.within(30):
        clock.now += 10
        assert budget.left() == 20 and budget.seconds == 30
        clock.now += 25
        assert budget.is_spent
    assert budget.left() == float("inf")


def test_a_nested_budget_restores_the_outer_one():
    clock = Monotonic()
    budget = FetchBudget(clock)
    with budget.within(60):
        with budget.within(5):
            assert budget.left() == 5
        clock.now += 1
        assert budget.left() == 59 and budget.seconds == 60
