"""When to try a Flow Service request again, and how long to wait first.

`RetryPolicy.next_wait()` is the whole decision, a pure function of the attempt number,
the answer (its `Retry-After`), the time spent and left, and a jitter source: no HTTP,
no clock of its own. Connection errors, timeouts, 429 and 5xx are worth another try;
the wait is exponential backoff with "equal jitter" (half fixed, half random), or the
server's `Retry-After` when it gives a usable, non-zero one (capped at
`max_retry_after`). A
request gives up after `max_attempts`, or when the wait would pass its `deadline` or
the fetch's `FetchBudget`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from flowbot.retry_after import parse_retry_after

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_ATTEMPTS = 5  # tries of one request
RETRY_DEADLINE = 120.0  # seconds for one request with all its retries
BACKOFF = 0.5  # seconds: the first backoff step (doubled each attempt)
MAX_BACKOFF = 30.0  # seconds: no backoff step is longer
MAX_RETRY_AFTER = 60.0  # seconds: a longer Retry-After is clamped to this

Jitter = Callable[[float, float], float]  # (low, high) → a value between them


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Clocks:
    """The client's view of time, injectable so that tests never wait: `monotonic`
    measures deadlines and budgets, `sleep` waits between attempts, `wall` is the aware
    time an HTTP-date `Retry-After` is measured from."""

    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], datetime] = _utc_now


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one request is retried (see the module doc). `jitter` draws the random half
    of each backoff; tests pass a fixed one."""

    max_attempts: int = MAX_ATTEMPTS
    deadline: float = RETRY_DEADLINE
    backoff: float = BACKOFF
    max_backoff: float = MAX_BACKOFF
    max_retry_after: float = MAX_RETRY_AFTER
    statuses: frozenset[int] = RETRY_STATUSES
    jitter: Jitter = field(default=random.uniform, compare=False)

    def is_retryable(self, status: int) -> bool:
        """Whether an HTTP answer with this status is worth another try."""
        return status in self.statuses

    def backoff_for(self, attempt: int) -> float:
        """The wait after failed attempt number `attempt` (1-based), without a server hint:
        exponential, capped at `max_backoff`, the upper half random."""
        delay = min(self.max_backoff, self.backoff * 2.0 ** min(max(attempt, 1) - 1, 32))
        return delay / 2 + self.jitter(0, delay / 2)

    def time_left(self, elapsed: float, budget_left: float) -> float:
        """Seconds the next attempt may take: what is left of the deadline and of the
        fetch budget, whichever is less (0 or less: no attempt may start)."""
        return min(self.deadline - elapsed, budget_left)

    def next_wait(
        self,
        attempt: int,
        *,
        elapsed: float,
        budget_left: float = float("inf"),
        retry_after: object = None,
        now: datetime | None = None,
    ) -> float | None:
        """Seconds to wait before trying again after failed attempt `attempt`, or None to
        give up: the attempts are spent, or the wait would pass the deadline (counted
        from the first attempt, `elapsed` seconds ago) or the budget left. A usable
        `retry_after` header value (seconds or an HTTP date, measured from `now`)
        replaces the backoff."""
        wait = parse_retry_after(retry_after, now=now or _utc_now(), cap=self.max_retry_after)
        if not wait:  # absent, unusable or zero: a server cannot make us retry at once
            wait = self.backoff_for(attempt)
        if attempt >= max(1, self.max_attempts):
            return None
        if elapsed + wait > self.deadline or wait > budget_left:
            return None
        return wait


class FetchBudget:
    """An optional bound on every request made inside `within(seconds)` taken together,
    measured on `monotonic`. Outside such a block the budget is unlimited."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._ends: float | None = None
        self.seconds = 0.0

    def left(self) -> float:
        """Seconds left (infinite outside a block; 0 or less once spent)."""
        if self._ends is None:
            return float("inf")
        return self._ends - self._monotonic()

    @property
    def is_spent(self) -> bool:
        return self.left() <= 0

    @contextmanager
    def within(self, seconds: float) -> Iterator[None]:
        saved = self._ends, self.seconds
        self._ends, self.seconds = self._monotonic() + seconds, seconds
        try:
            yield
        finally:
            self._ends, self.seconds = saved
