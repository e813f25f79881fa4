"""flowbot.aep.client over real HTTP on loopback.

Behaviour (paging, filters, headers, token refresh, retries) is checked against the
simulator, `flowbot.sim.server.Simulator`, serving a small world: 25 flows of 4 runs
each, 10 items to a page. Answers the simulator never gives (Adobe error bodies that
echo a secret, non-JSON, malformed items, absolute or looping next links) come from
`HostileServer` (tests/hostile_servers.py). The last tests run the client against a
large generated scenario.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import Ticks
from hostile_servers import Exchange, HostileServer

from flowbot.aep.auth import TokenProvider
from flowbot.aep.client import MAX_URL, Clocks, FlowClient, Limits, RetryPolicy
from flowbot.aep.paging import PAGING_ROOM
from flowbot.errors import FlowAPIError
from flowbot.sim.payloads import make_flow, make_run
from flowbot.sim.scenario import Scenario, build_scenario
from flowbot.sim.server import IMS_PATH, RecordedRequest, Simulator

SECRET = "client-secret-do-not-show"
TOKEN = "hostile-token-1"
NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)
FORBIDDEN = {
    "type": "https://ns.adobe.com/aep/errors/FLOW-2120-403",
    "title": "Forbidden",
    "status": 403,
    "errorMessage": "You do not have sufficient permissions to perform the operation.",
}
NOT_FOUND = {
    "type": "https://ns.adobe.com/aep/errors/FLOW-1439-404",
    "title": "Resource not found",
    "status": 404,
    "errorMessage": "The requested flows resource nope is not found.",
}


def small_world() -> Scenario:
    """25 flows (flow-24 disabled), each with 4 runs started 1 to 4 hours before NOW;
    every fifth run of a flow (the newest) failed."""
    world = Scenario(now=NOW)
    for f in range(25):
        state = "disabled" if f == 24 else "enabled"
        world.put_flow(make_flow(f"flow-{f}", name=f"flow {f}", state=state))
        for r in range(4):
            started = NOW - timedelta(hours=r + 1)
            world.put_run(
                make_run(
                    f"flow-{f}",
                    run_id=f"run-{f}-{r}",
                    status="failed" if r % 5 == 0 else "success",
                    started_at=started,
                    completed_at=started + timedelta(minutes=5),
                )
            )
    return world


def clocks(ticks: Ticks) -> Clocks:
    return Clocks(sleep=ticks.sleep, monotonic=ticks)


def api_requests(sim: Simulator) -> list[RecordedRequest]:
    return [r for r in sim.requests if r.path != IMS_PATH]


def token_requests(sim: Simulator) -> list[RecordedRequest]:
    return [r for r in sim.requests if r.path == IMS_PATH]


def own_part(sim: Simulator, request: RecordedRequest) -> str:
    """The URL of `request` without the server's continuation token: what the client
    built itself."""
    return sim.url + re.sub(r"[?&]continuationToken=[^&]*", "", request.target)


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(small_world(), page_size=10) as simulator:
        yield simulator


@pytest.fixture
def client(sim: Simulator, ticks: Ticks) -> Iterator[FlowClient]:
    tokens = TokenProvider(
        ims_url=sim.ims_url, client_id=sim.client_id, client_secret=sim.client_secret
    )
    with FlowClient(sim.url, tokens, sim.client_id, sim.org_id, "prod", clocks=clocks(ticks)) as c:
        yield c


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    """A Flow Service whose routes each test sets; its IMS always issues TOKEN."""
    with HostileServer() as server:
        server.on(IMS_PATH, lambda h: h.json(200, {"access_token": TOKEN, "expires_in": 86399}))
        yield server


@pytest.fixture
def hostile_client(hostile: HostileServer, ticks: Ticks) -> Iterator[FlowClient]:
    tokens = TokenProvider(ims_url=hostile.url + IMS_PATH, client_id="cid", client_secret=SECRET)
    with FlowClient(hostile.url, tokens, "cid", "ORG@AdobeOrg", "prod", clocks=clocks(ticks)) as c:
        yield c


def hostile_api(server: HostileServer) -> list[Any]:
    return [r for r in server.requests if r.path != IMS_PATH]


def run_payload(run_id: str) -> dict[str, Any]:
    return make_run("flow-0", run_id=run_id, started_at=NOW, completed_at=NOW)


# ---------------------------------------------------------------- paging and filters


def test_a_listing_asks_for_pages_of_100_and_follows_smaller_ones(client, sim):
    runs = client.list_runs()  # the simulator pages by 10 whatever `limit` asks
    assert len(runs) == 100 and len({r.id for r in runs}) == 100
    assert [s.query.get("limit") for s in api_requests(sim)] == [["100"]] * 10


def test_a_listing_takes_one_request_when_the_server_gives_pages_of_100(ticks):
    with Simulator(small_world(), page_size=100, default_page=10) as sim:
        tokens = TokenProvider(
            ims_url=sim.ims_url, client_id=sim.client_id, client_secret=sim.client_secret
        )
        with FlowClient(
            sim.url, tokens, sim.client_id, sim.org_id, "prod", clocks=clocks(ticks)
        ) as c:
            assert len(c.list_runs()) == 100 and c.stats.pages == 1


def test_flows_by_ids_reads_only_those_flows(client, sim):
    flows = client.flows_by_ids(["flow-3", "flow-7", "flow-3", "nope"])
    assert sorted(f.id for f in flows) == ["flow-3", "flow-7"]
    (request,) = api_requests(sim)
    assert request.path == "/flows" and request.query["property"] == ["id==flow-3,flow-7,nope"]


def test_paging_follows_relative_next_links_to_the_end(client, sim):
    runs = client.list_runs()
    assert len(runs) == 100 and len({r.id for r in runs}) == 100
    seen = api_requests(sim)
    assert len(seen) == 10 and all(s.path == "/runs" for s in seen)
    assert all("continuationToken" in s.query for s in seen[1:])
    assert client.stats.pages == 10 and client.stats.by_status == {200: 10}


def test_next_link_may_be_absolute(hostile, hostile_client):
    def runs(h: Exchange) -> None:
        if "continuationToken" in h.seen.query:
            h.json(200, {"items": [run_payload("run-b")]})
        else:
            href = hostile.url + "/runs?continuationToken=99"
            h.json(200, {"items": [run_payload("run-a")], "_links": {"next": {"href": href}}})

    hostile.on("/runs", runs)
    assert [r.id for r in hostile_client.list_runs()] == ["run-a", "run-b"]
    assert hostile_api(hostile)[1].query["continuationToken"] == ["99"]


def test_every_request_carries_the_four_headers(client, sim):
    client.list_flows()
    client.get_run("run-3-1")
    seen = api_requests(sim)
    assert len(seen) == 4 and len(token_requests(sim)) == 1
    for request in seen:
        assert request.headers["authorization"] == f"Bearer {client.tokens.token()}"
        assert request.headers["x-api-key"] == sim.client_id
        assert request.headers["x-gw-ims-org-id"] == sim.org_id
        assert request.headers["x-sandbox-name"] == "prod"


def test_filters_are_repeated_property_parameters_kept_across_pages(client, sim):
    since = NOW - timedelta(hours=2, minutes=30)
    runs = client.list_runs(
        [f"metrics.durationSummary.startedAtUTC>={int(since.timestamp() * 1000)}"]
    )
    assert len(runs) == 50 and all(r.started_at and r.started_at >= since for r in runs)
    assert len(api_requests(sim)) == 5
    assert all(len(s.query["property"]) == 1 for s in api_requests(sim))
    failed = client.list_runs(["metrics.statusSummary.status==failed", "flowId==flow-1,flow-2"])
    assert sorted(r.id for r in failed) == ["run-1-0", "run-2-0"]
    assert api_requests(sim)[-1].query["property"] == [
        "metrics.statusSummary.status==failed",
        "flowId==flow-1,flow-2",
    ]


def test_orderby_and_limit(client, sim):
    runs = client.list_runs(orderby="-metrics.durationSummary.startedAtUTC", limit=3)
    assert len(runs) == 3 and all(r.started_at == NOW - timedelta(hours=1) for r in runs)
    [seen] = api_requests(sim)
    assert seen.query["orderby"] == ["-metrics.durationSummary.startedAtUTC"]
    assert seen.query["limit"] == ["3"]


def test_flows_with_a_filter_and_one_flow(client):
    flows = client.list_flows(["state==enabled"])
    assert len(flows) == 24 and flows[0].name == "flow 0"
    assert "flow-24" not in {f.id for f in flows}
    assert client.get_flow("flow-7").id == "flow-7"
    with pytest.raises(FlowAPIError, match="GET /flows/missing in sandbox 'prod': 404") as caught:
        client.get_flow("missing")
    assert caught.value.status == 404


def test_an_empty_answer_for_one_flow_or_run_is_not_found(hostile, hostile_client):
    hostile.on("/flows/gone", lambda h: h.json(200, {"items": []}))
    hostile.on("/runs/gone", lambda h: h.json(200, {"items": []}))
    with pytest.raises(FlowAPIError, match="no flow 'gone' in sandbox 'prod'"):
        hostile_client.get_flow("gone")
    with pytest.raises(FlowAPIError, match="no run 'gone' in sandbox 'prod'") as caught:
        hostile_client.get_run("gone")
    assert caught.value.status == 404


def test_long_id_lists_are_split_so_no_url_grows_past_the_limit(client, sim):
    ids = [f"run-{f}-{r}" for f in range(25) for r in range(4)] + [
        f"absent-{i:04}" for i in range(400)
    ]
    runs = client.runs_by_ids(ids)
    assert len(runs) == 100 and len({r.id for r in runs}) == 100
    seen = api_requests(sim)
    firsts = [s for s in seen if "continuationToken" not in s.query]
    assert len(firsts) > 3
    # room is left for the server's continuation token on every later page
    assert max(len(own_part(sim, s)) for s in seen) <= MAX_URL - PAGING_ROOM
    asked = [i for s in firsts for i in s.query["property"][0].removeprefix("id==").split(",")]
    assert sorted(asked) == sorted(ids)
    count = len(sim.requests)
    assert client.runs_by_ids([]) == [] and len(sim.requests) == count


def test_runs_of_flows_splits_and_adds_the_since_filter(client, sim):
    flow_ids = [f"flow-{f}" for f in range(25)] + [f"gone-{'x' * 60}-{i}" for i in range(40)]
    since = NOW - timedelta(hours=1, minutes=30)
    runs = client.runs_of_flows(flow_ids, since)
    assert sorted(r.id for r in runs) == sorted(f"run-{f}-0" for f in range(25))
    seen = api_requests(sim)
    assert len([s for s in seen if "continuationToken" not in s.query]) >= 2
    for request in seen:
        assert (
            request.query["property"][1]
            == f"metrics.durationSummary.startedAtUTC>={int(since.timestamp() * 1000)}"
        )
        assert len(own_part(sim, request)) <= MAX_URL - PAGING_ROOM


def test_iter_runs_asks_for_each_page_only_when_taken(client, sim):
    pages = client.iter_runs(["flowId==flow-1,flow-2,flow-3"])
    first = next(pages)
    assert len(first) == 10 and len(api_requests(sim)) == 1
    rest = [run.id for page in pages for run in page]
    assert len(first) + len(rest) == 12 and len(api_requests(sim)) == 2
    assert {r.id for r in first}.isdisjoint(rest)


def test_iter_runs_stops_at_the_limit_like_list_runs(client, sim):
    pages = list(client.iter_runs(limit=15))
    assert [len(p) for p in pages] == [10, 5] and len(api_requests(sim)) == 2
    assert api_requests(sim)[0].query["limit"] == ["15"]
    assert [r.id for r in client.list_runs(limit=15)] == [r.id for p in pages for r in p]


# ---------------------------------------------------------------- retries and time


def test_429_honours_retry_after_and_5xx_backs_off(client, sim, ticks):
    sim.fail_next(1, status=429, retry_after=7)
    sim.fail_next(1, status=503)
    sim.fail_next(1, status=500)
    runs = client.list_runs(["flowId==flow-0"])
    assert len(runs) == 4
    assert ticks.slept[0] == 7
    assert 0.5 <= ticks.slept[1] <= 1.0 and 1.0 <= ticks.slept[2] <= 2.0  # backoff + jitter
    assert client.stats.retries == 3
    assert client.stats.by_status == {429: 1, 503: 1, 500: 1, 200: 1}


def test_retry_after_is_capped(client, sim, ticks):
    sim.fail_next(1, status=429, retry_after=86400)
    client.list_flows(limit=1)
    assert ticks.slept == [60.0]


def test_retries_are_bounded_and_give_up_with_a_clear_error(client, sim, ticks):
    sim.fail_next(10, status=503)
    with pytest.raises(FlowAPIError) as caught:
        client.list_runs()
    assert "GET /runs in sandbox 'prod' failed after 5 attempts" in str(caught.value)
    assert caught.value.retryable and caught.value.status == 503
    assert len(ticks.slept) == 4 and len(api_requests(sim)) == 5


def test_the_deadline_bounds_the_total_time(sim, ticks):
    tokens = TokenProvider(static_token=sim.static_token)
    client = FlowClient(
        sim.url, tokens, sim.client_id, sim.org_id, "prod",
        retry=RetryPolicy(deadline=20, max_attempts=50), clocks=clocks(ticks),
    )  # fmt: skip
    sim.fail_next(50, status=429, retry_after=6)
    with pytest.raises(FlowAPIError, match="failed after 4 attempts"):
        client.list_runs()
    assert sum(ticks.slept) <= 20
    client.close()


def test_the_retry_policy_given_decides_every_wait(sim, ticks):
    client = FlowClient(
        sim.url, TokenProvider(static_token=sim.static_token), sim.client_id, sim.org_id,
        "prod", retry=RetryPolicy(backoff=1.0, jitter=lambda low, high: high),
        clocks=clocks(ticks),
    )  # fmt: skip
    sim.fail_next(1, status=503)
    sim.fail_next(1, status=502)
    sim.fail_next(1, status=429, retry_after=9)
    assert len(client.list_flows()) == len(sim.world.scenario.flows)
    assert ticks.slept == [1.0, 2.0, 9.0]
    assert client.stats.retries == 3
    client.close()


def test_connection_errors_are_retried_then_reported(ticks):
    tokens = TokenProvider(static_token="tok")
    client = FlowClient(
        "http://127.0.0.1:9/flowservice", tokens, "c", "o", "prod",
        retry=RetryPolicy(max_attempts=3), clocks=clocks(ticks),
    )  # fmt: skip
    with pytest.raises(FlowAPIError, match="failed after 3 attempts.*ConnectionError"):
        client.list_flows()
    assert client.stats.by_status == {"error": 3} and client.stats.retries == 2
    client.close()


# ---------------------------------------------------------------- tokens


def test_an_expired_token_is_refreshed_once_in_the_middle_of_a_listing(client, sim):
    pages = client.iter_runs()
    first = next(pages)
    sim.expire_tokens()  # IMS revoked every token it issued
    ids = [run.id for page in [first, *pages] for run in page]
    assert len(ids) == len(set(ids)) == 100
    assert client.stats.token_refreshes == 2 and len(token_requests(sim)) == 2
    assert client.stats.by_status[401] == 1


def test_a_401_after_a_fresh_token_is_an_error_without_secrets(client, sim):
    sim.fail_next(2, status=401)
    with pytest.raises(FlowAPIError) as caught:
        client.list_runs()
    text = str(caught.value)
    assert (
        "sandbox 'prod'" in text and "/runs" in text and "401013: Oauth token is not valid" in text
    )
    assert "even with a fresh token" in text and len(token_requests(sim)) == 2
    assert sim.client_secret not in text and client.tokens.token() not in text


# ---------------------------------------------------------------- exact answers


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (403, FORBIDDEN, "403, no permission in this sandbox (check the sandbox name and product "
                         "profile): FLOW-2120-403: You do not have sufficient permissions"),
        (404, NOT_FOUND, "404, not found, or no access in this sandbox: FLOW-1439-404"),
        (400, {"message": "bad filter"}, "400, the request was refused: bad filter"),
    ],
)  # fmt: skip
def test_refusals_name_sandbox_endpoint_and_adobe_error(
    hostile, hostile_client, status, body, expected
):
    echo = {**body, "echo": f"Bearer {TOKEN} {SECRET}"}
    hostile.on("/flows", lambda h: h.json(status, echo))
    with pytest.raises(FlowAPIError) as caught:
        hostile_client.list_flows(["name==x"])
    text = str(caught.value)
    assert text.startswith("Flow Service GET /flows in sandbox 'prod'")
    assert expected in text
    assert "name==x" not in text and SECRET not in text and TOKEN not in text
    assert caught.value.status == status and not caught.value.retryable


def test_error_bodies_that_echo_the_token_are_redacted(hostile, hostile_client):
    hostile.on("/runs", lambda h: h.json(403, {"errorMessage": f"token {TOKEN} is not allowed"}))
    with pytest.raises(FlowAPIError) as caught:
        hostile_client.list_runs()
    assert TOKEN not in str(caught.value) and "token *** is not allowed" in str(caught.value)


def test_a_non_json_body_is_a_flow_api_error(hostile, hostile_client):
    html = b"<html>gateway</html>"
    hostile.on("/runs", lambda h: h.json(200, html, {"Content-Type": "text/html"}))
    with pytest.raises(FlowAPIError, match="not JSON \\(text/html\\)"):
        hostile_client.list_runs()
    hostile.on("/runs", lambda h: h.json(200, [1, 2]))
    with pytest.raises(FlowAPIError, match="list where an object was expected"):
        hostile_client.list_runs()


def test_malformed_items_are_logged_and_skipped(hostile, hostile_client, caplog):
    good = run_payload("run-good")
    items = [good, "junk", {"flowId": "f"}, {"id": "", "x": 1}, None]
    hostile.on("/runs", lambda h: h.json(200, {"items": items}))
    with caplog.at_level("WARNING", logger="flowbot.aep"):
        runs = hostile_client.list_runs()
    assert [r.id for r in runs] == ["run-good"]
    assert len(caplog.records) == 4


def test_a_page_loop_is_an_error_and_no_page_is_read_twice(hostile, hostile_client):
    loop = {
        "items": [run_payload("run-a")],
        "_links": {"next": {"href": "/runs?continuationToken=same"}},
    }
    hostile.on("/runs", lambda h: h.json(200, loop))
    with pytest.raises(FlowAPIError, match="repeats a page already read"):
        hostile_client.list_runs()
    assert len(hostile_api(hostile)) == 2


def test_a_next_link_to_the_first_page_itself_is_a_loop(hostile, hostile_client):
    first = {"items": [run_payload("run-a")], "_links": {"next": {"href": "/runs"}}}
    hostile.on("/runs", lambda h: h.json(200, first))
    with pytest.raises(FlowAPIError, match="a loop"):
        hostile_client.list_runs()
    assert len(hostile_api(hostile)) == 1


def test_a_listing_pauses_the_cyclic_gc_and_always_restores_it():
    import gc

    from flowbot.aep.client import _cyclic_gc_paused

    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with _cyclic_gc_paused():
            assert not gc.isenabled()
            raise RuntimeError("a page failed")
    assert gc.isenabled()


# ---------------------------------------------------------------- a large scenario


@pytest.fixture(scope="module")
def big() -> Iterator[Simulator]:
    scenario = build_scenario(flows=50, runs=1000, now=NOW, seed=1)
    with Simulator(scenario, page_size=100) as simulator:
        yield simulator


@pytest.fixture
def big_client(big: Simulator, ticks: Ticks) -> Iterator[FlowClient]:
    big.clear_requests()
    tokens = TokenProvider(
        ims_url=big.ims_url, client_id=big.client_id, client_secret=big.client_secret
    )
    with FlowClient(big.url, tokens, big.client_id, big.org_id, "prod", clocks=clocks(ticks)) as c:
        yield c


def test_sim_lists_every_run_exactly_once_across_pages(big, big_client):
    runs = big_client.list_runs()
    assert len(runs) == 1000
    assert sorted(r.id for r in runs) == sorted(big.world.scenario.runs)
    assert len(api_requests(big)) == 10
    for request in api_requests(big):
        assert request.headers["authorization"] == f"Bearer {big_client.tokens.token()}"
        assert request.headers["x-sandbox-name"] == "prod"


def test_sim_filters_orderby_and_limit(big, big_client):
    flows = big_client.list_flows()
    assert len(flows) == 50
    flow_ids = [f.id for f in flows[:5]]
    since = NOW - timedelta(hours=6)
    some = big_client.runs_of_flows(flow_ids, since)
    assert some and all(r.flow_id in flow_ids and r.started_at >= since for r in some)
    everything = big_client.list_runs()
    expected = {
        r.id for r in everything if r.flow_id in flow_ids and r.started_at and r.started_at >= since
    }
    assert {r.id for r in some} == expected
    failed = big_client.list_runs(["metrics.statusSummary.status==failed"])
    assert failed and all(r.state == "failed" for r in failed)
    newest = big_client.list_runs(orderby="-metrics.durationSummary.startedAtUTC", limit=5)
    starts = [r.started_at for r in newest]
    assert len(newest) == 5 and starts == sorted(starts, reverse=True)
    assert starts[0] == max(r.started_at for r in everything if r.started_at)
    picked = [r.id for r in everything[::7]]
    assert sorted(r.id for r in big_client.runs_by_ids(picked)) == sorted(picked)
    assert big_client.get_run(picked[0]).id == picked[0]
    assert big_client.get_flow(flow_ids[0]).name == flows[0].name


def test_sim_429_with_retry_after_and_5xx_are_retried(big, big_client, ticks):
    big.fail_next(2, status=429, retry_after=3)
    big.fail_next(1, status=500)
    assert len(big_client.list_flows()) == 50
    assert ticks.slept[:2] == [3.0, 3.0] and 1.0 <= ticks.slept[2] <= 2.0
    assert big_client.stats.retries == 3


def test_sim_slow_answer_past_the_timeout_is_retried(big, ticks):
    tokens = TokenProvider(static_token=big.static_token)
    client = FlowClient(
        big.url, tokens, big.client_id, big.org_id, "prod",
        limits=Limits(timeout=0.2), clocks=clocks(ticks),
    )  # fmt: skip
    big.slow_next(1, 1.0)
    assert len(client.list_flows()) == 50
    assert client.stats.by_status["error"] == 1
    client.close()


def test_sim_non_json_body(big, big_client):
    big.malformed_next(1)
    with pytest.raises(FlowAPIError, match="not JSON"):
        big_client.list_runs()


def test_sim_wrong_sandbox_and_unknown_flow_errors(big):
    tokens = TokenProvider(
        ims_url=big.ims_url, client_id=big.client_id, client_secret=big.client_secret
    )
    client = FlowClient(big.url, tokens, big.client_id, big.org_id, "staging")
    with pytest.raises(FlowAPIError) as caught:
        client.list_runs(["flowId==x"])
    text = str(caught.value)
    assert "GET /runs in sandbox 'staging': 403" in text and "FLOW-2120-403" in text
    assert big.client_secret not in text and tokens.token() not in text
    client.sandbox = "prod"
    with pytest.raises(FlowAPIError, match="GET /flows/nope in sandbox 'prod': 404.*FLOW-1439-404"):
        client.get_flow("nope")
    client.close()


def test_sim_bad_credentials_name_ims_not_the_secret(big):
    tokens = TokenProvider(
        ims_url=big.ims_url, client_id=big.client_id, client_secret="wrong-secret"
    )
    client = FlowClient(big.url, tokens, big.client_id, big.org_id, "prod")
    with pytest.raises(FlowAPIError) as caught:
        client.list_flows()
    assert big.ims_url in str(caught.value) and "invalid_client" in str(caught.value)
    assert "wrong-secret" not in str(caught.value)
    client.close()
