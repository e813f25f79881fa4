from datetime import UTC, datetime, timedelta

from flowbot.models import Activity, Run, RunError, Schedule

T0 = datetime(2026, 11, 30, tzinfo=UTC)


def test_all_errors_leaves_out_an_activity_restating_the_run_error():
    # Sample 01: CONNECTOR-2001-500 is the run's error and again the promotion activity's.
    run_error = RunError("CONNECTOR-2001-500", "Error occurred at promotion activity.")
    restated = RunError(
        "CONNECTOR-2001-500", "Error occurred at promotion activity.", None, "promo"
    )
    mapper = RunError("MAPPER-3700-400", "Mapper Transform Error", 1, "promo")
    run = Run(
        "r",
        "f",
        errors=(run_error,),
        activities=(Activity("promo", "Promotion", errors=(restated, mapper, mapper)),),
    )
    assert run.all_errors == (run_error, mapper)


def test_failed_share_and_duration():
    run = Run("r", "f", status="inProgress", started_at=T0, input_records=200, failed_records=30)
    assert run.failed_share == 0.15
    assert run.duration(T0 + timedelta(hours=2)) == timedelta(hours=2)
    assert Run("r", "f", input_records=0, failed_records=0).failed_share is None
    assert Schedule("minute", 15).period == timedelta(minutes=15)
    assert Schedule("once").period is None
