"""Read-only views of the store for the report, the digest and the status page.

Each function takes an open Store and only reads. Results are bounded (a `limit` on
every list) so that a huge database costs a bounded answer, never unbounded memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowbot.store.database import Store
from flowbot.store.rows import AlertRow, Watermark, alert_from_row, from_ms, to_ms

MAX_RUNS = 1_000_000  # runs read for one report period, at most
MAX_ALERTS = 100_000  # alerts read for one report period or page, at most


@dataclass(frozen=True, slots=True)
class RunFact:
    """What the figures need of one run: no raw JSON."""

    id: str
    flow_id: str
    sandbox: str
    status: str
    started: datetime | None
    completed: datetime | None
    input_records: int | None
    failed_records: int | None


@dataclass(frozen=True, slots=True)
class FlowFact:
    id: str
    sandbox: str
    name: str
    state: str
    last_run_state: str | None
    last_run_started: datetime | None


def _run(r: dict[str, Any]) -> RunFact:
    return RunFact(
        id=str(r["id"]),
        flow_id=str(r["flow_id"]),
        sandbox=str(r["sandbox"]),
        status=str(r["status"] or ""),
        started=from_ms(r["started"]),
        completed=from_ms(r["completed"]),
        input_records=r["input_records"],
        failed_records=r["failed_records"],
    )


_RUN_COLUMNS = "id, flow_id, sandbox, status, started, completed, input_records, failed_records"


def runs_between(
    store: Store, since: datetime, until: datetime, *, limit: int = MAX_RUNS
) -> list[RunFact]:
    """Finished runs started in [since, until), by flow then start time."""
    rows = store._rows(
        f"SELECT {_RUN_COLUMNS} FROM runs WHERE finished = 1 AND started >= ? AND started < ? "
        "ORDER BY flow_id, started LIMIT ?",
        (to_ms(since), to_ms(until), limit),
    )
    return [_run(r) for r in rows]


def latest_runs(store: Store, flow_ids: list[str], per_flow: int) -> dict[str, list[RunFact]]:
    """Each flow's newest `per_flow` runs, newest first (one indexed query per flow)."""
    out: dict[str, list[RunFact]] = {}
    for flow_id in flow_ids:
        rows = store._rows(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE flow_id = ? ORDER BY started DESC LIMIT ?",
            (flow_id, per_flow),
        )
        out[flow_id] = [_run(r) for r in rows]
    return out


def all_latest_runs(store: Store, per_flow: int) -> dict[str, list[RunFact]]:
    """Every flow's newest `per_flow` runs, newest first, in one query."""
    rows = store._rows(
        f"SELECT {_RUN_COLUMNS} FROM (SELECT *, row_number() OVER "
        "(PARTITION BY flow_id ORDER BY started DESC) AS n FROM runs) WHERE n <= ? "
        "ORDER BY flow_id, started DESC",
        (per_flow,),
    )
    out: dict[str, list[RunFact]] = {}
    for r in rows:
        out.setdefault(str(r["flow_id"]), []).append(_run(r))
    return out


def flows(store: Store, *, flow_id: str | None = None) -> list[FlowFact]:
    """Every known flow (or the one with `flow_id`), by sandbox then name."""
    sql = (
        "SELECT id, sandbox, name, state, last_run_state, last_run_started FROM flows"
        + (" WHERE id = ?" if flow_id is not None else "")
        + " ORDER BY sandbox, name, id"
    )
    rows = store._rows(sql, (flow_id,) if flow_id is not None else ())
    return [
        FlowFact(
            id=str(r["id"]),
            sandbox=str(r["sandbox"]),
            name=str(r["name"] or ""),
            state=str(r["state"] or ""),
            last_run_state=r["last_run_state"],
            last_run_started=from_ms(r["last_run_started"]),
        )
        for r in rows
    ]


def alerts_touching(store: Store, since: datetime, *, limit: int = MAX_ALERTS) -> list[AlertRow]:
    """Alerts opened or resolved since `since`, and every alert still firing."""
    rows = store._rows(
        "SELECT * FROM alerts WHERE first_seen >= ? OR resolved >= ? OR state = 'firing' "
        "ORDER BY first_seen, id LIMIT ?",
        (to_ms(since), to_ms(since), limit),
    )
    return [alert_from_row(r) for r in rows]


def flow_alerts(store: Store, flow_id: str, *, limit: int = 200) -> list[AlertRow]:
    rows = store._rows(
        "SELECT * FROM alerts WHERE flow_id = ? ORDER BY first_seen DESC, id DESC LIMIT ?",
        (flow_id, limit),
    )
    return [alert_from_row(r) for r in rows]


def sandboxes(store: Store) -> list[str]:
    """Every sandbox the store knows of (flows, runs, watermarks), sorted."""
    rows = store._rows(
        "SELECT sandbox FROM flows UNION SELECT sandbox FROM watermarks "
        "UNION SELECT DISTINCT sandbox FROM alerts WHERE sandbox IS NOT NULL ORDER BY 1"
    )
    return [str(r["sandbox"]) for r in rows if r["sandbox"]]


def watermarks(store: Store, names: list[str]) -> dict[str, Watermark]:
    return {name: store.watermark(name) for name in names}
