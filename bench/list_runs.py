"""Listing 100,000 runs from the simulator: flowbot's FlowClient against a bare
`requests` loop over the same pages.

    .venv/bin/python -m bench.list_runs [--runs 100000] [--flows 10000] [--repeat 3]

Both read every page of `GET /runs` (page size 100) with the same session reuse; the
client also parses every run into a `Run`. Reports the median wall time of `--repeat`
runs and their spread, the HTTP requests each made, and the ratio; checks that the
client saw every run exactly once; writes bench/results/list_runs.json. The simulator
runs in a child process, as the real API runs elsewhere (in-process, it would share
the GIL with the client and measure the server as much as the client).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

from flowbot.aep.auth import TokenProvider
from flowbot.aep.client import FlowClient
from flowbot.sim.scenario import build_scenario
from flowbot.sim.server import Simulator

RESULTS = Path(__file__).parent / "results" / "list_runs.json"
NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)


def with_client(sim: Served) -> tuple[float, int, list[str]]:
    tokens = TokenProvider(static_token=sim.static_token)
    client = FlowClient(sim.url, tokens, sim.client_id, sim.org_id, "prod")
    started = time.perf_counter()
    runs = client.list_runs()
    elapsed = time.perf_counter() - started
    requests_made = client.stats.requests
    client.close()
    return elapsed, requests_made, [run.id for run in runs]


def with_bare_requests(sim: Served) -> tuple[float, int, list[str]]:
    return _bare(sim, lambda response: response.json())


def with_bare_orjson(sim: Served) -> tuple[float, int, list[str]]:
    import orjson

    return _bare(sim, lambda response: orjson.loads(response.content))


def _bare(sim: Served, decode: Any) -> tuple[float, int, list[str]]:
    headers = {
        "Authorization": f"Bearer {sim.static_token}",
        "x-api-key": sim.client_id,
        "x-gw-ims-org-id": sim.org_id,
        "x-sandbox-name": "prod",
    }
    ids: list[str] = []
    count = 0
    started = time.perf_counter()
    with requests.Session() as session:
        url: str | None = sim.url + "/runs"
        while url:
            response = session.get(url, headers=headers, timeout=30)
            response.raise_for_status()
            count += 1
            page: dict[str, Any] = decode(response)
            ids.extend(item["id"] for item in page["items"])
            href = (page.get("_links") or {}).get("next", {}).get("href")
            url = urljoin(sim.url + "/", href.lstrip("/")) if href else None
    return time.perf_counter() - started, count, ids


@dataclass(frozen=True)
class Served:
    """What the benchmark needs of a simulator running in another process."""

    url: str
    static_token: str
    client_id: str
    org_id: str


def serve(flows: int, runs: int, ready: Any, stop: Any) -> None:
    """In a child process (as a real API is elsewhere): serve the scenario until `stop`."""
    scenario = build_scenario(flows=flows, runs=runs, now=NOW, seed=1)
    with Simulator(scenario, page_size=100) as sim:
        ready.put(
            (Served(sim.url, sim.static_token, sim.client_id, sim.org_id), set(scenario.runs))
        )
        stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--flows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    print(f"building a scenario of {args.flows:,} flows and {args.runs:,} runs ...", flush=True)
    ready: multiprocessing.Queue[Any] = multiprocessing.Queue()
    stop = multiprocessing.Event()
    child = multiprocessing.Process(target=serve, args=(args.flows, args.runs, ready, stop))
    child.start()
    figures: dict[str, dict[str, Any]] = {}
    try:
        sim, expected = ready.get(timeout=600)
        ways = (
            ("bare_requests", with_bare_requests),
            ("bare_orjson", with_bare_orjson),
            ("flowbot", with_client),
        )
        times: dict[str, list[float]] = {name: [] for name, _ in ways}
        counts: dict[str, list[int]] = {name: [] for name, _ in ways}
        for _ in range(args.repeat):  # interleaved, so that the machine's load hits all alike
            for name, measure in ways:
                elapsed, made, ids = measure(sim)
                times[name].append(elapsed)
                counts[name].append(made)
                dupes = [i for i, n in Counter(ids).items() if n > 1]
                if len(ids) != len(expected) or set(ids) != expected or dupes:
                    print(f"{name}: saw {len(ids)} runs, {len(dupes)} duplicated", file=sys.stderr)
                    return 1
        for name, _ in ways:
            figures[name] = {
                "median_s": round(statistics.median(times[name]), 3),
                "min_s": round(min(times[name]), 3),
                "max_s": round(max(times[name]), 3),
                "times_s": [round(t, 3) for t in times[name]],
                "requests": counts[name][0],
                "runs_seen": len(expected),
                "each_run_once": True,
            }
    finally:
        stop.set()
        child.join(timeout=30)
        ready.close()
    ratio = figures["flowbot"]["median_s"] / figures["bare_orjson"]["median_s"]
    result = {
        "benchmark": "list_runs",
        "runs": args.runs,
        "flows": args.flows,
        "page_size": 100,
        "repeat": args.repeat,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "results": figures,
        "ratio_flowbot_to_bare": round(ratio, 3),  # the bare loop decoding with orjson
        "ratio_flowbot_to_bare_requests": round(
            figures["flowbot"]["median_s"] / figures["bare_requests"]["median_s"], 3
        ),
        "target_ratio": 1.1,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\n{'':15}{'median s':>10}{'spread s':>18}{'requests':>10}{'runs once':>11}")
    for name, row in figures.items():
        spread = f"{row['min_s']:.2f}-{row['max_s']:.2f}"
        print(
            f"{name:15}{row['median_s']:>10.2f}{spread:>18}{row['requests']:>10}"
            f"{'yes' if row['each_run_once'] else 'no':>11}"
        )
    print(f"\nflowbot / bare orjson loop: {ratio:.2f}x (target <= 1.1x); written to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
