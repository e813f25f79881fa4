"""Memory over many cycles: the RSS of a process running 1,000 cycles vs after 10.

    .venv/bin/python -m bench.memory       (BENCH_MEMORY_CYCLES, default 1000)

The daemon's loop without its scheduler: one process builds the dependencies once and
calls `pipeline.run_once` cycle after cycle with an injected clock that advances
`poll_every` (5 min) each time, as `flowbot run` does between ticks. Before each cycle
the simulator (served by this parent process) receives new runs of 200 flows, some
failed and some good again, so alerts fire, repeat and resolve and the file channel
gets messages. The child reports its RSS after every cycle.
"""

from __future__ import annotations

import json
import multiprocessing
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import WORK, size

T0 = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)
POLL = timedelta(minutes=5)
FLOWS = 200

RULES = """
sandboxes: [prod]
poll_every: 5m
channels:
  audit: {file: alerts.jsonl}
defaults:
  channels: [audit]
  repeat_after: 1h
rules:
  - {name: run-failed, type: status, status: [failed]}
  - {name: bad-records, type: failed_records, above: 5%}
  - {name: flaky, type: failed_runs, above: 50%, window: 10}
  - {name: hourly-missing, type: missing_run, every: 1h, grace: 30m, flows: {name: "m-*"}}
"""


def child(conn: Any, db: str, rules: str, url: str, token: str) -> None:
    """Build once, then one run_once per message from the parent; answer with the RSS."""
    from bench.common import rss_mb
    from flowbot.pipeline import build_deps, run_once
    from flowbot.rules import load_rules
    from flowbot.settings import Secret, Settings
    from flowbot.store import Store

    now = [T0]
    settings = Settings(api_url=url, client_id="sim-client", org_id="SIM@AdobeOrg",
                        access_token=Secret(token), db=db)  # fmt: skip
    store = Store(db)
    store.migrate()
    deps = build_deps(settings, load_rules(rules), clock=lambda: now[0], store=store)
    while True:
        at = conn.recv()
        if at is None:
            break
        now[0] = at
        reports, delivery = run_once(deps)
        conn.send((rss_mb(), all(r.ok for r in reports), delivery.sent))
    store.close()


def run(cycles: int | None = None, work: Path | None = None) -> dict[str, Any]:
    from flowbot.sim.payloads import make_flow, make_run
    from flowbot.sim.scenario import Scenario
    from flowbot.sim.server import Simulator

    cycles = cycles or size("MEMORY_CYCLES", 1000)
    work = work or WORK / "memory"
    work.mkdir(parents=True, exist_ok=True)
    for old in work.glob("*"):
        old.unlink()
    (work / "rules.yaml").write_text(RULES)
    rng = random.Random(3)
    scenario = Scenario(now=T0)
    names = [f"{'m' if i % 4 == 0 else 'f'}-{i:03d}" for i in range(FLOWS)]
    for name in names:
        scenario.put_flow(make_flow(f"id-{name}", name=name, start_at=T0 - timedelta(days=5)))
    context = multiprocessing.get_context("spawn")
    rss: list[float] = []
    sent = failed_cycles = 0
    with Simulator(scenario, page_size=100) as sim:
        ours, theirs = context.Pipe()
        args = (theirs, str(work / "flowbot.db"), str(work / "rules.yaml"), sim.url,
                sim.static_token)  # fmt: skip
        process = context.Process(target=child, args=args)
        process.start()
        try:
            for k in range(cycles):
                at = T0 + POLL * (k + 1)
                for n, name in enumerate(rng.sample(names, 6)):
                    status = "failed" if rng.random() < 0.2 else "success"
                    start = at - timedelta(minutes=4)
                    sim.put_run(make_run(f"id-{name}", run_id=f"r-{k}-{n}", status=status,
                                         started_at=start, completed_at=start + timedelta(minutes=2),
                                         input_records=1000,
                                         failed_records=100 if rng.random() < 0.1 else 0))  # fmt: skip
                ours.send(at)
                value, ok, delivered = ours.recv()
                rss.append(value)
                sent += delivered
                failed_cycles += 0 if ok else 1
                if k % 100 == 99:
                    sim.clear_requests()
            ours.send(None)
        finally:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    marks = {str(n): round(rss[n - 1], 1) for n in (10, 100, 500, 1000, cycles) if n <= cycles}
    return {
        "cycles": cycles,
        "flows": FLOWS,
        "rss_mb_after_cycle": marks,
        "growth_mb_10_to_last": round(rss[-1] - rss[min(9, cycles - 1)], 1),
        "peak_rss_mb": round(max(rss), 1),
        "messages_sent": sent,
        "failed_cycles": failed_cycles,
        "mode": "in-process loop of pipeline.run_once with an injected clock (no scheduler)",
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
