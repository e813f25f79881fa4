"""Builders of Flow Service JSON payloads (dicts), shaped like Adobe's samples.

The simulator serves these; tests use them to describe runs and flows briefly.
Times are aware datetimes; payloads carry epoch milliseconds as Adobe does.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

EXPORT = "https://platform.adobe.io/data/foundation/export/batches"


def ms(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp() * 1000)


def make_flow(
    flow_id: str | None = None,
    *,
    name: str = "flow",
    state: str = "enabled",
    sandbox: str = "prod",
    frequency: str | None = "hour",
    interval: int = 1,
    start_at: datetime | None = None,
    last_run: dict[str, Any] | None = None,
    etag: str | None = None,
    connection_ids: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """A flow as `GET /flows` returns it.

    `connection_ids` is (source, target); random ids when None, like `etag`.
    """
    source_id, target_id = connection_ids or (str(uuid.uuid4()), str(uuid.uuid4()))
    flow: dict[str, Any] = {
        "id": flow_id or str(uuid.uuid4()),
        "name": name,
        "description": f"{name} (simulated)",
        "flowSpec": {"id": "14518937-270c-4525-bdec-c2ba7cce3860", "version": "1.0"},
        "state": state,
        "sandboxName": sandbox,
        "sandboxId": f"sandbox-{sandbox}",
        "imsOrgId": "SIM@AdobeOrg",
        "etag": etag or f'"{uuid.uuid4()}"',
        "sourceConnectionIds": [source_id],
        "targetConnectionIds": [target_id],
        "createdAt": ms(start_at) or 1600000000000,
        "updatedAt": ms(start_at) or 1600000000000,
    }
    if frequency:
        flow["scheduleParams"] = {
            "startTime": str(int(start_at.timestamp())) if start_at else "1600000000",
            "frequency": frequency,
            "interval": str(interval),
        }
    flow["runs"] = f"/runs?property=flowId=={flow['id']}"
    if last_run:
        flow["lastRunDetails"] = last_run
    return flow


def make_run(
    flow_id: str,
    *,
    run_id: str | None = None,
    status: str = "success",
    started_at: datetime,
    completed_at: datetime | None = None,
    input_records: int | None = 100,
    output_records: int | None = None,
    failed_records: int = 0,
    errors: list[dict[str, Any]] | None = None,
    activity_errors: list[dict[str, Any]] | None = None,
    batch_id: str | None = None,
    sandbox: str = "prod",
    etag: str | None = None,
    target_id: str | None = None,
) -> dict[str, Any]:
    """A sources run as `GET /runs` returns it: a copy and a promotion activity.

    `errors` go into metrics.statusSummary.errors; `activity_errors` into the promotion
    activity's statusSummary.extensions.errors. Failed records or errors add the
    manifest links (failedRecords, sampleErrors, fileInfo).
    """
    run_id = run_id or str(uuid.uuid4())
    batch_id = batch_id or uuid.uuid4().hex[:26].upper()
    if output_records is None and input_records is not None:
        output_records = max(input_records - failed_records, 0)
    records: dict[str, Any] = {}
    if input_records is not None:
        records = {
            "inputRecordCount": input_records,
            "outputRecordCount": output_records,
            "failedRecordCount": failed_records,
        }
    duration: dict[str, Any] = {"startedAtUTC": ms(started_at)}
    if completed_at is not None:
        duration["completedAtUTC"] = ms(completed_at)
    status_summary: dict[str, Any] = {"status": status, "activityRefs": ["promotionActivity"]}
    if errors:
        status_summary["errors"] = errors
    promotion_status: dict[str, Any] = {"status": status}
    extensions: dict[str, Any] = {}
    if failed_records or errors or activity_errors:
        extensions["manifest"] = {
            "failedRecords": f"{EXPORT}/{batch_id}/meta?path=row_errors",
            "sampleErrors": f"{EXPORT}/{batch_id}/meta?path=row_error_samples.json",
        }
    if activity_errors:
        extensions["errors"] = activity_errors
    if errors:
        promotion_status["errors"] = errors
    if extensions:
        promotion_status["extensions"] = extensions
    updated = completed_at or started_at
    return {
        "id": run_id,
        "flowId": flow_id,
        "etag": etag or f'"{uuid.uuid4()}"',
        "createdAt": ms(started_at),
        "updatedAt": ms(updated),
        "sandboxName": sandbox,
        "sandboxId": f"sandbox-{sandbox}",
        "imsOrgId": "SIM@AdobeOrg",
        "metrics": {
            "durationSummary": duration,
            "sizeSummary": {"inputBytes": (input_records or 0) * 240},
            "recordSummary": records,
            "fileSummary": {"inputFileCount": 1, "outputFileCount": 1},
            "statusSummary": status_summary,
        },
        "activities": [
            {
                "id": "copyActivity",
                "name": "Copy Activity",
                "updatedAtUTC": ms(updated),
                "durationSummary": dict(duration),
                "recordSummary": {},
                "statusSummary": {"status": "success" if status == "success" else status},
            },
            {
                "id": "promotionActivity",
                "name": "Promotion Activity",
                "updatedAtUTC": ms(updated),
                "durationSummary": dict(duration),
                "recordSummary": dict(records),
                "fileSummary": {
                    "inputFileCount": 1,
                    "outputFileCount": 1,
                    "extensions": {
                        "manifest": {"fileInfo": f"{EXPORT}/{batch_id}/meta?path=input_files"}
                    },
                },
                "statusSummary": promotion_status,
                "targetInfo": [
                    {
                        "id": target_id or str(uuid.uuid4()),
                        "type": "TargetConnection",
                        "reference": {"type": "Batch", "ids": [batch_id]},
                    }
                ],
            },
        ],
    }


def last_run_details(run: dict[str, Any]) -> dict[str, Any]:
    """The `lastRunDetails` a flow shows for `run` (a run payload)."""
    duration = run.get("metrics", {}).get("durationSummary", {})
    details: dict[str, Any] = {
        "id": run["id"],
        "state": run.get("metrics", {}).get("statusSummary", {}).get("status"),
        "startedAtUTC": duration.get("startedAtUTC"),
    }
    if duration.get("completedAtUTC") is not None:
        details["completedAtUTC"] = duration["completedAtUTC"]
    return details
