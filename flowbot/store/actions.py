"""The store's part for actions taken from Slack: the audit log of every button press
and slash command (allowed or refused), acknowledgements, and the few reads the
action handlers need (an alert by id, a run's status and leading error, the message
a Slack ref points to).

Functions take the Store; they write in their own short transactions, so they can be
called from the Socket Mode thread on its own Store connection while a cycle runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowbot.models import Flow
from flowbot.store.bounds import clip
from flowbot.store.database import Store
from flowbot.store.rows import (
    AlertRow,
    OutboxRow,
    alert_from_row,
    flow_from_row,
    from_ms,
    outbox_from_row,
    to_ms,
)


@dataclass(frozen=True, slots=True)
class ActionRow:
    """One action from Slack as recorded: who (a Slack user id), when, what, on which
    alert, and what came of it ("done", "refused", "replayed"... and a detail)."""

    id: int
    at: datetime
    user: str
    action: str
    alert_id: int | None
    outcome: str
    detail: str


@dataclass(frozen=True, slots=True)
class Ack:
    """An acknowledged alert: who, when, and the error signature acknowledged."""

    alert_id: int
    user: str
    at: datetime
    signature: str


def _rows(store: Store, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    with store.guard():
        cursor = store.db.execute(sql, tuple(params))
        names = [d[0] for d in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def claim(store: Store, envelope: str, *, user: str, action: str, now: datetime) -> int | None:
    """Record an action about to be taken for Slack's `envelope` id; its row id, or None
    when that envelope was already claimed (Slack replayed it: act on it once)."""
    with store.transaction():
        cursor = store.db.execute(
            "INSERT OR IGNORE INTO slack_actions (envelope, at, user, action, outcome) "
            "VALUES (?, ?, ?, ?, 'pending')",
            (clip(envelope, 100), to_ms(now), clip(user, 40), clip(action, 40)),
        )
        if cursor.rowcount == 0:
            return None
        return int(cursor.lastrowid or 0)


def settle(
    store: Store, action_id: int, *, outcome: str, detail: str = "", alert_id: int | None = None
) -> None:
    """What came of a claimed action."""
    with store.transaction():
        store.db.execute(
            "UPDATE slack_actions SET outcome = ?, detail = ?, alert_id = ? WHERE id = ?",
            (clip(outcome, 40), clip(detail, 500), alert_id, action_id),
        )


def actions(
    store: Store,
    *,
    alert_ids: Sequence[int] | None = None,
    since: datetime | None = None,
    limit: int = 200,
) -> list[ActionRow]:
    """Recorded actions, newest first: of `alert_ids` (any when None), since `since`."""
    sql, params = "SELECT * FROM slack_actions WHERE 1=1", list[Any]()
    if alert_ids is not None:
        if not alert_ids:
            return []
        sql += f" AND alert_id IN ({','.join('?' * len(alert_ids))})"
        params += list(alert_ids)
    if since is not None:
        sql += " AND at >= ?"
        params.append(to_ms(since))
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(limit)
    return [
        ActionRow(
            id=r["id"],
            at=from_ms(r["at"]),
            user=r["user"],
            action=r["action"],
            alert_id=r["alert_id"],
            outcome=r["outcome"],
            detail=r["detail"] or "",
        )
        for r in _rows(store, sql, params)
    ]


def action_counts(store: Store) -> dict[tuple[str, str], int]:
    """How many actions of each (action, outcome) were recorded, for /metrics."""
    rows = _rows(
        store, "SELECT action, outcome, count(*) AS n FROM slack_actions GROUP BY action, outcome"
    )
    return {(r["action"], r["outcome"]): int(r["n"]) for r in rows}


def acknowledge(store: Store, alert_id: int, *, user: str, now: datetime, signature: str) -> None:
    with store.transaction():
        store.db.execute(
            "INSERT OR REPLACE INTO acks VALUES (?, ?, ?, ?)",
            (alert_id, clip(user, 40), to_ms(now), clip(signature, 200)),
        )


def unacknowledge(store: Store, alert_ids: Iterable[int]) -> None:
    ids = list(alert_ids)
    if not ids:
        return
    with store.transaction():
        store.db.execute(f"DELETE FROM acks WHERE alert_id IN ({','.join('?' * len(ids))})", ids)


def acks(store: Store, alert_ids: Sequence[int]) -> dict[int, Ack]:
    """The acknowledgements of these alerts, by alert id."""
    if not alert_ids:
        return {}
    rows = _rows(
        store,
        f"SELECT * FROM acks WHERE alert_id IN ({','.join('?' * len(alert_ids))})",
        list(alert_ids),
    )
    return {
        r["alert_id"]: Ack(r["alert_id"], r["user"], from_ms(r["at"]), r["signature"]) for r in rows
    }


def alert(store: Store, alert_id: int) -> AlertRow | None:
    rows = _rows(store, "SELECT * FROM alerts WHERE id = ?", (alert_id,))
    return alert_from_row(rows[0]) if rows else None


def flow(store: Store, flow_id: str) -> Flow | None:
    rows = _rows(store, "SELECT * FROM flows WHERE id = ?", (flow_id,))
    return flow_from_row(rows[0]) if rows else None


def run_raw(store: Store, run_id: str) -> dict[str, Any] | None:
    """The stored JSON of a run (as the API sent it), None when unknown or unreadable."""
    rows = _rows(store, "SELECT raw FROM runs WHERE id = ?", (run_id,))
    if not rows or not rows[0]["raw"]:
        return None
    try:
        raw = json.loads(rows[0]["raw"])
    except (ValueError, RecursionError):
        return None
    return raw if isinstance(raw, dict) else None


def message_at(store: Store, ref: Mapping[str, str]) -> OutboxRow | None:
    """The sent message Slack knows as `ref` ({"channel", "ts"}), if flowbot sent it."""
    rows = _rows(
        store,
        "SELECT * FROM outbox WHERE ref = ? ORDER BY id LIMIT 1",
        (json.dumps(dict(ref)),),
    )
    return outbox_from_row(rows[0]) if rows else None
