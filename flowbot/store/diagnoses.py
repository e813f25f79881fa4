"""The `diagnoses` table: one row per batch whose row errors flowbot reads (or read).

A row is queued `pending` when a run that wants a diagnosis is seen, and read by the
diagnose stage within its budget: its `files` (the listing, once read) let a later cycle
go on without listing again; `summary` is the Diagnosis as JSON once final (done,
denied, failed); `waiting` lists the alerts announced before it was final, which get
it as a thread reply.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowbot.store.database import Store
from flowbot.store.rows import chunks, to_ms


@dataclass(frozen=True, slots=True)
class DiagnosisRow:
    sandbox: str
    batch_id: str
    run_id: str
    state: str
    attempts: int
    files: dict[str, Any] | None  # the listing, once read: {"files", "total", "notes"}
    summary: str | None
    waiting: list[dict[str, Any]]


def _row(r: Mapping[str, Any]) -> DiagnosisRow:
    return DiagnosisRow(
        sandbox=r["sandbox"],
        batch_id=r["batch_id"],
        run_id=r["run_id"],
        state=r["state"],
        attempts=int(r["attempts"] or 0),
        files=_load(r["files"], dict),
        summary=r["summary"],
        waiting=_load(r["waiting"], list) or [],
    )


def _load(text: str | None, kind: type) -> Any:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, kind) else None


def queue(
    store: Store, sandbox: str, items: Iterable[tuple[str, str, datetime | None]], now: datetime
) -> None:
    """Queue (batch id, run id, run start) as pending, unless the batch is known."""
    with store.transaction(), store.guard():
        for batch_id, run_id, started in items:
            store.db.execute(
                "INSERT OR IGNORE INTO diagnoses (sandbox, batch_id, run_id, started, state, "
                "created, updated) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                (sandbox, batch_id, run_id, to_ms(started), to_ms(now), to_ms(now)),
            )


def due(store: Store, sandbox: str, max_attempts: int, limit: int) -> list[DiagnosisRow]:
    """Pending batches, those alerts wait for first, then the newest runs first."""
    rows = store._rows(
        "SELECT * FROM diagnoses WHERE sandbox = ? AND state = 'pending' AND attempts < ? "
        "ORDER BY waiting IS NULL, started DESC LIMIT ?",
        (sandbox, max_attempts, limit),
    )
    return [_row(r) for r in rows]


def save(
    store: Store,
    row: DiagnosisRow,
    now: datetime,
    *,
    state: str,
    attempts: int | None = None,
    files: Mapping[str, Any] | None = None,
    summary: str | None = None,
) -> None:
    with store.transaction(), store.guard():
        store.db.execute(
            "UPDATE diagnoses SET state = ?, attempts = ?, files = ?, summary = ?, updated = ? "
            "WHERE sandbox = ? AND batch_id = ?",
            (
                state,
                row.attempts if attempts is None else attempts,
                None if files is None else json.dumps(dict(files)),
                summary,
                to_ms(now),
                row.sandbox,
                row.batch_id,
            ),
        )


def by_runs(store: Store, run_ids: Sequence[str]) -> dict[str, DiagnosisRow]:
    """The diagnosis row of each of these runs that has one."""
    out: dict[str, DiagnosisRow] = {}
    for chunk in chunks(list(dict.fromkeys(run_ids)), 500):
        marks = ",".join("?" * len(chunk))
        for r in store._rows(f"SELECT * FROM diagnoses WHERE run_id IN ({marks})", chunk):  # noqa: S608
            out[r["run_id"]] = _row(r)
    return out


def add_waiting(store: Store, row: DiagnosisRow, entries: Sequence[Mapping[str, Any]]) -> None:
    """Alerts announced without the diagnosis: they get it once it is final."""
    known = {e.get("alert_id") for e in row.waiting}
    waiting = row.waiting + [dict(e) for e in entries if e.get("alert_id") not in known]
    with store.transaction(), store.guard():
        store.db.execute(
            "UPDATE diagnoses SET waiting = ? WHERE sandbox = ? AND batch_id = ?",
            (json.dumps(waiting[:100]), row.sandbox, row.batch_id),
        )


def answered(store: Store, sandbox: str) -> list[DiagnosisRow]:
    """Final diagnoses that alerts still wait for."""
    rows = store._rows(
        "SELECT * FROM diagnoses WHERE sandbox = ? AND state != 'pending' AND waiting IS NOT NULL",
        (sandbox,),
    )
    return [_row(r) for r in rows]


def clear_waiting(store: Store, row: DiagnosisRow) -> None:
    with store.transaction(), store.guard():
        store.db.execute(
            "UPDATE diagnoses SET waiting = NULL WHERE sandbox = ? AND batch_id = ?",
            (row.sandbox, row.batch_id),
        )


def prune(store: Store, before: datetime) -> int:
    """Forget batches created before `before` (Adobe keeps row errors 30 days)."""
    with store.transaction(), store.guard():
        cursor = store.db.execute("DELETE FROM diagnoses WHERE created < ?", (to_ms(before),))
        return int(cursor.rowcount or 0)
