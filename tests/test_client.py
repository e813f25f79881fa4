"""flowbot.aep.client over real HTTP on loopback (issue 2).

A small Flow Service + IMS stand-in in this file gives exact control over answers
(error bodies, non-JSON, malformed items); the simulator tests at the end run the
client against `flowbot.sim.server` with a large scenario.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from flowbot.aep.auth import TokenProvider
from flowbot.aep.client import Clocks, FlowClient, Limits, RetryPolicy
from flowbot.errors import FlowAPIError
from flowbot.sim.payloads import make_flow, make_run

SECRET = "client-secret-do-not-show"
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


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    url_length: int


class FlowService:
    """Serves runs and flows in pages (next href relative, without the filters), checks
    bearer tokens, and answers queued faults first."""

    def __init__(self, runs: list[dict[str, Any]], flows: list[dict[str, Any]], page_size=10):
        self.runs = runs
        self.flows = flows
        self.page_size = page_size
        self.faults: list[tuple[int, dict[str, str], Any]] = []
        self.seen: list[Seen] = []
        self.tokens: set[str] = set()
        self.issued = 0
        service = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                service.issued += 1
                token = f"tok-{service.issued}"
                service.tokens.add(token)
                self.answer(200, {}, {"access_token": token, "expires_in": 86399})

            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                service.seen.append(
                    Seen("GET", parts.path, query, dict(self.headers), len(self.path))
                )
                if service.faults:
                    self.answer(*service.faults.pop(0))
                elif self.headers.get("Authorization", "")[7:] not in service.tokens:
                    self.answer(
                        401, {}, {"error_code": "401013", "message": "Oauth token is not valid"}
                    )
                else:
                    self.answer(200, {}, service.page(parts.path, query))

            def answer(self, status: int, headers: dict[str, str], body: Any) -> None:
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.root = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = self.root + "/data/foundation/flowservice"
        self.ims_url = self.root + "/ims/token/v3"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()

    def page(self, path: str, query: dict[str, list[str]]) -> dict[str, Any]:
        kind, _, item_id = path.removeprefix("/data/foundation/flowservice/").partition("/")
        items = self.runs if kind == "runs" else self.flows
        if item_id:
            return {"items": [i for i in items if i.get("id") == item_id]}
        for prop in query.get("property", []):
            if ">=" in prop:
                key, _, value = prop.partition(">=")
                items = [i for i in items if _get(i, key) >= int(value)]
            else:
                key, _, values = prop.partition("==")
                items = [i for i in items if str(_get(i, key)) in values.split(",")]
        if "orderby" in query:
            field = query["orderby"][0]
            items = sorted(items, key=lambda i: _get(i, field.lstrip("+-")) or 0)
            items.reverse() if field.startswith("-") else None
        size = int(query.get("limit", [self.page_size])[0])
        start = int(query.get("continuationToken", ["0"])[0])
        body: dict[str, Any] = {"items": items[start : start + size], "_links": {}}
        if start + size < len(items):
            body["_links"] = {"next": {"href": f"/{kind}?continuationToken={start + size}"}}
        return body

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def _get(item: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        item = item.get(key) if isinstance(item, dict) else None
    return item


class Waits:
    """A fake sleep: records how long the client wanted to wait, and a clock it moves."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now

    def clocks(self) -> Clocks:
        return Clocks(sleep=self.sleep, monotonic=self.clock)


def runs_of(flows: int, per_flow: int) -> list[dict[str, Any]]:
    out = []
    for f in range(flows):
        for r in range(per_flow):
            started = NOW - timedelta(hours=r + 1)
            out.append(
                make_run(
                    f"flow-{f}",
                    run_id=f"run-{f}-{r}",
                    status="failed" if r % 5 == 0 else "success",
                    started_at=started,
                    completed_at=started + timedelta(minutes=5),
                )
            )
    return out


@pytest.fixture
def service() -> Iterator[FlowService]:
    flows = [make_flow(f"flow-{f}", name=f"flow {f}") for f in range(25)]
    server = FlowService(runs_of(25, 4), flows, page_size=10)
    yield server
    server.close()


@pytest.fixture
def waits() -> Waits:
    return Waits()


@pytest.fixture
def client(service: FlowService, waits: Waits) -> Iterator[FlowClient]:
    tokens = TokenProvider(ims_url=service.ims_url, client_id="cid", client_secret=SECRET)
    flow = FlowClient(service.url, tokens, "cid", "ORG@AdobeOrg", "prod", clocks=waits.clocks())
    yield flow
    flow.close()


def test_paging_follows_relative_next_links_to_the_end(client, service):
    runs = client.list_runs()
    assert len(runs) == 100 and len({r.id for r in runs}) == 100
    assert len(service.seen) == 10
    assert all(s.path == "/data/foundation/flowservice/runs" for s in service.seen)
    assert client.stats.pages == 10 and client.stats.by_status == {200: 10}


def test_next_link_may_be_absolute(client, service):
    service.faults.append(
        (200, {}, {"items": [service.runs[0]], "_links": {"next": {"href": service.url + "/runs?continuationToken=99"}}})
    )  # fmt: skip
    service.tokens.add("unused")
    runs = client.list_runs()
    assert [r.id for r in runs] == ["run-0-0", "run-24-3"]
    assert service.seen[1].query["continuationToken"] == ["99"]


def test_every_request_carries_the_four_headers(client, service):
    client.list_flows()
    client.get_run("run-3-1")
    assert len(service.seen) == 4
    for seen in service.seen:
        assert seen.headers["Authorization"] == "Bearer tok-1"
        assert seen.headers["x-api-key"] == "cid"
        assert seen.headers["x-gw-ims-org-id"] == "ORG@AdobeOrg"
        assert seen.headers["x-sandbox-name"] == "prod"


def test_filters_are_repeated_property_parameters_kept_across_pages(client, service):
    since = NOW - timedelta(hours=2, minutes=30)
    runs = client.list_runs(
        [f"metrics.durationSummary.startedAtUTC>={int(since.timestamp() * 1000)}"]
    )
    assert len(runs) == 50 and all(r.started_at and r.started_at >= since for r in runs)
    assert all(len(s.query["property"]) == 1 for s in service.seen)
    failed = client.list_runs(["metrics.statusSummary.status==failed", "flowId==flow-1,flow-2"])
    assert sorted(r.id for r in failed) == ["run-1-0", "run-2-0"]
    assert service.seen[-1].query["property"] == [
        "metrics.statusSummary.status==failed",
        "flowId==flow-1,flow-2",
    ]


def test_orderby_and_limit(client, service):
    runs = client.list_runs(orderby="-metrics.durationSummary.startedAtUTC", limit=3)
    assert len(runs) == 3 and all(r.started_at == NOW - timedelta(hours=1) for r in runs)
    assert service.seen[-1].query["orderby"] == ["-metrics.durationSummary.startedAtUTC"]
    assert service.seen[-1].query["limit"] == ["3"]
    assert len(service.seen) == 1


def test_flows_with_a_filter_and_one_flow(client, service):
    flows = client.list_flows(["state==enabled"])
    assert len(flows) == 25 and flows[0].name == "flow 0"
    assert client.get_flow("flow-7").id == "flow-7"
    with pytest.raises(FlowAPIError, match="no flow 'missing' in sandbox 'prod'"):
        client.get_flow("missing")


def test_long_id_lists_are_split_so_no_url_grows_past_the_limit(client, service):
    ids = [f"run-{f}-{r}" for f in range(25) for r in range(4)] + [
        f"absent-{i:04}" for i in range(400)
    ]
    runs = client.runs_by_ids(ids)
    assert len(runs) == 100 and len({r.id for r in runs}) == 100
    assert len(service.seen) > 3
    assert max(s.url_length for s in service.seen) + len(service.root) <= 2000
    firsts = [s for s in service.seen if "continuationToken" not in s.query]
    asked = [i for s in firsts for i in s.query["property"][0].removeprefix("id==").split(",")]
    assert sorted(asked) == sorted(ids)
    count = len(service.seen)
    assert client.runs_by_ids([]) == [] and len(service.seen) == count


def test_runs_of_flows_splits_and_adds_the_since_filter(client, service):
    flow_ids = [f"flow-{f}" for f in range(25)] + [f"gone-{'x' * 60}-{i}" for i in range(40)]
    since = NOW - timedelta(hours=1, minutes=30)
    runs = client.runs_of_flows(flow_ids, since)
    assert sorted(r.id for r in runs) == sorted(f"run-{f}-0" for f in range(25))
    assert len(service.seen) >= 2
    for seen in service.seen:
        assert (
            seen.query["property"][1]
            == f"metrics.durationSummary.startedAtUTC>={int(since.timestamp() * 1000)}"
        )
        assert seen.url_length + len(service.root) <= 2000


def test_429_honours_retry_after_and_5xx_backs_off(client, service, waits):
    service.faults += [(429, {"Retry-After": "7"}, {}), (503, {}, "busy"), (500, {}, {})]
    runs = client.list_runs(["flowId==flow-0"])
    assert len(runs) == 4
    assert waits.waits[0] == 7
    assert 0.5 <= waits.waits[1] <= 1.0 and 1.0 <= waits.waits[2] <= 2.0  # backoff + jitter
    assert client.stats.retries == 3
    assert client.stats.by_status == {429: 1, 503: 1, 500: 1, 200: 1}


def test_retry_after_is_capped(client, service, waits):
    service.faults.append((429, {"Retry-After": "86400"}, {}))
    client.list_flows(limit=1)
    assert waits.waits == [60.0]


def test_retries_are_bounded_and_give_up_with_a_clear_error(client, service, waits):
    service.faults += [(503, {}, {})] * 10
    with pytest.raises(FlowAPIError) as caught:
        client.list_runs()
    assert "GET /data/foundation/flowservice/runs in sandbox 'prod' failed after 5 attempts" in str(
        caught.value
    )
    assert caught.value.retryable and caught.value.status == 503
    assert len(waits.waits) == 4 and len(service.seen) == 5


def test_the_deadline_bounds_the_total_time(service, waits):
    tokens = TokenProvider(static_token="tok")
    service.tokens.add("tok")
    client = FlowClient(
        service.url, tokens, "cid", "org", "prod",
        retry=RetryPolicy(deadline=20, max_attempts=50), clocks=waits.clocks(),
    )  # fmt: skip
    service.faults += [(429, {"Retry-After": "6"}, {})] * 50
    with pytest.raises(FlowAPIError, match="failed after 4 attempts"):
        client.list_runs()
    assert sum(waits.waits) <= 20
    client.close()


def test_connection_errors_are_retried_then_reported(waits):
    tokens = TokenProvider(static_token="tok")
    client = FlowClient(
        "http://127.0.0.1:9/flowservice", tokens, "c", "o", "prod",
        retry=RetryPolicy(max_attempts=3), clocks=waits.clocks(),
    )  # fmt: skip
    with pytest.raises(FlowAPIError, match="failed after 3 attempts.*ConnectionError"):
        client.list_flows()
    assert client.stats.by_status == {"error": 3} and client.stats.retries == 2
    client.close()


def test_an_expired_token_is_refreshed_once_in_the_middle_of_a_listing(client, service):
    first = client.list_runs(limit=20)
    service.tokens.clear()  # IMS revoked every token
    service.faults.append((200, {}, {"items": first[:1] and [service.runs[0]], "_links": {"next": {"href": "/runs?continuationToken=10"}}}))  # fmt: skip
    runs = client.list_runs()
    assert len(runs) == 1 + 90
    assert client.stats.token_refreshes == 2
    assert client.stats.by_status[401] == 1


def test_a_401_after_a_fresh_token_is_an_error_without_secrets(client, service):
    service.faults += [
        (401, {}, {"error_code": "401013", "message": "Oauth token is not valid"})
    ] * 2
    with pytest.raises(FlowAPIError) as caught:
        client.list_runs()
    text = str(caught.value)
    assert (
        "sandbox 'prod'" in text and "/runs" in text and "401013: Oauth token is not valid" in text
    )
    assert "even with a fresh token" in text
    assert SECRET not in text and "tok-" not in text


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (403, FORBIDDEN, "403, no permission in this sandbox (check the sandbox name and product "
                         "profile): FLOW-2120-403: You do not have sufficient permissions"),
        (404, NOT_FOUND, "404, not found, or no access in this sandbox: FLOW-1439-404"),
        (400, {"message": "bad filter"}, "400, the request was refused: bad filter"),
    ],
)  # fmt: skip
def test_refusals_name_sandbox_endpoint_and_adobe_error(client, service, status, body, expected):
    client.tokens.token()
    service.faults.append((status, {}, {**body, "echo": f"Bearer tok-1 {SECRET}"}))
    with pytest.raises(FlowAPIError) as caught:
        client.list_flows(["name==x"])
    text = str(caught.value)
    assert text.startswith("Flow Service GET /data/foundation/flowservice/flows in sandbox 'prod'")
    assert expected in text
    assert "name==x" not in text and SECRET not in text and "tok-1" not in text
    assert caught.value.status == status and not caught.value.retryable


def test_error_bodies_that_echo_the_token_are_redacted(client, service):
    client.tokens.token()
    service.faults.append((403, {}, {"errorMessage": "token tok-1 is not allowed"}))
    with pytest.raises(FlowAPIError) as caught:
        client.list_runs()
    assert "tok-1" not in str(caught.value) and "token *** is not allowed" in str(caught.value)


def test_a_non_json_body_is_a_flow_api_error(client, service):
    service.faults.append((200, {"Content-Type": "text/html"}, "<html>gateway</html>"))
    with pytest.raises(FlowAPIError, match="not JSON \\(text/html\\)"):
        client.list_runs()
    service.faults.append((200, {}, "[1, 2]"))
    with pytest.raises(FlowAPIError, match="list where an object was expected"):
        client.list_runs()


def test_malformed_items_are_logged_and_skipped(client, service, caplog):
    good = service.runs[0]
    service.faults.append(
        (200, {}, {"items": [good, "junk", {"flowId": "f"}, {"id": "", "x": 1}, None]})
    )
    with caplog.at_level("WARNING", logger="flowbot.aep"):
        runs = client.list_runs()
    assert [r.id for r in runs] == [good["id"]]
    assert len(caplog.records) == 4


def test_a_page_loop_is_an_error_and_no_page_is_read_twice(client, service):
    loop = {
        "items": [service.runs[0]],
        "_links": {"next": {"href": "/runs?continuationToken=same"}},
    }
    service.faults += [(200, {}, loop)] * 3
    with pytest.raises(FlowAPIError, match="repeats a page already read"):
        client.list_runs()
    assert len(service.seen) == 2


def test_a_next_link_to_the_first_page_itself_is_a_loop(client, service):
    first = {"items": [service.runs[0]], "_links": {"next": {"href": "/runs"}}}
    service.faults.append((200, {}, first))
    with pytest.raises(FlowAPIError, match="a loop"):
        client.list_runs()
    assert len(service.seen) == 1


# ---------------------------------------------------------------- against the simulator

SIM_NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def sim() -> Iterator[Any]:
    from flowbot.sim.scenario import build_scenario
    from flowbot.sim.server import Simulator

    simulator = Simulator(build_scenario(flows=50, runs=1000, now=SIM_NOW, seed=1), page_size=100)
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def sim_client(sim: Any, waits: Waits) -> Iterator[FlowClient]:
    sim.clear_requests()
    tokens = TokenProvider(
        ims_url=sim.ims_url, client_id=sim.client_id, client_secret=sim.client_secret
    )
    client = FlowClient(sim.url, tokens, sim.client_id, sim.org_id, "prod", clocks=waits.clocks())
    yield client
    client.close()


def api_requests(sim: Any) -> list[Any]:
    return [r for r in sim.requests if not r.path.startswith("/ims/")]


def test_sim_lists_every_run_exactly_once_across_pages(sim, sim_client):
    runs = sim_client.list_runs()
    assert len(runs) == 1000
    assert sorted(r.id for r in runs) == sorted(sim.world.scenario.runs)
    assert len(api_requests(sim)) == 10
    for request in api_requests(sim):
        assert request.headers["authorization"].startswith("Bearer sim-")
        assert request.headers["x-api-key"] == "sim-client"
        assert request.headers["x-gw-ims-org-id"] == "SIM@AdobeOrg"
        assert request.headers["x-sandbox-name"] == "prod"


def test_sim_filters_orderby_and_limit(sim, sim_client):
    flows = sim_client.list_flows()
    assert len(flows) == 50
    flow_ids = [f.id for f in flows[:5]]
    since = SIM_NOW - timedelta(hours=6)
    some = sim_client.runs_of_flows(flow_ids, since)
    assert some and all(r.flow_id in flow_ids and r.started_at >= since for r in some)
    everything = sim_client.list_runs()
    expected = {
        r.id for r in everything if r.flow_id in flow_ids and r.started_at and r.started_at >= since
    }
    assert {r.id for r in some} == expected
    failed = sim_client.list_runs(["metrics.statusSummary.status==failed"])
    assert failed and all(r.state == "failed" for r in failed)
    newest = sim_client.list_runs(orderby="-metrics.durationSummary.startedAtUTC", limit=5)
    starts = [r.started_at for r in newest]
    assert len(newest) == 5 and starts == sorted(starts, reverse=True)
    assert starts[0] == max(r.started_at for r in everything if r.started_at)
    picked = [r.id for r in everything[::7]]
    assert sorted(r.id for r in sim_client.runs_by_ids(picked)) == sorted(picked)
    assert sim_client.get_run(picked[0]).id == picked[0]
    assert sim_client.get_flow(flow_ids[0]).name == flows[0].name


def test_sim_token_expiry_mid_listing_refreshes_once(sim, sim_client):
    pages = []

    def expire_after_third_page(response, *args, **kwargs):
        pages.append(response.url)
        if len(pages) == 3:
            sim.expire_tokens()

    sim_client._session.hooks["response"].append(expire_after_third_page)
    runs = sim_client.list_runs()
    assert len({r.id for r in runs}) == len(runs) == 1000
    assert sim_client.stats.token_refreshes == 2
    assert sim_client.stats.by_status[401] == 1


def test_sim_429_with_retry_after_and_5xx_are_retried(sim, sim_client, waits):
    sim.fail_next(2, status=429, retry_after=3)
    sim.fail_next(1, status=500)
    assert len(sim_client.list_flows()) == 50
    assert waits.waits[:2] == [3.0, 3.0] and 1.0 <= waits.waits[2] <= 2.0
    assert sim_client.stats.retries == 3


def test_sim_gives_up_after_bounded_retries(sim, sim_client, waits):
    sim.fail_next(5, status=503)
    with pytest.raises(FlowAPIError, match="failed after 5 attempts.*HTTP 503"):
        sim_client.list_flows()
    assert len(waits.waits) == 4


def test_sim_slow_answer_past_the_timeout_is_retried(sim, waits):
    tokens = TokenProvider(static_token=sim.static_token)
    client = FlowClient(
        sim.url, tokens, sim.client_id, sim.org_id, "prod",
        limits=Limits(timeout=0.2), clocks=waits.clocks(),
    )  # fmt: skip
    sim.slow_next(1, 1.0)
    assert len(client.list_flows()) == 50
    assert client.stats.by_status["error"] == 1
    client.close()


def test_sim_non_json_body(sim, sim_client):
    sim.malformed_next(1)
    with pytest.raises(FlowAPIError, match="not JSON"):
        sim_client.list_runs()


def test_sim_wrong_sandbox_and_unknown_flow_errors(sim):
    tokens = TokenProvider(
        ims_url=sim.ims_url, client_id=sim.client_id, client_secret=sim.client_secret
    )
    client = FlowClient(sim.url, tokens, sim.client_id, sim.org_id, "staging")
    with pytest.raises(FlowAPIError) as caught:
        client.list_runs(["flowId==x"])
    text = str(caught.value)
    assert "GET /runs in sandbox 'staging': 403" in text and "FLOW-2120-403" in text
    assert sim.client_secret not in text and tokens.token() not in text
    client.sandbox = "prod"
    with pytest.raises(FlowAPIError, match="GET /flows/nope in sandbox 'prod': 404.*FLOW-1439-404"):
        client.get_flow("nope")
    client.close()


def test_sim_bad_credentials_name_ims_not_the_secret(sim):
    tokens = TokenProvider(
        ims_url=sim.ims_url, client_id=sim.client_id, client_secret="wrong-secret"
    )
    client = FlowClient(sim.url, tokens, sim.client_id, sim.org_id, "prod")
    with pytest.raises(FlowAPIError) as caught:
        client.list_flows()
    assert sim.ims_url in str(caught.value) and "invalid_client" in str(caught.value)
    assert "wrong-secret" not in str(caught.value)
    client.close()


def test_a_listing_pauses_the_cyclic_gc_and_always_restores_it():
    import gc

    from flowbot.aep.client import _cyclic_gc_paused

    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with _cyclic_gc_paused():
            assert not gc.isenabled()
            raise RuntimeError("a page failed")
    assert gc.isenabled()


def test_iter_runs_asks_for_each_page_only_when_taken(client, service):
    pages = client.iter_runs(["flowId==flow-1,flow-2,flow-3"])
    first = next(pages)
    assert len(first) == 10 and len(service.seen) == 1
    rest = [run.id for page in pages for run in page]
    assert len(first) + len(rest) == 12 and len(service.seen) == 2
    assert {r.id for r in first}.isdisjoint(rest)


def test_iter_runs_stops_at_the_limit_like_list_runs(client, service):
    pages = list(client.iter_runs(limit=15))
    assert [len(p) for p in pages] == [15] and len(service.seen) == 1
    assert [r.id for r in client.list_runs(limit=15)] == [r.id for r in pages[0]]


def test_the_retry_policy_given_decides_every_wait(service, waits):
    service.tokens.add("tok")
    client = FlowClient(
        service.url, TokenProvider(static_token="tok"), "cid", "org", "prod",
        retry=RetryPolicy(backoff=1.0, jitter=lambda low, high: high), clocks=waits.clocks(),
    )  # fmt: skip
    service.faults += [(503, {}, {}), (502, {}, {}), (429, {"Retry-After": "9"}, {})]
    assert len(client.list_flows()) == len(service.flows)
    assert waits.waits == [1.0, 2.0, 9.0]
    assert client.stats.retries == 3
    client.close()
