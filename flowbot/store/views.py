"""Read-only views of the store for the report, the digest and the status page.

Each function takes an open Store and only reads. Results are bounded (a `limit` on
every list) so that a huge database costs a bounded answer, never unbounded memory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowbot.models import RUNNING_STATES, WAITING_STATES
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
    org_id: str | None = None
    status: str = ""  # as the status page shows it: one of SHOWN_STATES ("" unread)


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


def latest_runs_at_once(
    store: Store, flow_ids: Sequence[str], per_flow: int
) -> dict[str, list[RunFact]]:
    """Each flow's newest `per_flow` runs, newest first, in one query: for each flow a
    correlated LIMIT on the (flow_id, started) index, so a flow with a long history
    costs no more than `per_flow` rows."""
    if not flow_ids:
        return {}
    out: dict[str, list[RunFact]] = {f: [] for f in flow_ids}
    for start in range(0, len(flow_ids), _CHUNK):
        chunk = list(flow_ids[start : start + _CHUNK])
        values = ",".join("(?)" for _ in chunk)
        rows = store._rows(
            f"WITH page(fid) AS (VALUES {values}) "
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE rowid IN (SELECT r.rowid FROM page "
            "JOIN runs r ON r.rowid IN (SELECT rowid FROM runs WHERE flow_id = page.fid "
            "ORDER BY started DESC LIMIT ?)) ORDER BY flow_id, started DESC",
            (*chunk, per_flow),
        )
        for r in rows:
            out[str(r["flow_id"])].append(_run(r))
    return out


# The status page's states, most urgent first, as SQL over the flows table: a firing
# alert makes a flow "alerting"; else a disabled flow is "disabled"; else its last run
# decides. One home for the rule (the page, its counts and its order all read it).
SHOWN_STATES = ("alerting", "failed", "ok", "running", "disabled", "unknown")
_ACTIVE = ",".join(f"'{s}'" for s in sorted(RUNNING_STATES | WAITING_STATES))
_SHOWN = (
    "CASE WHEN f.id IN (SELECT flow_id FROM alerts WHERE state = 'firing') THEN 'alerting' "
    "WHEN f.state = 'disabled' THEN 'disabled' "
    "WHEN f.last_run_state = 'failed' THEN 'failed' "
    "WHEN f.last_run_state = 'success' THEN 'ok' "
    f"WHEN f.last_run_state IN ({_ACTIVE}) THEN 'running' ELSE 'unknown' END"
)
_RANK = "CASE shown " + " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(SHOWN_STATES))
_RANK += " END"
_CHUNK = 500  # ids bound in one statement (SQLite allows 32,766 variables)
_FLOW_COLUMNS = "id, sandbox, name, state, last_run_state, last_run_started, org_id"


@dataclass(frozen=True, slots=True)
class FlowFilter:
    """Which flows a page lists: in these sandboxes, whose lower-cased name contains `q`
    (or whose id is `q`), in state `state`, and which `owned(id, name, sandbox)` keeps."""

    sandboxes: Sequence[str]
    q: str = ""
    state: str = ""
    owned: Callable[[str, str, str], bool] | None = None


def _shown_flows(store: Store, chosen: FlowFilter) -> tuple[str, list[Any]]:
    """A SELECT of the flows `chosen` keeps (all but its state), with `shown` added."""
    marks = ",".join("?" for _ in chosen.sandboxes) or "NULL"
    where, params = [f"f.sandbox IN ({marks})"], list(chosen.sandboxes)
    conn = store.db.conn
    if chosen.q:
        conn.create_function("flowbot_lower", 1, _lower, deterministic=True)
        where.append("(instr(flowbot_lower(f.name), ?) > 0 OR flowbot_lower(f.id) = ?)")
        params += [chosen.q.lower(), chosen.q.lower()]
    if chosen.owned is not None:
        owned = chosen.owned
        conn.create_function("flowbot_owned", 3, lambda i, n, s: int(owned(i, n or "", s)))
        where.append("flowbot_owned(f.id, f.name, f.sandbox)")
    sql = f"SELECT {_FLOW_COLUMNS}, {_SHOWN} AS shown FROM flows f WHERE " + " AND ".join(where)
    return sql, params


def _lower(value: str | None) -> str:
    return (value or "").lower()


def flow_counts(store: Store, chosen: FlowFilter) -> tuple[dict[str, int], dict[str, int]]:
    """(flows per state in the sandboxes, flows per state that the filter keeps), by one
    aggregate over the flows table: no flow is read into Python."""

    def per_state(f: FlowFilter) -> dict[str, int]:
        sql, params = _shown_flows(store, f)
        rows = store._rows(f"SELECT shown, count(*) AS n FROM ({sql}) GROUP BY shown", params)
        return {s: 0 for s in SHOWN_STATES} | {str(r["shown"]): int(r["n"]) for r in rows}

    counts = per_state(FlowFilter(chosen.sandboxes))
    filtered = chosen.q or chosen.owned is not None
    return counts, per_state(chosen) if filtered else dict(counts)


def flow_page(store: Store, chosen: FlowFilter, *, offset: int, limit: int) -> list[FlowFact]:
    """One page of the flows `chosen` keeps: most urgent state first, then by sandbox
    and name (ASCII case folded), then id."""
    sql, params = _shown_flows(store, chosen)
    state = "WHERE shown = ?" if chosen.state else ""
    rows = store._rows(
        f"SELECT * FROM ({sql}) {state} ORDER BY {_RANK}, sandbox, lower(name), id "
        "LIMIT ? OFFSET ?",
        (*params, *([chosen.state] if chosen.state else []), limit, offset),
    )
    return [_flow(r) for r in rows]


def shown_flow(store: Store, flow_id: str) -> FlowFact | None:
    """One flow with the state the status page shows for it."""
    rows = store._rows(
        f"SELECT {_FLOW_COLUMNS}, {_SHOWN} AS shown FROM flows f WHERE f.id = ?", (flow_id,)
    )
    return _flow(rows[0]) if rows else None


def flows_by_id(store: Store, flow_ids: Sequence[str]) -> dict[str, FlowFact]:
    out: dict[str, FlowFact] = {}
    ids = list(dict.fromkeys(flow_ids))
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        rows = store._rows(
            f"SELECT {_FLOW_COLUMNS} FROM flows f WHERE f.id IN ({','.join('?' * len(chunk))})",
            chunk,
        )
        out.update((str(r["id"]), _flow(r)) for r in rows)
    return out


def _flow(r: Mapping[str, Any]) -> FlowFact:
    return FlowFact(
        id=str(r["id"]),
        sandbox=str(r["sandbox"]),
        name=str(r["name"] or ""),
        state=str(r["state"] or ""),
        last_run_state=r["last_run_state"],
        last_run_started=from_ms(r["last_run_started"]),
        org_id=r["org_id"],
        status=str(r.get("shown") or ""),
    )


def flows(store: Store, *, flow_id: str | None = None) -> list[FlowFact]:
    """Every known flow (or the one with `flow_id`), by sandbox then name."""
    sql = (
        f"SELECT {_FLOW_COLUMNS} FROM flows"
        + (" WHERE id = ?" if flow_id is not None else "")
        + " ORDER BY sandbox, name, id"
    )
    rows = store._rows(sql, (flow_id,) if flow_id is not None else ())
    return [_flow(r) for r in rows]


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
