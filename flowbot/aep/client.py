"""The Flow Service client: one `requests.Session`, paging, retries, clear errors.

Every request carries the four Platform headers, and only to the configured API origin
(or the Data Access origin): a next link elsewhere, or from https to http, is refused.
Each exchange is bounded in total time (`timeout`, body included) and size
(`max_bytes`); a listing in pages (`max_pages`) and loops; a whole fetch in time
(`budget()`). Connection errors, timeouts, 429 and 5xx are retried with exponential
backoff and jitter (a valid `Retry-After` is honoured, capped), bounded by
`max_attempts` and a total `deadline`. A 401 makes the token provider fetch a new token
once. Errors name the sandbox and the endpoint (without its query), never a token or
secret. `server_time` is the API's own clock (its latest `Date` header).
"""

from __future__ import annotations

import gc
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote_plus, urlencode, urlsplit

import requests

from flowbot.aep.auth import TokenProvider
from flowbot.aep.exchange import (
    Answer,
    ExchangeError,
    adobe_error,
    check_depth,
    decode_json,
    exchange,
    origin,
    safe_url,
    watch_session,
)
from flowbot.aep.paging import (
    LinkRefusedError,
    Params,
    items_of,
    next_href,
    page_key,
    query,
    resolve_next,
    since_filter,
)
from flowbot.aep.parse import parse_flow, parse_run
from flowbot.errors import FlowAPIError
from flowbot.models import Flow, Run
from flowbot.retry_after import parse_http_date, parse_retry_after
from flowbot.settings import redact

log = logging.getLogger("flowbot.aep")

T = TypeVar("T")

MAX_URL = 2000  # characters; proxies and gateways start refusing around 4-8k
PAGING_ROOM = 256  # left in split URLs for the continuation token of later pages
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

# Bounds (the README's "Failure modes" names each).
HTTP_TIMEOUT = 30.0  # seconds for one whole exchange: connect, headers and body
RETRY_DEADLINE = 120.0  # seconds for one request with all its retries
MAX_ATTEMPTS = 5  # tries of one request
MAX_RESPONSE_BYTES = 64 * 2**20  # one answer's body (decompressed); larger is an error
MAX_PAGES = 10_000  # pages of one listing (a million runs at 100 a page)
MAX_RETRY_AFTER = 60.0  # seconds: a longer Retry-After is clamped to this
# Items asked per page (`limit`): the largest page Adobe documents for GET /runs (100);
# a server that pages smaller, or ignores `limit`, is still followed page by page.
PAGE_SIZE = 100


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


class FlowClient:
    """Reads flows and runs of one sandbox from the Flow Service.

    `sleep` and `clock` (monotonic seconds) are injectable so that tests never wait;
    `max_url` bounds the length of URLs built from id lists.
    """

    def __init__(
        self,
        base_url: str,
        tokens: TokenProvider,
        api_key: str,
        org_id: str,
        sandbox: str,
        *,
        timeout: float = HTTP_TIMEOUT,
        session: requests.Session | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        deadline: float = RETRY_DEADLINE,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_retry_after: float = MAX_RETRY_AFTER,
        max_url: int = MAX_URL,
        owns_session: bool | None = None,
        max_bytes: int = MAX_RESPONSE_BYTES,
        max_pages: int = MAX_PAGES,
        other_origins: Sequence[str] = (),
        wall: Callable[[], datetime] | None = None,
        page_size: int | None = PAGE_SIZE,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.api_key = api_key
        self.org_id = org_id
        self.sandbox = sandbox
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.deadline = deadline
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.max_url = max_url
        self.max_bytes = max_bytes
        self.max_pages = max(1, max_pages)
        self.page_size = max(1, page_size) if page_size is not None else None
        # Credentials go to these origins only: the API's, and e.g. the Data Access API's.
        self.origins = frozenset(
            o for o in (origin(self.base_url), *map(origin, other_origins)) if o
        )
        self.server_time: datetime | None = None  # the API's clock: its latest Date header
        self._session = session or requests.Session()
        watch_session(self._session)
        self._owns_session = session is None if owns_session is None else owns_session
        self._sleep = sleep
        self._clock = clock
        self._wall = wall or (lambda: datetime.now(UTC))
        self._budget_ends: float | None = None
        self._budget = 0.0
        self._by_status: Counter[int | str] = Counter()
        self._retries = 0
        self._pages = 0

    # ------------------------------------------------------------ public API

    @property
    def stats(self) -> ClientStats:
        """A snapshot of the counters (for metrics and benchmarks)."""
        return ClientStats(
            by_status=dict(self._by_status),
            retries=self._retries,
            pages=self._pages,
            token_refreshes=self.tokens.refreshes,
        )

    def list_flows(
        self, properties: Sequence[str] = (), orderby: str | None = None, limit: int | None = None
    ) -> list[Flow]:
        """Every flow matching all `properties` filters (e.g.
        `lastRunDetails.startedAtUTC>=1670880253121`), following every page. `limit`
        is sent as the page size and also caps the number returned; None means all."""
        return self._list(
            "/flows", query(properties, orderby, self._page(limit)), parse_flow, limit
        )

    def get_flow(self, flow_id: str) -> Flow:
        """One flow. Raises FlowAPIError (status 404) when it is absent."""
        flows = self._list(f"/flows/{quote_plus(flow_id)}", {}, parse_flow, None)
        if not flows:
            raise self._not_found("flow", flow_id)
        return flows[0]

    def list_runs(
        self, properties: Sequence[str] = (), orderby: str | None = None, limit: int | None = None
    ) -> list[Run]:
        """Every run matching all `properties` filters (e.g.
        `metrics.durationSummary.startedAtUTC>=<ms>`), following every page. `limit` is
        sent as the page size and also caps the number returned; None means all."""
        return self._list("/runs", query(properties, orderby, self._page(limit)), parse_run, limit)

    def flow_pages(self, properties: Sequence[str] = ()) -> Iterator[list[Flow]]:
        """The flows matching all `properties`, one page at a time (parsed; a malformed
        item is skipped), so that a caller can store each page and let it go."""
        return self._parsed_pages("/flows", query(properties, None, self.page_size), parse_flow)

    def run_pages(self, properties: Sequence[str] = ()) -> Iterator[list[Run]]:
        """The runs matching all `properties`, one page at a time (see `flow_pages`)."""
        return self._parsed_pages("/runs", query(properties, None, self.page_size), parse_run)

    def get_run(self, run_id: str) -> Run:
        """One run. Raises FlowAPIError (status 404) when it is absent."""
        runs = self._list(f"/runs/{quote_plus(run_id)}", {}, parse_run, None)
        if not runs:
            raise self._not_found("run", run_id)
        return runs[0]

    def runs_by_ids(self, ids: Sequence[str]) -> list[Run]:
        """The runs with these ids (those that exist), in as few requests as URL length
        allows. An empty list asks nothing."""
        return self._by_values("/runs", "id", ids, [])

    def flows_by_ids(self, ids: Sequence[str]) -> list[Flow]:
        """The flows with these ids (those that exist), in as few requests as URL length
        allows. An empty list asks nothing."""
        return self._by_values("/flows", "id", ids, [], parse_flow)

    def runs_of_flows(self, flow_ids: Sequence[str], since: datetime | None) -> list[Run]:
        """Runs of these flows that started at or after `since` (all when None), in as
        few requests as URL length allows. An empty list of flows asks nothing."""
        extra = [] if since is None else [since_filter(since)]
        return self._by_values("/runs", "flowId", flow_ids, extra)

    @contextmanager
    def budget(self, seconds: float) -> Iterator[None]:
        """Bound every request made inside the block to `seconds` in total (measured
        on the client's clock): past it, the next request or retry raises FlowAPIError
        instead of starting."""
        saved = self._budget_ends, self._budget
        self._budget_ends, self._budget = self._clock() + seconds, seconds
        try:
            yield
        finally:
            self._budget_ends, self._budget = saved

    def close(self) -> None:
        """Close the HTTP session (when this client created it)."""
        if self._owns_session:
            self._session.close()
        self.tokens.close()

    def __enter__(self) -> FlowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ listing

    def _list(
        self, path: str, params: Params, parse: Callable[[Any], T], limit: int | None
    ) -> list[T]:
        with _cyclic_gc_paused():
            return self._collect(path, params, parse, limit)

    def _collect(
        self, path: str, params: Params, parse: Callable[[Any], T], limit: int | None
    ) -> list[T]:
        out: list[T] = []
        for page in self._parsed_pages(path, params, parse):
            out.extend(page)
            if limit is not None and len(out) >= limit:
                return out[:limit]
        return out

    def _page(self, limit: int | None) -> int | None:
        """The `limit` to send: the page size, or less when the caller wants fewer."""
        if limit is None or self.page_size is None:
            return limit if limit is not None else self.page_size
        return min(limit, self.page_size)

    def _parsed_pages(
        self, path: str, params: Params, parse: Callable[[Any], T]
    ) -> Iterator[list[T]]:
        for page in self._pages_of(path, params):
            out: list[T] = []
            for item in items_of(page):
                try:
                    check_depth(item)
                    out.append(parse(item))
                except ValueError as exc:
                    item_id = item.get("id") if isinstance(item, dict) else None
                    log.warning(
                        "%s: skipping a malformed item%s from GET %s: %s",
                        self.sandbox,
                        f" {item_id}" if item_id else "",
                        path,
                        exc,
                    )
            yield out

    def _pages_of(self, path: str, params: Params) -> Iterator[dict[str, Any]]:
        """Every page of a listing. A next link that repeats a page already read (a
        loop), more than `max_pages` pages, or a next link to another origin is a
        FlowAPIError: the listing would be incomplete, so the cycle must not pass."""
        url = self.base_url + path
        seen = {page_key(url, params)}
        for _ in range(self.max_pages):
            page = self._get(url, params)
            self._pages += 1
            yield page
            href = next_href(page)
            if not href:
                return
            url, params = self._follow(href, params, url)
            key = page_key(url, params)
            if key in seen:
                raise self._listing_error(
                    path, f"the next link {safe_url(url)} repeats a page already read (a loop)"
                )
            seen.add(key)
        raise self._listing_error(
            path, f"more than {self.max_pages} pages (an endless listing?); stopped"
        )

    def _follow(self, href: str, params: Params, current: str) -> tuple[str, Params]:
        try:
            return resolve_next(href, params, self.base_url, current, self.origins)
        except LinkRefusedError as exc:
            raise self._link_refused(href, str(exc)) from None

    def _link_refused(self, href: str, why: str) -> FlowAPIError:
        return FlowAPIError(
            f"Flow Service in sandbox {self.sandbox!r}: refused to follow the next link "
            f"{safe_url(href)}: it {why}; no credentials were sent there"
        )

    def _listing_error(self, path: str, why: str) -> FlowAPIError:
        endpoint = urlsplit(self.base_url + path).path
        return FlowAPIError(f"Flow Service GET {endpoint} in sandbox {self.sandbox!r}: {why}")

    def _by_values(
        self,
        path: str,
        key: str,
        values: Sequence[str],
        extra: list[str],
        parse: Callable[[Any], T] = parse_run,  # type: ignore[assignment]
    ) -> list[T]:
        out: list[T] = []
        for chunk in self._chunks(path, key, list(dict.fromkeys(values)), extra):
            properties = [f"{key}=={','.join(chunk)}", *extra]
            out.extend(self._list(path, query(properties, None, self.page_size), parse, None))
        return out

    def _chunks(
        self, path: str, key: str, values: list[str], extra: list[str]
    ) -> Iterator[list[str]]:
        """Split `values` so that `path?property=key==a,b,...&extra` fits in max_url."""
        fixed = len(self.base_url + path + "?" + urlencode(query([f"{key}==", *extra]), doseq=True))
        budget = max(self.max_url - fixed - PAGING_ROOM, 1)
        chunk: list[str] = []
        used = 0
        for value in values:
            cost = len(quote_plus(value)) + (3 if chunk else 0)  # "," is "%2C"
            if chunk and used + cost > budget:
                yield chunk
                chunk, used, cost = [], 0, cost - 3
            chunk.append(value)
            used += cost
        if chunk:
            yield chunk

    # ------------------------------------------------------------ one request

    def _get(self, url: str, params: Params) -> dict[str, Any]:
        """GET with retries; the decoded JSON object."""
        endpoint = urlsplit(url).path
        if origin(url) not in self.origins:  # every caller checked; this is the last guard
            raise self._link_refused(url, "points to another origin than the API's")
        started = self._clock()
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            remaining = min(self.deadline - (self._clock() - started), self._budget_left())
            if remaining <= 0:
                raise self._out_of_time(endpoint, attempt - 1, started)
            try:
                answer = exchange(
                    self._session, "GET", url, params=params, headers=self._headers(),
                    seconds=min(self.timeout, remaining), max_bytes=self.max_bytes,
                )  # fmt: skip
            except ExchangeError as exc:
                self._by_status["error"] += 1
                if not exc.retryable:
                    raise FlowAPIError(
                        f"Flow Service GET {endpoint} in sandbox {self.sandbox!r}: {exc.problem}"
                    ) from None
                problem, wait = exc.problem, self._backoff(attempt)
            except FlowAPIError as exc:  # from IMS, while getting a token
                if not exc.retryable:
                    raise
                problem, wait = str(exc), self._backoff(attempt)
            else:
                code = answer.status
                self._by_status[code] += 1
                self._note_time(answer)
                if 200 <= code < 300:
                    return self._decode(answer, endpoint)
                if code == 401 and not refreshed and self.tokens.can_refresh:
                    log.info("%s: GET %s: 401, fetching a new token", self.sandbox, endpoint)
                    self.tokens.invalidate()
                    refreshed = True
                    attempt -= 1
                    continue
                if code not in RETRY_STATUSES:
                    raise self._refused(answer, endpoint, refreshed)
                problem = f"HTTP {code}"
                wait = self._retry_after(answer) or self._backoff(attempt)
            elapsed = self._clock() - started
            if (
                attempt >= self.max_attempts
                or elapsed + wait > self.deadline
                or wait > self._budget_left()
            ):
                raise FlowAPIError(
                    f"Flow Service GET {endpoint} in sandbox {self.sandbox!r} failed after "
                    f"{attempt} attempt{'s' if attempt > 1 else ''} in {elapsed:.1f}s: {problem}",
                    status=int(problem[5:]) if problem.startswith("HTTP ") else None,
                    retryable=True,
                )
            log.warning(
                "%s: GET %s: %s; retry %d in %.1fs", self.sandbox, endpoint, problem, attempt, wait
            )
            self._retries += 1
            self._sleep(wait)

    def _budget_left(self) -> float:
        if self._budget_ends is None:
            return float("inf")
        return self._budget_ends - self._clock()

    def _out_of_time(self, endpoint: str, attempts: int, started: float) -> FlowAPIError:
        if self._budget_left() <= 0:
            why = f"the fetch ran out of its {self._budget:g}s budget"
        else:
            why = f"no time left of the {self.deadline:g}s deadline"
        return FlowAPIError(
            f"Flow Service GET {endpoint} in sandbox {self.sandbox!r}: {why} "
            f"(after {attempts} attempt{'' if attempts == 1 else 's'})",
            retryable=True,
        )

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.tokens.token()}",
            "x-api-key": self.api_key,
            "x-gw-ims-org-id": self.org_id,
            "x-sandbox-name": self.sandbox,
            "Accept": "application/json",
        }

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with 'equal jitter': half fixed, half random."""
        delay = min(self.max_backoff, self.backoff * 2 ** min(attempt - 1, 32))
        return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - jitter, not crypto

    def _retry_after(self, answer: Answer) -> float | None:
        """A valid `Retry-After` in seconds, capped; None when absent or unusable."""
        value = answer.headers.get("Retry-After")
        return parse_retry_after(value, now=self._wall(), cap=self.max_retry_after)

    def _note_time(self, answer: Answer) -> None:
        """Remember the API's clock from its `Date` header (garbage is ignored)."""
        date = parse_http_date(answer.headers.get("Date"))
        if date is not None:
            self.server_time = date

    def _decode(self, answer: Answer, endpoint: str) -> dict[str, Any]:
        try:
            body = decode_json(answer.body)
        except ValueError as exc:
            kind = answer.headers.get("Content-Type", "unknown content")
            raise FlowAPIError(
                f"Flow Service GET {endpoint} in sandbox {self.sandbox!r} answered "
                f"{answer.status} with a body that is not JSON ({kind[:60]}): {exc}",
                status=answer.status,
            ) from None
        if not isinstance(body, dict):
            raise FlowAPIError(
                f"Flow Service GET {endpoint} in sandbox {self.sandbox!r} answered "
                f"{type(body).__name__} where an object was expected",
                status=answer.status,
            )
        return body

    def _refused(self, answer: Answer, endpoint: str, refreshed: bool) -> FlowAPIError:
        code = answer.status
        if 300 <= code < 400:
            where = safe_url(answer.headers.get("Location", "") or "(nowhere)")
            return FlowAPIError(
                f"Flow Service GET {endpoint} in sandbox {self.sandbox!r}: {code}, a redirect "
                f"to {where}; redirects are not followed (credentials stay on the API origin)",
                status=code,
            )
        hint = {
            401: "the credentials were refused" + (" even with a fresh token" if refreshed else ""),
            403: "no permission in this sandbox (check the sandbox name and product profile)",
            404: "not found, or no access in this sandbox",
        }.get(code, "the request was refused")
        detail = redact(adobe_error(answer), self.tokens.secrets())
        return FlowAPIError(
            f"Flow Service GET {endpoint} in sandbox {self.sandbox!r}: {code}, {hint}"
            + (f": {detail}" if detail else ""),
            status=code,
        )

    def _not_found(self, kind: str, item_id: str) -> FlowAPIError:
        return FlowAPIError(
            f"Flow Service has no {kind} {item_id!r} in sandbox {self.sandbox!r}", status=404
        )


# ---------------------------------------------------------------- helpers


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a listing runs. Decoded JSON holds
    no reference cycles (reference counting frees it), but every page adds thousands of
    live dicts that each collection would scan again: with 100,000 runs kept, that
    scanning took as long as the decoding itself."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
