"""The status page at 10,000 flows: time to answer `GET /` (store reads, the view and
Jinja2 rendering; one page of PAGE_SIZE flows with their strips, the counts whole).

    .venv/bin/python -m bench.statuspage [FLOWS] [RUNS_PER_FLOW]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from flowbot.health import Request
from flowbot.models import Flow, Run
from flowbot.statuspage import StatusPages
from flowbot.store import Store

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def main(flows: int = 10_000, per_flow: int = 20) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "flowbot.db"
        store = Store(db)
        store.migrate()
        all_flows = [Flow(id=f"f{i}", name=f"flow-{i:05d}", state="enabled", sandbox="prod")
                     for i in range(flows)]  # fmt: skip
        store.upsert_flows(all_flows, NOW)
        runs = [
            Run(id=f"f{i}-r{j}", flow_id=f"f{i}", sandbox="prod",
                status="failed" if (i + j) % 7 == 0 else "success",
                started_at=NOW - timedelta(hours=j), completed_at=NOW - timedelta(hours=j) + timedelta(minutes=3),
                input_records=100, failed_records=0, raw={"id": f"f{i}-r{j}"})
            for i in range(flows) for j in range(per_flow)
        ]  # fmt: skip
        for k in range(0, len(runs), 20_000):
            store.upsert_runs(runs[k : k + 20_000], NOW)
        for i in range(0, flows, 50):
            store.insert_alert(rule="run-failed", flow_id=f"f{i}", sandbox="prod",
                               flow_name=f"flow-{i:05d}", now=NOW, count=1, last_run_id=None,
                               reason="run failed", muted=False)  # fmt: skip
        store.close()
        ruleset = SimpleNamespace(sandboxes=("prod",), rules=())
        pages = StatusPages(lambda: Store(db), lambda: ruleset, lambda: NOW, token="",
                            bound_to="127.0.0.1")  # fmt: skip
        for query in ("", "q=flow-09&state=ok", "state=alerting&page=2"):
            times = []
            for _ in range(7):
                started = time.perf_counter()
                answer = pages(Request("GET", "/", True, query))
                times.append((time.perf_counter() - started) * 1000)
            print(f"GET /?{query:<24} {flows} flows, {flows * per_flow} runs: median "
                  f"{statistics.median(times):.0f} ms (min {min(times):.0f}, max {max(times):.0f}), "
                  f"{len(answer.text) // 1024} KiB, status {answer.status}")  # fmt: skip


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
