"""The store's schema: migrations, applied in order by `Store.migrate()`, each in its
own transaction. Add a function `mNNN_what` and append it to MIGRATIONS; never edit one
that has shipped."""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils


def m001_initial(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE flows (
            id TEXT PRIMARY KEY, sandbox TEXT NOT NULL, name TEXT, state TEXT,
            frequency TEXT, interval INTEGER, schedule_start INTEGER, org_id TEXT,
            last_run_id TEXT, last_run_state TEXT, last_run_started INTEGER,
            etag TEXT, refreshed INTEGER, raw TEXT)"""
    )
    db.execute("CREATE INDEX flows_sandbox ON flows(sandbox)")
    db.execute(
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY, flow_id TEXT NOT NULL, sandbox TEXT NOT NULL, status TEXT,
            finished INTEGER NOT NULL, started INTEGER, completed INTEGER,
            input_records INTEGER, output_records INTEGER, failed_records INTEGER,
            etag TEXT, seen INTEGER, raw TEXT)"""
    )
    db.execute("CREATE INDEX runs_flow_started ON runs(flow_id, started DESC)")
    db.execute("CREATE INDEX runs_unfinished ON runs(sandbox) WHERE finished = 0")
    db.execute("CREATE INDEX runs_started ON runs(started)")
    db.execute(
        """CREATE TABLE watermarks (
            sandbox TEXT PRIMARY KEY, runs_since INTEGER, flows_refreshed INTEGER,
            last_cycle INTEGER, last_ok INTEGER, failing_since INTEGER,
            degraded_announced INTEGER NOT NULL DEFAULT 0, last_error TEXT)"""
    )
    db.execute(
        """CREATE TABLE alerts (
            id INTEGER PRIMARY KEY AUTOINCREMENT, rule TEXT NOT NULL, flow_id TEXT NOT NULL,
            sandbox TEXT, flow_name TEXT, state TEXT NOT NULL,
            first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL,
            last_notified INTEGER, resolved INTEGER, count INTEGER NOT NULL DEFAULT 1,
            last_run_id TEXT, reason TEXT, muted INTEGER NOT NULL DEFAULT 0)"""
    )
    db.execute("CREATE UNIQUE INDEX alerts_firing ON alerts(rule, flow_id) WHERE state = 'firing'")
    db.execute("CREATE INDEX alerts_flow ON alerts(flow_id, first_seen)")
    db.execute(
        """CREATE TABLE threads (
            alert_id INTEGER NOT NULL, channel TEXT NOT NULL, ref TEXT NOT NULL,
            PRIMARY KEY (alert_id, channel))"""
    )
    db.execute(
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT, alert_id INTEGER, channel TEXT NOT NULL,
            kind TEXT NOT NULL, event TEXT NOT NULL, body TEXT NOT NULL, created INTEGER NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, next_attempt INTEGER NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending', error TEXT, sent INTEGER, ref TEXT)"""
    )
    db.execute("CREATE INDEX outbox_pending ON outbox(channel, id) WHERE state = 'pending'")
    db.execute("CREATE INDEX outbox_created ON outbox(created)")
    db.execute(
        """CREATE TABLE silences (
            id INTEGER PRIMARY KEY AUTOINCREMENT, rule TEXT, flow TEXT, reason TEXT NOT NULL,
            created INTEGER NOT NULL, expires INTEGER NOT NULL, expired_early INTEGER)"""
    )


def m002_grouped_messages(db: sqlite_utils.Database) -> None:
    """A grouped message speaks for many alerts: link it to each of them, so that
    history shows it under every alert and their later replies share its thread."""
    db.execute(
        """CREATE TABLE message_alerts (
            message_id INTEGER NOT NULL, alert_id INTEGER NOT NULL,
            PRIMARY KEY (message_id, alert_id))"""
    )
    db.execute("CREATE INDEX message_alerts_alert ON message_alerts(alert_id)")


def m003_channel_delivery_state(db: sqlite_utils.Database) -> None:
    """What a channel said about its messages, kept across restarts: until when its
    Retry-After holds a deferred message (NULL: the deferral is flowbot's own backoff,
    which an explicit `check --once` may override), and the refusal of each channel
    already announced by a meta-alert (so that a restart does not announce it again)."""
    db.execute("ALTER TABLE outbox ADD COLUMN held_until INTEGER")
    db.execute(
        """CREATE TABLE channel_problems (
            channel TEXT PRIMARY KEY, problem TEXT NOT NULL, error TEXT,
            since INTEGER NOT NULL, announced_to TEXT NOT NULL)"""
    )


def m004_diagnoses(db: sqlite_utils.Database) -> None:
    """Row-level errors read through the Data Access API, one row per batch, so that a
    batch is read once: its state (pending, done, denied, failed), the files listed but
    not read yet, the summary (no record values unless show_values was on), and the
    alerts sent before it was read, which get it as a thread reply."""
    db.execute(
        """CREATE TABLE diagnoses (
            sandbox TEXT NOT NULL, batch_id TEXT NOT NULL, run_id TEXT NOT NULL,
            started INTEGER, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
            files TEXT, summary TEXT, waiting TEXT, created INTEGER NOT NULL,
            updated INTEGER NOT NULL, PRIMARY KEY (sandbox, batch_id))"""
    )
    db.execute("CREATE INDEX diagnoses_run ON diagnoses(run_id)")
    db.execute("CREATE INDEX diagnoses_due ON diagnoses(sandbox, started) WHERE state = 'pending'")


def m005_slack_actions(db: sqlite_utils.Database) -> None:
    """What people did from Slack: every button press and slash command, allowed or
    refused (who, when, on which alert, what came of it; `envelope` is Slack's
    envelope id, so that a replayed envelope is acted on once), and the alerts
    acknowledged (by whom, when, and the error they were acknowledged for)."""
    db.execute(
        """CREATE TABLE slack_actions (
            id INTEGER PRIMARY KEY AUTOINCREMENT, envelope TEXT, at INTEGER NOT NULL,
            user TEXT NOT NULL, action TEXT NOT NULL, alert_id INTEGER,
            outcome TEXT NOT NULL, detail TEXT)"""
    )
    db.execute("CREATE UNIQUE INDEX slack_actions_envelope ON slack_actions(envelope)")
    db.execute("CREATE INDEX slack_actions_alert ON slack_actions(alert_id)")
    db.execute(
        """CREATE TABLE acks (
            alert_id INTEGER PRIMARY KEY, user TEXT NOT NULL, at INTEGER NOT NULL,
            signature TEXT NOT NULL)"""
    )


def m006_flow_due(db: sqlite_utils.Database) -> None:
    """When each flow's flow-level rules next need judging (ms; NULL: at the next
    cycle), so that a quiet cycle judges only the flows that came due, not every flow;
    and the fingerprint of the rules those times were computed for."""
    db.execute("ALTER TABLE flows ADD COLUMN due INTEGER")
    db.execute("CREATE INDEX flows_due ON flows(sandbox, due)")
    db.execute("CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT)")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    m001_initial,
    m002_grouped_messages,
    m003_channel_delivery_state,
    m004_diagnoses,
    m005_slack_actions,
    m006_flow_due,
]
