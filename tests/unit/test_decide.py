"""The error policy: when a staged file is merged, rejected or only previewed."""

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from customer_import.database.runs import ImportOptions, ImportRun
from customer_import.pipeline import decide

pytestmark = pytest.mark.unit

RUN = ImportRun(
    id=1,
    file_name="f.csv",
    file_path=None,
    sha256=None,
    size_bytes=None,
    received_at=datetime.now(UTC),
    finished_at=None,
    mode="upsert",
    on_error="reject_file",
    max_error_rate=0.0,
    dry_run=False,
    force=False,
    dag_id=None,
    airflow_run_id=None,
    status="running",
    message=None,
    file_rejected=False,
    rows_total=100,
    rows_valid=None,
    rows_rejected=0,
    inserted=None,
    updated=None,
    unchanged=None,
    merged_at=None,
    report_dir=None,
)


@pytest.mark.parametrize(
    ("changes", "verdict"),
    [
        ({}, "merge"),
        ({"rows_rejected": 1}, "rejected"),
        ({"file_rejected": True}, "rejected"),
        ({"rows_rejected": 10, "on_error": "skip_invalid_rows", "max_error_rate": 0.1}, "merge"),
        ({"rows_rejected": 11, "on_error": "skip_invalid_rows", "max_error_rate": 0.1}, "rejected"),
        ({"dry_run": True}, "dry_run"),
        ({"dry_run": True, "rows_rejected": 1}, "rejected"),
    ],
)
def test_decide(changes, verdict):
    assert decide(replace(RUN, **changes))[0] == verdict


def test_options_are_checked_with_a_clear_message():
    assert ImportOptions.from_params({"dry_run": "1", "max_error_rate": "0.5"}).dry_run is True
    with pytest.raises(ValueError, match="mode must be one of upsert, insert_only, update_only"):
        ImportOptions.from_params({"mode": "merge"})
    with pytest.raises(ValueError, match="max_error_rate is a fraction from 0 to 1"):
        ImportOptions.from_params({"max_error_rate": 5})
