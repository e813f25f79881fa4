"""flowbot.aep.parse: every sample payload, and the lenient corners."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flowbot.aep.parse import (
    flows_in,
    parse_count,
    parse_flow,
    parse_run,
    parse_schedule,
    parse_time,
    runs_in,
)
from flowbot.models import Link, RunError
from flowbot.sim.payloads import make_flow, make_run

# Adobe's documented payloads, shipped with the package (see flowbot/samples/SOURCES.md).
SAMPLES = Path(__file__).resolve().parents[1] / "flowbot" / "samples"


def load(name: str) -> object:
    (path,) = SAMPLES.glob(f"{name}-*.json")
    return json.loads(path.read_text())


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


# (sample, run id prefix, flow id prefix, status, sandbox, error codes)
RUN_SAMPLES = [
    ("01", "9830305a", "c9cef9cb", "success", "prod",
     {"CONNECTOR-2001-500", "INGEST-1212-400", "MAPPER-3700-400"}),
    ("02", "65b7cfcc", "f00c8762", "success", "prod", set()),
    ("03", "933cf9f4", "1c6f1047", "success", "prod", set()),
    ("04", "d9024c32", "cf4fce79", "failed", "prod", {"CONNECTOR-2001-500", "133"}),
    ("05", "66643b20", "05222685", "inProgress", "dev", set()),
    ("06", "e3b63e78", "cd9b4bbc", "success", "mlb-enablement", set()),
    ("07", "f0b809c5", "c0cb4b5b", "failed", "dev", {"CONNECTOR-1001-500", "2200"}),
    ("10", "3c41c35b", "ab14a8fe", "inProgress", "prod", set()),
    ("11", "1a1dd6ad", "4306c3e6", "success", "prod", set()),
    ("12", "e80e24c1", "df8d079d", "success", "prod", set()),
    ("13", "850a3a02", "df8d079d", "failed", "prod", {"ACTIVATION_BATCH-0000-FAILED"}),
    ("14", "3fb0418e", "3abea21c", "scheduled", "prod", set()),
    ("16", "1699fdb1", "ba33133d", "success", "prod", set()),
    ("17", "1149044a", "3a4a152c", "failed", "e2e-at-10-7-19-02",
     {"CTOR-2001-500", "INGEST-1205-400"}),
]  # fmt: skip


@pytest.mark.parametrize(("sample", "run_id", "flow_id", "status", "sandbox", "codes"), RUN_SAMPLES)
def test_every_run_sample_parses(sample, run_id, flow_id, status, sandbox, codes):
    payload = load(sample)
    (run,) = runs_in(payload)
    assert run.id.startswith(run_id)
    assert run.flow_id.startswith(flow_id)
    assert run.status == status and run.state == status.lower()
    assert run.sandbox == sandbox
    assert {e.code for e in run.all_errors} == codes
    assert run.raw.get("metrics") or run.raw.get("xdm:metrics")
    assert flows_in(payload) == []


@pytest.mark.parametrize("sample", ["08", "09", *[str(n) for n in range(18, 25)]])
def test_samples_that_are_not_runs_or_flows_give_none(sample):
    # 08 and 09 are alert objects (status FIRING/INACTIVE), 18-24 data access, catalog,
    # ingestion events and error bodies.
    payload = load(sample)
    assert runs_in(payload) == []
    assert flows_in(payload) == []


def test_run_with_row_errors_keeps_errors_counts_and_manifest_links():
    (run,) = runs_in(load("01"))
    assert run.started_at == at(1596656058198)
    assert run.completed_at == at(1596656113306)
    assert run.created_at == at(1596656079576)
    assert (run.input_records, run.output_records, run.failed_records) == (100, 99, 1)
    assert run.failed_share == pytest.approx(0.01)
    assert run.etag == '"b8003af1-0000-0200-0000-5f2b09f10000"'
    assert run.errors == (RunError("CONNECTOR-2001-500", "Error occurred at promotion activity."),)
    promotion = run.activities[1]
    assert promotion.id == "promotionActivity" and promotion.name == "promotionActivity"
    assert RunError("MAPPER-3700-400", "Mapper Transform Error", 1, "promotionActivity") in (
        promotion.errors
    )
    batch = "https://platform.adobe.io/data/foundation/export/batches/01EF01X41KJD82Y9ZX6ET54PCZ"
    assert set(run.links) == {
        Link("failedRecords", f"{batch}/meta?path=row_errors", "promotionActivity"),
        Link("sampleErrors", f"{batch}/meta?path=row_error_samples.json", "promotionActivity"),
        Link("fileInfo", f"{batch}/meta?path=input_files", "promotionActivity"),
    }


def test_seconds_and_milliseconds_mixed_in_one_object_are_normalised():
    # sample 17: startedAtUTC in seconds, completedAtUTC in milliseconds
    (run,) = runs_in(load("17"))
    assert run.started_at == datetime(2020, 6, 20, 21, 43, 57, tzinfo=UTC)
    assert run.completed_at == at(1592782069117)
    assert run.started_at < run.completed_at
    assert (
        RunError(
            "INGEST-1205-400",
            "The field: _id does not exist in the target schema. Remove the field and try again.",
        )
        in run.errors
    )


def test_minus_one_sentinels_become_none_and_in_progress_has_no_end():
    (run,) = runs_in(load("04"))
    assert run.completed_at is None
    assert run.input_records is None
    assert run.activities[0].errors[-1] == RunError(
        "133",
        "We are unable to locate any files uploaded for this batch. Please upload files to ingest.",
        None,
        "promotionActivity",
    )


def test_destination_failure_does_not_repeat_the_same_error_from_failed_info():
    (run,) = runs_in(load("13"))
    assert run.errors == (RunError("ACTIVATION_BATCH-0000-FAILED", "Job aborted."),)


def test_flow_sample_with_string_schedule_and_last_run_details():
    (flow,) = flows_in(load("15"))
    assert flow.id == "2edc08ac-4df5-4fe6-936f-81a19ce92f5c"
    assert flow.name == "Database dataflow using BigQuery"
    assert flow.state == "enabled" and flow.is_enabled
    assert flow.schedule is not None
    assert (flow.schedule.frequency, flow.schedule.interval) == ("week", 15)
    assert flow.schedule.start_at == datetime.fromtimestamp(1612310466, tz=UTC)
    assert flow.flow_spec_id == "14518937-270c-4525-bdec-c2ba7cce3860"
    assert flow.last_run_state == "success"
    assert flow.last_run_id
    assert flow.last_run_started_at is not None
    assert flow.raw["description"].startswith("collecting")
    assert runs_in(load("15")) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1596656058198, at(1596656058198)),
        (1590512053, datetime.fromtimestamp(1590512053, tz=UTC)),
        ("1590512053", datetime.fromtimestamp(1590512053, tz=UTC)),
        ("1596656058198", at(1596656058198)),
        (1596656058198000, at(1596656058198)),
        (1590512053.5, datetime.fromtimestamp(1590512053.5, tz=UTC)),
        ("2023-09-01T04:27:44.922Z", datetime(2023, 9, 1, 4, 27, 44, 922000, tzinfo=UTC)),
        ("2023-09-01T04:27:44", datetime(2023, 9, 1, 4, 27, 44, tzinfo=UTC)),
        (-1, None),
        (0, None),
        (None, None),
        (True, None),
        ("soon", None),
        ("nan", None),
        ({}, None),
        (10**30, None),
    ],
)
def test_parse_time_by_magnitude(value, expected):
    assert parse_time(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(5, 5), ("12", 12), (3.0, 3), (-1, None), ("-1", None), (None, None), ("x", None),
     (2.5, None), (False, None), ([], None)],
)  # fmt: skip
def test_parse_count_coerces_strings_and_drops_sentinels(value, expected):
    assert parse_count(value) == expected


def test_missing_null_wrong_typed_and_unknown_fields_never_raise():
    run = parse_run(
        {
            "id": 42,
            "flowId": None,
            "metrics": {
                "durationSummary": "yesterday",
                "recordSummary": {"inputRecordCount": "10", "failedRecordCount": "2"},
                "statusSummary": {"status": None, "errors": [None, "x", {"code": 7}]},
                "brandNew": {"nested": [1, 2]},
            },
            "activities": [None, {"statusSummary": {"extensions": {"manifest": []}}}, "junk"],
            "etag": None,
            "sandboxName": ["prod"],
        }
    )
    assert run.id == "42" and run.flow_id == "" and run.status == ""
    assert (run.input_records, run.failed_records) == (10, 2)
    assert run.failed_share == pytest.approx(0.2)
    assert run.errors == (RunError("7", ""),)
    assert [a.id for a in run.activities] == ["activity-1"]
    assert run.sandbox == "" and run.etag == ""
    assert parse_run({"id": "r", "metrics": None, "activities": None}).activities == ()


@pytest.mark.parametrize("extensions", [True, 7, "x", ["errors"], None])
def test_extensions_of_the_wrong_type_are_ignored(extensions):
    """Found by the hostile property suite: `extensions: true` in an activity raised."""
    run = parse_run(
        {
            "id": "r",
            "metrics": {"statusSummary": {"status": "failed", "extensions": extensions}},
            "activities": [{"id": "a", "statusSummary": {"extensions": extensions}}],
        }
    )
    assert run.all_errors == () and [a.id for a in run.activities] == ["a"]


def test_status_is_kept_as_reported_and_compared_in_lower_case():
    run = parse_run({"id": "r", "flowId": "f", "metrics": {"statusSummary": {"status": "Failed"}}})
    assert run.status == "Failed" and run.state == "failed" and run.is_finished


@pytest.mark.parametrize("payload", [None, [], "run", {"flowId": "f"}, {"id": ""}])
def test_payload_without_an_id_or_not_an_object_raises_value_error(payload):
    with pytest.raises(ValueError):
        parse_run(payload)
    with pytest.raises(ValueError):
        parse_flow(payload)


def test_runs_in_unwraps_every_envelope_and_skips_runs_without_id():
    run = make_run("flow-1", run_id="run-1", started_at=datetime(2024, 1, 1, tzinfo=UTC))
    envelopes = [
        run,
        [run],
        {"items": [run]},
        {"event_id": "e", "event": run},
        [{"messages": [{"msgType": "eventNotification", "value": run}]}],
        [{"msgType": "eventNotification", "value": {"xdm:flowId": "flow-1",
                                                     "xdm:flowRunId": "run-1"}}],
    ]  # fmt: skip
    for payload in envelopes:
        assert [(r.id, r.flow_id) for r in runs_in(payload)] == [("run-1", "flow-1")]
    assert runs_in({"items": [{"flowId": "f"}, run]}) == [parse_run(run)]


def test_simulator_payloads_round_trip_through_the_parser():
    started = datetime(2024, 5, 1, 10, tzinfo=UTC)
    payload = make_run(
        "flow-1",
        run_id="run-1",
        status="success",
        started_at=started,
        completed_at=datetime(2024, 5, 1, 10, 5, tzinfo=UTC),
        input_records=1000,
        failed_records=120,
        activity_errors=[{"code": "MAPPER-3700-400", "message": "bad", "recordCount": 120}],
    )
    run = parse_run(payload)
    assert run.started_at == started
    assert run.failed_share == pytest.approx(0.12)
    assert {link.name for link in run.links} == {"failedRecords", "sampleErrors", "fileInfo"}
    assert RunError("MAPPER-3700-400", "bad", 120, "Promotion Activity") in run.all_errors
    flow = parse_flow(
        make_flow(
            "flow-1",
            name="crm-daily",
            frequency="day",
            interval=2,
            last_run={"id": "run-1", "state": "failed", "startedAtUTC": 1714557600000},
        )
    )
    assert flow.schedule is not None and flow.schedule.period is not None
    assert flow.schedule.period.days == 2
    assert (flow.last_run_id, flow.last_run_state) == ("run-1", "failed")
    assert flow.last_run_started_at == at(1714557600000)
    assert flow.sandbox == "prod"


def test_schedule_accepts_destination_time_unit_and_rejects_no_frequency():
    schedule = parse_schedule({"interval": 3, "timeUnit": "hour", "startTime": 1700000000})
    assert schedule is not None and schedule.period is not None
    assert schedule.period.total_seconds() == 3 * 3600
    assert parse_schedule({"interval": "15"}) is None
    assert parse_schedule("hourly") is None
    once = parse_schedule({"frequency": "once", "interval": None})
    assert once is not None and once.interval == 1 and once.period is None


def test_file_info_may_be_a_list_of_paths():
    run = parse_run(
        {
            "id": "r",
            "activities": [
                {
                    "id": "a",
                    "fileSummary": {
                        "manifest": {"fileInfo": [{"path": "https://x/1"}, "https://x/2"]}
                    },
                }
            ],
        }
    )
    assert [link.url for link in run.links] == ["https://x/1", "https://x/2"]


def test_activities_are_parsed_on_first_use_and_behave_like_a_tuple():
    run = parse_run(load("01")["items"][0])
    assert run.activities._parsed is None  # listing does not pay for activities
    names = [a.id for a in run.activities]
    assert names == ["copyActivity", "promotionActivity"]
    assert run.activities == tuple(run.activities) and len(run.activities) == 2
    assert run.activities[1].failed_records == 1
    assert hash(run) == hash(parse_run(load("01")["items"][0]))
