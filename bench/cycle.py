"""The steady-state cycle: 10,000 flows watched, 100 of them ran since the last cycle.

    .venv/bin/python -m bench.cycle            (sizes: BENCH_FLOWS, BENCH_NEW_RUNS, ...)

The world runs at the pace the figure describes: 100 runs every 5 minutes, so the
10,000 runs already stored are the last 8 h 20 min of one run per flow. A first cycle at
T0 (a full read) fills the database; that file is the base. Each measurement copies the
base, adds the same 100 new runs (T0 + 1..4 min; some failed, some losing records) to
the simulator, and runs `pipeline.run_cycle` once at T0 + 5 min in a fresh child process
(so that its peak memory is its own), with the modules a daemon has loaded already
imported. The simulator is served by this process, like an API elsewhere.

The 1,000,000-run variant adds older filler runs (1 to 29 days old, small raw JSON)
straight into the base file with SQLite, in bulk, then measures the same cycle.
Requests are counted from the simulator's record of what it received.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import RULES, WORK, python, size, summary

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SLOT = timedelta(minutes=5)
FILLER_BATCH = 50_000


def flow_ids(flows: int) -> list[str]:
    return [f"bench-flow-{i:06d}" for i in range(flows)]


def _run(flow: str, run_id: str, at: datetime, rng: random.Random) -> dict[str, Any]:
    from flowbot.sim.payloads import make_run

    roll = rng.random()
    done = at + timedelta(minutes=rng.randint(1, 30))
    if roll < 0.05:
        code = rng.choice(["CONNECTOR-1001-500", "MAPPER-3700-400"])
        return make_run(flow, run_id=run_id, status="failed", started_at=at, completed_at=done,
                        errors=[{"code": code, "message": "Error in copying the data."}])  # fmt: skip
    if roll < 0.08:
        return make_run(flow, run_id=run_id, started_at=at, completed_at=done,
                        input_records=1000, failed_records=200)  # fmt: skip
    return make_run(flow, run_id=run_id, started_at=at, completed_at=done, input_records=1000)


def build_world(flows: int, stored: int, per_slot: int) -> Any:
    """`flows` daily flows and `stored` runs, `per_slot` of them in each 5 minutes before T0."""
    from flowbot.sim.payloads import make_flow
    from flowbot.sim.scenario import Scenario

    rng = random.Random(7)
    scenario = Scenario(now=T0)
    ids = flow_ids(flows)
    for i, fid in enumerate(ids):
        start = T0 - timedelta(days=30) + timedelta(seconds=(i * 86400 // flows))
        scenario.put_flow(make_flow(fid, name=f"bench-{i:06d}", frequency="day", start_at=start))
    for n in range(stored):
        slot, k = divmod(n, per_slot)
        at = T0 - SLOT * (slot + 1) + timedelta(seconds=rng.randint(0, 290))
        flow = ids[(slot * per_slot + k) % flows]
        scenario.put_run(_run(flow, f"bench-run-old-{n:07d}", at, rng))
    return scenario


def new_runs(flows: int, count: int) -> list[dict[str, Any]]:
    """The runs of the measured cycle: `count` flows ran between T0 and T0 + 5 min."""
    rng = random.Random(11)
    ids = flow_ids(flows)
    picked = rng.sample(ids, min(count, len(ids)))
    return [
        _run(fid, f"bench-run-new-{i:05d}", T0 + timedelta(seconds=rng.randint(60, 240)), rng)
        for i, fid in enumerate(picked)
    ]


@dataclass
class Bed:
    """A prepared test bed: the simulator, the rules file and the base databases."""

    sim: Any
    rules: Path
    bases: dict[int, Path]  # stored runs → base database file


def prepare(sim: Any, work: Path, flows: int, stored: int, large: int | None) -> Bed:
    """The first cycle at T0 into a base file; a copy with filler runs up to `large`."""
    from flowbot.pipeline import build_deps, run_cycle
    from flowbot.rules import load_rules
    from flowbot.store import Store

    work.mkdir(parents=True, exist_ok=True)
    rules = work / "rules.yaml"
    rules.write_text(RULES)
    base = work / f"base-{stored}.db"
    for old in work.glob("base-*.db*"):
        old.unlink()
    store = Store(base)
    store.migrate()
    deps = build_deps(settings(sim, base), load_rules(rules), clock=lambda: T0, store=store)
    report = run_cycle(deps, "prod")
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    if not report.ok:
        raise RuntimeError(f"first cycle failed: {report.error}")
    bases = {stored: base}
    if large and large > stored:
        bigger = work / f"base-{large}.db"
        shutil.copyfile(base, bigger)
        fill(bigger, flow_ids(flows), large - stored)
        bases[large] = bigger
    return Bed(sim, rules, bases)


def fill(path: Path, flows: list[str], count: int) -> None:
    """Insert `count` finished filler runs, 1 to 29 days old, in bulk."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    newest = int((T0 - timedelta(days=1)).timestamp() * 1000)
    step = (28 * 86_400_000) // max(count, 1)
    seen = int(T0.timestamp() * 1000)

    def rows(start: int, stop: int) -> Any:
        for i in range(start, stop):
            run_id, flow, started = f"filler-{i:08d}", flows[i % len(flows)], newest - i * step
            raw = (
                f'{{"id":"{run_id}","flowId":"{flow}","sandboxName":"prod","metrics":'
                f'{{"statusSummary":{{"status":"success"}},"durationSummary":'
                f'{{"startedAtUTC":{started},"completedAtUTC":{started + 60000}}}}}}}'
            )
            yield (run_id, flow, "prod", "success", 1, started, started + 60000, 100, 100, 0,
                   f'"{run_id}"', seen, raw)  # fmt: skip

    for start in range(0, count, FILLER_BATCH):
        with conn:
            conn.executemany(
                "INSERT INTO runs (id, flow_id, sandbox, status, finished, started, completed, "
                "input_records, output_records, failed_records, etag, seen, raw) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                rows(start, min(start + FILLER_BATCH, count)),
            )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def settings(sim: Any, db: Path) -> Any:
    from flowbot.settings import Secret, Settings

    return Settings(
        api_url=sim.url, client_id=sim.client_id, org_id=sim.org_id,
        access_token=Secret(sim.static_token), db=str(db),
    )  # fmt: skip


def measure(bed: Bed, stored: int, tracemalloc: bool = False) -> dict[str, Any]:
    """One cycle at T0 + 5 min on a fresh copy of the base, in a child process."""
    db = bed.bases[stored].with_name("measured.db")
    for leftover in db.parent.glob("measured.db*"):
        leftover.unlink()
    shutil.copyfile(bed.bases[stored], db)
    before = len(bed.sim.requests)
    args = ["-m", "bench.cycle", "worker", "--db", str(db), "--rules", str(bed.rules),
            "--url", bed.sim.url, "--token", bed.sim.static_token]  # fmt: skip
    out = json.loads(python(*args, *(["--tracemalloc"] if tracemalloc else [])))
    recorded = bed.sim.requests[before:]
    out["sim_requests"] = sum(1 for r in recorded if not r.path.startswith("/ims"))
    out["requests_by_path"] = _by_path(recorded)
    return out


def _by_path(recorded: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in recorded:
        out[r.path] = out.get(r.path, 0) + 1
    return out


def worker(db: str, rules: str, url: str, token: str, traced: bool) -> dict[str, Any]:
    """In the child: one run_cycle at T0 + 5 min; its time, requests and memory."""
    import tracemalloc as tm

    import flowbot.aep.parse  # noqa: F401  (a daemon has these loaded after its first cycle)
    import flowbot.evaluate  # noqa: F401
    import flowbot.render  # noqa: F401
    from bench.common import max_rss_mb, rss_mb
    from flowbot.pipeline import build_deps, run_cycle
    from flowbot.rules import load_rules
    from flowbot.settings import Secret, Settings
    from flowbot.store import Store

    settings = Settings(api_url=url, client_id="sim-client", org_id="SIM@AdobeOrg",
                        access_token=Secret(token), db=db)  # fmt: skip
    store = Store(db)
    store.migrate()
    now = T0 + SLOT
    deps = build_deps(settings, load_rules(rules), clock=lambda: now, store=store)
    rss_before = rss_mb()
    if traced:
        tm.start()
    started = time.perf_counter()
    report = run_cycle(deps, "prod")
    seconds = time.perf_counter() - started
    traced_peak = tm.get_traced_memory()[1] / 2**20 if traced else None
    runs = store.run_count()
    store.close()
    if not report.ok:
        raise SystemExit(f"cycle failed: {report.error}")
    return {
        "seconds": seconds, "api_requests": report.api_requests, "runs_read": report.runs_read,
        "runs_new": report.runs_new, "fired": report.fired, "queued": report.queued,
        "stored_runs_after": runs, "rss_before_mb": rss_before, "max_rss_mb": max_rss_mb(),
        "traced_peak_mb": traced_peak,
    }  # fmt: skip


def run(
    flows: int | None = None,
    new: int | None = None,
    stored: int | None = None,
    large: int | None = None,
    repeat: int | None = None,
    work: Path | None = None,
) -> dict[str, Any]:
    """The whole benchmark; sizes default to BENCH_FLOWS (10,000), BENCH_NEW_RUNS (100),
    BENCH_STORED (10,000), BENCH_STORED_LARGE (1,000,000; 0 to skip), BENCH_REPEAT (5)."""
    from bench.naive import measure_naive
    from flowbot.sim.server import Simulator

    flows = flows or size("FLOWS", 10_000)
    new = new or size("NEW_RUNS", 100)
    stored = stored or size("STORED", 10_000)
    large = size("STORED_LARGE", 1_000_000) if large is None else large
    repeat = repeat or size("REPEAT", 5)
    work = work or WORK / "cycle"
    started = time.perf_counter()
    scenario = build_world(flows, stored, per_slot=new)
    with Simulator(scenario, page_size=100) as sim:
        bed = prepare(sim, work, flows, stored, large)
        prepared = time.perf_counter() - started
        for payload in new_runs(flows, new):
            sim.put_run(payload)
        result: dict[str, Any] = {"flows": flows, "new_runs": new, "repeat": repeat,
                                  "prepare_seconds": round(prepared, 1), "stored": {}}  # fmt: skip
        counts = sorted(bed.bases)
        taken: dict[int, list[dict[str, Any]]] = {count: [] for count in counts}
        for _ in range(repeat):  # alternate the sizes so that load on the machine hits both
            for count in counts:
                taken[count].append(measure(bed, count))
        for count in counts:
            samples = taken[count]
            traced = measure(bed, count, tracemalloc=True)
            first = samples[0]
            result["stored"][str(count)] = {
                "seconds": summary([s["seconds"] for s in samples]),
                "max_rss_mb": summary([s["max_rss_mb"] for s in samples], 1),
                "traced_peak_mb": round(traced["traced_peak_mb"], 1),
                "requests": first["sim_requests"],
                "requests_by_path": first["requests_by_path"],
                "requests_all_samples": [s["sim_requests"] for s in samples],
                "runs_read": first["runs_read"],
                "runs_new": first["runs_new"],
                "alerts_fired": first["fired"],
                "messages_queued": first["queued"],
                "stored_runs_after": first["stored_runs_after"],
                "db_mb": round(bed.bases[count].stat().st_size / 2**20, 1),
            }
        result["naive"] = measure_naive(sim, flow_ids(flows), T0, size("NAIVE_REPEAT", 3))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    child = sub.add_parser("worker")
    child.add_argument("--db", required=True)
    child.add_argument("--rules", required=True)
    child.add_argument("--url", required=True)
    child.add_argument("--token", required=True)
    child.add_argument("--tracemalloc", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "worker":
        print(json.dumps(worker(args.db, args.rules, args.url, args.token, args.tracemalloc)))
        return 0
    print(json.dumps(run(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
