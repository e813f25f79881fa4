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
from flowbot.store.bounds import bound_raw, clip, sqlite_int
from flowbot.store.rows import (
    LIGHT_COLUMNS,
    AlertRow,
    ChannelProblem,
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

# Told about each item the store leaves out: (stage, item, reason).
OnSkip = Callable[[str, str, str], None]
# What a run or flow may raise while its row is built (hostile values, deep JSON).
# What rules read of a flow: a flow whose row changes in these is judged again.
SHAPE = ("name", "state", "frequency", "interval", "schedule_start", "last_run_started")
NEVER_DUE = 2**62  # ms: a flow whose flow-level rules can never come due by time alone
BAD_ITEM = (ValueError, TypeError, OverflowError, RecursionError, AttributeError)


def _ignore(what: str, item: str, reason: str) -> None:
    pass


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {clip(str(exc), 200)}"


def _storable(*texts: str | None) -> None:
    """Raise ValueError for text SQLite cannot hold (not encodable as UTF-8)."""
    for text in texts:
        if text is not None:
            text.encode("utf-8")  # UnicodeEncodeError is a ValueError


def _text(text: str | None) -> str | None:
    """`text` as SQLite can hold it: unencodable characters become escapes."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _show(item_id: str) -> str:
    """An id for a log line: printable and short, whatever the API sent."""
    return ascii(item_id)[1:-1][:120]


# ------------------------------------------------------------------ the store

BUSY_TIMEOUT = 5.0  # seconds a write waits for another connection's lock


class Store:
    """flowbot's SQLite memory. Construct with a path (or ':memory:'), then `migrate()`.
    A write waits up to `busy_timeout` seconds for another connection's write lock (a
    cycle holds it while it reads the Flow Service), then fails as locked."""

    def __init__(self, path: str | Path, *, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.path = str(path)
        try:
            if self.path == ":memory:":
                conn = sqlite3.connect(":memory:", check_same_thread=False)
            else:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=busy_timeout, check_same_thread=False)
            conn.isolation_level = None  # explicit transactions only
            self.db = sqlite_utils.Database(conn)
            self.db.execute(f"PRAGMA busy_timeout = {max(0, int(busy_timeout * 1000))}")
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
            self.db.table("watermarks").upsert(
                {
                    "sandbox": mark.sandbox,
                    "runs_since": to_ms(mark.runs_since),
                    "flows_refreshed": to_ms(mark.flows_refreshed),
                    "last_cycle": to_ms(mark.last_cycle),
                    "last_ok": to_ms(mark.last_ok),
                    "failing_since": to_ms(mark.failing_since),
                    "degraded_announced": int(mark.degraded_announced),
                    "last_error": clip(mark.last_error),
                },
                pk="sandbox",
            )

    # -------------------------------------------------------------- flows

    def upsert_flows(
        self, flows: Iterable[Flow], now: datetime, on_skip: OnSkip = _ignore
    ) -> set[str]:
        """Store the flows; return the ids of those new or changed (their rules must be
        judged again). One whose row cannot be built is left out and told to
        `on_skip("store", "flow <id>", reason)`."""
        rows = []
        for f in flows:
            try:
                _storable(f.id, f.sandbox)
                row = self._flow_row(f, now)
            except BAD_ITEM as exc:
                on_skip("store", f"flow {_show(f.id)}", _reason(exc))
                continue
            rows.append(row)
        if not rows:
            return set()
        with self.guard():
            # Keep the newest known last run when the payload is older than what runs told us.
            known = self._last_starts([r["id"] for r in rows])
            for r in rows:
                old = known.get(r["id"])
                if old is not None and (r["last_run_started"] or 0) < old[1]:
                    r["last_run_id"], r["last_run_started"], r["last_run_state"] = old
            before = self._flow_shapes([r["id"] for r in rows])
            failed = self._upsert_rows("flows", "flow", rows, on_skip)
            changed = {
                r["id"] for r in rows
                if r["id"] not in failed and before.get(r["id"]) != tuple(r[k] for k in SHAPE)
            }  # fmt: skip
            self._set_due(dict.fromkeys(changed))
        return changed

    def _flow_shapes(self, ids: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        """What rules read of each stored flow, to tell which flows a refresh changed."""
        out: dict[str, tuple[Any, ...]] = {}
        for chunk in chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            for row in self._rows(
                f"SELECT id, {', '.join(SHAPE)} FROM flows WHERE id IN ({marks})", chunk
            ):
                out[row["id"]] = tuple(row[k] for k in SHAPE)
        return out

    def unknown_flow_ids(self, ids: Sequence[str]) -> list[str]:
        """Those of `ids` that no stored flow has."""
        known: set[str] = set()
        for chunk in chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            rows = self._rows(f"SELECT id FROM flows WHERE id IN ({marks})", chunk)
            known.update(r["id"] for r in rows)
        return [i for i in ids if i not in known]

    def flows_by_ids(self, ids: Sequence[str]) -> list[Flow]:
        out = []
        for chunk in chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            out += [
                flow_from_row(r)
                for r in self._rows(f"SELECT * FROM flows WHERE id IN ({marks})", chunk)
            ]
        return out

    def flows_due(self, sandbox: str, now: datetime) -> list[str]:
        """Flows whose flow-level rules are due to be judged at `now` (or never were)."""
        rows = self._rows(
            "SELECT id FROM flows WHERE sandbox = ? AND (due IS NULL OR due <= ?)",
            (sandbox, to_ms(now)),
        )
        return [r["id"] for r in rows]

    def set_due(self, due: Mapping[str, datetime | None]) -> None:
        """When each flow's flow-level rules next need judging (None: never, until the
        flow, its runs or the rules change)."""
        self._set_due({k: NEVER_DUE if v is None else sqlite_int(to_ms(v)) for k, v in due.items()})

    def _set_due(self, due: Mapping[str, int | None]) -> None:
        with self.guard():
            self.db.conn.executemany(
                "UPDATE flows SET due = ? WHERE id = ?", [(v, k) for k, v in due.items()]
            )

    def due_rules(self, fingerprint: str) -> None:
        """Forget every flow's due time when the rules they were computed for changed."""
        with self.guard():
            row = self.db.execute("SELECT value FROM settings WHERE key = 'due_rules'").fetchone()
            if row is not None and row[0] == fingerprint:
                return
            self.db.execute("UPDATE flows SET due = NULL")
            self.db.execute(
                "INSERT OR REPLACE INTO settings (key, value) VALUES ('due_rules', ?)",
                (fingerprint,),
            )

    @staticmethod
    def _flow_row(f: Flow, now: datetime) -> dict[str, Any]:
        return {
            "id": f.id,
            "sandbox": f.sandbox,
            "name": _text(f.name),
            "state": _text(f.state),
            "frequency": _text(f.schedule.frequency) if f.schedule else None,
            "interval": sqlite_int(f.schedule.interval) if f.schedule else None,
            "schedule_start": sqlite_int(to_ms(f.schedule.start_at)) if f.schedule else None,
            "org_id": _text(str(f.raw.get("imsOrgId") or "")) if f.raw else "",
            "last_run_id": _text(f.last_run_id),
            "last_run_state": _text(f.last_run_state),
            "last_run_started": sqlite_int(to_ms(f.last_run_started_at)),
            "etag": _text(f.etag),
            "refreshed": to_ms(now),
            "raw": bound_raw(f.raw) if f.raw else None,
        }

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

    def upsert_runs(
        self, runs: Sequence[Run], now: datetime, on_skip: OnSkip = _ignore
    ) -> list[Run]:
        """Store the runs; return those that are new or whose etag/status changed.

        A run that cannot be stored (text SQLite cannot hold, JSON that cannot be
        written) is left out, told to `on_skip("store", "run <id>", reason)`, and not
        returned. Counts beyond SQLite's INTEGER range are stored clamped; the raw JSON
        is bounded (store.bounds)."""
        good = []
        for r in runs:
            try:
                _storable(r.id, r.flow_id, r.sandbox)
            except BAD_ITEM as exc:
                on_skip("store", f"run {_show(r.id)}", _reason(exc))
                continue
            good.append(r)
        if not good:
            return []
        known: dict[str, tuple[str, str]] = {}
        for chunk in chunks([r.id for r in good], 500):
            marks = ",".join("?" * len(chunk))
            for row in self._rows(
                f"SELECT id, etag, status FROM runs WHERE id IN ({marks})", chunk
            ):
                known[row["id"]] = (row["etag"] or "", row["status"] or "")
        rows, changed = [], []
        for r in good:
            if known.get(r.id) == (r.etag, r.status):
                continue
            try:
                rows.append(self._run_row(r, now))
            except BAD_ITEM as exc:
                on_skip("store", f"run {r.id}", _reason(exc))
                continue
            changed.append(r)
        with self.guard():
            failed = self._upsert_rows("runs", "run", rows, on_skip)
            changed = [r for r in changed if r.id not in failed]
            # A run tells us a flow ran: keep the flow's last run up to date for missing_run.
            for r in changed:
                started = sqlite_int(to_ms(r.started_at))
                if started is None:
                    continue
                self.db.execute(
                    "UPDATE flows SET last_run_id = ?, last_run_started = ?, last_run_state = ? "
                    "WHERE id = ? AND (last_run_started IS NULL OR last_run_started <= ?)",
                    (r.id, started, _text(r.status), r.flow_id, started),
                )
        return changed

    def _upsert_rows(
        self, table: str, what: str, rows: list[dict[str, Any]], on_skip: OnSkip
    ) -> set[str]:
        """Upsert `rows` (all at once, or one by one when that fails); the ids of the
        rows SQLite refused, each told to `on_skip`."""
        try:
            self.db.table(table).upsert_all(rows, pk="id")
            return set()
        except (ValueError, OverflowError, TypeError):
            pass
        failed = set()
        for row in rows:
            try:
                self.db.table(table).upsert(row, pk="id")
            except (ValueError, OverflowError, TypeError) as exc:
                on_skip("store", f"{what} {_show(row['id'])}", _reason(exc))
                failed.add(row["id"])
        return failed

    @staticmethod
    def _run_row(r: Run, now: datetime) -> dict[str, Any]:
        return {
            "id": r.id,
            "flow_id": r.flow_id,
            "sandbox": r.sandbox,
            "status": _text(r.status),
            "finished": int(r.state in FINISHED_STATES),
            "started": sqlite_int(to_ms(r.started_at)),
            "completed": sqlite_int(to_ms(r.completed_at)),
            "input_records": sqlite_int(r.input_records),
            "output_records": sqlite_int(r.output_records),
            "failed_records": sqlite_int(r.failed_records),
            "etag": _text(r.etag),
            "seen": to_ms(now),
            "raw": bound_raw(r.raw),
        }

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
        on_skip: OnSkip = _ignore,
    ) -> dict[str, list[Run]]:
        """Each flow's newest `limit` runs, newest first.

        Runs up to and including the newest finished one, and the runs in `full`, are
        parsed from their raw JSON (errors, activities, links: what rules and messages
        read). Older ones only count toward windows and streaks: they are built from the
        stored columns (status, times, record counts), which keeps a cycle's cost flat as
        history grows. A stored run that no longer parses is told to
        `on_skip("parse", "run <id>", reason)` and left out.
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
                except BAD_ITEM as exc:
                    on_skip("parse", f"run {row['id']}", _reason(exc))
                    continue
                finished_seen = finished_seen or bool(row["finished"])
            out[flow_id] = runs
        return out

    def failed_runs(
        self,
        ids: Iterable[str],
        parse: Callable[[dict[str, Any]], Run],
        on_skip: OnSkip = _ignore,
    ) -> Iterator[Run]:
        """The finished runs among `ids` that failed or lost records (what a diagnosis
        reads), parsed from their raw JSON 500 ids at a time, so that only a chunk of
        them is held at once. A stored run that no longer parses is told to
        `on_skip("parse", "run <id>", reason)` and left out."""
        for chunk in chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            rows = self._rows(
                f"SELECT id, raw FROM runs WHERE id IN ({marks}) AND finished = 1 "
                "AND (lower(status) = 'failed' OR failed_records > 0)",
                chunk,
            )
            for row in rows:
                try:
                    yield parse(json.loads(row["raw"]))
                except BAD_ITEM as exc:
                    on_skip("parse", f"run {row['id']}", _reason(exc))

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
                    sqlite_int(count),
                    last_run_id,
                    clip(reason),
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
        fields: dict[str, Any] = {
            k: (to_ms(v) if isinstance(v, datetime) else v) for k, v in values.items()
        }
        if "muted" in fields:
            fields["muted"] = int(bool(fields["muted"]))
        if isinstance(fields.get("reason"), str):
            fields["reason"] = clip(fields["reason"])
        if "count" in fields:
            fields["count"] = sqlite_int(fields["count"])
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
        sql, params = "SELECT * FROM alerts WHERE 1=1", list[str | int]()
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

    def firing_in_thread(self, channel: str, ref: Mapping[str, str]) -> int:
        """How many firing alerts follow this thread on this channel: the alerts a
        storm's or an incident's first message announced that have not resolved."""
        rows = self._rows(
            "SELECT count(*) AS n FROM threads t JOIN alerts a ON a.id = t.alert_id "
            "WHERE t.channel = ? AND t.ref = ? AND a.state = 'firing'",
            (channel, json.dumps(dict(ref))),
        )
        return int(rows[0]["n"])

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
                message_id = self.db.table("outbox").insert(row).last_pk
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

    def mark_retry(
        self,
        message_id: int,
        error: str,
        next_attempt: datetime,
        *,
        held_until: datetime | None = None,
    ) -> None:
        """Defer a message to `next_attempt`. `held_until`: the channel itself asked to
        wait (Retry-After) until then; None: the wait is flowbot's own backoff."""
        with self.guard():
            self.db.execute(
                "UPDATE outbox SET attempts = attempts + 1, error = ?, next_attempt = ?, "
                "held_until = ? WHERE id = ?",
                (error, to_ms(next_attempt), to_ms(held_until), message_id),
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
        sql, params = "SELECT * FROM outbox WHERE 1=1", list[int]()
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

    def channel_problem(self, channel: str) -> ChannelProblem | None:
        """The refusal of `channel` already announced, if any."""
        rows = self._rows("SELECT * FROM channel_problems WHERE channel = ?", (channel,))
        if not rows:
            return None
        r = rows[0]
        return ChannelProblem(
            channel=r["channel"],
            problem=r["problem"],
            error=r["error"],
            since=from_ms(r["since"]),
            announced_to=tuple(json.loads(r["announced_to"])),
        )

    def set_channel_problem(self, problem: ChannelProblem) -> None:
        with self.guard():
            self.db.execute(
                "INSERT OR REPLACE INTO channel_problems VALUES (?, ?, ?, ?, ?)",
                (
                    problem.channel,
                    problem.problem,
                    problem.error,
                    to_ms(problem.since),
                    json.dumps(list(problem.announced_to)),
                ),
            )

    def clear_channel_problem(self, channel: str) -> None:
        with self.guard():
            self.db.execute("DELETE FROM channel_problems WHERE channel = ?", (channel,))

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
                from_ms(r["expires"]),
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
