"""The Flow Service client: reads flows and runs of one sandbox, in layers.

`FlowClient` is the thin top: the listing methods, one `requests.Session`, and the
errors (they name the sandbox and the endpoint without its query, never a token or a
secret). Each concern below it lives in its own module and is testable alone:

- transport (`exchange.py`): one exchange bounded in total time (`Limits.timeout`, body
  included) and size (`Limits.max_bytes`), redirects never followed; JSON decoding.
- paging (`paging.py`): next links (only to allowed origins, never from https to http),
  loops and `Limits.max_pages`; id lists split to URLs of `Limits.max_url`.
- auth (`auth.PlatformAuth`): the four Platform headers, only to the API origin (and the
  Data Access origin); a 401 makes the token provider fetch a new token once.
- retry (`retry.py`): connection errors, timeouts, 429 and 5xx are retried with
  exponential backoff and jitter (a valid `Retry-After` is honoured, capped), bounded
  by `RetryPolicy.max_attempts` and `.deadline`, and a whole fetch by `budget()`.
- counting (`stats.py`): answers by status, retries, pages, token refreshes.

`server_time` is the API's own clock (its latest `Date` header).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote_plus, urlencode, urlsplit

import requests

from flowbot.aep.auth import CredentialsRefusedError, PlatformAuth, TokenProvider
from flowbot.aep.exchange import (
    Answer,
    ExchangeError,
    adobe_error,
    check_depth,
    decode_json,
    exchange,
    safe_url,
    watch_session,
)
from flowbot.aep.paging import (
    MAX_PAGES,
    LinkRefusedError,
    ListingError,
    Params,
    chunks,
    items_of,
    pages,
    query,
    since_filter,
)
from flowbot.aep.parse import parse_flow, parse_run
from flowbot.aep.retry import Clocks, FetchBudget, RetryPolicy
from flowbot.aep.stats import ClientStats, Counters
from flowbot.errors import FlowAPIError
from flowbot.models import Flow, Run
from flowbot.retry_after import parse_http_date
from flowbot.settings import redact

__all__ = ["ClientStats", "Clocks", "FlowClient", "Limits", "RetryPolicy"]

log = logging.getLogger("flowbot.aep")

T = TypeVar("T")

# Bounds (the README's "Failure modes" names each; the retry bounds are in retry.py).
HTTP_TIMEOUT = 30.0  # seconds for one whole exchange: connect, headers and body
MAX_RESPONSE_BYTES = 64 * 2**20  # one answer's body (decompressed); larger is an error
MAX_URL = 2000  # characters; proxies and gateways start refusing around 4-8k
# Items asked per page (`limit`): the largest page Adobe documents for GET /runs (100);
# a server that pages smaller, or ignores `limit`, is still followed page by page.
PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one answer and one listing may cost: `timeout` seconds for one
    whole exchange, `max_bytes` of one body, `max_pages` of one listing, `max_url`
    characters of a URL built from an id list, and `page_size` items asked per page
    (None: the server's default page)."""

    timeout: float = HTTP_TIMEOUT
    max_bytes: int = MAX_RESPONSE_BYTES
    max_pages: int = MAX_PAGES
    max_url: int = MAX_URL
    page_size: int | None = PAGE_SIZE


class FlowClient:
    """Reads flows and runs of one sandbox from the Flow Service.

    `limits`, `retry` and `clocks` are small config objects (defaults when None);
    credentials go to the API's origin and to `other_origins` only. A given `session`
    is closed by `close()` only when `owns_session` says so.
    """

    def __init__(
        self,
        base_url: str,
        tokens: TokenProvider,
        api_key: str,
        org_id: str,
        sandbox: str,
        *,
        limits: Limits | None = None,
        retry: RetryPolicy | None = None,
        clocks: Clocks | None = None,
        session: requests.Session | None = None,
        owns_session: bool | None = None,
        other_origins: Sequence[str] = (),
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.sandbox = sandbox
        self.limits = limits or Limits()
        self.retry = retry or RetryPolicy()
        self.clocks = clocks or Clocks()
        self.auth = PlatformAuth(tokens, api_key, org_id, (self.base_url, *other_origins))
        self.server_time: datetime | None = None  # the API's clock: its latest Date header
        self._session = session or requests.Session()
        watch_session(self._session)
        self._owns_session = session is None if owns_session is None else owns_session
        self._budget = FetchBudget(self.clocks.monotonic)
        self._counters = Counters()

    @property
    def tokens(self) -> TokenProvider:
        return self.auth.tokens

    @property
    def api_key(self) -> str:
        return self.auth.api_key

    @property
    def org_id(self) -> str:
        return self.auth.org_id

    # ------------------------------------------------------------ public API

    @property
    def stats(self) -> ClientStats:
        """A snapshot of the counters (for metrics and benchmarks)."""
        return self._counters.snapshot(token_refreshes=self.tokens.refreshes)

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
        return self._parsed_pages(
            "/flows", query(properties, None, self._page(None)), parse_flow, None
        )

    def run_pages(self, properties: Sequence[str] = ()) -> Iterator[list[Run]]:
        """The runs matching all `properties`, one page at a time (see `flow_pages`)."""
        return self._parsed_pages(
            "/runs", query(properties, None, self._page(None)), parse_run, None
        )

    def iter_runs(
        self, properties: Sequence[str] = (), orderby: str | None = None, limit: int | None = None
    ) -> Iterator[list[Run]]:
        """The runs of `list_runs(...)` one page at a time, each page requested only when
        the previous one has been taken, so a caller can store pages as they come and
        hold one in memory. The same bounds and errors as `list_runs`."""
        return self._parsed_pages(
            "/runs", query(properties, orderby, self._page(limit)), parse_run, limit
        )

    def get_run(self, run_id: str) -> Run:
        """One run. Raises FlowAPIError (status 404) when it is absent."""
        runs = self._list(f"/runs/{quote_plus(run_id)}", {}, parse_run, None)
        if not runs:
            raise self._not_found("run", run_id)
        return runs[0]

    def runs_by_ids(self, ids: Sequence[str]) -> list[Run]:
        """The runs with these ids (those that exist), in as few requests as URL length
        allows. An empty list asks nothing."""
        return self._by_values("/runs", "id", ids, [], parse_run)

    def flows_by_ids(self, ids: Sequence[str]) -> list[Flow]:
        """The flows with these ids (those that exist), in as few requests as URL length
        allows. An empty list asks nothing."""
        return self._by_values("/flows", "id", ids, [], parse_flow)

    def runs_of_flows(self, flow_ids: Sequence[str], since: datetime | None) -> list[Run]:
        """Runs of these flows that started at or after `since` (all when None), in as
        few requests as URL length allows. An empty list of flows asks nothing."""
        extra = [] if since is None else [since_filter(since)]
        return self._by_values("/runs", "flowId", flow_ids, extra, parse_run)

    def retry_run(self, run_id: str) -> str:
        """Ask Adobe to run a failed run again (`POST /runs/{id}/action?op=RE_TRIGGER`,
        batch sources only); the new run's id. One request, never retried (a repeat
        could start two runs); a refusal raises FlowAPIError with Adobe's reason."""
        url = f"{self.base_url}/runs/{quote_plus(run_id)}/action"
        endpoint = urlsplit(url).path
        try:
            answer = exchange(
                self._session, "POST", url, params={"op": "RE_TRIGGER"},
                headers=self.auth.headers(url, self.sandbox),
                seconds=self.limits.timeout, max_bytes=self.limits.max_bytes,
            )  # fmt: skip
        except (ExchangeError, CredentialsRefusedError) as exc:
            raise FlowAPIError(f"Flow Service POST {endpoint}: {exc}", retryable=True) from None
        self._counters.answered(answer.status)
        if not 200 <= answer.status < 300:
            detail = redact(adobe_error(answer), self.auth.secrets())
            raise FlowAPIError(
                f"HTTP {answer.status}" + (f": {detail}" if detail else ""), status=answer.status
            )
        body = self._decode(answer, endpoint)
        items = body.get("items")
        first = items[0] if isinstance(items, list) and items else body
        new_id = first.get("id") if isinstance(first, dict) else None
        if not isinstance(new_id, str) or not new_id:
            raise FlowAPIError(f"Flow Service POST {endpoint}: an answer without a run id")
        return new_id[:200]

    @contextmanager
    def budget(self, seconds: float) -> Iterator[None]:
        """Bound every request made inside the block to `seconds` in total (measured
        on the client's monotonic clock): past it, the next request or retry raises
        FlowAPIError instead of starting."""
        with self._budget.within(seconds):
            yield

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
            out: list[T] = []
            for items in self._parsed_pages(path, params, parse, limit):
                out.extend(items)
            return out

    def _page(self, limit: int | None) -> int | None:
        """The `limit` to send: the page size, or less when the caller wants fewer."""
        if self.limits.page_size is None:
            return limit
        size = max(1, self.limits.page_size)
        return size if limit is None else min(limit, size)

    def _parsed_pages(
        self, path: str, params: Params, parse: Callable[[Any], T], limit: int | None
    ) -> Iterator[list[T]]:
        """Each page's items, parsed; a malformed item is logged and skipped alone.
        Stops once `limit` items have been given."""
        given = 0
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
                if limit is not None and given + len(out) >= limit:
                    yield out
                    return
            given += len(out)
            yield out

    def _pages_of(self, path: str, params: Params) -> Iterator[dict[str, Any]]:
        """Every page of a listing (paging.pages over `_get`). A loop, too many pages or a
        next link that must not be followed is a FlowAPIError: the listing would be
        incomplete, so the cycle must not pass."""
        walk = pages(
            self._get, self.base_url + path, params, base_url=self.base_url,
            origins=self.auth.origins, max_pages=self.limits.max_pages,
        )  # fmt: skip
        try:
            for page in walk:
                self._counters.paged()
                yield page
        except LinkRefusedError as exc:
            raise self._link_refused(exc.href, str(exc)) from None
        except ListingError as exc:
            raise self._listing_error(path, str(exc)) from None
        finally:
            walk.close()

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
        parse: Callable[[Any], T],
    ) -> list[T]:
        out: list[T] = []
        size = self._page(None)
        fixed = len(
            self.base_url + path + "?" + urlencode(query([f"{key}==", *extra], None, size), True)
        )
        for chunk in chunks(list(dict.fromkeys(values)), fixed, self.limits.max_url):
            properties = [f"{key}=={','.join(chunk)}", *extra]
            out.extend(self._list(path, query(properties, None, size), parse, None))
        return out

    # ------------------------------------------------------------ one request

    def _get(self, url: str, params: Params) -> dict[str, Any]:
        """GET with retries (as `self.retry` decides); the decoded JSON object."""
        endpoint = urlsplit(url).path
        if not self.auth.allows(url):  # every caller checked; this is the last guard
            raise self._link_refused(url, "points to another origin than the API's")
        clocks, policy = self.clocks, self.retry
        started = clocks.monotonic()
        attempt = 0
        renewed = False
        while True:
            attempt += 1
            remaining = policy.time_left(clocks.monotonic() - started, self._budget.left())
            if remaining <= 0:
                raise self._out_of_time(endpoint, attempt - 1)
            retry_after: str | None = None
            try:
                answer = exchange(
                    self._session, "GET", url, params=params,
                    headers=self.auth.headers(url, self.sandbox),
                    seconds=min(self.limits.timeout, remaining), max_bytes=self.limits.max_bytes,
                )  # fmt: skip
            except CredentialsRefusedError as exc:
                raise self._link_refused(url, str(exc)) from None
            except ExchangeError as exc:
                self._counters.no_answer()
                if not exc.retryable:
                    raise FlowAPIError(
                        f"Flow Service GET {endpoint} in sandbox {self.sandbox!r}: {exc.problem}"
                    ) from None
                problem = exc.problem
            except FlowAPIError as exc:  # from IMS, while getting a token
                if not exc.retryable:
                    raise
                problem = str(exc)
            else:
                code = answer.status
                self._counters.answered(code)
                self._note_time(answer)
                if 200 <= code < 300:
                    return self._decode(answer, endpoint)
                if self.auth.renews_after(code, renewed=renewed):
                    log.info("%s: GET %s: 401, fetching a new token", self.sandbox, endpoint)
                    renewed = True
                    attempt -= 1
                    continue
                if not policy.is_retryable(code):
                    raise self._refused(answer, endpoint, renewed)
                problem = f"HTTP {code}"
                retry_after = answer.headers.get("Retry-After")
            elapsed = clocks.monotonic() - started
            wait = policy.next_wait(
                attempt, elapsed=elapsed, budget_left=self._budget.left(),
                retry_after=retry_after, now=clocks.wall(),
            )  # fmt: skip
            if wait is None:
                raise FlowAPIError(
                    f"Flow Service GET {endpoint} in sandbox {self.sandbox!r} failed after "
                    f"{attempt} attempt{'s' if attempt > 1 else ''} in {elapsed:.1f}s: {problem}",
                    status=int(problem[5:]) if problem.startswith("HTTP ") else None,
                    retryable=True,
                )
            log.warning(
                "%s: GET %s: %s; retry %d in %.1fs", self.sandbox, endpoint, problem, attempt, wait
            )
            self._counters.retried()
            clocks.sleep(wait)

    def _out_of_time(self, endpoint: str, attempts: int) -> FlowAPIError:
        if self._budget.is_spent:
            why = f"the fetch ran out of its {self._budget.seconds:g}s budget"
        else:
            why = f"no time left of the {self.retry.deadline:g}s deadline"
        return FlowAPIError(
            f"Flow Service GET {endpoint} in sandbox {self.sandbox!r}: {why} "
            f"(after {attempts} attempt{'' if attempts == 1 else 's'})",
            retryable=True,
        )

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

    def _refused(self, answer: Answer, endpoint: str, renewed: bool) -> FlowAPIError:
        code = answer.status
        if 300 <= code < 400:
            where = safe_url(answer.headers.get("Location", "") or "(nowhere)")
            return FlowAPIError(
                f"Flow Service GET {endpoint} in sandbox {self.sandbox!r}: {code}, a redirect "
                f"to {where}; redirects are not followed (credentials stay on the API origin)",
                status=code,
            )
        hint = {
            401: "the credentials were refused" + (" even with a fresh token" if renewed else ""),
            403: "no permission in this sandbox (check the sandbox name and product profile)",
            404: "not found, or no access in this sandbox",
        }.get(code, "the request was refused")
        detail = redact(adobe_error(answer), self.auth.secrets())
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
