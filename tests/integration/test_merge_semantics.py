"""SPEC §4 on real PostgreSQL: modes, error policy, reruns, concurrency, history and rollback."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import replace

import pytest

from customer_import.database import db
from customer_import.database.rollback import RollbackRefused
from customer_import.database.runs import ImportOptions
from customer_import.settings import Settings

pytestmark = pytest.mark.integration


def rows(conn, columns="account_reference_id, name, phone, updated_by_run, updated_at"):
    return conn.execute(f"SELECT {columns} FROM customers ORDER BY account_reference_id").fetchall()


def write(tmp_path, name: str, text: str):
    path = tmp_path / "files" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_update_only_changes_existing_customers(conn, importer, land, tmp_path):
    importer.import_file(conn, land("valid_customers.csv"))
    run = importer.import_file(
        conn,
        land(write(tmp_path, "u.csv", "AccountReferenceID,Seats\n007,9\n1E5,0\n")),
        ImportOptions(mode="update_only"),
    )
    assert (run.status, run.inserted, run.updated, run.unchanged) == ("succeeded", 0, 1, 1)
    assert conn.execute("SELECT seats FROM customers WHERE account_reference_id = '007'").fetchone() == (9,)


def test_insert_only_adds_new_customers(conn, importer, land, tmp_path):
    run = importer.import_file(
        conn, land(write(tmp_path, "i.csv", "AccountReferenceID,Name\nI-1,New\n")), ImportOptions(mode="insert_only")
    )
    assert (run.status, run.inserted) == ("succeeded", 1)


def test_skip_invalid_rows_rejects_the_file_above_the_error_rate(conn, importer, land):
    run = importer.import_file(
        conn, land("one_bad_email.csv"), ImportOptions(on_error="skip_invalid_rows", max_error_rate=0.3)
    )
    assert run.status == "rejected"
    assert "1 of 3 rows (33.3%) have problems, more than max_error_rate 30.0% allows" in run.message
    assert rows(conn) == []


def test_rerunning_any_step_never_applies_a_file_twice(conn, importer, land):
    name = land("valid_customers.csv")
    options = ImportOptions()
    run_id = importer.claim_file(conn, name, options, "customer_import", "manual__1")
    importer.validate_file(conn, run_id)
    importer.load_staging(conn, run_id)
    importer.merge_customers(conn, run_id)
    after_merge = rows(conn)

    # Airflow clears and reruns tasks: every step again, in any order.
    assert importer.claim_file(conn, name, options, "customer_import", "manual__1") == run_id
    importer.merge_customers(conn, run_id)
    importer.validate_file(conn, run_id)
    importer.load_staging(conn, run_id)
    importer.merge_customers(conn, run_id)
    first = importer.publish_report(conn, run_id)
    second = importer.publish_report(conn, run_id)

    assert rows(conn) == after_merge
    assert (first.status, first.inserted, second.finished_at) == ("succeeded", 3, first.finished_at)
    assert conn.execute("SELECT count(*) FROM customer_history WHERE run_id = %s", [run_id]).fetchone() == (3,)


def test_a_cleared_rejected_run_imports_the_fixed_file(conn, importer, land):
    name = land("one_bad_email.csv")
    run_id = importer.claim_file(conn, name, ImportOptions(), "customer_import", "manual__fix")
    for step in (importer.validate_file, importer.load_staging, importer.merge_customers):
        step(conn, run_id)
    rejected = importer.publish_report(conn, run_id)
    kept = importer.settings.data_dir / rejected.file_path
    assert rejected.status == "rejected" and kept.parent == importer.folders.rejected(run_id)

    kept.write_text(kept.read_text().replace("not-an-email", "two@example.com"))  # fixed where it is kept
    assert importer.file_to_claim(conn, name, "customer_import", "manual__fix") == name  # the cleared sensor is done
    with pytest.raises(FileNotFoundError, match="is not in landing/: upload it"):  # another run would wait in vain
        importer.file_to_claim(conn, name, "customer_import", "manual__other")
    assert importer.claim_file(conn, name, ImportOptions(), "customer_import", "manual__fix") == run_id
    for step in (importer.validate_file, importer.load_staging, importer.merge_customers):
        step(conn, run_id)
    fixed = importer.publish_report(conn, run_id)

    assert (fixed.status, fixed.inserted) == ("succeeded", 3)
    assert (importer.folders.archive(run_id) / "one_bad_email.csv").exists()


def test_two_imports_at_once_end_as_if_one_ran_after_the_other(database_url, schema, importer, land, tmp_path):
    a = land(write(tmp_path, "a.csv", "AccountReferenceID,Name\n" + "".join(f"K-{n},A\n" for n in range(0, 3000))))
    b = land(write(tmp_path, "b.csv", "AccountReferenceID,Name\n" + "".join(f"K-{n},B\n" for n in range(2000, 5000))))
    outcomes, barrier = {}, threading.Barrier(2)

    def run(name):
        with db.connect(database_url) as own:
            db.use_schema(own, schema)
            barrier.wait(timeout=30)
            outcomes[name] = importer.import_file(own, name)

    threads = [threading.Thread(target=run, args=(n,)) for n in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    assert {o.status for o in outcomes.values()} == {"succeeded"}
    assert sum(o.inserted for o in outcomes.values()) == 5000
    assert sum(o.updated for o in outcomes.values()) == 1000
    with db.connect(database_url) as conn:
        db.use_schema(conn, schema)
        names = dict(conn.execute("SELECT account_reference_id, name FROM customers").fetchall())
        last = max(outcomes.values(), key=lambda o: o.merged_at).file_name
    assert len(names) == 5000
    assert {names[f"K-{n}"] for n in range(2000, 3000)} == {"A" if last == "a.csv" else "B"}


def test_history_and_audit_columns_say_which_run_did_what(conn, importer, land):
    first = importer.import_file(conn, land("valid_customers.csv"))
    second = importer.import_file(conn, land("update_phone_only.csv"))

    assert conn.execute(
        "SELECT account_reference_id, created_by_run, updated_by_run FROM customers ORDER BY 1"
    ).fetchall() == [("007", first.id, second.id), ("1E5", first.id, second.id), ("abc-Lower", first.id, first.id)]
    before, after = conn.execute(
        "SELECT before, after FROM customer_history WHERE run_id = %s AND customer_key = '007'", [second.id]
    ).fetchone()
    assert (before["phone"], after) == ("+46 8 123 456", {"phone": "+1 555 000 1111"})


def test_rollback_restores_updates_and_removes_inserts(conn, importer, land):
    first = importer.import_file(conn, land("valid_customers.csv"))
    original = rows(conn)
    second = importer.import_file(conn, land("update_phone_only.csv"))
    assert rows(conn) != original

    result = importer.roll_back(conn, second.id)

    assert (result.removed, result.restored, result.conflicts) == (0, 2, [])
    assert rows(conn) == original  # values, updated_by_run and updated_at all as before
    assert conn.execute("SELECT status FROM import_runs WHERE id = %s", [second.id]).fetchone() == ("rolled_back",)
    report = json.loads((importer.folders.reports(second.id) / "rollback.json").read_text())
    assert report["restored"] == 2 and report["message"] == "Rolled back: 0 customers removed, 2 customers restored."

    assert importer.roll_back(conn, first.id).removed == 3
    assert rows(conn) == []


def test_rollback_leaves_customers_changed_later_as_conflicts(conn, importer, land):
    first = importer.import_file(conn, land("valid_customers.csv"))
    importer.import_file(conn, land("update_phone_only.csv"))  # changes 007 and 1E5 again
    after_second = rows(conn)

    result = importer.roll_back(conn, first.id)

    assert (result.removed, result.conflicts) == (1, ["007", "1E5"])
    assert rows(conn) == [r for r in after_second if r[0] != "abc-Lower"]
    assert result.message == (
        "Rolled back: 1 customer removed, 0 customers restored. 2 customers changed again"
        " by later imports were left as they are: 007, 1E5."
    )


def test_a_history_table_with_json_images_becomes_typed_rows_that_read_and_roll_back_the_same(
    conn, importer, land, tmp_path
):
    importer.import_file(conn, land("valid_customers.csv"))
    original = rows(conn)
    second = importer.import_file(conn, land("update_phone_only.csv"))
    cleared = importer.import_file(
        conn, land(write(tmp_path, "c.csv", "AccountReferenceID,Phone,Seats\n007,#NULL,7\n"))
    )
    history = (
        "SELECT run_id, line, customer_key, action, before, after, recorded_at FROM customer_history ORDER BY 1, 2"
    )
    recorded = conn.execute(history).fetchall()
    assert recorded[-1][4:6] == (
        {
            "phone": "+1 555 000 1111",
            "seats": 5,
            "updated_at": recorded[-1][4]["updated_at"],
            "updated_by_run": second.id,
        },
        {"phone": None, "seats": 7},
    )
    # the table as releases before typed rows kept it: the same rows, with JSON images
    conn.execute("CREATE TABLE json_history AS SELECT * FROM customer_history")
    conn.execute("DROP VIEW customer_history")
    conn.execute("DROP TABLE customer_history_rows")
    conn.execute("ALTER TABLE json_history RENAME TO customer_history")
    conn.execute("DELETE FROM customer_import_schema")

    db.migrate(conn, importer.contract, importer.settings.schema)

    assert conn.execute("SELECT relkind FROM pg_class WHERE oid = 'customer_history'::regclass").fetchone() == ("v",)
    assert conn.execute(history).fetchall() == recorded
    importer.roll_back(conn, cleared.id)
    importer.roll_back(conn, second.id)
    assert rows(conn) == original


def test_a_rolled_back_import_can_be_imported_again(conn, importer, land):
    first = importer.import_file(conn, land("valid_customers.csv"))
    importer.roll_back(conn, first.id)

    again = importer.import_file(conn, land("valid_customers.csv"))

    assert (again.status, again.inserted) == ("succeeded", 3)


@pytest.mark.parametrize("fixture_file", ["one_bad_email.csv"])
def test_only_an_import_that_changed_customers_can_be_rolled_back(fixture_file, conn, importer, land):
    rejected = importer.import_file(conn, land(fixture_file))
    with pytest.raises(RollbackRefused, match=f"Import run {rejected.id} ended rejected"):
        importer.roll_back(conn, rejected.id)
    with pytest.raises(RollbackRefused, match="There is no import run 999"):
        importer.roll_back(conn, 999)


def test_the_schema_setting_keeps_tables_apart(conn, importer, land, database_url, schema):
    other = replace(importer, settings=replace(importer.settings, schema=f"{schema}_other"))
    with db.connect(database_url) as own:
        run = other.import_file(own, land("valid_customers.csv"))
        own.execute(f'DROP SCHEMA "{schema}_other" CASCADE')
    assert run.status == "succeeded"
    assert conn.execute("SELECT to_regclass('customers')").fetchone() == (None,)


def test_the_work_mem_setting_is_what_the_import_session_runs_with(conn, importer, land, monkeypatch):
    roomy = replace(importer, settings=replace(importer.settings, work_mem="96MB"))
    assert roomy.import_file(conn, land("valid_customers.csv")).status == "succeeded"
    assert db.scalar(conn, "SHOW work_mem") == "96MB"

    monkeypatch.setenv("CUSTOMER_IMPORT_WORK_MEM", "96 MB")
    with pytest.raises(ValueError, match="CUSTOMER_IMPORT_WORK_MEM='96 MB' is not valid: the default is 64MB"):
        Settings.from_env()


def test_an_email_taken_between_staging_and_merge_rejects_the_row_not_the_merge(conn, importer, land, tmp_path):
    first = land(write(tmp_path, "first.csv", "AccountReferenceID,Name,ContactEmail\nA-1,First,shared@example.com\n"))
    run_id = importer.claim_file(conn, first, ImportOptions(), "customer_import", "manual__race")
    importer.validate_file(conn, run_id)
    importer.load_staging(conn, run_id)  # checked: the email is free

    taker = write(tmp_path, "other.csv", "AccountReferenceID,Name,ContactEmail\nB-1,Other,SHARED@example.com\n")
    other = importer.import_file(conn, land(taker))  # meanwhile another import takes the email
    importer.merge_customers(conn, run_id)
    run = importer.publish_report(conn, run_id)

    assert (other.status, run.status, run.rows_rejected) == ("succeeded", "rejected", 1)
    issue = json.loads((importer.folders.reports(run_id) / "summary.json").read_text())["issues"][0]
    assert (issue["line"], issue["code"]) == (2, "already_used")
    assert rows(conn, "account_reference_id") == [("B-1",)]


def test_an_email_another_writer_took_after_staging_skips_that_row_and_merges_the_rest(
    conn, importer, land, tmp_path, caplog
):
    text = "AccountReferenceID,Name,ContactEmail\nA-1,First,shared@example.com\nA-2,Second,own@example.com\n"
    name = land(write(tmp_path, "two.csv", text))
    options = ImportOptions(on_error="skip_invalid_rows", max_error_rate=0.5)
    run_id = importer.claim_file(conn, name, options, "customer_import", "manual__writer")
    importer.validate_file(conn, run_id)
    importer.load_staging(conn, run_id)  # checked: both emails are free
    # not an import: an application writing to the table, which takes no merge lock
    conn.execute("INSERT INTO customers (account_reference_id, contact_email) VALUES ('W-1', 'Shared@Example.com')")

    with caplog.at_level(logging.INFO, logger="customer_import.pipeline"):
        importer.merge_customers(conn, run_id)
    run = importer.publish_report(conn, run_id)

    assert (run.status, run.inserted, run.rows_rejected) == ("partial", 1, 1)
    issue = json.loads((importer.folders.reports(run_id) / "summary.json").read_text())["issues"][0]
    assert (issue["line"], issue["code"]) == (2, "already_used")
    assert "already belongs to customer AccountReferenceID `W-1`" in issue["message"]
    assert rows(conn, "account_reference_id, contact_email") == [
        ("A-2", "own@example.com"),
        ("W-1", "Shared@Example.com"),
    ]
    history = conn.execute("SELECT line, customer_key, action FROM customer_history WHERE run_id = %s", [run_id])
    assert history.fetchall() == [(3, "A-2", "insert")]  # the refused merge's history was undone with it
    assert (
        'The merge was refused (duplicate key value violates unique constraint "customers_contact_email_unique"):'
        " checking the rows against the customers again."
    ) in caplog.messages


def test_a_run_that_loses_its_file_to_another_leaves_no_row_and_learns_who_took_it(conn, importer, land):
    """Issue 33, point 2: an empty-file run took a file an upload's run names."""
    from datetime import UTC, datetime, timedelta

    from customer_import.run_files import ImportedElsewhere

    name = land("valid_customers.csv")
    arrived = datetime.now(UTC) - timedelta(seconds=1)
    taker = importer.claim_file(conn, name, ImportOptions(), "customer_import", "manual__took_the_oldest")
    with pytest.raises(FileNotFoundError, match="is not in the landing folder"):
        importer.claim_file(conn, name, ImportOptions(), "customer_import", "file__valid_customers.csv__named")
    assert conn.execute("SELECT airflow_run_id FROM import_runs").fetchall() == [("manual__took_the_oldest",)]
    with pytest.raises(ImportedElsewhere, match=f"valid_customers.csv was imported by import run {taker}"):
        importer.file_to_claim(
            conn, name, "customer_import", "file__valid_customers.csv__named", "default", None, arrived
        )
    # a file of the same name imported before this one arrived is not it: this one is missing
    with pytest.raises(FileNotFoundError, match="is not in landing/"):
        importer.file_to_claim(
            conn, name, "customer_import", "file__valid_customers.csv__named", "default", None, datetime.now(UTC)
        )
