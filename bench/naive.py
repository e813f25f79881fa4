"""The reference poller: what Adobe's monitoring tutorial suggests, one request per flow.

    GET /runs?property=flowId==<flow id>      for every watched flow, every cycle

(https://experienceleague.adobe.com/docs/experience-platform/sources/api-tutorials/monitor.html
lists a flow's runs this way.) It follows `_links.next` like any careful client, keeps
one `requests.Session`, and does nothing with the runs but decode them: its cost is the
I/O alone. It runs in a child process, as flowbot's measured cycle does.

    python -m bench.naive --url URL --token TOKEN --ids FILE
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

from bench.common import WORK, python, summary


def poll(url: str, token: str, client_id: str, org_id: str, flows: list[str]) -> dict[str, Any]:
    """One naive cycle over `flows`: seconds, requests and runs seen."""
    headers = {
        "Authorization": f"Bearer {token}",
        "x-api-key": client_id,
        "x-gw-ims-org-id": org_id,
        "x-sandbox-name": "prod",
    }
    count = runs = 0
    started = time.perf_counter()
    with requests.Session() as session:
        for flow in flows:
            next_url: str | None = f"{url}/runs?property=flowId=={flow}"
            while next_url:
                response = session.get(next_url, headers=headers, timeout=30)
                response.raise_for_status()
                count += 1
                page = response.json()
                runs += len(page.get("items", []))
                href = (page.get("_links") or {}).get("next", {}).get("href")
                next_url = urljoin(url + "/", href.lstrip("/")) if href else None
    return {"seconds": time.perf_counter() - started, "requests": count, "runs": runs}


def measure_naive(sim: Any, flows: list[str], at: datetime, repeat: int) -> dict[str, Any]:
    """`repeat` naive cycles against `sim`, each in a child process."""
    ids = WORK / "naive-flow-ids.json"
    ids.parent.mkdir(parents=True, exist_ok=True)
    ids.write_text(json.dumps(flows))
    samples = []
    for _ in range(max(repeat, 1)):
        before = len(sim.requests)
        out = json.loads(
            python(
                "-m",
                "bench.naive",
                "--url",
                sim.url,
                "--token",
                sim.static_token,
                "--ids",
                str(ids),
            )  # fmt: skip
        )
        out["sim_requests"] = len(sim.requests) - before
        samples.append(out)
    return {
        "seconds": summary([s["seconds"] for s in samples]),
        "requests": samples[0]["sim_requests"],
        "runs_seen": samples[0]["runs"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--ids", required=True, help="a JSON file: the list of flow ids")
    parser.add_argument("--client-id", default="sim-client")
    parser.add_argument("--org-id", default="SIM@AdobeOrg")
    args = parser.parse_args(argv)
    flows = json.loads(Path(args.ids).read_text())
    print(json.dumps(poll(args.url, args.token, args.client_id, args.org_id, flows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
