"""Retention on real PostgreSQL (18 and 15), local disk and S3: the files and reports of old runs
are deleted, the runs' rows stay, history goes only when asked, and two housekeepers share the work."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from customer_import.database import db, runs
from customer_import.database.rollback import RollbackRefused
from customer_import.housekeeping import remove_expired
from customer_import.storage.folders import drop_into_landing
from tests.conftest import DATA
from tests.integration.test_object_storage import stored, worker

pytestmark = pytest.mark.integration


def age(conn, run_id: int, days: int) -> None:
    """Make the run look `days` old: received, finished and merged that long ago."""
    conn.execute(
        "UPDATE import_runs SET received_at = now() - make_interval(days => %(d)s),"
        " finished_at = finished_at - make_interval(days => %(d)s),"
        " merged_at = merged_at - make_interval(days => %(d)s) WHERE id = %(id)s",
        {"d": days, "id": run_id},
    )


def folders_of(importer, run_id: int) -> list[str]:
    data = importer.settings.data_dir
    return sorted(str(p.relative_to(data)) for p in data.glob(f"*/{run_id}"))


def test_the_files_of_runs_older_than_the_setting_are_removed_and_their_rows_stay(conn, importer, land, tmp_path):
    old = importer.import_file(conn, land("valid_customers.csv"))
    rejected = importer.import_file(conn, land("one_bad_email.csv"))
    recent = importer.import_file(conn, land("update_phone_only.csv"))
    for run in (old, rejected):
        age(conn, run.id, 91)
    waiting = drop_into_landing(DATA / "valid_customers.csv", importer.folders)
    working = importer.settings.data_dir / "processing" / "99"
    working.mkdir(parents=True)
    (working / "staged.csv").write_text("line,accepted\n")
    assert folders_of(importer, old.id) == [f"archive/{old.id}", f"reports/{old.id}"]
    assert folders_of(importer, rejected.id) == [f"rejected/{rejected.id}", f"reports/{rejected.id}"]

    removed = remove_expired(conn, importer.settings)

    assert (removed.runs, removed.histories) == (2, 0)
    # a file and its 3 reports; rejected/ keeps errors.csv too, and its reports the issues found (the fix grid's)
    assert removed.files == 4 + 6 and removed.bytes > 0
    assert str(removed).startswith("Removed the files and reports of 2 import runs (10 files, ")
    assert folders_of(importer, old.id) == [] and folders_of(importer, rejected.id) == []
    assert folders_of(importer, recent.id) == [f"archive/{recent.id}", f"reports/{recent.id}"]
    assert (importer.folders.landing / waiting).exists() and (working / "staged.csv").exists()
    kept = runs.get_run(conn, old.id)
    assert (kept.status, kept.inserted, kept.files_kept_days) == ("succeeded", 3, 90)
    assert kept.files_removed_at is not None and kept.history_removed_at is None
    assert conn.execute("SELECT count(*) FROM customer_history WHERE run_id = %s", [old.id]).fetchone() == (3,)

    again = remove_expired(conn, importer.settings)
    assert (again.runs, str(again)) == (0, "Nothing had expired: nothing was removed.")
    importer.roll_back(conn, old.id)  # the files are not needed for a rollback


def test_history_older_than_its_setting_is_removed_and_the_run_can_no_longer_be_rolled_back(conn, importer, land):
    old = importer.import_file(conn, land("valid_customers.csv"))
    recent = importer.import_file(conn, land("update_phone_only.csv"))
    age(conn, old.id, 31)
    settings = replace(importer.settings, keep_history_days=30, keep_files_days=None)

    removed = remove_expired(conn, settings)

    assert (removed.runs, removed.histories, removed.history_rows) == (0, 1, 3)
    assert "the history of 1 import run (3 changes)" in str(removed)
    assert conn.execute("SELECT count(*) FROM customer_history WHERE run_id = %s", [old.id]).fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM customer_history WHERE run_id = %s", [recent.id]).fetchone() != (0,)
    with pytest.raises(RollbackRefused, match=f"Import run {old.id} can no longer be rolled back: its history"):
        importer.roll_back(conn, old.id)
    assert folders_of(importer, old.id) != []  # files are kept for ever with keep_files_days=None


def test_two_housekeepers_at_once_remove_each_run_once(conn, importer, land, database_url):
    made = [importer.import_file(conn, land("valid_customers.csv", as_name=f"{n}/customers.csv")) for n in range(4)]
    for run in made:
        age(conn, run.id, 100)
    results = []

    def housekeep() -> None:
        with db.connect(database_url) as own:
            results.append(remove_expired(own, importer.settings))

    threads = [threading.Thread(target=housekeep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(r.runs for r in results) == 4
    assert all(runs.get_run(conn, run.id).files_removed_at is not None for run in made)


def test_the_files_of_old_runs_are_removed_from_object_storage(conn, importer, s3_url):
    one = worker(importer, s3_url, "worker-1")
    run = one.import_file(conn, drop_into_landing(DATA / "valid_customers.csv", one.folders))
    waiting = drop_into_landing(DATA / "one_bad_email.csv", one.folders)
    age(conn, run.id, 91)
    assert run.file_path in stored(s3_url)

    removed = remove_expired(conn, one.settings)

    assert (removed.runs, removed.files) == (1, 4)
    assert stored(s3_url) == {f"landing/{waiting}"}
