"""A sample alert for `flowbot notify test`, `notify preview` and template checks.

The run is sample 01 of the shared Flow Service samples
(`01-sources-run-success-with-row-errors.json`: a sources run that succeeded with 1 of
100 records failed, a CONNECTOR error at run level and INGEST/MAPPER errors in the
promotion activity, with its failedRecords, sampleErrors and fileInfo links), written
parsed from the copy of Adobe's sample shipped as package data (`flowbot/samples/`).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from importlib import resources

from flowbot.models import Finding, Flow, Notice, Run, Schedule

EXPORT = "https://platform.adobe.io/data/foundation/export/batches/01EF01X41KJD82Y9ZX6ET54PCZ"
FLOW_ID = "c9cef9cb-c934-4467-8ef9-cbc934546741"
SAMPLE_01 = "01-sources-run-success-with-row-errors.json"


def _ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def sample_flow(name: str = "crm-daily-import", flow_id: str = FLOW_ID) -> Flow:
    """The flow of sample 01 (the sample has no flow payload: the name is made up)."""
    return Flow(
        id=flow_id,
        name=name,
        state="enabled",
        sandbox="prod",
        schedule=Schedule("hour", 1),
    )


def sample_run() -> Run:
    """Run 9830305a-… of sample 01, parsed from the copy shipped in `flowbot/samples/`."""
    from flowbot.aep.parse import runs_in

    text = resources.files("flowbot.samples").joinpath(SAMPLE_01).read_text(encoding="utf-8")
    return runs_in(json.loads(text))[0]


def sample_notices(event: str = "firing", *, rule: str = "too-many-bad-records") -> list[Notice]:
    """Notices about sample 01 for `event` (firing, repeat, resolved or grouped; grouped
    gives three flows of one rule)."""
    run = sample_run()
    flow = sample_flow()
    finding = Finding(
        rule=rule,
        rule_type="failed_records",
        flow=flow,
        run=run,
        reason="1.0% of 100 input records failed (above 0.5%)",
        values={"failed_share": 0.01, "above": 0.005, "input_records": 100, "failed_records": 1},
    )
    notice = Notice(
        event="firing",
        rule=rule,
        rule_type="failed_records",
        severity="critical",
        flow=flow,
        finding=finding,
        first_seen_at=run.completed_at or _ms(1596656113306),
        owner="@data-oncall",
        sandbox="prod",
    )
    if event == "repeat":
        return [replace(notice, event="repeat", count=3)]
    if event == "resolved":
        good = replace(
            run,
            id="5d1f6c0e-4a8b-4c6e-9d0a-2f3b4c5d6e7f",
            started_at=run.started_at + timedelta(hours=1) if run.started_at else None,
            completed_at=run.completed_at + timedelta(hours=1) if run.completed_at else None,
            output_records=100,
            failed_records=0,
            errors=(),
            activities=(),
        )
        return [replace(notice, event="resolved", resolved_by=good, count=3)]
    if event == "grouped":
        out = [notice]
        for i, name in enumerate(("crm-hourly-contacts", "erp-orders-import"), start=1):
            other = sample_flow(name, f"{FLOW_ID[:-2]}{i:02d}")
            out.append(replace(notice, flow=other, finding=replace(finding, flow=other)))
        return out
    return [notice]


def sample_for_rule(rule: object, event: str = "firing") -> list[Notice]:
    """Sample notices dressed as `rule` (a flowbot.rules.Rule: name, type, severity,
    owner), for `flowbot notify preview RULE`."""
    name = str(getattr(rule, "name", "flowbot-test"))
    notices = sample_notices(event, rule=name)
    changes = {
        "rule_type": str(getattr(rule, "type", "failed_records")),
        "severity": str(getattr(rule, "severity", "critical")),
        "owner": getattr(rule, "owner", None),
    }
    return [
        replace(
            n,
            finding=replace(
                n.finding,
                rule_type=changes["rule_type"],
                reason=f"sample alert for rule {name}: sample 01, 1 of 100 records failed",
            )
            if n.finding
            else None,
            **changes,
        )
        for n in notices
    ]
