"""The simulator's `POST /runs/{RUN_ID}/action?op=RE_TRIGGER` (postAction), as Adobe's
spec and docs describe it: batch sources only (here: a flow with `scheduleParams`),
failed runs only, an enabled flow; the answer is a new run `{items: [{id, etag}]}`,
which starts in progress (tests finish it with `put_run`). Refusals: 1387-400 (the run
is in an invalid state for re-trigger), 1388-400 (the flow must be enabled)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from flowbot.sim.payloads import make_run
from flowbot.sim.world import World

OPS = ("RE_TRIGGER", "re-trigger")  # the spec's enum, and the doc's spelling


def retrigger(
    world: World, sandbox: str, run_id: str, op: str, now: datetime
) -> tuple[int, dict[str, Any]]:
    """(status, body) of a re-trigger request; a new run is put in `world` on success."""
    if op not in OPS:
        return 400, _error("FLOW-1000-400", f"Unsupported operation {op[:40]!r}.")
    run = world.get("runs", sandbox, run_id)
    if run is None:
        return 404, _error("FLOW-1439-404", f"The requested runs resource {run_id} is not found.")
    flow = world.get("flows", sandbox, str(run.get("flowId", "")))
    status = str(run.get("metrics", {}).get("statusSummary", {}).get("status", "")).lower()
    if flow is None or "scheduleParams" not in flow or status != "failed":
        message = "The run is in an invalid state for re-trigger: only failed runs of batch sources can be retried."
        return 400, _error("FLOW-1387-400", message)
    if str(flow.get("state", "")).lower() != "enabled":
        return 400, _error("FLOW-1388-400", "The flow must be enabled to re-trigger a run.")
    new = make_run(flow["id"], run_id=str(uuid.uuid4()), status="inProgress", started_at=now,
                   input_records=None, sandbox=sandbox)  # fmt: skip
    world.put_run(new)
    return 200, {"items": [{"id": new["id"], "etag": new["etag"]}]}


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error_code": code, "message": message}
