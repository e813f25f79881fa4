"""Paging through Flow Service listings: query parameters, where the next page is,
whether following it is allowed, when a listing has gone on too long, and how to split
an id list over URLs of bounded length. `pages()` walks a listing through a `get`
function it is given, so every rule here is testable without HTTP; the client does the
HTTP and turns the errors into FlowAPIError."""

from __future__ import annotations

from collections.abc import Callable, Collection, Generator, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlencode, urlsplit

from flowbot.aep.exchange import origin, safe_url

Params = dict[str, list[str]]
Page = dict[str, Any]

MAX_PAGES = 10_000  # pages of one listing (a million runs at 100 a page)
PAGING_ROOM = 256  # left in split URLs for the continuation token of later pages


class LinkRefusedError(ValueError):
    """A next link that must not be followed; the text says why ('leaves https') and
    `href` is the link as the page gave it."""

    def __init__(self, why: str, href: str = "") -> None:
        super().__init__(why)
        self.href = href


class ListingError(ValueError):
    """A listing that cannot be read to its end (a loop, or too many pages): what was
    read is incomplete. The text says why."""


def pages(
    get: Callable[[str, Params], Page],
    url: str,
    params: Params,
    *,
    base_url: str,
    origins: Collection[str],
    max_pages: int = MAX_PAGES,
) -> Generator[Page, None, None]:
    """Every page of the listing at `url`, read with `get(url, params)` one at a time,
    following `_links.next.href`. Raises ListingError when a next link repeats a page
    already read (a loop) or there are more than `max_pages` pages, and LinkRefusedError
    for a next link that must not be followed (see `resolve_next`)."""
    seen = {page_key(url, params)}
    for _ in range(max(1, max_pages)):
        page = get(url, params)
        yield page
        href = next_href(page)
        if not href:
            return
        url, params = resolve_next(href, params, base_url, url, origins)
        key = page_key(url, params)
        if key in seen:
            raise ListingError(
                f"the next link {safe_url(url)} repeats a page already read (a loop)"
            )
        seen.add(key)
    raise ListingError(f"more than {max(1, max_pages)} pages (an endless listing?); stopped")


def resolve_next(
    href: str, params: Params, base_url: str, current: str, origins: Collection[str]
) -> tuple[str, Params]:
    """`_links.next.href` → (URL, query). The href is absolute, or relative to the base
    URL (with or without its path). Filters the href does not repeat are kept, as
    Adobe's own clients re-send them with the continuation token. Raises
    LinkRefusedError for a link to an origin not in `origins`, from https to http, with
    user information, or that is not a URL."""
    try:
        parts = urlsplit(href)
        has_userinfo = parts.username is not None or parts.password is not None
    except ValueError:
        raise LinkRefusedError("is not a URL we can follow", href) from None
    if bool(parts.scheme) != bool(parts.netloc):
        raise LinkRefusedError("is not a URL we can follow", href)
    base = urlsplit(base_url.rstrip("/"))
    if parts.scheme:
        url = f"{parts.scheme}://{parts.netloc}{parts.path}"
    elif base.path and parts.path.startswith(base.path.rstrip("/") + "/"):
        url = f"{base.scheme}://{base.netloc}{parts.path}"
    else:
        url = base_url.rstrip("/") + "/" + parts.path.lstrip("/")
    if has_userinfo:
        raise LinkRefusedError("carries user information", href)
    if urlsplit(current).scheme == "https" and urlsplit(url).scheme != "https":
        raise LinkRefusedError("leaves https", href)
    if origin(url) not in origins:
        raise LinkRefusedError("points to another origin than the API's", href)
    query_ = parse_qs(parts.query, keep_blank_values=True)
    for key, values in params.items():
        query_.setdefault(key, values)
    return url, query_


def query(
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


STARTED = "metrics.durationSummary.startedAtUTC"  # the documented time window for runs


def since_filter(at: datetime) -> str:
    """Runs started at or after `at`."""
    return f"{STARTED}>={int(at.timestamp() * 1000)}"


def window_filters(start: datetime, end: datetime | None) -> list[str]:
    """Runs started in [start, end); `end` None means up to now."""
    until = [] if end is None else [f"{STARTED}<{int(end.timestamp() * 1000)}"]
    return [since_filter(start), *until]


def items_of(page: Mapping[str, Any]) -> list[Any]:
    items = page.get("items")
    return items if isinstance(items, list) else []


def page_key(url: str, params: Params) -> str:
    return url + "?" + urlencode(sorted(params.items()), doseq=True)


def next_href(page: Mapping[str, Any]) -> str | None:
    links = page.get("_links")
    nxt = links.get("next") if isinstance(links, dict) else None
    href = nxt.get("href") if isinstance(nxt, dict) else nxt if isinstance(nxt, str) else None
    return href if isinstance(href, str) and href else None


def chunks(values: Sequence[str], fixed: int, max_url: int) -> Iterator[list[str]]:
    """Split `values` into comma lists that each fit in a URL of `max_url` characters
    whose other parts take `fixed` characters, leaving PAGING_ROOM for the continuation
    token of later pages. A value too long for any URL still goes, alone."""
    budget = max(max_url - fixed - PAGING_ROOM, 1)
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
