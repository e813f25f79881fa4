"""Growth: the whole `flowbot check --once` process at 1,000 / 10,000 / 50,000 flows.

    .venv/bin/python -m bench.growth            (sizes: BENCH_GROWTH="1000,10000,50000")

Each size is a world of hourly flows, each with two runs in the last two hours (5%
failed) and 3% of flows silent for six hours (missing runs), served by the simulator in
this process with a default page of 50 items and a largest page of 100 (like a server
that pages small unless asked). For each size, on a fresh database:

- first cycle: `flowbot check --once` as a child process;
- steady cycle: 100 new runs, then `check --once` again;
- quiet cycle: no new runs, `run_once` timed in process (CPU of the cycle alone).

A child reports its own peak RSS (VmHWM, the whole process: interpreter, libraries,
SQLite) and CPU (user + system, start-up included); wall time is the parent's. The
reference, measured in the same run, is a bare loop in a child: `requests` + `orjson`
paging the same listings (flows, runs of the lookback), keeping nothing.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import ROOT, RULES, WORK

PROBE = """
import os, resource, sys, time
mode = sys.argv[1]
started = time.process_time()
code = 0
if mode == "check":
    sys.argv = ["flowbot", "check", "--once"]
    from flowbot.cli import main
    try:
        main()
    except SystemExit as exit:
        code = exit.code or 0
    cycle = None
elif mode == "quiet":
    from flowbot.pipeline import build_deps, run_once
    from flowbot.rules import load_rules
    from flowbot.settings import load_settings
    settings = load_settings()
    deps = build_deps(settings, load_rules(os.environ["FLOWBOT_RULES"]))
    deps.store.migrate()
    t = time.process_time()
    reports, _ = run_once(deps)
    cycle = time.process_time() - t
    code = 0 if all(r.ok for r in reports) else 1
else:
    import orjson, requests
    url, token = os.environ["FLOWBOT_API_URL"], os.environ["ADOBE_ACCESS_TOKEN"]
    headers = {"Authorization": "Bearer " + token, "x-api-key": os.environ["ADOBE_CLIENT_ID"],
               "x-gw-ims-org-id": os.environ["ADOBE_ORG_ID"], "x-sandbox-name": "prod"}
    since = int((time.time() - 86400) * 1000)
    with requests.Session() as s:
        for path, prop in (("/flows", None), ("/runs", f"metrics.durationSummary.startedAtUTC>={since}")):
            params = {"limit": "100"}
            if prop:
                params["property"] = prop
            nxt = url + path
            while nxt:
                page = orjson.loads(s.get(nxt, params=params, headers=headers).content)
                href = (page.get("_links") or {}).get("next", {}).get("href")
                nxt = (url + "/" + href.lstrip("/")) if href and not href.startswith("http") else href
                params = {}
    cycle = None
usage = resource.getrusage(resource.RUSAGE_SELF)
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print("PROBE " + __import__("json").dumps({"cpu": usage.ru_utime + usage.ru_stime,
      "hwm_mb": hwm / 1024, "cycle_cpu": cycle, "code": code}))
"""


def build(flows: int, now: datetime) -> Any:
    from flowbot.sim.payloads import make_flow, make_run
    from flowbot.sim.scenario import Scenario

    rng = random.Random(5)
    scenario = Scenario(now=now)
    for i in range(flows):
        fid = f"grow-{i:06d}"
        start = now - timedelta(days=30, seconds=rng.randint(0, 3599))
        scenario.put_flow(make_flow(fid, name=f"grow-{i:06d}", start_at=start, etag=f'"{i}"'))
        silent = rng.random() < 0.03
        for k in (1, 2):
            at = now - timedelta(hours=k + (6 if silent else 0), seconds=rng.randint(0, 3000))
            failed = rng.random() < 0.05
            scenario.put_run(
                make_run(
                    fid, run_id=f"grow-run-{i:06d}-{k}", status="failed" if failed else "success",
                    started_at=at, completed_at=at + timedelta(minutes=3), input_records=1000,
                    etag=f'"{i}-{k}"',
                )
            )  # fmt: skip
    return scenario


def child(mode: str, env: dict[str, str]) -> dict[str, Any]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], cwd=env["BENCH_CWD"], env=env,
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    wall = time.monotonic() - started
    line = [x for x in done.stdout.splitlines() if x.startswith("PROBE ")]
    if not line:
        raise RuntimeError(f"{mode} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    out = json.loads(line[-1][6:])
    out["wall"] = wall
    return out


def measure_size(flows: int) -> dict[str, Any]:
    from flowbot.sim.payloads import make_run
    from flowbot.sim.server import Simulator

    now = datetime.now(UTC)
    work = WORK / f"growth-{flows}"
    work.mkdir(parents=True, exist_ok=True)
    for old in work.glob("flowbot.db*"):
        old.unlink()
    (work / "rules.yaml").write_text(RULES)
    scenario = build(flows, now)
    with Simulator(scenario, page_size=100, default_page=50) as sim:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWBOT_", "ADOBE_"))}
        env.update(sim.environment())
        env.update(
            ADOBE_ACCESS_TOKEN=sim.static_token, FLOWBOT_DB=str(work / "flowbot.db"),
            FLOWBOT_RULES=str(work / "rules.yaml"), BENCH_CWD=str(work),
            PYTHONPATH=str(ROOT),
        )  # fmt: skip

        def run(mode: str) -> dict[str, Any]:
            before = len(sim.requests)
            out = child(mode, env)
            out["requests"] = sum(1 for r in sim.requests[before:] if not r.path.startswith("/ims"))
            return out

        result = {"flows": flows, "runs": len(scenario.runs)}
        result["bare"] = run("bare")
        result["first"] = run("check")
        rng = random.Random(9)
        at = datetime.now(UTC) - timedelta(seconds=30)
        for n, i in enumerate(rng.sample(range(flows), min(100, flows))):
            sim.put_run(make_run(f"grow-{i:06d}", run_id=f"grow-new-{n}", started_at=at,
                                 completed_at=at, status="failed" if n % 10 == 0 else "success"))  # fmt: skip
        result["steady"] = run("check")
        result["quiet"] = run("quiet")
    return result


def run() -> dict[str, Any]:
    sizes = [int(x) for x in os.environ.get("BENCH_GROWTH", "1000,10000,50000").split(",")]
    return {"sizes": [measure_size(n) for n in sizes]}


def main() -> None:
    results = run()["sizes"]
    out = ROOT / "bench" / "results" / "growth.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    for r in results:
        print(json.dumps({k: r[k] for k in ("flows", "runs")}))
        for k in ("bare", "first", "steady", "quiet"):
            print(" ", k, json.dumps(r[k]))


if __name__ == "__main__":
    main()
