"""The simulator over real HTTP on 127.0.0.1: IMS, headers, listing, paging, faults, scenarios."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from flowbot.sim.payloads import make_flow, make_run, ms
from flowbot.sim.scenario import Scenario, build_scenario, demo_scenario, flow_id
from flowbot.sim.server import Simulator

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "flowbot" / "samples"  # Adobe's documented payloads, shipped with flowbot
SPEC = ROOT / "tests" / "data" / "openapi" / "flow-service-sources.openapi.yaml"
TIMEOUT = 5


@pytest.fixture(scope="module")
def world() -> Scenario:
    """A read-only world shared by the listing tests (do not put runs into it)."""
    return build_scenario(flows=150, runs=2500, now=NOW, seed=7)


@pytest.fixture(scope="module")
def sim(world: Scenario) -> Iterator[Simulator]:
    with Simulator(world, page_size=50) as simulator:
        yield simulator


@pytest.fixture
def fresh() -> Iterator[Simulator]:
    """A simulator of its own, for tests that change the world or queue faults."""
    with Simulator(build_scenario(flows=10, runs=60, now=NOW, seed=3), page_size=20) as simulator:
        yield simulator


@pytest.fixture
def api(sim: Simulator) -> Iterator[requests.Session]:
    with session(sim) as s:
        yield s


def session(sim: Simulator, sandbox: str = "prod") -> requests.Session:
    """A requests session carrying every header the Flow Service wants."""
    s = requests.Session()
    s.headers.update(
        {
            "Authorization": f"Bearer {sim.static_token}",
            "x-api-key": sim.client_id,
            "x-gw-ims-org-id": sim.org_id,
            "x-sandbox-name": sandbox,
        }
    )
    return s


def list_all(s: requests.Session, sim: Simulator, path: str, **params: Any) -> list[dict]:
    """Follow _links.next from the first page to the last; every item, in order."""
    items: list[dict] = []
    url: str | None = sim.url + path
    query: Any = params
    while url:
        response = s.get(url, params=query, timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        following = page["_links"].get("next")
        url, query = (sim.url + following["href"], None) if following else (None, None)
    return items


def started(run: dict) -> int | None:
    return run["metrics"].get("durationSummary", {}).get("startedAtUTC")


def token_form(**overrides: str) -> dict[str, str]:
    form = {
        "grant_type": "client_credentials",
        "client_id": "sim-client",
        "client_secret": "sim-secret",
        "scope": "openid,AdobeID,read_organizations",
    }
    return {**form, **overrides}


# ---------------------------------------------------------------- IMS and headers


def test_token_is_issued_for_the_simulated_client_and_opens_the_api(sim: Simulator) -> None:
    response = requests.post(sim.ims_url, data=token_form(), timeout=TIMEOUT)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 86399
    with session(sim) as s:
        s.headers["Authorization"] = f"Bearer {body['access_token']}"
        assert s.get(sim.url + "/flows", timeout=TIMEOUT).status_code == 200


@pytest.mark.parametrize(
    "form", [token_form(client_secret="wrong"), token_form(client_id="someone-else")]
)
def test_token_request_with_wrong_credentials_is_refused(sim: Simulator, form: dict) -> None:
    response = requests.post(sim.ims_url, data=form, timeout=TIMEOUT)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_token_expires_after_its_lifetime_on_the_injected_clock(world: Scenario) -> None:
    clock = [1000.0]
    with Simulator(world, token_lifetime=60, clock=lambda: clock[0]) as sim, session(sim) as s:
        token = requests.post(sim.ims_url, data=token_form(), timeout=TIMEOUT).json()
        s.headers["Authorization"] = f"Bearer {token['access_token']}"
        assert s.get(sim.url + "/flows", timeout=TIMEOUT).status_code == 200
        clock[0] += 60
        response = s.get(sim.url + "/flows", timeout=TIMEOUT)
        assert response.status_code == 401
        assert response.json() == {"error_code": "401013", "message": "Oauth token is not valid"}


def test_expire_tokens_invalidates_issued_and_static_tokens(fresh: Simulator) -> None:
    issued = requests.post(fresh.ims_url, data=token_form(), timeout=TIMEOUT).json()
    old_static = fresh.static_token
    fresh.expire_tokens()
    with session(fresh) as s:
        for token in (issued["access_token"], old_static):
            s.headers["Authorization"] = f"Bearer {token}"
            assert s.get(fresh.url + "/runs", timeout=TIMEOUT).status_code == 401
        s.headers["Authorization"] = f"Bearer {fresh.static_token}"
        assert s.get(fresh.url + "/runs", timeout=TIMEOUT).status_code == 200


@pytest.mark.parametrize(
    ("header", "value", "status", "code"),
    [
        ("Authorization", None, 401, "401013"),
        ("Authorization", "Bearer not-a-token", 401, "401013"),
        ("x-api-key", "other-client", 403, "403003"),
        ("x-gw-ims-org-id", None, 400, "400003"),
    ],
)
def test_gateway_refuses_requests_without_the_right_headers(
    api: requests.Session, sim: Simulator, header: str, value: str | None, status: int, code: str
) -> None:
    if value is None:
        del api.headers[header]
    else:
        api.headers[header] = value
    response = api.get(sim.url + "/runs", timeout=TIMEOUT)
    assert response.status_code == status
    assert response.json()["error_code"] == code


@pytest.mark.parametrize("sandbox", [None, "nope"])
def test_unknown_or_missing_sandbox_is_forbidden_like_sample_24(
    api: requests.Session, sim: Simulator, sandbox: str | None
) -> None:
    if sandbox is None:
        del api.headers["x-sandbox-name"]
    else:
        api.headers["x-sandbox-name"] = sandbox
    response = api.get(sim.url + "/flows", timeout=TIMEOUT)
    assert response.status_code == 403
    sample = json.loads((SAMPLES / "24-flowservice-error-403-forbidden.json").read_text())
    assert response.json().keys() == sample.keys()
    assert response.json()["type"].endswith("FLOW-2120-403")


def test_a_sandbox_sees_only_its_own_flows_and_runs() -> None:
    scenario = Scenario(now=NOW, sandboxes={"prod", "dev"})
    for sandbox in ("prod", "dev"):
        flow = make_flow(flow_id("f", sandbox), name="f", sandbox=sandbox)
        scenario.put_flow(flow)
        scenario.put_run(make_run(flow["id"], started_at=NOW, sandbox=sandbox))
    with Simulator(scenario) as sim, session(sim, "dev") as s:
        flows = list_all(s, sim, "/flows")
        runs = list_all(s, sim, "/runs")
        assert [f["sandboxName"] for f in flows + runs] == ["dev", "dev"]
        prod_flow = flow_id("f", "prod")
        assert s.get(f"{sim.url}/flows/{prod_flow}", timeout=TIMEOUT).status_code == 404


# ---------------------------------------------------------------- listing and paging


def test_paging_across_many_pages_lists_each_run_exactly_once(
    api: requests.Session, sim: Simulator, world: Scenario
) -> None:
    first = api.get(sim.url + "/runs", timeout=TIMEOUT).json()
    assert len(first["items"]) == 50
    assert re.fullmatch(r"/runs\?continuationToken=[\w-]+", first["_links"]["next"]["href"])
    ids = [run["id"] for run in list_all(api, sim, "/runs")]
    assert len(ids) == len(world.runs) == 2500
    assert set(ids) == set(world.runs)


def test_last_page_has_no_next_link(api: requests.Session, sim: Simulator) -> None:
    flows = api.get(sim.url + "/flows", params={"limit": 1000}, timeout=TIMEOUT).json()
    assert len(flows["items"]) == 50  # limit is capped at page_size
    last: dict = {}
    url = sim.url + "/flows"
    while url:
        last = api.get(url, timeout=TIMEOUT).json()
        url = sim.url + last["_links"]["next"]["href"] if "next" in last["_links"] else ""
    assert last["_links"] == {}
    assert 0 < len(last["items"]) <= 50


def test_limit_makes_smaller_pages(api: requests.Session, sim: Simulator) -> None:
    page = api.get(sim.url + "/runs", params={"limit": 7}, timeout=TIMEOUT).json()
    following = api.get(sim.url + page["_links"]["next"]["href"], timeout=TIMEOUT).json()
    assert len(page["items"]) == len(following["items"]) == 7
    assert not {r["id"] for r in page["items"]} & {r["id"] for r in following["items"]}


def test_continuation_token_survives_the_eviction_of_its_snapshot(
    api: requests.Session, sim: Simulator, world: Scenario
) -> None:
    first = api.get(sim.url + "/runs", params={"orderby": "id"}, timeout=TIMEOUT).json()
    for _ in range(70):  # more queries than the simulator keeps snapshots of
        api.get(sim.url + "/flows", params={"limit": 1}, timeout=TIMEOUT)
    second = api.get(sim.url + first["_links"]["next"]["href"], timeout=TIMEOUT).json()
    expected = sorted(world.runs)[50:100]
    assert [run["id"] for run in second["items"]] == expected


def test_single_flow_and_run_answer_items_lists(
    api: requests.Session, sim: Simulator, world: Scenario
) -> None:
    run = next(iter(world.runs.values()))
    body = api.get(f"{sim.url}/runs/{run['id']}", timeout=TIMEOUT).json()
    assert body == {"items": [run]}
    body = api.get(f"{sim.url}/flows/{run['flowId']}", timeout=TIMEOUT).json()
    assert body == {"items": [world.flows[run["flowId"]]]}


@pytest.mark.parametrize("kind", ["flows", "runs"])
def test_unknown_id_answers_404_shaped_like_sample_23(
    api: requests.Session, sim: Simulator, kind: str
) -> None:
    response = api.get(f"{sim.url}/{kind}/84224def-0000-0000-0000-000000000000", timeout=TIMEOUT)
    assert response.status_code == 404
    sample = json.loads((SAMPLES / "23-flowservice-error-404-flow-not-found.json").read_text())
    body = response.json()
    assert body.keys() == sample.keys() and body["report"].keys() == sample["report"].keys()
    assert body["type"].endswith("FLOW-1439-404") and body["report"]["type"] == kind


# ---------------------------------------------------------------- filters, orderby, count


def test_flow_id_filter_takes_a_list_of_any_of(
    api: requests.Session, sim: Simulator, world: Scenario
) -> None:
    wanted = sorted(world.flows)[:3]
    runs = list_all(api, sim, "/runs", property=f"flowId=={','.join(wanted)}")
    expected = {r["id"] for r in world.runs.values() if r["flowId"] in wanted}
    assert expected and {r["id"] for r in runs} == expected


def test_status_filter_ignores_case(api: requests.Session, sim: Simulator, world: Scenario) -> None:
    runs = list_all(api, sim, "/runs", property="metrics.statusSummary.status==Failed")
    expected = {
        r["id"] for r in world.runs.values() if r["metrics"]["statusSummary"]["status"] == "failed"
    }
    assert expected and {r["id"] for r in runs} == expected


@pytest.mark.parametrize(
    ("op", "keep"),
    [
        (">", lambda at, edge: at > edge),
        ("<", lambda at, edge: at < edge),
        (">=", lambda at, edge: at >= edge),
        ("<=", lambda at, edge: at <= edge),
    ],
)
def test_time_comparisons_on_started_at(
    api: requests.Session, sim: Simulator, world: Scenario, op: str, keep: Any
) -> None:
    times = sorted(t for r in world.runs.values() if (t := started(r)) is not None)
    edge = times[len(times) // 2]
    runs = list_all(api, sim, "/runs", property=f"metrics.durationSummary.startedAtUTC{op}{edge}")
    expected = {r["id"] for r in world.runs.values() if started(r) and keep(started(r), edge)}
    assert expected and {r["id"] for r in runs} == expected


def test_repeated_filters_are_anded(api: requests.Session, sim: Simulator, world: Scenario) -> None:
    low, high = ms(NOW - timedelta(hours=6)), ms(NOW - timedelta(hours=2))
    params = {
        "property": [
            f"metrics.durationSummary.startedAtUTC>{low}",
            f"metrics.durationSummary.startedAtUTC<{high}",
            "metrics.statusSummary.status==success",
        ]
    }
    runs = list_all(api, sim, "/runs", **params)
    expected = {
        r["id"]
        for r in world.runs.values()
        if (t := started(r))
        and low < t < high
        and r["metrics"]["statusSummary"]["status"] == "success"
    }
    assert expected and {r["id"] for r in runs} == expected


def test_flow_filters_on_state_and_last_run(
    api: requests.Session, sim: Simulator, world: Scenario
) -> None:
    disabled = list_all(api, sim, "/flows", property="state==disabled")
    assert {f["id"] for f in disabled} == {
        f["id"] for f in world.flows.values() if f["state"] == "disabled"
    }
    edge = ms(NOW - timedelta(minutes=30))
    recent = list_all(api, sim, "/flows", property=f"lastRunDetails.startedAtUTC>={edge}")
    expected = {
        f["id"]
        for f in world.flows.values()
        if f.get("lastRunDetails", {}).get("startedAtUTC", 0) >= edge
    }
    assert expected and {f["id"] for f in recent} == expected


@pytest.mark.parametrize(
    "bad",
    ["state!=enabled", "metrics.durationSummary.startedAtUTC<=1,2", "flowId", "id~abc"],
)
def test_malformed_filters_are_refused_with_400(
    api: requests.Session, sim: Simulator, bad: str
) -> None:
    response = api.get(sim.url + "/runs", params={"property": bad}, timeout=TIMEOUT)
    assert response.status_code == 400
    assert response.json()["type"].startswith("https://ns.adobe.com/aep/errors/FLOW-")


@pytest.mark.parametrize("prefix", ["", "+", "-"])
def test_orderby_sorts_ascending_or_descending(
    api: requests.Session, sim: Simulator, prefix: str
) -> None:
    runs = list_all(api, sim, "/runs", orderby=prefix + "metrics.durationSummary.startedAtUTC")
    times = [started(r) for r in runs if started(r) is not None]
    assert times == sorted(times, reverse=prefix == "-")
    assert all(started(r) is None for r in runs[len(times) :])  # scheduled runs come last


def test_default_order_is_newest_created_first(api: requests.Session, sim: Simulator) -> None:
    runs = list_all(api, sim, "/runs")
    created = [r["createdAt"] for r in runs]
    assert created == sorted(created, reverse=True)
    names = [f["name"] for f in list_all(api, sim, "/flows", orderby="name")]
    assert names == sorted(names)


def test_count_answers_the_number_of_matches(
    api: requests.Session, sim: Simulator, world: Scenario
) -> None:
    body = api.get(
        sim.url + "/runs",
        params={"count": "true", "property": "metrics.statusSummary.status==failed"},
        timeout=TIMEOUT,
    ).json()
    failed = [r for r in world.runs.values() if r["metrics"]["statusSummary"]["status"] == "failed"]
    assert body == {"count": len(failed)}
    both = api.get(sim.url + "/runs", params={"count": "true", "limit": 5}, timeout=TIMEOUT)
    assert both.status_code == 400


# ---------------------------------------------------------------- changing the world


def test_put_run_shows_up_and_moves_last_run_details(fresh: Simulator) -> None:
    flow = next(iter(fresh.world.scenario.flows.values()))
    run = make_run(flow["id"], status="failed", started_at=NOW + timedelta(minutes=5))
    fresh.put_run(run)
    with session(fresh) as s:
        listed = list_all(s, fresh, "/runs", property=f"flowId=={flow['id']}")
        shown = s.get(f"{fresh.url}/flows/{flow['id']}", timeout=TIMEOUT).json()["items"][0]
    assert run["id"] in {r["id"] for r in listed}
    assert shown["lastRunDetails"]["id"] == run["id"]
    assert shown["lastRunDetails"]["state"] == "failed"


def test_put_run_of_a_run_changed_in_place_is_served_anew(fresh: Simulator) -> None:
    with session(fresh) as s:
        run = list_all(s, fresh, "/runs")[0]  # served once, so its JSON is cached
        changed = fresh.world.scenario.runs[run["id"]]
        changed["metrics"]["statusSummary"]["status"] = "failed"
        fresh.put_run(changed)
        listed = {r["id"]: r for r in list_all(s, fresh, "/runs")}
        flow = s.get(f"{fresh.url}/flows/{run['flowId']}", timeout=TIMEOUT).json()["items"][0]
    assert listed[run["id"]]["metrics"]["statusSummary"]["status"] == "failed"
    assert flow["lastRunDetails"]["id"] != run["id"] or flow["lastRunDetails"]["state"] == "failed"


def test_put_flow_replaces_a_flow(fresh: Simulator) -> None:
    flow = copy.deepcopy(next(iter(fresh.world.scenario.flows.values())))
    flow["state"] = "disabled"
    fresh.put_flow(flow)
    with session(fresh) as s:
        disabled = list_all(s, fresh, "/flows", property="state==disabled")
    assert flow["id"] in {f["id"] for f in disabled}


def test_requests_are_recorded_and_cleared(fresh: Simulator) -> None:
    fresh.clear_requests()
    with session(fresh) as s:
        s.get(fresh.url + "/runs", params={"property": ["flowId==a", "state==b"]}, timeout=TIMEOUT)
    [seen] = fresh.requests
    assert (seen.method, seen.path) == ("GET", "/runs")
    assert seen.query == {"property": ["flowId==a", "state==b"]}
    assert seen.headers["x-api-key"] == "sim-client"
    fresh.clear_requests()
    assert fresh.requests == []


# ---------------------------------------------------------------- faults


@pytest.mark.parametrize("status", [429, 500, 503])
def test_fail_next_answers_the_status_then_recovers(fresh: Simulator, status: int) -> None:
    fresh.fail_next(2, status=status, retry_after=1.5)
    with session(fresh) as s:
        answers = [s.get(fresh.url + "/runs", timeout=TIMEOUT) for _ in range(3)]
    assert [a.status_code for a in answers] == [status, status, 200]
    assert answers[0].headers["Retry-After"] == "1.5"


def test_429_without_retry_after_has_no_header(fresh: Simulator) -> None:
    fresh.fail_next(1, status=429)
    with session(fresh) as s:
        response = s.get(fresh.url + "/runs", timeout=TIMEOUT)
    assert response.status_code == 429 and "Retry-After" not in response.headers


def test_faults_do_not_touch_ims(fresh: Simulator) -> None:
    fresh.fail_next(1, status=503)
    assert requests.post(fresh.ims_url, data=token_form(), timeout=TIMEOUT).status_code == 200
    with session(fresh) as s:
        assert s.get(fresh.url + "/runs", timeout=TIMEOUT).status_code == 503


def test_slow_next_delays_past_a_client_timeout(fresh: Simulator) -> None:
    fresh.slow_next(1, seconds=30)  # stop() cuts the wait short
    with session(fresh) as s:
        with pytest.raises(requests.exceptions.ReadTimeout):
            s.get(fresh.url + "/runs", timeout=0.2)
        assert s.get(fresh.url + "/runs", timeout=TIMEOUT).status_code == 200


def test_malformed_next_answers_200_with_a_body_that_is_not_json(fresh: Simulator) -> None:
    fresh.malformed_next(1)
    with session(fresh) as s:
        response = s.get(fresh.url + "/runs", timeout=TIMEOUT)
        assert response.status_code == 200
        with pytest.raises(requests.exceptions.JSONDecodeError):
            response.json()
        assert s.get(fresh.url + "/runs", timeout=TIMEOUT).json()["items"]


# ---------------------------------------------------------------- scenarios


def test_build_scenario_is_deterministic_for_a_seed() -> None:
    one = build_scenario(flows=40, runs=400, now=NOW, seed=5)
    two = build_scenario(flows=40, runs=400, now=NOW, seed=5)
    other = build_scenario(flows=40, runs=400, now=NOW, seed=6)
    assert one.flows == two.flows and one.runs == two.runs
    assert one.runs != other.runs


def test_build_scenario_makes_a_realistic_world(world: Scenario) -> None:
    flows, runs = world.flows, world.runs
    assert len(flows) == 150 and len(runs) == 2500
    frequencies = {f["scheduleParams"]["frequency"] for f in flows.values()}
    assert frequencies == {"minute", "hour", "day"}
    assert any(f["state"] == "disabled" for f in flows.values())
    assert all(int(f["scheduleParams"]["startTime"]) < NOW.timestamp() for f in flows.values())
    assert all(re.fullmatch(r"[a-z0-9-]+-\d{4}", f["name"]) for f in flows.values())
    statuses = {r["metrics"]["statusSummary"]["status"] for r in runs.values()}
    assert statuses == {"success", "failed", "inProgress", "scheduled"}
    codes = {
        e["code"]
        for r in runs.values()
        if r["metrics"]["statusSummary"]["status"] == "failed"
        for e in r["metrics"]["statusSummary"]["errors"]
    }
    assert codes == {
        "CONNECTOR-1001-500",
        "CONNECTOR-2001-500",
        "INGEST-1212-400",
        "MAPPER-3700-400",
        "INGEST-1401-400",
    }
    lossy = [
        r
        for r in runs.values()
        if r["metrics"]["statusSummary"]["status"] == "success"
        and r["metrics"]["recordSummary"]["failedRecordCount"] > 0
    ]
    assert lossy and all(
        "manifest" in r["activities"][1]["statusSummary"]["extensions"] for r in lossy
    )
    for run in runs.values():
        flow = flows[run["flowId"]]
        assert flow["state"] == "enabled"
        if (at := started(run)) is not None:
            assert ms(NOW - timedelta(days=1)) < at <= ms(NOW)


def test_last_run_details_match_each_flows_newest_run(world: Scenario) -> None:
    newest: dict[str, dict] = {}
    for run in world.runs.values():
        at = started(run)
        if at is not None and (run["flowId"] not in newest or at > started(newest[run["flowId"]])):
            newest[run["flowId"]] = run
    for flow in world.flows.values():
        if flow["id"] in newest:
            assert flow["lastRunDetails"]["id"] == newest[flow["id"]]["id"]
        else:
            assert "lastRunDetails" not in flow


def test_runs_fall_on_their_flows_schedule(world: Scenario) -> None:
    periods = {"minute": 60, "hour": 3600, "day": 86400}
    for run in world.runs.values():
        flow = world.flows[run["flowId"]]
        schedule = flow["scheduleParams"]
        period = periods[schedule["frequency"]] * int(schedule["interval"])
        at = started(run) or run["createdAt"]
        offset = (at // 1000 - int(schedule["startTime"])) % period
        assert offset <= 121, (flow["name"], offset)  # up to 2 minutes after the slot


def test_demo_scenario_has_something_for_every_rule() -> None:
    demo = demo_scenario(NOW)
    flows = {f["name"]: f for f in demo.flows.values()}
    assert 25 <= len(flows) <= 50
    assert {f["sandboxName"] for f in flows.values()} == {"prod"}
    assert flows["crm-daily-import"]["id"] == flow_id("crm-daily-import")

    def newest(name: str) -> dict:
        return demo.runs[flows[name]["lastRunDetails"]["id"]]

    failed = newest("crm-daily-import")
    assert failed["metrics"]["statusSummary"]["status"] == "failed"
    assert failed["metrics"]["statusSummary"]["errors"]
    promotion = failed["activities"][1]["statusSummary"]["extensions"]
    assert {"failedRecords", "sampleErrors"} <= promotion["manifest"].keys()

    lossy = newest("crm-contacts-sync")["metrics"]["recordSummary"]
    assert lossy["inputRecordCount"] == 5000 and lossy["failedRecordCount"] == 600

    late = newest("web-events-hourly")
    assert flows["web-events-hourly"]["scheduleParams"]["frequency"] == "hour"
    assert started(late) == ms(NOW - timedelta(hours=3))

    stuck = newest("orders-backfill")["metrics"]
    assert stuck["statusSummary"]["status"] == "inProgress"
    assert "completedAtUTC" not in stuck["durationSummary"]
    assert stuck["durationSummary"]["startedAtUTC"] == ms(NOW - timedelta(hours=5))

    storm = [f"store-sync-{i:02d}" for i in range(1, 13)]
    for name in storm:
        errors = newest(name)["metrics"]["statusSummary"]["errors"]
        assert [e["code"] for e in errors] == ["CONNECTOR-1001-500"]

    special = {"crm-daily-import", "crm-contacts-sync", "web-events-hourly", "orders-backfill"}
    for name in flows.keys() - special - set(storm):
        run = newest(name)
        assert run["metrics"]["statusSummary"]["status"] == "success"
        assert run["metrics"]["recordSummary"]["failedRecordCount"] == 0
        assert started(run) >= ms(NOW - timedelta(days=1))


# ---------------------------------------------------------------- the OpenAPI shape

# Keys the simulator emits that Adobe's spec does not declare, each seen in a real payload.
UNDECLARED = {
    "items[].metrics.statusSummary.errors": "sample 01 (top-level run errors)",
    "items[].metrics.statusSummary.activityRefs": "sample 01",
    "items[].activities[].statusSummary.errors": "sample 01 (the promotion activity's errors)",
    "items[].activities[].fileSummary.outputFileCount": "sample 01",
    "items[].activities[].fileSummary.extensions": "sample 01 (manifest.fileInfo)",
    "items[].activities[].targetInfo": "sample 01",
}
# The spec misspells two run keys (FACTS.md §1.6); real payloads use the right spelling.
SPELLING = {"activities": "activites", "etag": "eTag"}
# scheduleParams.startTime is declared integer, but real flows carry digit strings (sample 15).
DIGIT_STRINGS = {"items[].scheduleParams.startTime"}


@pytest.fixture(scope="module")
def spec() -> dict:
    return yaml.safe_load(SPEC.read_text())


def resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        node: Any = spec
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def shape_problems(spec: dict, value: Any, schema: dict, path: str) -> list[str]:
    """Where `value` strays from `schema`: undeclared keys and incompatible types."""
    schema = resolve(spec, schema)
    kind = schema.get("type", "object" if "properties" in schema else None)
    problems: list[str] = []
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{path}: {type(value).__name__} where an object is declared"]
        declared = schema.get("properties") or {}
        for key, sub in value.items() if declared else []:  # no properties: an open object
            where = f"{path}.{key}" if path else key
            name = key if key in declared else SPELLING.get(key, key)
            if name in declared:
                problems += shape_problems(spec, sub, declared[name], where)
            elif where not in UNDECLARED:
                problems.append(f"{where}: not declared")
    elif kind == "array":
        if not isinstance(value, list):
            return [f"{path}: {type(value).__name__} where an array is declared"]
        for item in value:
            problems += shape_problems(spec, item, schema.get("items", {}), path + "[]")
    elif kind == "integer":
        digits = path in DIGIT_STRINGS and isinstance(value, str) and value.isdigit()
        if not digits and (not isinstance(value, int) or isinstance(value, bool)):
            problems.append(f"{path}: {value!r} is not an integer")
    elif kind == "string" and not isinstance(value, str):
        problems.append(f"{path}: {value!r} is not a string")
    elif kind == "boolean" and not isinstance(value, bool):
        problems.append(f"{path}: {value!r} is not a boolean")
    return problems


@pytest.mark.parametrize(
    ("path", "schema"), [("/runs", "FlowRunsListResponse"), ("/flows", "FlowListResponse")]
)
def test_pages_match_adobes_openapi_schemas(
    api: requests.Session, sim: Simulator, spec: dict, path: str, schema: str
) -> None:
    declared = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
    assert declared["schema"]["$ref"] == f"#/components/schemas/{schema}"
    problems: set[str] = set()
    url = sim.url + path
    while url:  # every page, so failed, lossy, in-progress and scheduled runs are among them
        page = api.get(url, timeout=TIMEOUT).json()
        problems.update(shape_problems(spec, page, declared["schema"], ""))
        url = sim.url + page["_links"]["next"]["href"] if "next" in page["_links"] else ""
    assert sorted(problems) == []


# ---------------------------------------------------------------- the command


def test_sim_command_serves_until_sigterm() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "flowbot", "sim", "--scenario", "demo", "--page-size", "10"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as proc:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(2)]
        url = re.search(r"http://127\.0\.0\.1:\d+", lines[0])
        assert url, lines
        assert "FLOWBOT_API_URL=" in lines[1] and "ADOBE_CLIENT_SECRET=sim-secret" in lines[1]
        token = requests.post(url.group() + "/ims/token/v3", data=token_form(), timeout=TIMEOUT)
        headers = {
            "Authorization": f"Bearer {token.json()['access_token']}",
            "x-api-key": "sim-client",
            "x-gw-ims-org-id": "SIM@AdobeOrg",
            "x-sandbox-name": "prod",
        }
        page = requests.get(url.group() + "/flows", headers=headers, timeout=TIMEOUT).json()
        assert len(page["items"]) == 10
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
