"""A hostile Flow Service and IMS on loopback (tests/hostile_servers.py): credentials
never leave the configured origins, every exchange is bounded in time and size, a
listing in pages and loops, a fetch in time; bad numbers, deep JSON and unusable
`Retry-After` values give one clear error (or skip one item), never a traceback; and
a local clock step loses no run."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from conftest import Ticks
from hostile_servers import HostileServer

from flowbot.aep.auth import TokenProvider
from flowbot.aep.client import Clocks, FlowClient, Limits, RetryPolicy
from flowbot.errors import FlowAPIError
from flowbot.retry_after import parse_retry_after
from flowbot.sim.payloads import make_flow, make_run

TOKEN = "tok-hostile-1234"
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
RUN = make_run("flow-1", run_id="run-1", status="failed", started_at=NOW, completed_at=NOW)


@pytest.fixture
def api():
    with HostileServer() as server:
        yield server


@pytest.fixture
def foreign():
    with HostileServer() as server:
        server.on("/runs", lambda h: h.json(200, {"items": [RUN]}))
        yield server


def client_for(
    url: str, ticks: Ticks | None = None, max_attempts: int = 1, other_origins=(), **limits
) -> FlowClient:
    """A client of `url` with a static token; `limits` are Limits fields."""
    ticks = ticks or Ticks()
    return FlowClient(
        url, TokenProvider(static_token=TOKEN), "cid", "ORG@AdobeOrg", "prod",
        limits=Limits(**limits), retry=RetryPolicy(max_attempts=max_attempts),
        clocks=Clocks(sleep=ticks.sleep, monotonic=ticks), other_origins=other_origins,
    )  # fmt: skip


def page(next_href: str | None, items=(RUN,)) -> dict:
    return {"items": list(items), "_links": {"next": {"href": next_href}} if next_href else {}}


def credentials_in(server: HostileServer) -> list[str]:
    found = []
    for seen in server.requests:
        text = json.dumps(seen.headers) + seen.body + json.dumps(seen.query)
        found += [word for word in (TOKEN, "cid", "ORG@AdobeOrg", "hostile-secret") if word in text]
    return found


# ---------------------------------------------------------------- credentials stay home


def test_a_next_link_to_another_host_is_refused_and_gets_no_credentials(api, foreign):
    href = foreign.url.replace("http://", "http://user:pw@") + "/runs?continuationToken=abc#x"
    api.on("/runs", lambda h: h.json(200, page(href)))
    with client_for(api.url) as client, pytest.raises(FlowAPIError) as caught:
        client.list_runs()
    text = str(caught.value)
    assert "refused to follow the next link" in text and foreign.url.split("//")[1] in text
    assert "continuationToken" not in text and "abc" not in text and "pw" not in text
    assert foreign.requests == [] and credentials_in(foreign) == []
    assert len(api.requests) == 1 and api.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_a_relative_link_with_another_port_or_scheme_relative_host_is_refused(api, foreign):
    host = foreign.url.removeprefix("http:")  # //127.0.0.1:port: same host, another port
    api.on("/runs", lambda h: h.json(200, page(host + "/runs?continuationToken=1")))
    with client_for(api.url) as client, pytest.raises(FlowAPIError, match="refused"):
        client.list_runs()
    assert foreign.requests == []


def test_the_export_origin_is_the_one_other_origin_allowed(api, foreign):
    api.on("/runs", lambda h: h.json(200, page(foreign.url + "/runs?continuationToken=1")))
    with client_for(api.url, other_origins=[foreign.url + "/data/foundation/export"]) as client:
        assert [r.id for r in client.list_runs()] == ["run-1", "run-1"]
    assert foreign.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_a_next_link_from_https_to_http_is_refused_even_to_an_allowed_origin(tmp_path, foreign):
    with HostileServer(tls=True, tmp=tmp_path) as secure:
        secure.on("/runs", lambda h: h.json(200, page(foreign.url + "/runs?x=1")))
        client = client_for(secure.url, other_origins=[foreign.url])
        client._session.verify = secure.cert
        client._session.trust_env = False  # REQUESTS_CA_BUNDLE would replace `verify`
        with client, pytest.raises(FlowAPIError, match="leaves https"):
            client.list_runs()
        assert len(secure.requests) == 1
    assert foreign.requests == []


def test_a_redirect_is_not_followed_and_is_an_error(api, foreign):
    api.on("/runs", lambda h: h.json(302, {}, {"Location": foreign.url + "/runs?token=zzz"}))
    with client_for(api.url) as client, pytest.raises(FlowAPIError) as caught:
        client.list_runs()
    assert "302, a redirect to http://127.0.0.1" in str(caught.value)
    assert "zzz" not in str(caught.value) and foreign.requests == []


def test_ims_posts_its_form_to_the_ims_url_only_and_never_follows_a_redirect(api, foreign):
    api.on("/ims/token/v3", lambda h: h.json(307, {}, {"Location": foreign.url + "/ims"}))
    tokens = TokenProvider(
        ims_url=api.url + "/ims/token/v3", client_id="cid", client_secret="hostile-secret"
    )
    with pytest.raises(FlowAPIError, match="answered 307") as caught:
        tokens.token()
    tokens.close()
    assert "hostile-secret" not in str(caught.value)
    assert "client_secret=hostile-secret" in api.requests[0].body
    assert foreign.requests == []


def test_a_page_loop_reads_no_page_twice(api):
    api.on("/runs", lambda h: h.json(200, page(f"/runs?continuationToken={len(api.requests) % 3}")))
    with client_for(api.url) as client, pytest.raises(FlowAPIError, match="a loop"):
        client.list_runs()
    keys = [json.dumps(r.query, sort_keys=True) for r in api.requests]
    assert len(keys) == len(set(keys)) == 4  # the first page, then tokens 1, 2, 0; 1 again


# ---------------------------------------------------------------- bounds


def test_endless_pages_stop_at_the_page_limit_with_a_clear_error(api):
    api.on("/runs", lambda h: h.json(200, page(f"/runs?continuationToken={len(api.requests)}")))
    with client_for(api.url, max_pages=25) as client, pytest.raises(FlowAPIError) as caught:
        client.list_runs()
    assert "more than 25 pages" in str(caught.value) and len(api.requests) == 25


def test_endless_pages_stop_at_the_fetch_budget(api):
    ticks = Ticks()

    def slow_page(h):  # every page costs 7 s of the client's clock
        ticks.now += 7
        h.json(200, page(f"/runs?continuationToken={len(api.requests)}"))

    api.on("/runs", slow_page)
    with client_for(api.url, ticks) as client, pytest.raises(FlowAPIError) as caught:
        with client.budget(60):
            client.list_runs()
    assert "ran out of its 60s budget" in str(caught.value)
    assert len(api.requests) == 9 and ticks.now <= 63


@pytest.mark.parametrize("phase", ["body", "headers"])
def test_a_trickled_answer_is_cut_at_the_total_deadline(api, phase):
    body = json.dumps(page(None)).encode()

    def trickle(h):
        if phase == "headers":
            h.trickle(b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100, every=0.2)
        else:
            h.head(200, {"Content-Type": "application/json"}, len(body))
            h.trickle(body, every=0.2)

    api.on("/runs", trickle)
    started = time.monotonic()
    with client_for(api.url, timeout=1.0) as client, pytest.raises(FlowAPIError) as caught:
        client.list_runs()
    elapsed = time.monotonic() - started
    assert "no complete answer within 1s" in str(caught.value)
    assert 0.9 <= elapsed < 2.5


def test_a_trickled_ims_answer_is_cut_at_its_deadline(api):
    api.on("/ims/token/v3", lambda h: (h.head(200, {}, 500), h.trickle(b"{" * 500, every=0.2)))
    tokens = TokenProvider(ims_url=api.url + "/ims/token/v3", client_id="c",
                           client_secret="hostile-secret", timeout=1.0)  # fmt: skip
    started = time.monotonic()
    with pytest.raises(FlowAPIError, match="failed: no complete answer within 1s"):
        tokens.token()
    assert time.monotonic() - started < 2.5
    tokens.close()


def test_a_huge_page_stops_at_the_size_limit(api):
    chunk = b'{"id": "x", "flowId": "f", "pad": "' + b"y" * 65000 + b'"},'

    def huge(h):  # 400 MB if read to the end, without a Content-Length
        h.head(200, {"Content-Type": "application/json"})
        h.write(b'{"items": [')
        for _ in range(400 * 2**20 // len(chunk)):
            if not h.write(chunk):
                return

    api.on("/runs", huge)
    with client_for(api.url, max_bytes=8 * 2**20) as client, pytest.raises(FlowAPIError) as caught:
        client.list_runs()
    assert "larger than 8 MB (reading stopped)" in str(caught.value)
    assert api.sent < 40 * 2**20  # the client hung up early: kernel buffers at most


def test_a_declared_length_over_the_limit_is_refused_before_reading(api):
    api.on("/runs", lambda h: (h.head(200, {}, 10**12), h.write(b"{")))
    with client_for(api.url) as client, pytest.raises(FlowAPIError, match="larger than 64 MB"):
        client.list_runs()


@pytest.mark.parametrize(
    "value", ["inf", "nan", "1e12", "-5", "garbage", "9" * 400, "Thu, 99 Foo 2026", "0x10"]
)
def test_an_unusable_retry_after_falls_back_to_the_normal_backoff(api, value):
    answers = iter([(429, {}, {"Retry-After": value}), (200, page(None), {})])
    api.on("/runs", lambda h: h.json(*next(answers)))
    ticks = Ticks()
    with client_for(api.url, ticks, max_attempts=3) as client:
        assert len(client.list_runs()) == 1
    assert len(ticks.slept) == 1 and 0.25 <= ticks.slept[0] <= 0.5


def test_retry_after_is_parsed_strictly_and_clamped():
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("7", now=at, cap=60) == 7
    assert parse_retry_after(" 2.5 ", now=at, cap=60) == 2.5
    assert parse_retry_after("86400", now=at, cap=60) == 60
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now=at, cap=60) == 30
    assert parse_retry_after("Wed, 31 Dec 2025 00:00:00 GMT", now=at, cap=60) == 0
    for bad in ["inf", "nan", "1e12", "-1", "", None, "1_000", "٣", "+5", "5 s", 7]:
        assert parse_retry_after(bad, now=at, cap=60) is None, bad


def test_json_nested_200000_deep_is_one_clear_error(api):
    api.on("/runs", lambda h: h.json(200, b'{"items": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"))
    with client_for(api.url) as client, pytest.raises(FlowAPIError) as caught:
        client.list_runs()
    assert "not JSON" in str(caught.value) and "depth" in str(caught.value)


def test_a_deeply_nested_item_is_skipped_and_the_others_are_read(api, caplog):
    deep: dict = {"id": "run-deep", "flowId": "f"}
    cursor = deep
    for _ in range(400):
        cursor["x"] = {}
        cursor = cursor["x"]
    api.on("/runs", lambda h: h.json(200, page(None, [RUN, deep, {**RUN, "id": "run-2"}])))
    with client_for(api.url) as client:
        assert [r.id for r in client.list_runs()] == ["run-1", "run-2"]
    assert "run-deep" in caplog.text and "nested deeper than" in caplog.text


def test_huge_numbers_are_unknown_counts_for_their_run_only(api):
    poisoned = json.loads(json.dumps(RUN))
    poisoned["id"] = "run-big"
    poisoned["metrics"]["recordSummary"]["inputRecordCount"] = 10**20
    poisoned["metrics"]["recordSummary"]["failedRecordCount"] = 2**63
    poisoned["metrics"]["durationSummary"]["startedAtUTC"] = 10**19
    api.on("/runs", lambda h: h.json(200, page(None, [RUN, poisoned])))
    with client_for(api.url) as client:
        runs = {r.id: r for r in client.list_runs()}
    assert runs["run-big"].input_records is None and runs["run-big"].failed_records is None
    assert runs["run-big"].started_at is None
    assert runs["run-1"].input_records == RUN["metrics"]["recordSummary"]["inputRecordCount"]


def test_a_number_beyond_a_double_is_a_clear_error(api):
    api.on("/runs", lambda h: h.json(200, b'{"items": [{"id": "a", "n": 1' + b"0" * 400 + b"}]}"))
    with client_for(api.url) as client, pytest.raises(FlowAPIError, match="not JSON"):
        client.list_runs()


def test_the_server_clock_is_remembered_from_the_date_header(api):
    api.on("/runs", lambda h: h.json(200, page(None), {"X": "1"}))
    with client_for(api.url) as client:
        assert client.server_time is None
        client.list_runs()
        assert abs(client.server_time - datetime.now(UTC)) < timedelta(minutes=1)


# ---------------------------------------------------------------- end to end


RULES = """
sandboxes: [prod]
lookback: 24h
channels:
  audit: {file: alerts.jsonl}
defaults:
  channels: [audit]
monitoring:
  channels: [audit]
  after: 1m
rules:
  - {name: run-failed, type: status, status: [failed]}
"""


def _world(tmp_path, sim, clock):
    from flowbot.pipeline import build_deps
    from flowbot.rules import load_rules

    (tmp_path / "rules.yaml").write_text(RULES)
    settings = sim.settings(
                db=str(tmp_path / "flowbot.db"),
    )  # fmt: skip
    return build_deps(settings, load_rules(tmp_path / "rules.yaml"), clock=clock)


def _alerted(tmp_path) -> list[str]:
    path = tmp_path / "alerts.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return sorted(json.loads(line)["flow"]["name"] for line in lines if '"firing"' in line)


def test_failed_runs_beside_poisoned_ones_still_alert(tmp_path, clock):
    from flowbot.pipeline import run_once
    from flowbot.sim.scenario import Scenario
    from flowbot.sim.server import Simulator

    scenario = Scenario(now=clock())
    for i in range(7):
        scenario.put_flow(
            make_flow(f"f-{i}", name=f"crm-{i}", start_at=clock() - timedelta(days=1))
        )
        run = make_run(f"f-{i}", status="failed", started_at=clock() - timedelta(minutes=20),
                       completed_at=clock() - timedelta(minutes=10))  # fmt: skip
        if i == 5:  # beyond SQLite's INTEGER: stored and judged with the count unknown
            run["metrics"]["recordSummary"]["inputRecordCount"] = 2**64 - 1  # an int to orjson
        if i == 6:  # too deep to store: skipped alone
            run["activities"] = [{"id": "a", "x": json.loads("[" * 300 + "]" * 300)}]
        scenario.put_run(run)
    with Simulator(scenario) as sim:
        deps = _world(tmp_path, sim, clock)
        reports, _ = run_once(deps)
        deps.store.close()
    assert reports[0].ok, reports[0].error
    assert _alerted(tmp_path) == [f"crm-{i}" for i in range(6)]


def test_a_local_clock_step_forward_and_back_loses_no_run(tmp_path, clock):
    from flowbot.pipeline import run_once
    from flowbot.sim.scenario import Scenario
    from flowbot.sim.server import Simulator

    api_clock = [clock().timestamp()]  # the API's own clock does not jump
    scenario = Scenario(now=clock())
    scenario.put_flow(make_flow("f-1", name="crm-1", start_at=clock() - timedelta(days=1)))
    with Simulator(scenario, wall=lambda: api_clock[0]) as sim:
        deps = _world(tmp_path, sim, clock)
        assert run_once(deps)[0][0].ok
        clock.advance(days=1)  # the local clock steps a day ahead for one cycle
        api_clock[0] += 60
        assert run_once(deps)[0][0].ok
        clock.advance(days=-1, minutes=2)  # and back
        api_clock[0] += 60
        started = datetime.fromtimestamp(api_clock[0] - 30, tz=UTC)
        sim.put_run(make_run("f-1", status="failed", started_at=started, completed_at=started))
        assert run_once(deps)[0][0].ok
        deps.store.close()
    assert _alerted(tmp_path) == ["crm-1"]
