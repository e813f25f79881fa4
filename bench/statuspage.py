"""The status page at 10,000 flows: time to answer `GET /` over loopback (a real
HealthServer with StatusPages; store reads, the view, Jinja2 rendering, HTTP), beside
the bare SQL reads the page makes, run alone on a plain sqlite3 connection in the same
process, alternating with the page so that load on the machine hits both alike.
Writes bench/results/statuspage.json; `python -m bench --render` puts it in results.md.

    .venv/bin/python -m bench.statuspage [FLOWS] [RUNS_PER_FLOW]

BENCH_STATUSPAGE_REQUESTS [25] requests per query (after 2 not counted).
"""

from __future__ import annotations

import json
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.common import load, size
from flowbot.health import HealthServer
from flowbot.models import Flow, Run
from flowbot.statuspage import StatusPages
from flowbot.statusview import PAGE_SIZE, STRIP_RUNS
from flowbot.store import Store, views
from flowbot.store.actions import acknowledge

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
RESULTS = Path(__file__).parent / "results" / "statuspage.json"
QUERIES = ("", "q=flow-09&state=ok", "state=alerting&page=2")
TARGET_MS = 200.0


def seed(db: Path, flows: int, per_flow: int) -> None:
    """`flows` flows in one sandbox, `per_flow` runs each (one in 7 failed), one flow in
    50 with a firing alert, half of those acknowledged."""
    store = Store(db)
    store.migrate()
    all_flows = [Flow(id=f"f{i}", name=f"flow-{i:05d}", state="enabled", sandbox="prod",
                      raw={"imsOrgId": "ORG1@AdobeOrg"})
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
        alert = store.insert_alert(rule="run-failed", flow_id=f"f{i}", sandbox="prod",
                                   flow_name=f"flow-{i:05d}", now=NOW, count=1,
                                   last_run_id=f"f{i}-r0", reason="run failed", muted=False)  # fmt: skip
        if i % 100 == 0:
            acknowledge(store, alert, user="U0BENCH", now=NOW, signature="")
    store.close()


def bare_reads(db: Path, state: str) -> int:
    """The SQL the page runs (counts, the page of flows, their strips, the firing alerts,
    their acks and flows, silences, the watermark) on a plain sqlite3 connection,
    fetching rows as tuples and building nothing."""
    conn = sqlite3.connect(db)
    try:
        shown = f"SELECT {views._FLOW_COLUMNS}, {views._SHOWN} AS shown FROM flows f WHERE f.sandbox IN ('prod')"  # noqa: E501
        fetched = len(
            conn.execute(f"SELECT shown, count(*) FROM ({shown}) GROUP BY shown").fetchall()
        )
        where = "WHERE shown = ?" if state else ""
        page = conn.execute(
            f"SELECT * FROM ({shown}) {where} ORDER BY {views._RANK}, sandbox, lower(name), id "
            "LIMIT ? OFFSET 0", (*([state] if state else []), PAGE_SIZE),
        ).fetchall()  # fmt: skip
        ids = [r[0] for r in page]
        values = ",".join("(?)" for _ in ids) or "(NULL)"
        fetched += len(conn.execute(
            f"WITH page(fid) AS (VALUES {values}) SELECT {views._RUN_COLUMNS} FROM runs WHERE rowid IN "
            "(SELECT r.rowid FROM page JOIN runs r ON r.rowid IN (SELECT rowid FROM runs WHERE "
            "flow_id = page.fid ORDER BY started DESC LIMIT ?)) ORDER BY flow_id, started DESC",
            (*ids, STRIP_RUNS),
        ).fetchall())  # fmt: skip
        firing = conn.execute("SELECT * FROM alerts WHERE state = 'firing' ORDER BY id").fetchall()
        alert_ids, flow_ids = [r[0] for r in firing], [r[2] for r in firing]
        fetched += len(conn.execute(
            f"SELECT * FROM acks WHERE alert_id IN ({','.join('?' * len(alert_ids))})", alert_ids
        ).fetchall())  # fmt: skip
        fetched += len(conn.execute(
            f"SELECT {views._FLOW_COLUMNS} FROM flows WHERE id IN ({','.join('?' * len(flow_ids))})",
            flow_ids,
        ).fetchall())  # fmt: skip
        fetched += len(conn.execute("SELECT * FROM silences WHERE expires > 0").fetchall())
        fetched += len(conn.execute("SELECT * FROM watermarks WHERE sandbox = 'prod'").fetchall())
        return fetched + len(page) + len(firing)
    finally:
        conn.close()


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def figures(values: list[float]) -> dict[str, Any]:
    return {"median": round(statistics.median(values), 1), "p95": round(p95(values), 1),
            "min": round(min(values), 1), "max": round(max(values), 1), "n": len(values)}  # fmt: skip


def run(flows: int = 10_000, per_flow: int = 20) -> dict[str, Any]:
    requests = size("STATUSPAGE_REQUESTS", 25)
    load_before = load()
    out: dict[str, Any] = {"flows": flows, "runs": flows * per_flow, "page_size": PAGE_SIZE,
                           "requests_per_query": requests, "queries": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "flowbot.db"
        seed(db, flows, per_flow)
        ruleset = SimpleNamespace(sandboxes=("prod",), rules=(), aep_ui=None)
        pages = StatusPages(lambda: Store(db), lambda: ruleset, lambda: NOW, token="",
                            bound_to="127.0.0.1")  # fmt: skip
        server = HealthServer("127.0.0.1", 0, ready=lambda: (True, {}), metrics=lambda: "",
                              pages=pages)  # fmt: skip
        server.start()
        try:
            for query in QUERIES:
                state = dict(p.split("=") for p in query.split("&") if p).get("state", "")
                page_ms: list[float] = []
                bare_ms: list[float] = []
                size_bytes = status = 0
                for n in range(requests + 2):
                    started = time.perf_counter()
                    with urllib.request.urlopen(f"{server.url}/?{query}", timeout=30) as answer:
                        body = answer.read()
                        status = answer.status
                    took = (time.perf_counter() - started) * 1000
                    started = time.perf_counter()
                    bare_reads(db, state)
                    bare = (time.perf_counter() - started) * 1000
                    if n >= 2:
                        page_ms.append(took)
                        bare_ms.append(bare)
                    size_bytes = len(body)
                out["queries"]["/?" + query] = {
                    "status": status, "kib": round(size_bytes / 1024),
                    "page_ms": figures(page_ms), "bare_sql_ms": figures(bare_ms),
                }  # fmt: skip
                print(f"GET /?{query:<24} median {statistics.median(page_ms):.1f} ms, "
                      f"p95 {p95(page_ms):.1f} ms, bare SQL median {statistics.median(bare_ms):.1f} ms, "
                      f"{size_bytes // 1024} KiB, status {status}", flush=True)  # fmt: skip
        finally:
            server.stop()
    worst = max(q["page_ms"]["p95"] for q in out["queries"].values())
    out.update({
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.system()}, Python {sys.version.split()[0]}",
        "load_before": load_before, "load_after": load(),
        "target_ms": TARGET_MS, "met": worst < TARGET_MS,
    })  # fmt: skip
    return out


def main(*args: int) -> None:
    result = run(*args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {RESULTS}; `python -m bench --render` puts it in results.md")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
