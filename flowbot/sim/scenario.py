"""Worlds for the simulator to serve: flows and runs as Flow Service payloads.

`build_scenario` makes a large, seeded, realistic world (for benchmarks and paging
tests); `demo_scenario` a small hand-made one in which every rule kind has something to
find (for `flowbot demo`, the docs and end-to-end tests). Flow ids are uuid5 of the
name, so `flow_id("crm-daily-import")` names the same flow everywhere.
"""

from __future__ import annotations

import gc
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flowbot.sim.payloads import last_run_details, make_flow, make_run

NAMESPACE = uuid.UUID("6f1c0d52-7a0e-4a43-9a57-5b0e2f6a1c01")

PERIODS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}

# (frequency, interval, share of flows, name prefixes)
KINDS = [
    ("minute", 15, 0.10, ["web-events-15min", "clickstream-15min", "inventory-15min"]),
    ("hour", 1, 0.50, ["web-events-hourly", "orders-hourly", "app-events-hourly"]),
    ("day", 1, 0.40, ["crm-daily-import", "loyalty-daily-export", "product-catalog-daily"]),
]

COPY_FAILED = "Error in copying the data from Source."
PROMOTION_FAILED = "Error occurred at promotion activity."
CORRUPT_ROW = (
    "The row has corrupted data and cannot be read or parsed. Fix the corrupted data and try again."
)
FAILURE_CODES = [
    "CONNECTOR-1001-500",
    "CONNECTOR-2001-500",
    "INGEST-1212-400",
    "MAPPER-3700-400",
    "INGEST-1401-400",
]


def parse_span(text: str) -> timedelta:
    """`90m`, `6h`, `2d` (or `30s`) as a timedelta; ValueError otherwise."""
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    number, unit = text.strip()[:-1], text.strip()[-1:]
    if unit not in units or not number.isdigit() or int(number) == 0:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90m, 6h, 2d)")
    return timedelta(**{units[unit]: int(number)})


def flow_id(name: str, sandbox: str = "prod") -> str:
    """The deterministic id of the flow called `name` (uuid5 of sandbox and name)."""
    key = name if sandbox == "prod" else f"{sandbox}/{name}"
    return str(uuid.uuid5(NAMESPACE, key))


def run_time(run: dict[str, Any]) -> int | None:
    """A run's start in epoch ms, or None when it has not started (scheduled)."""
    started = run.get("metrics", {}).get("durationSummary", {}).get("startedAtUTC")
    return started if isinstance(started, int) else None


@dataclass
class Scenario:
    """A world: flows and runs by id (payload dicts), the sandboxes that exist, and now."""

    now: datetime
    flows: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    sandboxes: set[str] = field(default_factory=lambda: {"prod"})

    def put_flow(self, flow: dict[str, Any]) -> None:
        """Add or replace a flow; it keeps the lastRunDetails of its known runs."""
        self.sandboxes.add(flow.get("sandboxName", "prod"))
        old = self.flows.get(flow["id"])
        if old and "lastRunDetails" in old and "lastRunDetails" not in flow:
            flow = {**flow, "lastRunDetails": old["lastRunDetails"]}
        self.flows[flow["id"]] = flow

    def put_run(self, run: dict[str, Any]) -> None:
        """Add or replace a run, and update its flow's lastRunDetails if it is the newest."""
        self.sandboxes.add(run.get("sandboxName", "prod"))
        self.runs[run["id"]] = run
        flow = self.flows.get(run.get("flowId", ""))
        started = run_time(run)
        if flow is None or started is None:
            return
        last = flow.get("lastRunDetails") or {}
        if last.get("id") == run["id"] or started >= (last.get("startedAtUTC") or 0):
            self.flows[flow["id"]] = {**flow, "lastRunDetails": last_run_details(run)}


class _Ids:
    """Deterministic uuid4-shaped ids from a seeded generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def batch(self) -> str:
        return f"{self.rng.getrandbits(128):032X}"[:26]


def failure(code: str, input_records: int, rng: random.Random) -> dict[str, Any]:
    """make_run arguments for a failed run whose top-level error is `code`."""
    if code == "CONNECTOR-1001-500":
        return {
            "input_records": 0,
            "output_records": 0,
            "errors": [{"code": code, "message": COPY_FAILED}],
        }
    failed = max(1, int(input_records * rng.uniform(0.3, 1.0)))
    kept = input_records - failed
    errors: list[dict[str, Any]]  # Flow Service error objects, as JSON
    if code == "CONNECTOR-2001-500":
        errors = [{"code": code, "message": PROMOTION_FAILED}]
        details = [{"code": "INGEST-1401-400", "message": CORRUPT_ROW, "recordCount": failed}]
    elif code == "INGEST-1212-400":
        errors = [{"code": code, "message": ingest_summary(failed, kept)}]
        details = [
            {"code": "MAPPER-3700-400", "message": "Mapper Transform Error", "recordCount": failed}
        ]
    elif code == "MAPPER-3700-400":
        errors = [{"code": code, "message": "Mapper Transform Error", "recordCount": failed}]
        details = [{"code": code, "message": "Mapper Transform Error", "recordCount": failed}]
    else:
        errors = [{"code": code, "message": CORRUPT_ROW}]
        details = [{"code": code, "message": CORRUPT_ROW, "recordCount": failed}]
    return {
        "input_records": input_records,
        "failed_records": failed,
        "errors": errors,
        "activity_errors": details,
    }


def ingest_summary(failed: int, kept: int) -> str:
    return (
        f"Encountered {failed} errors in the data. Successfully ingested {kept} rows. "
        "Review the associated diagnostic files for additional details."
    )


def lossy(input_records: int, failed: int) -> dict[str, Any]:
    """make_run arguments for a successful run that lost `failed` records (like sample 01)."""
    return {
        "input_records": input_records,
        "failed_records": failed,
        "errors": [{"code": "CONNECTOR-2001-500", "message": PROMOTION_FAILED}],
        "activity_errors": [
            {"code": "INGEST-1212-400", "message": ingest_summary(failed, input_records - failed)},
            {"code": "MAPPER-3700-400", "message": "Mapper Transform Error", "recordCount": failed},
        ],
    }


def scheduled(run: dict[str, Any]) -> dict[str, Any]:
    """Cut a run down to a scheduled, not yet started one (like sample 14)."""
    return {
        **{k: v for k, v in run.items() if k not in ("metrics", "activities")},
        "metrics": {"statusSummary": {"status": "scheduled"}},
        "activities": [],
    }


def _slots(anchor: datetime, period: timedelta, now: datetime, since: datetime) -> list[datetime]:
    """Schedule times anchor + k*period in (since, now], newest first."""
    newest = anchor + period * ((now - anchor) // period)
    slots = []
    at = newest
    while at > since:
        slots.append(at)
        at -= period
    return slots


def _pick_slots(
    schedules: list[tuple[datetime, timedelta]],
    runs: int,
    now: datetime,
    span: timedelta,
    rng: random.Random,
) -> list[list[datetime]]:
    """Choose `runs` schedule slots: every flow's newest first, the rest at random.

    When the span holds too few slots, older slots (before now - span) are added,
    round-robin over the flows, until the count is met.
    """
    per_flow = [_slots(anchor, period, now, now - span) for anchor, period in schedules]
    chosen: list[list[datetime]] = [slots[:1] for slots in per_flow]
    budget = runs - sum(len(c) for c in chosen)
    if budget < 0:
        order = sorted(range(len(chosen)), key=lambda i: chosen[i][0] if chosen[i] else now)
        for i in order[:-budget]:
            chosen[i] = []
        return chosen
    rest = [(i, at) for i, slots in enumerate(per_flow) for at in slots[1:]]
    for i, at in rng.sample(rest, min(budget, len(rest))):
        chosen[i].append(at)
    budget -= min(budget, len(rest))
    oldest = [slots[-1] if slots else now for slots in per_flow]
    while budget > 0 and schedules:
        for i, (_, period) in enumerate(schedules):
            if budget == 0:
                break
            oldest[i] -= period
            chosen[i].append(oldest[i])
            budget -= 1
    return chosen


def build_scenario(
    flows: int = 100,
    runs: int = 1000,
    now: datetime | None = None,
    span: timedelta = timedelta(days=1),
    seed: int = 0,
    sandbox: str = "prod",
) -> Scenario:
    """A seeded world of `flows` flows and exactly `runs` runs within `span` before `now`.

    Flows are minute(15)/hour/day scheduled (about 3% disabled, with no runs); runs sit on
    their flow's schedule, are mostly successful, about 4% failed with realistic error
    codes and manifest links, about 6% successful with failed records; a flow's newest run
    may still be in progress or scheduled. The same arguments give the same world.
    """
    collecting = gc.isenabled()
    gc.disable()  # millions of small dicts: the cyclic GC would double the build time
    try:
        return _build(flows, runs, now or datetime.now(UTC), span, random.Random(seed), sandbox)
    finally:
        if collecting:
            gc.enable()


def _build(
    flows: int, runs: int, now: datetime, span: timedelta, rng: random.Random, sandbox: str
) -> Scenario:
    ids = _Ids(rng)
    scenario = Scenario(now=now, sandboxes={sandbox})
    enabled: list[tuple[dict[str, Any], timedelta]] = []
    for index in range(flows):
        frequency, interval, _, prefixes = rng.choices(KINDS, weights=[k[2] for k in KINDS])[0]
        name = f"{rng.choice(prefixes)}-{index:04d}"
        period = PERIODS[frequency] * interval
        anchor = now - span - timedelta(days=rng.randint(1, 90), seconds=rng.randint(0, 86399))
        anchor = anchor.replace(microsecond=0)
        state = "disabled" if rng.random() < 0.03 else "enabled"
        flow = make_flow(
            flow_id(name, sandbox),
            name=name,
            state=state,
            sandbox=sandbox,
            frequency=frequency,
            interval=interval,
            start_at=anchor,
            etag=f'"{ids.uuid()}"',
            connection_ids=(ids.uuid(), ids.uuid()),
        )
        scenario.put_flow(flow)
        if state == "enabled":
            enabled.append((flow, period))
    schedules = [
        (datetime.fromtimestamp(int(f["scheduleParams"]["startTime"]), UTC), p) for f, p in enabled
    ]
    chosen = _pick_slots(schedules, runs, now, span, rng)
    for (flow, period), slots in zip(enabled, chosen, strict=True):
        for at in sorted(slots):
            scenario.put_run(_random_run(flow, at, period, now, rng, ids, newest=at == max(slots)))
    return scenario


def _random_run(
    flow: dict[str, Any],
    at: datetime,
    period: timedelta,
    now: datetime,
    rng: random.Random,
    ids: _Ids,
    newest: bool,
) -> dict[str, Any]:
    started = at + timedelta(seconds=rng.randint(0, 120), milliseconds=rng.randint(0, 999))
    took = (
        period * rng.uniform(0.05, 0.4)
        if period < timedelta(days=1)
        else timedelta(minutes=rng.uniform(5, 60))
    )
    completed: datetime | None = started + took
    input_records = rng.randint(100, 50_000)
    roll = rng.random()
    kwargs: dict[str, Any] = {"input_records": input_records}
    status = "success"
    if roll < 0.04:
        status = "failed"
        kwargs = failure(rng.choice(FAILURE_CODES), input_records, rng)
    elif roll < 0.10:
        kwargs = lossy(input_records, max(1, int(input_records * rng.uniform(0.001, 0.2))))
    if newest and (rng.random() < 0.03 or (completed and completed > now)):
        status, completed = "inProgress", None
        kwargs = {"input_records": input_records, "output_records": 0}
    run = make_run(
        flow["id"],
        run_id=ids.uuid(),
        status=status,
        started_at=min(started, now),
        completed_at=completed,
        batch_id=ids.batch(),
        sandbox=flow["sandboxName"],
        etag=f'"{ids.uuid()}"',
        target_id=flow["targetConnectionIds"][0],
        **kwargs,
    )
    if newest and status == "inProgress" and rng.random() < 0.25:
        return scheduled(run)
    return run


HEALTHY_HOURLY = [
    "web-sessions-hourly",
    "app-events-hourly",
    "payments-hourly",
    "inventory-hourly",
    "clickstream-hourly",
    "search-terms-hourly",
    "cart-events-hourly",
    "support-tickets-hourly",
]
HEALTHY_DAILY = [
    "product-catalog-daily",
    "loyalty-daily-export",
    "email-bounces-daily",
    "finance-ledger-daily",
    "survey-results-daily",
    "returns-daily",
    "partner-feed-daily",
    "gdpr-requests-daily",
]
STORM = [f"store-sync-{i:02d}" for i in range(1, 13)]


def demo_scenario(now: datetime | None = None, sandbox: str = "prod") -> Scenario:
    """A small hand-made world in which each rule kind has one thing to find.

    - `crm-daily-import`: its newest run failed (CONNECTOR-2001-500, with per-activity
      INGEST-1401-400 / MAPPER-3700-400 errors and manifest links);
    - `crm-contacts-sync`: its newest run succeeded but lost 600 of 5,000 records (12%);
    - `web-events-hourly`: hourly, but its newest run started 3 h ago (late);
    - `orders-backfill`: a run in progress for 5 h (stuck);
    - `store-sync-01` … `store-sync-12`: hourly, newest run failed with CONNECTOR-1001-500
      (a storm to group);
    - 16 healthy hourly and daily flows with recent good runs.
    """
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    world = _Demo(now, sandbox)
    for name in HEALTHY_HOURLY:
        world.flow(name, "hour", last=timedelta(minutes=20), history=24)
    for name in HEALTHY_DAILY:
        world.flow(name, "day", last=timedelta(hours=3), history=7)
    world.flow(
        "crm-daily-import",
        "day",
        last=timedelta(hours=2),
        history=7,
        newest=failure_demo(),
    )
    world.flow(
        "crm-contacts-sync",
        "day",
        last=timedelta(hours=4),
        history=7,
        newest=lossy(5000, 600),
    )
    world.flow("web-events-hourly", "hour", last=timedelta(hours=3), history=24)
    world.flow(
        "orders-backfill",
        "day",
        last=timedelta(hours=5),
        history=5,
        newest={"status": "inProgress", "input_records": 2_000_000, "output_records": 0},
    )
    for name in STORM:
        world.flow(
            name,
            "hour",
            last=timedelta(minutes=30),
            history=12,
            newest={
                "status": "failed",
                "input_records": 0,
                "output_records": 0,
                "errors": [{"code": "CONNECTOR-1001-500", "message": COPY_FAILED}],
            },
        )
    return world.scenario


def failure_demo() -> dict[str, Any]:
    """The failed `crm-daily-import` run of the demo: 4,200 records, all failed."""
    return {
        "status": "failed",
        "input_records": 4200,
        "failed_records": 4200,
        "errors": [{"code": "CONNECTOR-2001-500", "message": PROMOTION_FAILED}],
        "activity_errors": [
            {"code": "INGEST-1401-400", "message": CORRUPT_ROW, "recordCount": 3100},
            {"code": "MAPPER-3700-400", "message": "Mapper Transform Error", "recordCount": 1100},
        ],
    }


class _Demo:
    """Builds the demo world flow by flow, with deterministic ids."""

    def __init__(self, now: datetime, sandbox: str) -> None:
        self.now = now
        self.sandbox = sandbox
        self.ids = _Ids(random.Random(20240601))
        self.scenario = Scenario(now=now, sandboxes={sandbox})

    def flow(
        self,
        name: str,
        frequency: str,
        last: timedelta,
        history: int,
        newest: dict[str, Any] | None = None,
    ) -> None:
        """A flow whose runs started `last` ago and every period before, `history` in all.

        `newest` gives make_run arguments for the newest run (a good run otherwise).
        """
        period = PERIODS[frequency]
        newest_at = self.now - last
        anchor = newest_at - period * 60
        flow = make_flow(
            flow_id(name, self.sandbox),
            name=name,
            sandbox=self.sandbox,
            frequency=frequency,
            start_at=anchor,
            etag=f'"{self.ids.uuid()}"',
            connection_ids=(self.ids.uuid(), self.ids.uuid()),
        )
        self.scenario.put_flow(flow)
        took = timedelta(minutes=6) if frequency == "hour" else timedelta(minutes=25)
        for k in reversed(range(history)):
            started = newest_at - period * k
            kwargs: dict[str, Any] = {"status": "success", "input_records": 1000 + 37 * k}
            if k == 0 and newest:
                kwargs = dict(newest)
            completed = None if kwargs.get("status") == "inProgress" else started + took
            run = make_run(
                flow["id"],
                run_id=self.ids.uuid(),
                started_at=started,
                completed_at=completed,
                batch_id=self.ids.batch(),
                sandbox=self.sandbox,
                etag=f'"{self.ids.uuid()}"',
                target_id=flow["targetConnectionIds"][0],
                **kwargs,
            )
            self.scenario.put_run(run)
