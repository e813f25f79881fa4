"""flowbot.aep.paging: walking a listing through a plain `get` function (no HTTP), the
rules on next links, and splitting id lists over bounded URLs."""

from __future__ import annotations

from urllib.parse import quote_plus, urlencode

import pytest

from flowbot.aep.exchange import origin
from flowbot.aep.paging import (
    PAGING_ROOM,
    LinkRefusedError,
    ListingError,
    Params,
    chunks,
    pages,
    query,
    window_filters,
)

BASE = "https://platform.adobe.io/data/foundation/flowservice"
ORIGINS = frozenset({origin(BASE)})


class Listing:
    """A `get` that answers from a dict of URL → page and records what it was asked."""

    def __init__(self, answers: dict[str, dict]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, Params]] = []

    def __call__(self, url: str, params: Params) -> dict:
        self.asked.append((url, params))
        token = params.get("continuationToken", [""])[0]
        return self.answers[f"{url}?{token}"]


def page(n: int, href: str | None) -> dict:
    return {"items": [n], "_links": {"next": {"href": href}} if href else {}}


def walk(get: Listing, **kw) -> list[dict]:
    kw.setdefault("base_url", BASE)
    kw.setdefault("origins", ORIGINS)
    return list(pages(get, BASE + "/runs", query(["flowId==a"]), **kw))


def test_pages_follow_relative_and_absolute_links_and_keep_the_filters():
    get = Listing({
        f"{BASE}/runs?": page(1, "/runs?continuationToken=2"),
        f"{BASE}/runs?2": page(2, "/data/foundation/flowservice/runs?continuationToken=3"),
        f"{BASE}/runs?3": page(3, f"{BASE}/runs?continuationToken=4"),
        f"{BASE}/runs?4": page(4, None),
    })  # fmt: skip
    assert [p["items"] for p in walk(get)] == [[1], [2], [3], [4]]
    assert all(params["property"] == ["flowId==a"] for _, params in get.asked)


def test_pages_are_asked_for_only_when_taken():
    get = Listing(
        {f"{BASE}/runs?": page(1, "/runs?continuationToken=2"), f"{BASE}/runs?2": page(2, None)}
    )
    walker = pages(get, BASE + "/runs", {}, base_url=BASE, origins=ORIGINS)
    next(walker)
    assert len(get.asked) == 1
    walker.close()


def test_a_next_link_back_to_a_page_already_read_is_a_loop():
    get = Listing({
        f"{BASE}/runs?": page(1, "/runs?continuationToken=2"),
        f"{BASE}/runs?2": page(2, "/runs?continuationToken=2"),
    })  # fmt: skip
    with pytest.raises(ListingError, match="repeats a page already read"):
        walk(get)
    assert len(get.asked) == 2


def test_more_pages_than_allowed_stop_the_listing():
    get = Listing(
        {f"{BASE}/runs?{n}": page(n, f"/runs?continuationToken={n + 1}") for n in range(1, 50)}
    )
    get.answers[f"{BASE}/runs?"] = page(0, "/runs?continuationToken=1")
    with pytest.raises(ListingError, match="more than 5 pages"):
        walk(get, max_pages=5)
    assert len(get.asked) == 5


@pytest.mark.parametrize(
    ("href", "why"),
    [
        ("https://evil.example/runs?continuationToken=2", "another origin"),
        ("http://platform.adobe.io/data/foundation/flowservice/runs?x=1", "leaves https"),
        ("https://u:p@platform.adobe.io/runs", "user information"),
        ("//platform.adobe.io/runs", "not a URL"),
    ],
)
def test_a_next_link_that_must_not_be_followed_is_refused_before_it_is_asked(href, why):
    get = Listing({f"{BASE}/runs?": page(1, href)})
    with pytest.raises(LinkRefusedError, match=why) as caught:
        walk(get)
    assert caught.value.href == href
    assert len(get.asked) == 1


def test_a_second_allowed_origin_may_be_followed():
    export = "https://export.example:8443/data"
    get = Listing(
        {
            f"{BASE}/runs?": page(1, f"{export}/runs?continuationToken=2"),
            f"{export}/runs?2": page(2, None),
        }
    )
    assert len(walk(get, origins=ORIGINS | {origin(export)})) == 2


def test_chunks_fit_the_url_and_keep_every_value_once_in_order():
    values = [f"run-{n:04d}-{'x' * (n % 17)}" for n in range(500)]
    fixed, max_url = 120, 900
    got = list(chunks(values, fixed, max_url))
    assert [v for chunk in got for v in chunk] == values
    assert len(got) > 1
    for chunk in got:
        assert fixed + len(quote_plus(",".join(chunk))) <= max_url - PAGING_ROOM


def test_a_value_too_long_for_any_url_still_goes_alone():
    got = list(chunks(["a", "b" * 5000, "c"], 100, 2000))
    assert got == [["a"], ["b" * 5000], ["c"]]


def test_an_empty_list_makes_no_chunk():
    assert list(chunks([], 100, 2000)) == []


def test_query_repeats_property_and_sends_limit_as_text():
    assert urlencode(query(["a==1", "b>2"], "-x", 50), doseq=True) == (
        "property=a%3D%3D1&property=b%3E2&orderby=-x&limit=50"
    )


def test_a_read_window_is_the_documented_start_time_filters():
    from datetime import UTC, datetime

    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    field = "metrics.durationSummary.startedAtUTC"
    assert window_filters(start, end) == [f"{field}>=1767225600000", f"{field}<1767225900000"]
    assert window_filters(start, None) == [f"{field}>=1767225600000"]
