"""A small known world written into a real SQLite store, shared by the report, digest
and status page tests: sandbox `prod` with a failing flow (a hostile name), a flaky
one, a healthy one, a firing and a resolved incident and a silence; sandbox `dev`
quiet. All times hang off NOW."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from flowbot.models import Flow, Run
from flowbot.store import Store, Watermark

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
HOSTILE = "<script>alert(1)</script> crm|*daily*"


def run(
    flow: Flow, n: int, status: str, hours_ago: float, *, records: int = 100, failed: int = 0
) -> Run:
    started = NOW - timedelta(hours=hours_ago)
    return Run(
        id=f"{flow.id}-run{n}",
        flow_id=flow.id,
        status=status,
        started_at=started,
        completed_at=started + timedelta(minutes=4),
        input_records=records,
        output_records=records - failed,
        failed_records=failed,
        sandbox=flow.sandbox,
        raw={"id": f"{flow.id}-run{n}"},
    )


def seed(path: Path | str) -> Store:
    """The world in a migrated store at `path` (the caller closes it)."""
    store = Store(path)
    store.migrate()
    crm = Flow(id="flow-crm", name=HOSTILE, state="enabled", sandbox="prod")
    web = Flow(id="flow-web", name="web-events", state="enabled", sandbox="prod")
    ok = Flow(id="flow-ok", name="orders-hourly", state="enabled", sandbox="prod")
    dev = Flow(id="flow-dev", name="dev-sample", state="enabled", sandbox="dev")
    store.upsert_flows([crm, web, ok, dev], NOW)
    runs = [
        run(crm, 1, "success", 30),
        run(crm, 2, "failed", 20, failed=40),
        run(crm, 3, "failed", 2, records=500, failed=500),
        run(web, 1, "success", 50),
        run(web, 2, "failed", 40, failed=10),
        run(web, 3, "success", 30),
        run(web, 4, "failed", 10, failed=5),
        run(web, 5, "success", 1),
        run(ok, 1, "success", 3),
        run(ok, 2, "success", 1),
        run(dev, 1, "success", 5),
        run(crm, 0, "success", 24 * 9),  # before a 7-day period
    ]
    store.upsert_runs(runs, NOW)
    firing = store.insert_alert(
        rule="run-failed", flow_id="flow-crm", sandbox="prod", flow_name=HOSTILE,
        now=NOW - timedelta(hours=20), count=2, last_run_id="flow-crm-run3",
        reason="run failed: 500 records failed", muted=False,
    )  # fmt: skip
    store.update_alert(firing, last_seen=NOW - timedelta(hours=2))
    done = store.insert_alert(
        rule="run-failed", flow_id="flow-web", sandbox="prod", flow_name="web-events",
        now=NOW - timedelta(hours=40), count=1, last_run_id="flow-web-run2",
        reason="run failed", muted=False,
    )  # fmt: skip
    store.update_alert(done, state="resolved", resolved=NOW - timedelta(hours=30))
    store.add_silence(
        rule=None, flow="web-*", reason="maintenance <b>window</b>",
        now=NOW - timedelta(hours=1), expires=NOW + timedelta(hours=3),
    )  # fmt: skip
    for sandbox in ("prod", "dev"):
        store.set_watermark(
            Watermark(
                sandbox, last_cycle=NOW - timedelta(minutes=1), last_ok=NOW - timedelta(minutes=1)
            )
        )
    return store
