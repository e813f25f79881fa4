"""`make bench`: every benchmark of DESIGN §7, then bench/results.md and results.json.

    .venv/bin/python -m bench [--only list_runs,cycle,...,daemon_memory] [--out DIR] [--merge]

Sizes come from the environment (defaults in brackets): BENCH_LIST_RUNS [100000],
BENCH_LIST_FLOWS [10000], BENCH_FLOWS [10000], BENCH_NEW_RUNS [100], BENCH_STORED
[10000], BENCH_STORED_LARGE [1000000, 0 skips], BENCH_REPEAT [5], BENCH_NAIVE_REPEAT
[3], BENCH_LATENCY_SAMPLES [5], BENCH_POLL_SECONDS [2], BENCH_STARTUP_RUNS [10],
BENCH_MEMORY_CYCLES [1000], BENCH_DAEMON_CYCLES [2000]. Every figure is a median of several runs with its spread;
the reference it is compared with is measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import ROOT, load, size, summary

NAMES = ("growth", "list_runs", "cycle", "latency", "startup", "memory", "daemon_memory")


def bench_list_runs() -> dict[str, Any]:
    """flowbot's client vs a bare requests loop over the same pages (bench/list_runs.py),
    alternating the two so that load on the machine hits both alike."""
    from bench import list_runs

    runs, flows, repeat = size("LIST_RUNS", 100_000), size("LIST_FLOWS", 10_000), size("REPEAT", 5)
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Queue(), context.Event()
    child = context.Process(target=list_runs.serve, args=(flows, runs, ready, stop))
    child.start()
    times: dict[str, list[float]] = {"flowbot": [], "bare_requests": [], "bare_orjson": []}
    requests_made: dict[str, int] = {}
    try:
        sim, expected = ready.get(timeout=900)
        for _ in range(repeat):
            for name, measure in (("bare_requests", list_runs.with_bare_requests),
                                  ("bare_orjson", list_runs.with_bare_orjson),
                                  ("flowbot", list_runs.with_client)):  # fmt: skip
                elapsed, made, ids = measure(sim)
                if len(ids) != len(expected) or set(ids) != expected:
                    raise RuntimeError(f"{name} saw {len(ids)} runs, expected {len(expected)}")
                times[name].append(elapsed)
                requests_made[name] = made
    finally:
        stop.set()
        child.join(timeout=60)
    return {
        "runs": runs,
        "flows": flows,
        "repeat": repeat,
        "flowbot_s": summary(times["flowbot"]),
        "bare_requests_s": summary(times["bare_requests"]),
        "bare_orjson_s": summary(times["bare_orjson"]),
        "requests": requests_made,
        "ratios": [round(f / b, 3) for f, b in zip(times["flowbot"], times["bare_orjson"], strict=True)],
    }  # fmt: skip


def bench_growth() -> dict[str, Any]:
    from bench import growth

    return growth.run()


def bench_cycle() -> dict[str, Any]:
    from bench import cycle

    return cycle.run()


def bench_latency() -> dict[str, Any]:
    from bench import latency

    return latency.run()


def bench_startup() -> dict[str, Any]:
    from bench import startup

    return startup.run()


def bench_memory() -> dict[str, Any]:
    from bench import memory

    return memory.run()


def bench_daemon_memory() -> dict[str, Any]:
    from bench import daemon_memory

    return daemon_memory.run()


BENCHES: dict[str, Callable[[], dict[str, Any]]] = {
    "growth": bench_growth,
    "list_runs": bench_list_runs,
    "cycle": bench_cycle,
    "latency": bench_latency,
    "startup": bench_startup,
    "memory": bench_memory,
    "daemon_memory": bench_daemon_memory,
}


# ---------------------------------------------------------------- the §7 table


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per DESIGN §7 figure: value, reference, ratio, target, met."""
    out: list[dict[str, Any]] = _growth_rows(results.get("growth"))
    cycle = results.get("cycle")
    if cycle:
        stored = sorted(cycle["stored"], key=int)
        small, large = cycle["stored"][stored[0]], cycle["stored"][stored[-1]]
        naive = cycle["naive"]
        out.append(_row(
            f"requests in a steady-state cycle, {cycle['flows']:,} flows, "
            f"{cycle['new_runs']} ran", small["requests"], "requests",
            f"naive per-flow poller: {naive['requests']:,}", naive["requests"],
            "at most 10", small["requests"] <= 10,
        ))  # fmt: skip
        out.append(_row(
            "wall time of that cycle (flowbot run_cycle vs naive poller's I/O alone)",
            small["seconds"]["median"], "s", _spread("naive", naive["seconds"]),
            naive["seconds"]["median"], "(no target; reference)", None,
        ))  # fmt: skip
        if len(stored) > 1:
            growth = large["seconds"]["median"] / small["seconds"]["median"]
            out.append(_row(
                f"cycle cost at {int(stored[-1]):,} vs {int(stored[0]):,} stored runs",
                large["seconds"]["median"], "s", _spread(f"{int(stored[0]):,} stored", small["seconds"]),
                small["seconds"]["median"], "grows < 20% (ratio < 1.2)", growth < 1.2,
            ))  # fmt: skip
        out.append(_row(
            f"peak memory of a cycle, {cycle['flows']:,} flows, {int(stored[-1]):,} stored runs",
            large["max_rss_mb"]["median"], "MB (process max RSS)",
            f"Python heap peak during the cycle (tracemalloc): {large['traced_peak_mb']} MB",
            None, "under 150 MB", large["max_rss_mb"]["max"] < 150,
        ))  # fmt: skip
    daemon = results.get("daemon_memory")
    if daemon:
        marks = daemon["rss_mb_after_cycles"]
        first, last = marks.get("10"), marks[str(daemon["cycles"])]
        half = daemon["second_half_from"]
        out.append(_row(
            f"RSS of `flowbot run` after {daemon['cycles']:,} cycles vs after 10 cycles",
            last, "MB", f"after 10 cycles: {first} MB; after {half:,}: {marks[str(half)]} MB",
            first, FLAT, _is_flat(first, last),
        ))  # fmt: skip
    memory = results.get("memory")
    if memory:
        marks = memory["rss_mb_after_cycle"]
        first, last = marks.get("10"), marks[str(memory["cycles"])]
        out.append(_row(
            f"RSS of an in-process `run_once` loop after {memory['cycles']:,} cycles vs after 10",
            last, "MB", f"after 10 cycles: {first} MB", first, FLAT, _is_flat(first, last),
        ))  # fmt: skip
    listing = results.get("list_runs")
    if listing:
        ratio = listing["flowbot_s"]["median"] / listing["bare_orjson_s"]["median"]
        out.append(_row(
            f"listing {listing['runs']:,} runs from the simulator", listing["flowbot_s"]["median"],
            "s", _spread("bare loop decoding with orjson", listing["bare_orjson_s"])
            + "; " + _spread("with requests' .json()", listing["bare_requests_s"]),
            listing["bare_orjson_s"]["median"], "within 1.1x", ratio <= 1.1,
        ))  # fmt: skip
    latency = results.get("latency")
    if latency:
        seconds = latency["seconds"]
        out.append(_row(
            f"failed run → Slack message ({latency['mode']}, poll {latency['poll_seconds']:g} s)",
            seconds["median"], f"s (max {seconds['max']} s)", "one poll interval + 2 s",
            latency["target_seconds"], f"≤ {latency['target_seconds']:g} s",
            seconds["max"] <= latency["target_seconds"],
        ))  # fmt: skip
    startup = results.get("startup")
    if startup:
        out.append(_row(
            "`flowbot --help`", startup["flowbot_help"]["median"], "s",
            _spread("bare `python -c pass`", startup["python_bare"]),
            startup["python_bare"]["median"], "≤ 0.15 s (median)",
            startup["flowbot_help"]["median"] <= 0.15,
        ))  # fmt: skip
        if "rules_check" in startup:
            out.append(_row(
                "`flowbot rules check rules.yaml`", startup["rules_check"]["median"], "s",
                _spread("bare `python -c pass`", startup["python_bare"]),
                startup["python_bare"]["median"], "≤ 0.25 s (median)",
                startup["rules_check"]["median"] <= 0.25,
            ))  # fmt: skip
    return out


FLAT = "flat (within 10 MB / 10%)"


def _is_flat(first: float | None, last: float) -> bool:
    """The memory target: RSS after the last cycle within 10 MB (or 10%) of after 10."""
    return first is not None and (last - first) <= max(10.0, 0.1 * first)


# Peak RSS targets of the whole `check --once` process, by flows watched.
RSS_TARGETS = {10_000: 150.0, 50_000: 250.0}


def _growth_rows(growth: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The growth table's targets: peak RSS of first and steady cycles at 10k/50k flows,
    requests of a steady cycle at 10k, CPU of a quiet cycle in process at 50k."""
    out: list[dict[str, Any]] = []
    for world in (growth or {}).get("sizes", []):
        flows, bare = world["flows"], world["bare"]
        ref = (
            f"bare paging loop, same listings: {bare['hwm_mb']:.1f} MB, {bare['requests']} requests"
        )
        limit = RSS_TARGETS.get(flows)
        for cycle in ("first", "steady"):
            got = world[cycle]
            out.append(_row(
                f"peak RSS of `check --once`, {cycle} cycle, {flows:,} flows",
                round(got["hwm_mb"], 1), "MB", ref, bare["hwm_mb"],
                f"≤ {limit:g} MB" if limit else "(no target)",
                got["hwm_mb"] <= limit if limit else None,
            ))  # fmt: skip
        if flows == 10_000:
            out.append(_row(
                f"requests of a steady cycle, {flows:,} flows, 100 new runs",
                world["steady"]["requests"], "requests", ref, bare["requests"], "at most 10",
                world["steady"]["requests"] <= 10,
            ))  # fmt: skip
        out.append(_row(
            f"CPU of a quiet cycle in process (run_once), {flows:,} flows",
            round(world["quiet"]["cycle_cpu"], 3), "s", f"bare loop CPU (whole process): "
            f"{bare['cpu']:.2f} s", bare["cpu"], "≤ 0.3 s at 50,000 flows" if flows == 50_000
            else "(no target)", world["quiet"]["cycle_cpu"] <= 0.3 if flows == 50_000 else None,
        ))  # fmt: skip
    return out
    return out


def _row(figure: str, value: float, unit: str, reference: str, ref_value: float | None,
         target: str, met: bool | None) -> dict[str, Any]:  # fmt: skip
    ratio = round(value / ref_value, 3) if ref_value else None
    return {"figure": figure, "value": value, "unit": unit, "reference": reference,
            "ratio": ratio, "target": target, "met": met}  # fmt: skip


def _spread(label: str, figures: dict[str, Any]) -> str:
    return f"{label}: {figures['median']} ({figures['min']}–{figures['max']})"


TESTED = [
    ("a crash (kill -9) at any point of a cycle", "no alert lost; at most one duplicate",
     "tests/test_crash.py (make test; longer under make soak)"),
    ("Slack 429 storm, SMTP down 10 min, API down 30 min", "nothing lost; in order; meta-alert",
     "tests/test_faults.py"),
]  # fmt: skip


NOTES = """\
## How each figure is taken, and what limits it

- **Growth (1,000 / 10,000 / 50,000 flows)**: `python -m bench.growth`. A world of
  hourly flows, each with two runs in the last two hours (5% failed), 3% silent for six
  hours, served by the simulator in the bench process with a default page of 50 items
  and a largest page of 100. On a fresh database: the first cycle is `flowbot check
  --once` as a child process; then 100 new runs and `check --once` again (the steady
  cycle); then a quiet cycle (no new runs) with `run_once` timed in process
  (`time.process_time`, the cycle alone, after start-up). Each child reports its own
  peak RSS (VmHWM from /proc/self/status: the whole process, interpreter, libraries and
  SQLite included) and CPU (user + system, start-up included); wall time is the
  parent's. Requests are counted by the simulator, IMS excluded (a static token). The
  reference, in the same run, is a bare child loop (`requests` + `orjson`) paging the
  same listings (all flows, the runs of the lookback) and keeping nothing.
- **Requests per cycle**: counted by the simulator (page size 100), IMS excluded (a
  static token). A cycle reads the flows whose last run started since the watermark less
  the 10-minute overlap, and the runs started in that window: at 100 runs per 5 minutes
  that is about 300 of each, 3 pages each. It grows with the flows that ran, not with
  those watched. The hourly full refresh of flow metadata (100 pages at 10,000 flows)
  is separate, as DESIGN allows.
- **Cycle wall time and memory**: `pipeline.run_cycle` in a fresh child process per
  sample (modules a daemon would have loaded imported first); memory is the process's
  peak RSS (VmHWM, interpreter and libraries included) and, separately, the Python heap
  peak of the cycle (tracemalloc). The naive poller only fetches and decodes; flowbot
  also stores, evaluates every rule over every flow and renders the messages.
- **History growth**: the same 100 new runs, on a copy of the same base, with 1,000,000
  runs stored (older filler rows, inserted with SQLite in bulk). Queries go through
  indexes (`runs(flow_id, started)`, a partial index of unfinished runs), so the cost
  is flat; the two sizes alternate between samples so load hits both alike.
- **Listing**: the same 1,000 requests, the three loops interleaved. flowbot's
  FlowClient turns every run into a `Run` whose fields (beyond id and flow id) are read
  from the JSON on first use (about 1 µs a run, against 11 µs when every field was
  built); the reference loop decodes each page with orjson and keeps the ids; the
  `requests` `.json()` loop (stdlib json) is shown beside it.
- **Start-up**: each command a fresh process, interleaved with a bare `python -c pass`,
  one unmeasured run of each first. flowbot's bytecode is compiled first
  (`compileall`), as `pip install` does: the checkout is an editable install, and with
  `PYTHONDONTWRITEBYTECODE` set (as on this machine) every run would otherwise compile
  flowbot's sources anew. `rules check` reads the example rules.yaml (ten rules, one
  with a cron, no templates of its own).
- **Memory of the daemon over cycles**: `flowbot run` as a child process, RSS read from
  /proc/<pid>/status after 10, 100, 500, 1,000, 1,500 and 2,000 cycles (see "The
  daemon's own memory" below). This is the figure that answers it.
- **Memory over cycles in process**: one process, dependencies built once, `run_once`
  with an injected clock (the daemon's loop without APScheduler); the database grows
  through the run (runs and messages are kept 30 days), which accounts for part of the RSS.
- **Latency**: `flowbot run` as a child process when the command exists (else
  `check --once` on a fixed grid), the simulator and the Slack look-alike in this process.
"""


DAEMON_MEMORY_NOTE = """\
How it is taken: `python -m bench.daemon_memory` starts `flowbot run` as a child
process (the real daemon: APScheduler, its worker threads, the watch job, logging)
against the simulator served by the bench process, with `poll_every: 100ms` (rules.yaml
takes durations in ms; below a minute is only a warning). A cycle takes longer than
100 ms here, so the scheduler runs them back to back (APScheduler skips a due run while
one is in flight: `skipped_runs` counts its warnings). The bench counts the "cycle prod:
ok" lines of the child's log as they come and, at each mark, reads VmRSS, RssAnon and
RssFile from /proc/<pid>/status, and the sizes of the database and its WAL (the
database file stays at 0 until the first checkpoint: its pages are in the WAL, which
SQLite checkpoints at about 4 MB and then reuses). Before the
start the simulator holds 20 minutes of runs (three every 5 s, 40% failed), so the
read window (runs started since the watermark less the 10-minute overlap, the watermark
5 minutes behind the clock: about 500 runs re-read every cycle) is full from the first
cycle; during the run three new runs arrive every 5 s on average, so alerts fire, repeat
(repeat_after 1m) and resolve.

What the earlier 9.9 MB was: the one-second version started with an empty simulator,
so the runs a cycle re-reads grew from 0 to about 1,000 over its first 15 minutes (900
cycles) as the read window filled, and the RSS grew with them (the memory a cycle
touches: pages of runs in flight, SQLite's page cache, at most 2 MB by default, and the
allocator keeping what it freed); it had flattened by 1,000 cycles. With the window
full from the start, the RSS is at its level after 10 cycles and stays there (64.3 MB
after 10 cycles, 65.5 MB after 2,000 in the exploratory run). The Python heap, traced
in a daemon run under tracemalloc (snapshots every 30 s compared with the first), did
not grow: the differences were the page in flight. With MALLOC_ARENA_MAX=1 the RSS was
about 2 MB lower and as flat over 500 cycles: per-thread malloc arenas add a little,
not a growth."""


def daemon_memory_lines(results: dict[str, Any]) -> list[str]:
    """The real daemon's memory at each mark: this run's, else the last one saved by
    `python -m bench.daemon_memory` in bench/results/daemon_memory.json."""
    saved = results.get("daemon_memory")
    path = Path(__file__).parent / "results" / "daemon_memory.json"
    if saved is None and path.exists():
        saved = json.loads(path.read_text())
    if saved is None or "at_mark" not in saved:
        return []
    lines = [
        "## The daemon's own memory",
        "",
        f"`flowbot run` as a child process, {saved['cycles']:,} cycles at poll_every "
        f"{saved['poll_every']}, {saved['flows']} flows, {saved['runs_before_start']:,} runs "
        f"put in before the start and {saved['runs_fed'] - saved['runs_before_start']:,} "
        f"during it, {saved['messages_sent']:,} alert messages written, "
        f"{saved['failed_cycles']} failed cycles; {saved['seconds']} s "
        f"({saved['cycles_per_second']} cycles a second; {saved['when']}, load "
        f"{saved['load_before']} → {saved['load_after']}). Growth from 10 cycles to the "
        f"last: {saved['growth_mb']} MB; from {saved['second_half_from']:,} to the last: "
        f"{saved['growth_mb_second_half']} MB. Flat (within 10 MB / 10%): "
        f"{'yes' if saved['flat'] else '**no**'}.",
        "",
        "| after cycles | RSS | anonymous | file-backed | database | WAL |",
        "|---|---|---|---|---|---|",
    ]
    for n, m in saved["at_mark"].items():
        lines.append(
            f"| {int(n):,} | {m['rss_mb']} MB | {m['anon_mb']} MB | {m['file_mb']} MB | "
            f"{m['db_mb']} MB | {m['wal_mb']} MB |"
        )
    return [*lines, "", *DAEMON_MEMORY_NOTE.splitlines(), ""]


def statuspage_lines() -> list[str]:
    """`GET /` of the status page at 10,000 flows, from `python -m bench.statuspage`
    when bench/results/statuspage.json is there."""
    path = Path(__file__).parent / "results" / "statuspage.json"
    if not path.exists():
        return []
    saved = json.loads(path.read_text())
    lines = [
        "## The status page",
        "",
        f"`GET /` over loopback (a real HealthServer, a fresh store connection per request), "
        f"{saved['flows']:,} flows, {saved['runs']:,} runs, a page of {saved['page_size']} "
        f"flows with their strips, {saved['requests_per_query']} requests per query after 2 "
        f"not counted; beside each request, the bare SQL the page runs on a plain sqlite3 "
        f"connection (`python -m bench.statuspage`, {saved['when']}, {saved['machine']}; "
        f"load {saved['load_before']} → {saved['load_after']}). Target: under "
        f"{saved['target_ms']:g} ms; met (every p95 under it): {'yes' if saved['met'] else '**no**'}.",
        "",
        "| query | median | p95 | min–max | bare SQL median (p95) | page |",
        "|---|---|---|---|---|---|",
    ]
    for query, q in saved["queries"].items():
        page, bare = q["page_ms"], q["bare_sql_ms"]
        lines.append(
            f"| `{query}` | {page['median']} ms | {page['p95']} ms | {page['min']}–{page['max']} ms"
            f" | {bare['median']} ms ({bare['p95']} ms) | {q['kib']} KiB |"
        )
    return [*lines, ""]


def markdown(results: dict[str, Any], table: list[dict[str, Any]]) -> str:
    """bench/results.md: the §7 table, then each benchmark's details."""
    meta = results["meta"]
    lines = [
        "# flowbot benchmarks (DESIGN §7)",
        "",
        f"Measured {meta['when']} on {meta['machine']}, Python {meta['python']}, by "
        "`make bench` (`python -m bench`). Load average before / after: "
        f"{meta['load_before']} → {meta['load_after']}; the machine is shared with other "
        "engineers' test runs, so figures are noisy: each is a median with its spread "
        f"(min–max). Total time {meta['seconds']:.0f} s.",
        *[
            f"Run again on its own since (`python -m bench --only {name} --merge`): "
            f"`{name}`, {again['when']}, load {again['load_before']} → "
            f"{again['load_after']}, {again['seconds']:.0f} s."
            for name, again in meta.get("merged", {}).items()
        ],
        "",
        "| figure | flowbot | reference (same run) | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in table:
        met = {True: "yes", False: "**no**", None: "–"}[r["met"]]
        ratio = f"{r['ratio']}x" if r["ratio"] is not None else "–"
        lines.append(
            f"| {r['figure']} | {r['value']} {r['unit']} | {r['reference']} | {ratio} | "
            f"{r['target']} | {met} |"
        )
    for figure, target, where in TESTED:
        lines.append(f"| {figure} | see tests | – | – | {target} | tested in {where} |")
    lines += [
        "",
        *NOTES.splitlines(),
        "",
        *daemon_memory_lines(results),
        *statuspage_lines(),
        "## Details",
        "",
    ]
    for name in NAMES:
        if name in results:
            lines += [f"### {name}", "", "```json", json.dumps(results[name], indent=2), "```", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated: " + ",".join(NAMES))
    parser.add_argument("--out", type=Path, default=ROOT / "bench", help="where results go")
    parser.add_argument(
        "--render", action="store_true", help="rewrite results.md from results.json"
    )
    parser.add_argument(
        "--merge", action="store_true",
        help="keep the other benchmarks of --out's results.json and replace only these",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.render:
        saved = json.loads((args.out / "results.json").read_text())
        (args.out / "results.md").write_text(markdown(saved, saved["table"]))
        return 0
    chosen = args.only.split(",") if args.only else list(NAMES)
    unknown = sorted(set(chosen) - set(NAMES))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    started = time.perf_counter()
    results: dict[str, Any] = {}
    load_before = load()
    for name in chosen:
        print(f"bench: {name} ...", flush=True)
        began = time.perf_counter()
        results[name] = BENCHES[name]()
        print(f"bench: {name} done in {time.perf_counter() - began:.0f} s", flush=True)
    meta = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.system()}",
        "python": sys.version.split()[0],
        "load_before": load_before,
        "load_after": load(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.merge and (args.out / "results.json").exists():
        # The earlier run's meta stays (it describes the table's other rows); this
        # run's is kept beside it, by benchmark.
        saved = json.loads((args.out / "results.json").read_text())
        merged = {**saved["meta"].get("merged", {}), **dict.fromkeys(chosen, meta)}
        results = {**saved, **results, "meta": {**saved["meta"], "merged": merged}}
    else:
        results["meta"] = meta
    table = rows(results)
    results["table"] = table
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(results, table))
    for r in table:
        print(f"  {r['figure']}: {r['value']} {r['unit']} (target {r['target']}, met {r['met']})")
    print(f"written to {args.out / 'results.md'} and results.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
