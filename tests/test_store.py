import os
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from flowbot.errors import StoreError
from flowbot.models import Flow, Message, Run, Schedule
from flowbot.store import Store, Watermark

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "flowbot.db")
    s.migrate()
    yield s
    s.close()


def run(run_id, flow_id="f1", status="success", etag="e1", started=NOW - timedelta(hours=1)):
    return Run(
        id=run_id,
        flow_id=flow_id,
        status=status,
        etag=etag,
        started_at=started,
        sandbox="prod",
        raw={"id": run_id, "flowId": flow_id},
    )


def test_migrate_is_idempotent_and_uses_wal(tmp_path):
    s = Store(tmp_path / "a.db")
    s.migrate()
    s.migrate()
    assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s.integrity_check() == "ok"
    s.close()


def test_only_new_or_changed_runs_are_returned(store):
    assert [r.id for r in store.upsert_runs([run("r1"), run("r2")], NOW)] == ["r1", "r2"]
    assert store.upsert_runs([run("r1"), run("r2")], NOW) == []
    changed = store.upsert_runs([run("r1", etag="e2", status="failed"), run("r2")], NOW)
    assert [r.id for r in changed] == ["r1"]
    assert store.run_count() == 2


def test_unfinished_runs_are_listed_for_re_reading(store):
    store.upsert_runs(
        [run("r1", status="inProgress"), run("r2"), run("r3", status="scheduled")], NOW
    )
    assert sorted(store.unfinished_run_ids("prod")) == ["r1", "r3"]
    store.upsert_runs([run("r1", status="success", etag="e9")], NOW)
    assert store.unfinished_run_ids("prod") == ["r3"]


def test_a_run_moves_its_flows_last_run_forward(store):
    flow = Flow(
        id="f1",
        name="crm",
        state="enabled",
        sandbox="prod",
        schedule=Schedule("hour", 1, NOW - timedelta(days=3)),
        last_run_started_at=NOW - timedelta(hours=5),
    )
    store.upsert_flows([flow], NOW)
    store.upsert_runs([run("r1", started=NOW - timedelta(minutes=30))], NOW)
    [stored] = store.flows("prod")
    assert stored.last_run_started_at == NOW - timedelta(minutes=30)
    assert stored.schedule == Schedule("hour", 1, NOW - timedelta(days=3))
    # An older flow payload does not move it back.
    store.upsert_flows([flow], NOW)
    assert store.flows("prod")[0].last_run_started_at == NOW - timedelta(minutes=30)


def test_recent_runs_are_newest_first_and_limited(store):
    store.upsert_runs([run(f"r{i}", started=NOW - timedelta(hours=i)) for i in range(5)], NOW)
    got = store.recent_runs(["f1"], 3, lambda raw: run(raw["id"]))
    assert [r.id for r in got["f1"]] == ["r0", "r1", "r2"]


def test_recent_runs_parse_only_up_to_the_newest_finished_run_and_the_changed_ones(store):
    runs = [run("r0", status="inProgress", started=NOW - timedelta(hours=0))]
    runs += [run(f"r{i}", status="failed", started=NOW - timedelta(hours=i)) for i in (1, 2, 3)]
    store.upsert_runs(runs, NOW)
    parsed = []

    def parse(raw):
        parsed.append(raw["id"])
        return run(raw["id"], status="parsed")

    got = store.recent_runs(["f1"], 10, parse, full={"r3"})["f1"]
    assert parsed == ["r0", "r1", "r3"]
    assert [(r.id, r.status) for r in got] == [
        ("r0", "parsed"), ("r1", "parsed"), ("r2", "failed"), ("r3", "parsed"),
    ]  # fmt: skip
    assert got[2].started_at == NOW - timedelta(hours=2) and got[2].sandbox == "prod"


def test_watermark_round_trips(store):
    assert store.watermark("prod") == Watermark("prod")
    mark = Watermark(
        "prod", runs_since=NOW, last_ok=NOW, failing_since=None, degraded_announced=True
    )
    store.set_watermark(mark)
    assert store.watermark("prod") == mark


def test_transaction_rolls_back_everything_on_error(store):
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.upsert_runs([run("r1")], NOW)
            store.set_watermark(Watermark("prod", runs_since=NOW))
            raise RuntimeError("crash")
    assert store.run_count() == 0
    assert store.watermark("prod").runs_since is None


def test_outbox_keeps_order_and_records_outcomes(store):
    msgs = [Message("ops", "file", "firing", {"n": i}) for i in range(3)]
    assert store.enqueue(msgs, NOW) == 3
    first, second, third = store.pending()
    assert [m.body["n"] for m in (first, second, third)] == [0, 1, 2]
    store.mark_sent(first.id, NOW, {"ts": "1.2"})
    store.mark_retry(second.id, "busy", NOW + timedelta(minutes=1))
    store.mark_failed(third.id, "channel_not_found")
    assert [m.id for m in store.pending()] == [second.id]
    assert store.pending()[0].attempts == 1 and store.pending()[0].error == "busy"
    assert store.outbox_counts() == {"sent": 1, "pending": 1, "failed": 1}


def test_threads_are_kept_per_alert_and_channel(store):
    alert_id = store.insert_alert(
        rule="r",
        flow_id="f1",
        sandbox="prod",
        flow_name="crm",
        now=NOW,
        count=1,
        last_run_id="r1",
        reason="failed",
        muted=False,
    )
    assert store.thread(alert_id, "ops") is None
    store.set_thread(alert_id, "ops", {"channel": "C1", "ts": "1.5"})
    store.set_thread(alert_id, "ops", {"channel": "C1", "ts": "9.9"})  # the first one stays
    assert store.thread(alert_id, "ops") == {"channel": "C1", "ts": "1.5"}


def test_one_firing_alert_per_rule_and_flow(store):
    kw = dict(
        rule="r",
        flow_id="f1",
        sandbox="prod",
        flow_name="crm",
        now=NOW,
        count=1,
        last_run_id=None,
        reason="x",
        muted=False,
    )
    first = store.insert_alert(**kw)
    with pytest.raises(StoreError):
        store.insert_alert(**kw)
    store.update_alert(first, state="resolved", resolved=NOW)
    store.insert_alert(**kw)  # a new episode after resolution
    assert len(store.firing_alerts("prod")) == 1
    assert len(store.alerts(rule="r")) == 2


def test_silences_expire(store):
    sid = store.add_silence(
        rule="run-failed",
        flow=None,
        reason="maintenance",
        now=NOW,
        expires=NOW + timedelta(hours=2),
    )
    assert [s.id for s in store.silences(NOW)] == [sid]
    assert store.silences(NOW + timedelta(hours=3)) == []
    assert store.expire_silence(sid, NOW + timedelta(minutes=5))
    assert store.silences(NOW + timedelta(minutes=6)) == []
    assert len(store.silences(NOW, include_expired=True)) == 1


def test_prune_forgets_old_finished_runs_and_sent_messages(store):
    store.upsert_runs(
        [
            run("old", started=NOW - timedelta(days=40)),
            run("stuck", status="inProgress", started=NOW - timedelta(days=40)),
            run("new"),
        ],
        NOW,
    )
    store.enqueue([Message("ops", "file", "firing", {})], NOW - timedelta(days=40))
    store.mark_sent(store.pending()[0].id, NOW - timedelta(days=40), None)
    counts = store.prune(NOW - timedelta(days=30))
    assert counts["runs"] == 1 and counts["messages"] == 1
    assert store.run_count() == 2


def test_a_corrupt_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "bad.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="corrupt or not a flowbot database"):
        s = Store(path)
        s.migrate()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write read-only files")
def test_a_read_only_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "ro.db"
    Store(path).migrate()
    path.chmod(0o444)
    s = Store(path)
    with pytest.raises(StoreError, match="cannot be written"):
        s.upsert_runs([run("r1")], NOW)


def test_a_locked_database_gives_a_clear_error(tmp_path):
    path = tmp_path / "locked.db"
    s = Store(path)
    s.migrate()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    s.db.execute("PRAGMA busy_timeout = 50")
    try:
        with pytest.raises(StoreError, match="locked"):
            with s.transaction():
                pass
    finally:
        other.execute("ROLLBACK")
        other.close()
        s.close()


# ------------------------------------------------------------------ bounds


def test_counts_outside_sqlite_integers_are_clamped_not_a_crash(store):
    from flowbot.store.bounds import SQLITE_INT_MAX

    big = Run(id="r1", flow_id="f1", status="failed", etag="e", sandbox="prod",
              started_at=NOW, input_records=10**20, failed_records=10**30,
              raw={"id": "r1", "metrics": {"recordSummary": {"inputRecordCount": 10**20}}})  # fmt: skip
    [stored] = store.upsert_runs([big], NOW)
    assert stored.id == "r1"
    row = store.db.execute("SELECT input_records, failed_records, raw FROM runs").fetchone()
    assert row[:2] == (SQLITE_INT_MAX, SQLITE_INT_MAX)
    assert str(SQLITE_INT_MAX) in row[2] and str(10**20) not in row[2]
    flow = Flow(id="f1", name="crm", sandbox="prod", schedule=Schedule("hour", 10**25, NOW))
    store.upsert_flows([flow], NOW)
    assert store.flows("prod")[0].schedule.interval == SQLITE_INT_MAX


def test_ten_thousand_errors_keep_a_bounded_raw_json_with_every_code(store):
    from flowbot.aep.parse import parse_run
    from flowbot.store.bounds import ERRORS_KEPT, RAW_MAX_CHARS

    errors = [{"code": f"E-{i % 60}", "message": "m" * 1400} for i in range(10_000)]
    raw = {"id": "r1", "flowId": "f1", "metrics": {"statusSummary": {"status": "failed", "errors": errors}}}  # fmt: skip
    store.upsert_runs([Run(id="r1", flow_id="f1", status="failed", sandbox="prod", raw=raw)], NOW)
    [(text,)] = store.db.execute("SELECT raw FROM runs").fetchall()
    assert len(text) <= RAW_MAX_CHARS  # was 14 MB
    parsed = parse_run(__import__("json").loads(text))
    assert len(parsed.errors) == ERRORS_KEPT + 1
    assert (
        parsed.errors[-1].message == f"and {10_000 - ERRORS_KEPT} more errors (not kept by flowbot)"
    )
    assert {e.code for e in parsed.errors[:-1]} == {f"E-{i}" for i in range(ERRORS_KEPT)}
    assert all(len(e.message) < 2_100 for e in parsed.errors)


def test_a_huge_or_deep_raw_json_is_bounded_and_a_run_sqlite_cannot_hold_is_skipped(store):
    from flowbot.store.bounds import RAW_MAX_CHARS, bound_raw

    deep: dict = {"id": "r2", "metrics": {"statusSummary": {"status": "failed"}}}
    node = deep
    for _ in range(500):
        node["x"] = {}
        node = node["x"]
    wide = {"id": "r3", "activities": [{"k" * 50: "v" * 5000} for _ in range(5000)],
            "metrics": {"statusSummary": {"status": "failed"}}}  # fmt: skip
    for raw in (deep, wide):
        text = bound_raw(raw)
        assert len(text) <= RAW_MAX_CHARS and '"status": "failed"' in text
    skipped = []
    runs = [
        Run(id="r2", flow_id="f1", status="failed", sandbox="prod", raw=deep),
        Run(id="bad-\ud800", flow_id="f1", status="failed", sandbox="prod", raw={}),
        Run(id="r4", flow_id="f1", status="failed", sandbox="prod", raw={"m": "\udfff"}),
    ]
    stored = store.upsert_runs(runs, NOW, on_skip=lambda *a: skipped.append(a))
    assert [r.id for r in stored] == ["r2", "r4"]  # a lone surrogate in the raw is escaped
    [(stage, item, reason)] = skipped
    assert (stage, item) == ("store", "run bad-\\ud800") and "UnicodeEncodeError" in reason


def test_stored_reasons_and_errors_are_cut(store):
    long = "x" * 100_000
    alert = store.insert_alert(rule="r", flow_id="f", sandbox="prod", flow_name="n", now=NOW,
                               count=10**20, last_run_id=None, reason=long, muted=False)  # fmt: skip
    store.update_alert(alert, reason=long, count=10**21)
    store.set_watermark(Watermark("prod", last_error=long))
    [row] = store.alerts()
    assert len(row.reason) < 2_100 and row.reason.endswith("(98000 more characters)")
    assert len(store.watermark("prod").last_error) < 2_100
