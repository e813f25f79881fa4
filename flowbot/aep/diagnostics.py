"""The Data Access API reader: a batch's row-error files, bounded and counted.

`GET {export}/batches/{BATCH_ID}/meta?path=row_errors` lists the error files
(`{data: [{name, length, _links.self.href}], _page}`, sample 18); each file is then read
at its `_links.self.href` (`…/meta?path=row_errors%2F<name>`), which must be on an origin
the FlowClient may send credentials to (the API's or FLOWBOT_EXPORT_URL's), else the
file is left out. Requests carry the FlowClient's headers and token (a 401 fetches a new
token once) and go through `exchange()`: each is bounded by the reader's time left and
by `max_bytes`; there are no retries (a diagnosis that cannot be read now is read in a
later cycle). Every request takes one unit of the `Budget` shared by one cycle.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import requests

from flowbot.aep.exchange import (
    Answer,
    ExchangeError,
    adobe_error,
    decode_json,
    exchange,
    new_session,
    safe_url,
)
from flowbot.settings import redact

if TYPE_CHECKING:
    from flowbot.aep.client import FlowClient

MAX_FILE_BYTES = 8 * 2**20  # one listing or error file; larger is left out, said so
MAX_FILES = 5  # error files read per batch (Adobe lists 100 at most per page)
MIN_SECONDS = 0.05  # below this much time left, no request starts


class OverBudget(Exception):
    """No request left this cycle (or no time): the rest waits for a later cycle."""


class DataAccessDenied(Exception):
    """403 or 404 from the Data Access API: no access (or nothing) to read."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}" + (f": {detail}" if detail else ""))
        self.status = status


class DataAccessError(Exception):
    """An answer that could not be used (timeout, 5xx, not JSON, too large)."""


@dataclass
class Budget:
    """Requests and seconds left for diagnostics in one cycle."""

    requests: int
    ends: float  # on `clock`
    clock: Callable[[], float] = time.monotonic
    used: int = 0

    def seconds_left(self) -> float:
        return self.ends - self.clock()

    def take(self) -> float:
        """Count one request; the seconds it may take. OverBudget when none is left."""
        left = self.seconds_left()
        if self.used >= self.requests or left < MIN_SECONDS:
            raise OverBudget()
        self.used += 1
        return left

    @property
    def exhausted(self) -> bool:
        return self.used >= self.requests or self.seconds_left() < MIN_SECONDS


@dataclass(frozen=True, slots=True)
class ErrorFile:
    name: str
    href: str
    length: int | None = None


class DataAccess:
    """Reads row-error files with the credentials of `client` (a FlowClient: its
    `auth` signs each request for an allowed origin, `limits.timeout` bounds it)."""

    def __init__(
        self,
        client: FlowClient,
        export_url: str,
        budget: Budget,
        *,
        max_bytes: int = MAX_FILE_BYTES,
        session: requests.Session | None = None,
    ) -> None:
        self.client = client
        self.export_url = export_url.rstrip("/")
        self.budget = budget
        self.max_bytes = max_bytes
        self._session = session or new_session()
        self._owns_session = session is None

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> DataAccess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def allowed(self, url: str) -> bool:
        """Whether credentials may go to `url` (the FlowClient's origins)."""
        return self.client.auth.allows(url)

    def row_error_files(self, batch_id: str) -> tuple[list[ErrorFile], int, list[str]]:
        """The batch's error files to read (at most MAX_FILES), how many the listing
        named, and a note for each left out."""
        url = f"{self.export_url}/batches/{quote(batch_id, safe='')}/meta"
        body = decode_or_fail(self._get(url, {"path": "row_errors"}), "the row_errors listing")
        items = body.get("data") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise DataAccessError("the row_errors listing has no data list")
        files: list[ErrorFile] = []
        notes: list[str] = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                continue
            name = item["name"][:200]
            link = (
                item.get("_links", {}).get("self", {})
                if isinstance(item.get("_links"), dict)
                else {}
            )
            href = link.get("href") if isinstance(link, dict) else None
            if not isinstance(href, str) or not href:
                href = f"{url}?path={quote('row_errors/' + name, safe='')}"
            if not self.allowed(href):
                notes.append(f"{name}: its link points elsewhere ({safe_url(href, 80)}), not read")
                continue
            length = item.get("length")
            size = int(length) if isinstance(length, (str, int)) and str(length).isdigit() else None
            if size is not None and size > self.max_bytes:
                notes.append(
                    f"{name}: {size:,} bytes, over the {self.max_bytes:,}-byte bound, not read"
                )
                continue
            files.append(ErrorFile(name, href, size))
        if len(files) > MAX_FILES:
            notes.append(f"{len(files) - MAX_FILES} more error files not read")
        return files[:MAX_FILES], len(items), notes

    def read(self, f: ErrorFile) -> bytes | bytearray:
        """One error file's content."""
        return self._get(f.href, None).body

    # ------------------------------------------------------------ one request

    def _get(self, url: str, params: dict[str, str] | None) -> Answer:
        if not self.allowed(url):
            raise DataAccessError(f"refused to send credentials to {safe_url(url, 80)}")
        refreshed = False
        while True:
            seconds = min(self.budget.take(), self.client.limits.timeout)
            try:
                answer = exchange(
                    self._session, "GET", url, params=params,
                    headers=self.client.auth.headers(url, self.client.sandbox),
                    seconds=seconds, max_bytes=self.max_bytes,
                )  # fmt: skip
            except ExchangeError as exc:
                raise DataAccessError(exc.problem) from None
            tokens = self.client.tokens
            if answer.status == 401 and not refreshed and tokens.can_refresh:
                tokens.invalidate()
                refreshed = True
                continue
            if 200 <= answer.status < 300:
                return answer
            detail = redact(adobe_error(answer), tokens.secrets())
            if answer.status in (401, 403, 404):
                raise DataAccessDenied(answer.status, detail)
            raise DataAccessError(f"HTTP {answer.status}" + (f": {detail}" if detail else ""))


def decode_or_fail(answer: Answer, what: str) -> Any:
    try:
        return decode_json(answer.body)
    except ValueError as exc:
        raise DataAccessError(f"{what} is not JSON ({exc})") from None
