"""The Flow Service client: one `requests.Session`, paging, retries, clear errors.

Every request carries the four Platform headers and a timeout. Connection errors,
timeouts, 429 and 5xx are retried with exponential backoff and jitter (a 429's
`Retry-After` is honoured, capped), bounded by `max_attempts` and a total `deadline`,
so a call can never hang. A 401 makes the token provider fetch a new token once.
Errors name the sandbox and the endpoint (without its query), never a token or secret.
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
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote_plus, urlencode, urlsplit

import requests

from flowbot.aep.auth import TokenProvider
from flowbot.aep.parse import parse_flow, parse_run
from flowbot.errors import FlowAPIError
from flowbot.models import Flow, Run
from flowbot.settings import redact

log = logging.getLogger("flowbot.aep")

T = TypeVar("T")
Params = dict[str, list[str]]

MAX_URL = 2000  # characters; proxies and gateways start refusing around 4-8k
PAGING_ROOM = 256  # left in split URLs for the continuation token of later pages
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


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
        timeout: float = 30.0,
        session: requests.Session | None = None,
        max_attempts: int = 5,
        deadline: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_retry_after: float = 60.0,
        max_url: int = MAX_URL,
        owns_session: bool | None = None,
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
        self._session = session or requests.Session()
        self._owns_session = session is None if owns_session is None else owns_session
        self._sleep = sleep
        self._clock = clock
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
        return self._list("/flows", _query(properties, orderby, limit), parse_flow, limit)

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
        return self._list("/runs", _query(properties, orderby, limit), parse_run, limit)

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

    def runs_of_flows(self, flow_ids: Sequence[str], since: datetime | None) -> list[Run]:
        """Runs of these flows that started at or after `since` (all when None), in as
        few requests as URL length allows. An empty list of flows asks nothing."""
        extra = [] if since is None else [_since(since)]
        return self._by_values("/runs", "flowId", flow_ids, extra)

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
        for page in self._pages_of(path, params):
            for item in _items(page):
                try:
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
                if limit is not None and len(out) >= limit:
                    return out
        return out

    def _pages_of(self, path: str, params: Params) -> Iterator[dict[str, Any]]:
        url: str | None = self.base_url + path
        seen: set[str] = set()
        while url:
            page = self._get(url, params)
            self._pages += 1
            yield page
            href = _next_href(page)
            if not href:
                return
            url, params = self._follow(href, params)
            if url + "?" + urlencode(params, doseq=True) in seen:
                log.warning(
                    "%s: GET %s: the next page repeats itself; stopping", self.sandbox, path
                )
                return
            seen.add(url + "?" + urlencode(params, doseq=True))

    def _follow(self, href: str, params: Params) -> tuple[str, Params]:
        """`_links.next.href` → (URL, query). The href is absolute, or relative to the
        base URL (with or without its path). Filters the href does not repeat are kept,
        as Adobe's own clients re-send them with the continuation token."""
        parts = urlsplit(href)
        base = urlsplit(self.base_url)
        if parts.scheme:
            url = f"{parts.scheme}://{parts.netloc}{parts.path}"
        elif base.path and parts.path.startswith(base.path.rstrip("/") + "/"):
            url = f"{base.scheme}://{base.netloc}{parts.path}"
        else:
            url = self.base_url + "/" + parts.path.lstrip("/")
        query = parse_qs(parts.query, keep_blank_values=True)
        for key, values in params.items():
            query.setdefault(key, values)
        return url, query

    def _by_values(self, path: str, key: str, values: Sequence[str], extra: list[str]) -> list[Run]:
        out: list[Run] = []
        for chunk in self._chunks(path, key, list(dict.fromkeys(values)), extra):
            properties = [f"{key}=={','.join(chunk)}", *extra]
            out.extend(self._list(path, _query(properties, None, None), parse_run, None))
        return out

    def _chunks(
        self, path: str, key: str, values: list[str], extra: list[str]
    ) -> Iterator[list[str]]:
        """Split `values` so that `path?property=key==a,b,...&extra` fits in max_url."""
        fixed = len(
            self.base_url + path + "?" + urlencode(_query([f"{key}==", *extra]), doseq=True)
        )
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
        started = self._clock()
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            remaining = self.deadline - (self._clock() - started)
            try:
                response = self._session.get(
                    url,
                    params=params,
                    headers=self._headers(),
                    timeout=max(min(self.timeout, remaining), 0.001),
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                self._by_status["error"] += 1
                problem, wait = type(exc).__name__, self._backoff(attempt)
            except FlowAPIError as exc:  # from IMS, while getting a token
                if not exc.retryable:
                    raise
                problem, wait = str(exc), self._backoff(attempt)
            else:
                code = response.status_code
                self._by_status[code] += 1
                if code < 300:
                    return self._decode(response, endpoint)
                if code == 401 and not refreshed and self.tokens.can_refresh:
                    log.info("%s: GET %s: 401, fetching a new token", self.sandbox, endpoint)
                    self.tokens.invalidate()
                    refreshed = True
                    attempt -= 1
                    continue
                if code not in RETRY_STATUSES:
                    raise self._refused(response, endpoint, refreshed)
                problem = f"HTTP {code}"
                wait = self._retry_after(response) or self._backoff(attempt)
            elapsed = self._clock() - started
            if attempt >= self.max_attempts or elapsed + wait > self.deadline:
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
        delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - jitter, not crypto

    def _retry_after(self, response: requests.Response) -> float | None:
        """`Retry-After` in seconds (a number or an HTTP date), capped; None if absent."""
        value = response.headers.get("Retry-After", "").strip()
        if not value:
            return None
        try:
            seconds = float(value)
        except ValueError:
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            seconds = when.timestamp() - time.time()
        return min(max(seconds, 0.0), self.max_retry_after)

    def _decode(self, response: requests.Response, endpoint: str) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            kind = response.headers.get("Content-Type", "unknown content")
            raise FlowAPIError(
                f"Flow Service GET {endpoint} in sandbox {self.sandbox!r} answered "
                f"{response.status_code} with a body that is not JSON ({kind})",
                status=response.status_code,
            ) from None
        if not isinstance(body, dict):
            raise FlowAPIError(
                f"Flow Service GET {endpoint} in sandbox {self.sandbox!r} answered "
                f"{type(body).__name__} where an object was expected",
                status=response.status_code,
            )
        return body

    def _refused(self, response: requests.Response, endpoint: str, refreshed: bool) -> FlowAPIError:
        code = response.status_code
        hint = {
            401: "the credentials were refused" + (" even with a fresh token" if refreshed else ""),
            403: "no permission in this sandbox (check the sandbox name and product profile)",
            404: "not found, or no access in this sandbox",
        }.get(code, "the request was refused")
        detail = redact(_adobe_error(response), self.tokens.secrets())
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


def _query(
    properties: Sequence[str], orderby: str | None = None, limit: int | None = None
) -> Params:
    params: Params = {}
    if properties:
        params["property"] = list(properties)
    if orderby:
        params["orderby"] = [orderby]
    if limit is not None:
        params["limit"] = [str(limit)]
    return params


def _since(at: datetime) -> str:
    return f"metrics.durationSummary.startedAtUTC>={int(at.timestamp() * 1000)}"


def _items(page: Mapping[str, Any]) -> list[Any]:
    items = page.get("items")
    return items if isinstance(items, list) else []


def _next_href(page: Mapping[str, Any]) -> str | None:
    links = page.get("_links")
    nxt = links.get("next") if isinstance(links, dict) else None
    href = nxt.get("href") if isinstance(nxt, dict) else nxt if isinstance(nxt, str) else None
    return href if isinstance(href, str) and href else None


def _adobe_error(response: requests.Response) -> str:
    """Adobe's error code and message from an error body, e.g. 'FLOW-2120-403: You do
    not have sufficient permissions...'; '' when the body says nothing useful."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    code = body.get("error_code") or body.get("code") or ""
    kind = body.get("type")
    if not code and isinstance(kind, str) and "/errors/" in kind:
        code = kind.rsplit("/", 1)[-1]
    report = body.get("report") if isinstance(body.get("report"), dict) else {}
    message = (
        body.get("errorMessage")
        or body.get("message")
        or report.get("detailed-message")
        or body.get("title")
        or body.get("detail")
        or ""
    )
    text = ": ".join(str(p) for p in (code, message) if p)
    return text[:300]
