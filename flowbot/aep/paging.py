"""Paging through Flow Service listings: query parameters, where the next page is, and
whether following it is allowed. Pure functions; the client does the HTTP."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from flowbot.aep.exchange import origin

Params = dict[str, list[str]]


class LinkRefusedError(ValueError):
    """A next link that must not be followed; the text says why ('leaves https')."""


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
        raise LinkRefusedError("is not a URL we can follow") from None
    if bool(parts.scheme) != bool(parts.netloc):
        raise LinkRefusedError("is not a URL we can follow")
    base = urlsplit(base_url.rstrip("/"))
    if parts.scheme:
        url = f"{parts.scheme}://{parts.netloc}{parts.path}"
    elif base.path and parts.path.startswith(base.path.rstrip("/") + "/"):
        url = f"{base.scheme}://{base.netloc}{parts.path}"
    else:
        url = base_url.rstrip("/") + "/" + parts.path.lstrip("/")
    if has_userinfo:
        raise LinkRefusedError("carries user information")
    if urlsplit(current).scheme == "https" and urlsplit(url).scheme != "https":
        raise LinkRefusedError("leaves https")
    if origin(url) not in origins:
        raise LinkRefusedError("points to another origin than the API's")
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


def since_filter(at: datetime) -> str:
    return f"metrics.durationSummary.startedAtUTC>={int(at.timestamp() * 1000)}"


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
