"""The Store: flows, runs, watermarks, alerts, threads, the outbox and silences in
SQLite, behind methods named for what the pipeline needs.

Times are stored as epoch milliseconds (UTC). One cycle's decisions are written in
one transaction (`with store.transaction():`); sending marks each message on its own,
right after the channel accepted it, so a crash repeats at most that one message.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from flowbot.errors import StoreError
from flowbot.models import FINISHED_STATES, Flow, Message, Run
from flowbot.store.rows import (
    LIGHT_COLUMNS,
    AlertRow,
    OutboxRow,
    Silence,
    Watermark,
    alert_from_row,
    chunks,
    flow_from_row,
    from_ms,
    light_run,
    outbox_from_row,
    to_ms,
)
from flowbot.store.schema import MIGRATIONS

# ------------------------------------------------------------------ the store


class Store:
    """flowbot's SQLite memory. Construct with a path (or ':memory:'), then `migrate()`."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            if self.path == ":memory:":
                conn = sqlite3.connect(":memory:", check_same_thread=False)
            else:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
            conn.isolation_level = None  # explicit transactions only
            self.db = sqlite_utils.Database(conn)
            self.db.execute("PRAGMA busy_timeout = 5000")
            if self.path != ":memory:":
                self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(self._explain(exc)) from None
        self._depth = 0

    def _explain(self, exc: BaseException) -> str:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return f"database {self.path} is locked by another process"
        if "readonly" in text or "read-only" in text or "unable to open" in text:
            return (
                f"database {self.path} cannot be written ({text}); check the path and permissions"
            )
        if "full" in text:
            return (
                f"database {self.path} is full ({text}): the disk, or a size limit; "
                "nothing of this write was kept, it is tried again when there is room"
            )
        if "not a database" in text or "malformed" in text or "corrupt" in text:
            return f"database {self.path} is corrupt or not a flowbot database ({text})"
        return f"database {self.path}: {text}"

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Turn sqlite errors into StoreError with a clear message."""
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(self._explain(exc)) from None

    def close(self) -> None:
        self.db.conn.close()

    def migrate(self) -> None:
        """Apply the migrations not applied yet, each in its own transaction."""
        with self.guard():
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied INTEGER)"
            )
            done = {row[0] for row in self.db.execute("SELECT name FROM _migrations").fetchall()}
            for step in MIGRATIONS:
                if step.__name__ in done:
                    continue
                with self.transaction():
                    step(self.db)
                    self.db.execute(
                        "INSERT INTO _migrations VALUES (?, ?)",
                        (step.__name__, to_ms(datetime.now(UTC))),
                    )

    def integrity_check(self) -> str:
        with self.guard():
            return str(self.db.execute("PRAGMA integrity_check").fetchone()[0])

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction (nested calls join the outer one)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        with self.guard():
            self.db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            with self.guard():
                self.db.execute("ROLLBACK")
            raise
        self._depth = 0
        with self.guard():
            self.db.execute("COMMIT")

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self.guard():
            cursor = self.db.execute(sql, params)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    # -------------------------------------------------------------- watermarks

    def watermark(self, sandbox: str) -> Watermark:
        rows = self._rows("SELECT * FROM watermarks WHERE sandbox = ?", (sandbox,))
        if not rows:
            return Watermark(sandbox)
        r = rows[0]
        return Watermark(
            sandbox,
            runs_since=from_ms(r["runs_since"]),
            flows_refreshed=from_ms(r["flows_refreshed"]),
            last_cycle=from_ms(r["last_cycle"]),
            last_ok=from_ms(r["last_ok"]),
            failing_since=from_ms(r["failing_since"]),
            degraded_announced=bool(r["degraded_announced"]),
            last_error=r["last_error"],
        )

    def set_watermark(self, mark: Watermark) -> None:
        with self.guard():
            self.db["watermarks"].upsert(
                {
                    "sandbox": mark.sandbox,
                    "runs_since": to_ms(mark.runs_since),
                    "flows_refreshed": to_ms(mark.flows_refreshed),
                    "last_cycle": to_ms(mark.last_cycle),
                    "last_ok": to_ms(mark.last_ok),
                    "failing_since": to_ms(mark.failing_since),
                    "degraded_announced": int(mark.degraded_announced),
                    "last_error": mark.last_error,
                },
                pk="sandbox",
            )

    # -------------------------------------------------------------- flows

    def upsert_flows(self, flows: Iterable[Flow], now: datetime) -> None:
        rows = [
            {
                "id": f.id,
                "sandbox": f.sandbox,
                "name": f.name,
                "state": f.state,
                "frequency": f.schedule.frequency if f.schedule else None,
                "interval": f.schedule.interval if f.schedule else None,
                "schedule_start": to_ms(f.schedule.start_at) if f.schedule else None,
                "org_id": str(f.raw.get("imsOrgId") or "") if f.raw else "",
                "last_run_id": f.last_run_id,
                "last_run_state": f.last_run_state,
                "last_run_started": to_ms(f.last_run_started_at),
                "etag": f.etag,
                "refreshed": to_ms(now),
                "raw": json.dumps(dict(f.raw)) if f.raw else None,
            }
            for f in flows
        ]
        if not rows:
            return
        with self.guard():
            # Keep the newest known last run when the payload is older than what runs told us.
            known = self._last_starts([r["id"] for r in rows])
            for r in rows:
                old = known.get(r["id"])
                if old is not None and (r["last_run_started"] or 0) < old[1]:
                    r["last_run_id"], r["last_run_started"], r["last_run_state"] = old
            self.db["flows"].upsert_all(rows, pk="id")

    def _last_starts(self, ids: Sequence[str]) -> dict[str, tuple[Any, int, Any]]:
        out: dict[str, tuple[Any, int, Any]] = {}
        for chunk in chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            for row in self._rows(
                f"SELECT id, last_run_id, last_run_started, last_run_state FROM flows "
                f"WHERE id IN ({marks}) AND last_run_started IS NOT NULL",
                chunk,
            ):
                out[row["id"]] = (
                    row["last_run_id"],
                    row["last_run_started"],
                    row["last_run_state"],
                )
        return out

    def flows(self, sandbox: str) -> list[Flow]:
        return [
            flow_from_row(r)
            for r in self._rows("SELECT * FROM flows WHERE sandbox = ?", (sandbox,))
        ]

    # -------------------------------------------------------------- runs

    def upsert_runs(self, runs: Sequence[Run], now: datetime) -> list[Run]:
        """Store the runs; return those that are new or whose etag/status changed."""
        if not runs:
            return []
        known: dict[str, tuple[str, str]] = {}
        for chunk in chunks([r.id for r in runs], 500):
            marks = ",".join("?" * len(chunk))
            for row in self._rows(
                f"SELECT id, etag, status FROM runs WHERE id IN ({marks})", chunk
            ):
                known[row["id"]] = (row["etag"] or "", row["status"] or "")
        changed = [r for r in runs if known.get(r.id) != (r.etag, r.status)]
        rows = [
            {
                "id": r.id,
                "flow_id": r.flow_id,
                "sandbox": r.sandbox,
                "status": r.status,
                "finished": int(r.state in FINISHED_STATES),
                "started": to_ms(r.started_at),
                "completed": to_ms(r.completed_at),
                "input_records": r.input_records,
                "output_records": r.output_records,
                "failed_records": r.failed_records,
                "etag": r.etag,
                "seen": to_ms(now),
                "raw": json.dumps(dict(r.raw)),
            }
            for r in changed
        ]
        with self.guard():
            self.db["runs"].upsert_all(rows, pk="id")
            # A run tells us a flow ran: keep the flow's last run up to date for missing_run.
            for r in changed:
                started = to_ms(r.started_at)
                if started is None:
                    continue
                self.db.execute(
                    "UPDATE flows SET last_run_id = ?, last_run_started = ?, last_run_state = ? "
                    "WHERE id = ? AND (last_run_started IS NULL OR last_run_started <= ?)",
                    (r.id, started, r.status, r.flow_id, started),
                )
        return changed

    def unfinished_run_ids(self, sandbox: str, since: datetime | None = None) -> list[str]:
        """Runs last seen scheduled or in progress (started after `since`), to re-read."""
        rows = self._rows(
            "SELECT id FROM runs WHERE sandbox = ? AND finished = 0 AND coalesce(started, 0) >= ? "
            "ORDER BY started",
            (sandbox, to_ms(since) or 0),
        )
        return [r["id"] for r in rows]

    def unfinished_run_flow_ids(self, sandbox: str) -> list[str]:
        rows = self._rows(
            "SELECT DISTINCT flow_id FROM runs WHERE sandbox = ? AND finished = 0", (sandbox,)
        )
        return [r["flow_id"] for r in rows]

    def recent_runs(
        self,
        flow_ids: Iterable[str],
        limit: int,
        parse: Callable[[dict[str, Any]], Run],
        full: Collection[str] = (),
    ) -> dict[str, list[Run]]:
        """Each flow's newest `limit` runs, newest first.

        Runs up to and including the newest finished one, and the runs in `full`, are
        parsed from their raw JSON (errors, activities, links: what rules and messages
        read). Older ones only count toward windows and streaks: they are built from the
        stored columns (status, times, record counts), which keeps a cycle's cost flat as
        history grows.
        """
        out: dict[str, list[Run]] = {}
        for flow_id in flow_ids:
            rows = self._rows(
                f"SELECT {LIGHT_COLUMNS} FROM runs WHERE flow_id = ? ORDER BY started DESC LIMIT ?",
                (flow_id, limit),
            )
            runs: list[Run] = []
            finished_seen = False
            for row in rows:
                if finished_seen and row["id"] not in full:
                    runs.append(light_run(row))
                    continue
                raw = self._rows("SELECT raw FROM runs WHERE id = ?", (row["id"],))[0]["raw"]
                try:
                    runs.append(parse(json.loads(raw)))
                except ValueError:
                    continue
                finished_seen = finished_seen or bool(row["finished"])
            out[flow_id] = runs
        return out

    def run_count(self) -> int:
        return int(self._rows("SELECT count(*) AS n FROM runs")[0]["n"])

    # -------------------------------------------------------------- alerts

    def firing_alerts(self, sandbox: str | None = None) -> list[AlertRow]:
        if sandbox is None:
            rows = self._rows("SELECT * FROM alerts WHERE state = 'firing' ORDER BY id")
        else:
            rows = self._rows(
                "SELECT * FROM alerts WHERE state = 'firing' AND sandbox = ? ORDER BY id",
                (sandbox,),
            )
        return [alert_from_row(r) for r in rows]

    def alert_counts(self) -> dict[str, int]:
        """How many alerts are in each state (firing, resolved), for metrics."""
        rows = self._rows("SELECT state, count(*) AS n FROM alerts GROUP BY state")
        return {r["state"]: r["n"] for r in rows}

    def insert_alert(
        self,
        *,
        rule: str,
        flow_id: str,
        sandbox: str,
        flow_name: str,
        now: datetime,
        count: int,
        last_run_id: str | None,
        reason: str,
        muted: bool,
    ) -> int:
        with self.guard():
            cursor = self.db.execute(
                "INSERT INTO alerts (rule, flow_id, sandbox, flow_name, state, first_seen, "
                "last_seen, count, last_run_id, reason, muted) "
                "VALUES (?, ?, ?, ?, 'firing', ?, ?, ?, ?, ?, ?)",
                (
                    rule,
                    flow_id,
                    sandbox,
                    flow_name,
                    to_ms(now),
                    to_ms(now),
                    count,
                    last_run_id,
                    reason,
                    int(muted),
                ),
            )
            return int(cursor.lastrowid or 0)

    ALERT_FIELDS = frozenset(
        {"state", "flow_name", "last_seen", "last_notified", "resolved", "count",
         "last_run_id", "reason", "muted"}
    )  # fmt: skip

    def update_alert(self, alert_id: int, **values: Any) -> None:
        """Set some of an alert's fields (ALERT_FIELDS); datetimes are stored as ms."""
        unknown = set(values) - self.ALERT_FIELDS
        if unknown:
            raise ValueError(f"not alert fields: {sorted(unknown)}")
        fields = {k: (to_ms(v) if isinstance(v, datetime) else v) for k, v in values.items()}
        if "muted" in fields:
            fields["muted"] = int(bool(fields["muted"]))
        if not fields:
            return
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self.guard():
            self.db.execute(
                f"UPDATE alerts SET {assignments} WHERE id = ?", (*fields.values(), alert_id)
            )

    def alerts(
        self,
        *,
        flow: str | None = None,
        rule: str | None = None,
        since: datetime | None = None,
        limit: int = 200,
    ) -> list[AlertRow]:
        sql, params = "SELECT * FROM alerts WHERE 1=1", []
        if flow:
            sql += " AND (flow_id = ? OR flow_name LIKE ?)"
            params += [flow, flow.replace("*", "%")]
        if rule:
            sql += " AND rule = ?"
            params.append(rule)
        if since:
            sql += " AND last_seen >= ?"
            params.append(to_ms(since))
        sql += " ORDER BY first_seen DESC, id DESC LIMIT ?"
        params.append(limit)
        return [alert_from_row(r) for r in self._rows(sql, params)]

    def thread(self, alert_id: int | None, channel: str) -> dict[str, str] | None:
        if alert_id is None:
            return None
        rows = self._rows(
            "SELECT ref FROM threads WHERE alert_id = ? AND channel = ?", (alert_id, channel)
        )
        return json.loads(rows[0]["ref"]) if rows else None

    def set_thread(self, alert_id: int, channel: str, ref: Mapping[str, str]) -> None:
        with self.guard():
            self.db.execute(
                "INSERT OR IGNORE INTO threads VALUES (?, ?, ?)",
                (alert_id, channel, json.dumps(dict(ref))),
            )

    # -------------------------------------------------------------- outbox

    def enqueue(self, messages: Iterable[Message], now: datetime) -> int:
        messages = list(messages)
        rows = [
            {
                "alert_id": m.alert_id,
                "channel": m.channel,
                "kind": m.kind,
                "event": m.event,
                "body": json.dumps(dict(m.body), default=str),
                "created": to_ms(now),
                "attempts": 0,
                "next_attempt": to_ms(now),
                "state": "pending",
            }
            for m in messages
        ]
        with self.guard():
            for message, row in zip(messages, rows, strict=True):
                message_id = self.db["outbox"].insert(row).last_pk
                for alert_id in message.group:
                    self.db.execute(
                        "INSERT OR IGNORE INTO message_alerts VALUES (?, ?)", (message_id, alert_id)
                    )
        return len(rows)

    def group_of(self, message_id: int) -> list[int]:
        """The alerts a grouped message speaks for (empty for a single alert's message)."""
        rows = self._rows(
            "SELECT alert_id FROM message_alerts WHERE message_id = ? ORDER BY alert_id",
            (message_id,),
        )
        return [r["alert_id"] for r in rows]

    def pending(self, channel: str | None = None) -> list[OutboxRow]:
        """Pending messages in the order they were queued (per channel, that order is kept)."""
        if channel is None:
            rows = self._rows("SELECT * FROM outbox WHERE state = 'pending' ORDER BY id")
        else:
            rows = self._rows(
                "SELECT * FROM outbox WHERE state = 'pending' AND channel = ? ORDER BY id",
                (channel,),
            )
        return [outbox_from_row(r) for r in rows]

    def mark_sent(self, message_id: int, now: datetime, ref: Mapping[str, str] | None) -> None:
        with self.guard():
            self.db.execute(
                "UPDATE outbox SET state = 'sent', sent = ?, attempts = attempts + 1, error = NULL, "
                "ref = ? WHERE id = ?",
                (to_ms(now), json.dumps(dict(ref)) if ref else None, message_id),
            )

    def mark_retry(self, message_id: int, error: str, next_attempt: datetime) -> None:
        with self.guard():
            self.db.execute(
                "UPDATE outbox SET attempts = attempts + 1, error = ?, next_attempt = ? WHERE id = ?",
                (error, to_ms(next_attempt), message_id),
            )

    def mark_failed(self, message_id: int, error: str) -> None:
        with self.guard():
            self.db.execute(
                "UPDATE outbox SET state = 'failed', attempts = attempts + 1, error = ? WHERE id = ?",
                (error, message_id),
            )

    def messages(
        self,
        *,
        alert_ids: Sequence[int] | None = None,
        since: datetime | None = None,
        limit: int = 200,
    ) -> list[OutboxRow]:
        sql, params = "SELECT * FROM outbox WHERE 1=1", []
        if alert_ids is not None:
            if not alert_ids:
                return []
            marks = ",".join("?" * len(alert_ids))
            sql += (
                f" AND (alert_id IN ({marks}) OR id IN "
                f"(SELECT message_id FROM message_alerts WHERE alert_id IN ({marks})))"
            )
            params += list(alert_ids) * 2
        if since:
            sql += " AND created >= ?"
            params.append(to_ms(since))
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [outbox_from_row(r) for r in self._rows(sql, params)]

    def outbox_counts(self) -> dict[str, int]:
        rows = self._rows("SELECT state, count(*) AS n FROM outbox GROUP BY state")
        return {r["state"]: r["n"] for r in rows}

    # -------------------------------------------------------------- silences

    def add_silence(
        self, *, rule: str | None, flow: str | None, reason: str, now: datetime, expires: datetime
    ) -> int:
        with self.guard():
            cursor = self.db.execute(
                "INSERT INTO silences (rule, flow, reason, created, expires) VALUES (?, ?, ?, ?, ?)",
                (rule, flow, reason, to_ms(now), to_ms(expires)),
            )
            return int(cursor.lastrowid or 0)

    def silences(self, now: datetime, *, include_expired: bool = False) -> list[Silence]:
        sql = "SELECT * FROM silences"
        params: list[Any] = []
        if not include_expired:
            sql += " WHERE expires > ?"
            params.append(to_ms(now))
        rows = self._rows(sql + " ORDER BY id", params)
        return [
            Silence(
                r["id"],
                r["rule"],
                r["flow"],
                r["reason"],
                from_ms(r["created"]),
                from_ms(r["expires"]),  # type: ignore[arg-type]
            )
            for r in rows
        ]

    def expire_silence(self, silence_id: int, now: datetime) -> bool:
        with self.guard():
            cursor = self.db.execute(
                "UPDATE silences SET expires = ?, expired_early = 1 WHERE id = ? AND expires > ?",
                (to_ms(now), silence_id, to_ms(now)),
            )
            return cursor.rowcount > 0

    # -------------------------------------------------------------- retention

    def prune(self, before: datetime) -> dict[str, int]:
        """Forget finished runs, sent or failed messages and resolved alerts older than `before`."""
        cut = to_ms(before)
        with self.guard():
            runs = self.db.execute(
                "DELETE FROM runs WHERE started < ? AND finished = 1", (cut,)
            ).rowcount
            sent = self.db.execute(
                "DELETE FROM outbox WHERE state != 'pending' AND created < ?", (cut,)
            ).rowcount
            alerts = self.db.execute(
                "DELETE FROM alerts WHERE state = 'resolved' AND resolved < ?", (cut,)
            ).rowcount
            self.db.execute("DELETE FROM threads WHERE alert_id NOT IN (SELECT id FROM alerts)")
            self.db.execute(
                "DELETE FROM message_alerts WHERE message_id NOT IN (SELECT id FROM outbox)"
            )
        return {"runs": runs, "messages": sent, "alerts": alerts}
