"""Counting what a Flow Service client did: answers by status, retries, pages, tokens.

`Counters` is the client's mutable tally; `ClientStats` is the frozen snapshot that
metrics and benchmarks read (`FlowClient.stats`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

NO_ANSWER = "error"  # the status key of an exchange that got no answer (timeout, refused)


@dataclass(frozen=True, slots=True)
class ClientStats:
    """What a client has done so far: HTTP answers by status code (`"error"` for a
    connection error or timeout), retries, pages read and IMS tokens fetched."""

    by_status: Mapping[int | str, int] = field(default_factory=dict)
    retries: int = 0
    pages: int = 0
    token_refreshes: int = 0

    @property
    def requests(self) -> int:
        return sum(self.by_status.values())


class Counters:
    """The running tally behind `ClientStats`."""

    def __init__(self) -> None:
        self._by_status: Counter[int | str] = Counter()
        self._retries = 0
        self._pages = 0

    def answered(self, status: int) -> None:
        self._by_status[status] += 1

    def no_answer(self) -> None:
        self._by_status[NO_ANSWER] += 1

    def retried(self) -> None:
        self._retries += 1

    def paged(self) -> None:
        self._pages += 1

    def snapshot(self, token_refreshes: int = 0) -> ClientStats:
        return ClientStats(
            by_status=dict(self._by_status),
            retries=self._retries,
            pages=self._pages,
            token_refreshes=token_refreshes,
        )
