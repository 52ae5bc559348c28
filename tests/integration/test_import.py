"""A file goes in; this is what the database, the folders and the reports hold afterwards.

Runs the core pipeline (every step the DAG runs, in this process) against each available
PostgreSQL server.
"""

from __future__ import annotations

import csv
import json
from datetime import date

import pytest

from customer_import.database.runs import ImportOptions
from tests.conftest import DATA

pytestmark = pytest.mark.integration

COLUMNS = (
    "account_reference_id, name, description, contact_email, contact_first_name, contact_last_name,"
    " phone, country, customer_since, seats, is_reseller"
)


def customers(conn) -> dict[str, tuple]:
    return {row[0]: row for row in conn.execute(f"SELECT {COLUMNS} FROM customers ORDER BY 1")}


def run_row(conn, run_id: int) -> dict:
    cur = conn.execute("SELECT * FROM import_runs WHERE id = %s", [run_id])
    return dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))


def test_a_valid_file_is_imported_with_values_stored_exactly(conn, importer, land):
    run = importer.import_file(conn, land("valid_customers.csv"))

    assert (run.status, run.rows_total, run.inserted, run.updated, run.unchanged) == ("succeeded", 3, 3, 0, 0)
    stored = customers(conn)
    assert list(stored) == ["007", "1E5", "abc-Lower"]  # keys exactly as written: zeros, 1E5, case
    assert stored["007"] == (
        "007",
        "Åsa Ström AB",
        "Key account, renews in March",
        "asa@example.se",
        "Åsa",
        "Ström",
        "+46 8 123 456",
        "SE",
        date(2024, 2, 29),
        5,
        True,
    )
    assert stored["1E5"][2] == 'Two lines\nof notes, with "quotes"'
    assert stored["1E5"][9:] == (0, False)
    assert stored["abc-Lower"][6:] == (None, "PL", None, 120, True)
    folders = importer.folders
    assert (folders.archive(run.id) / "valid_customers.csv").exists()
    assert not list(folders.landing.iterdir())
    summary = json.loads((folders.reports(run.id) / "summary.json").read_text())
    assert summary["import_run"]["status"] == "succeeded" and summary["issues"] == []
    with (folders.reports(run.id) / "errors.csv").open(encoding="utf-8-sig", newline="") as report:
        rows = list(csv.reader(report))
    assert rows[0][:4] == ["ImportLine", "ImportStatus", "ImportIssues", "AccountReferenceID"]
    assert [(r[0], r[1]) for r in rows[1:]] == [("2", "imported"), ("3", "imported"), ("5", "imported")]


def test_a_header_subset_updates_only_those_columns(conn, importer, land):
    importer.import_file(conn, land("valid_customers.csv"))
    before = customers(conn)

    run = importer.import_file(conn, land("update_phone_only.csv"))

    assert (run.status, run.inserted, run.updated, run.unchanged) == ("succeeded", 0, 2, 0)
    after = customers(conn)
    assert after["007"][6] == "+1 555 000 1111" and after["1E5"][6] == "+1 555 000 2222"
    for key in before:
        assert after[key][:6] + after[key][7:] == before[key][:6] + before[key][7:]
    assert after["abc-Lower"] == before["abc-Lower"]


def test_a_blank_cell_keeps_the_value_and_null_marker_clears_it(conn, importer, land):
    importer.import_file(conn, land("valid_customers.csv"))

    run = importer.import_file(conn, land("blank_keeps_null_clears.csv"))

    assert (run.status, run.updated) == ("succeeded", 1)
    assert customers(conn)["007"][1:] == (
        "Åsa Ström AB",
        "Key account, renews in March",
        "asa@example.se",
        "Åsa",
        "Ström",
        None,
        "SE",
        date(2024, 2, 29),
        5,
        True,
    )


def test_unchanged_rows_are_not_rewritten(conn, importer, land):
    importer.import_file(conn, land("valid_customers.csv"))
    row_versions = "SELECT account_reference_id, xmin::text, updated_at FROM customers ORDER BY 1"
    versions = conn.execute(row_versions).fetchall()

    run = importer.import_file(
        conn, land("valid_customers.csv", as_name="again/valid_customers.csv"), ImportOptions(force=True)
    )

    assert (run.status, run.inserted, run.updated, run.unchanged) == ("succeeded", 0, 0, 3)
    assert conn.execute(row_versions).fetchall() == versions


def test_one_bad_email_rejects_the_file_and_changes_nothing(conn, importer, land):
    importer.import_file(conn, land("valid_customers.csv"))
    before = customers(conn)

    run = importer.import_file(conn, land("one_bad_email.csv"))

    assert (run.status, run.rows_total, run.rows_rejected, run.inserted) == ("rejected", 3, 1, None)
    assert customers(conn) == before
    kept = importer.folders.rejected(run.id)
    assert (kept / "one_bad_email.csv").read_bytes() == (DATA / "one_bad_email.csv").read_bytes()
    assert (kept / "one_bad_email.errors.csv").exists()
    summary = json.loads((importer.folders.reports(run.id) / "summary.json").read_text())
    assert summary["issues"] == [
        {
            "line": 3,
            "column": "ContactEmail",
            "code": "invalid_email",
            "message": "`not-an-email` is not a valid email address: write it as name@domain,"
            " e.g. jane.doe@example.com.",
        }
    ]
    assert run_row(conn, run.id)["status"] == "rejected"


def test_the_same_content_twice_is_a_duplicate_unless_forced(conn, importer, land):
    first = importer.import_file(conn, land("valid_customers.csv"))
    second = importer.import_file(conn, land("valid_customers.csv", as_name="copy/valid_customers.csv"))
    assert second.status == "duplicate"
    assert f"import run {first.id}" in second.message
    assert (importer.folders.archive(second.id) / "valid_customers.csv").exists()

    forced = importer.import_file(
        conn, land("valid_customers.csv", as_name="again/valid_customers.csv"), ImportOptions(force=True)
    )
    assert (forced.status, forced.unchanged) == ("succeeded", 3)


def test_database_level_checks_reject_duplicates_and_taken_emails(conn, importer, land, tmp_path):
    importer.import_file(conn, land("valid_customers.csv"))
    clash = tmp_path / "clash.csv"
    clash.write_text("AccountReferenceID,Name,ContactEmail\nNEW-1,New,ASA@example.se\nNEW-2,Two,\nNEW-2,Again,\n")

    run = importer.import_file(conn, land(clash))

    assert run.status == "rejected"
    issues = {
        (i["line"], i["code"])
        for i in json.loads((importer.folders.reports(run.id) / "summary.json").read_text())["issues"]
    }
    assert issues == {(2, "already_used"), (3, "duplicate_in_file"), (4, "duplicate_in_file")}


def test_each_duplicate_names_its_own_value_and_the_other_lines_in_order(conn, importer, land, tmp_path):
    repeated = tmp_path / "repeated.csv"
    repeated.write_text(
        "AccountReferenceID,Name,ContactEmail\n"
        "Z-9,One,z@example.com\nA-1,Two,A@Example.com\nZ-9,Three,\nB-2,Four,a@example.COM\nZ-9,Five,\n"
    )

    run = importer.import_file(conn, land(repeated))

    issues = json.loads((importer.folders.reports(run.id) / "summary.json").read_text())["issues"]
    said = {(i["line"], i["column"]): i["message"].split(":")[0] for i in issues}
    assert said == {
        (2, "AccountReferenceID"): "AccountReferenceID `Z-9` also appears on lines 4, 6",
        (4, "AccountReferenceID"): "AccountReferenceID `Z-9` also appears on lines 2, 6",
        (6, "AccountReferenceID"): "AccountReferenceID `Z-9` also appears on lines 2, 4",
        (3, "ContactEmail"): "ContactEmail `A@Example.com` also appears on line 5",
        (5, "ContactEmail"): "ContactEmail `a@example.COM` also appears on line 3",
    }


def test_skip_invalid_rows_imports_the_valid_ones(conn, importer, land):
    run = importer.import_file(
        conn, land("one_bad_email.csv"), ImportOptions(on_error="skip_invalid_rows", max_error_rate=0.5)
    )

    assert (run.status, run.inserted, run.rows_rejected) == ("partial", 2, 1)
    assert list(customers(conn)) == ["N-1", "N-3"]


def changes_csv(importer, run) -> list[list[str]]:
    with (importer.folders.reports(run.id) / "changes.csv").open(encoding="utf-8-sig", newline="") as report:
        return list(csv.reader(report))


def test_a_dry_run_writes_no_customer(conn, importer, land):
    run = importer.import_file(conn, land("valid_customers.csv"), ImportOptions(dry_run=True))

    assert (run.status, run.inserted, run.updated) == ("dry_run", 3, 0)
    assert customers(conn) == {}
    assert conn.execute("SELECT count(*) FROM customer_history").fetchone()[0] == 0


def test_a_dry_run_previews_each_change_before_and_after(conn, importer, land):
    importer.import_file(conn, land("valid_customers.csv"))
    before = customers(conn)

    run = importer.import_file(conn, land("update_phone_only.csv"), ImportOptions(dry_run=True))

    assert (run.status, run.inserted, run.updated, run.unchanged) == ("dry_run", 0, 2, 0)
    assert "would insert 0, update 2 and leave 0 unchanged" in run.message
    assert customers(conn) == before
    assert changes_csv(importer, run) == [
        ["ImportLine", "AccountReferenceID", "Action", "Field", "Before", "After"],
        ["2", "007", "update", "Phone", "'+46 8 123 456", "'+1 555 000 1111"],
        ["3", "1E5", "update", "Phone", "(555) 010-2030", "'+1 555 000 2222"],
    ]
    assert (importer.folders.archive(run.id) / "update_phone_only.csv").exists()


def test_a_real_run_shows_its_changes_from_the_history(conn, importer, land):
    importer.import_file(conn, land("valid_customers.csv"))

    run = importer.import_file(conn, land("blank_keeps_null_clears.csv"))

    page = (importer.folders.reports(run.id) / "report.html").read_text()
    assert "<td>2</td><td>007</td><td>update</td><td>Phone</td><td>+46 8 123 456</td><td></td>" in page
    assert not (importer.folders.reports(run.id) / "changes.csv").exists()  # the history is the record
    history = conn.execute(
        "SELECT run_id, line, action FROM customer_history ORDER BY run_id DESC, line LIMIT 1"
    ).fetchone()
    assert history == (run.id, 2, "update")


def test_a_fixed_error_report_imports_as_it_is(conn, importer, land, tmp_path):
    rejected = importer.import_file(conn, land("formula_value_bad_email.csv"))
    assert rejected.status == "rejected"
    report = importer.folders.reports(rejected.id) / "errors.csv"
    with report.open(encoding="utf-8-sig", newline="") as source:
        rows = list(csv.reader(source))
    assert rows[1][5] == "'=SUM(A1)"  # neutralised against formula injection
    rows[1][6] = "f1@example.com"  # the person fixes the email, in Excel, in the report itself
    fixed = tmp_path / "fixed" / "formula_value_bad_email.errors.csv"
    fixed.parent.mkdir()
    with fixed.open("w", encoding="utf-8-sig", newline="") as out:
        csv.writer(out).writerows(rows)

    run = importer.import_file(conn, land(fixed))

    assert (run.status, run.inserted) == ("succeeded", 2)
    stored = conn.execute("SELECT description, contact_email FROM customers ORDER BY account_reference_id")
    assert stored.fetchall() == [("=SUM(A1)", "f1@example.com"), ("-5 is not a formula here", "f2@example.com")]


def test_migrations_are_idempotent(conn, importer, land):
    from customer_import.database import db

    db.migrate(conn, importer.contract, importer.settings.schema)
    db.migrate(conn, importer.contract, importer.settings.schema)
    assert importer.import_file(conn, land("valid_customers.csv")).status == "succeeded"


def test_a_run_with_more_changes_than_the_page_shows_is_published_completely(conn, importer, land, tmp_path):
    from customer_import.contract.generate import write_customers
    from customer_import.report import HTML_CHANGES

    importer.import_file(conn, land(write_customers(tmp_path / "first.csv", HTML_CHANGES + 50, seed=1)))
    run = importer.import_file(conn, land(write_customers(tmp_path / "second.csv", HTML_CHANGES + 50, seed=2)))

    assert (run.status, run.updated) == ("succeeded", HTML_CHANGES + 50)
    stored = conn.execute("SELECT finished_at IS NOT NULL, file_path FROM import_runs WHERE id = %s", [run.id])
    assert stored.fetchone() == (True, f"archive/{run.id}/second.csv")


@pytest.mark.parametrize(
    ("rows", "proved"),
    [
        ([("K-1", "a@example.com"), ("K-2", "b@example.com"), ("k-1", "")], {"account_reference_id", "contact_email"}),
        ([("K-1", "#NULL"), ("K-2", "#NULL"), ("K-3", ""), ("K-4", "")], {"account_reference_id", "contact_email"}),
        ([("K-1", "a@example.com"), ("K-2", "A@Example.COM")], {"account_reference_id"}),
        ([("K-1", "a@example.com"), ("K-1", "b@example.com")], {"contact_email"}),
        ([("K-1", "ärger@example.com"), ("K-2", "Ärger@example.com")], {"account_reference_id"}),
        ([("K-1", "ärger@example.com"), ("K-2", "other@example.com")], {"account_reference_id"}),
    ],
)
def test_arrow_rules_out_only_the_duplicates_the_database_would_not_find(conn, schema, tmp_path, rows, proved):
    """The staged columns Arrow proves free of duplicates are not searched by the database: the proof
    must hold as PostgreSQL compares them (keys exactly, emails by lower()), and the issues stay the
    same with it as without it."""
    from customer_import.contract.fields import load_contract
    from customer_import.database import checks, db, staging

    contract = load_contract()
    db.migrate(conn, contract, schema)
    fields = [contract.key, contract.field_for("ContactEmail")]
    staged_csv = tmp_path / staging.STAGED_FILE
    with staging.StagedWriter(staged_csv, fields) as writer:
        lines = list(range(2, 2 + len(rows)))
        writer.write_rows(lines, [True] * len(rows), [list(column) for column in zip(*rows, strict=True)])
    staging.copy_into_staging(conn, 1, staged_csv, contract)

    distinct = checks.distinct_columns(staged_csv, contract, len(rows))

    assert distinct == proved
    searched = checks.check_staging(conn, 1, contract, fields, "upsert")
    duplicated = {i.column for i in searched if i.code == "duplicate_in_file"}
    assert not duplicated & {f.header for f in fields if f.column in distinct}
    assert checks.check_staging(conn, 1, contract, fields, "upsert", distinct) == searched
    assert checks.distinct_columns(staged_csv, contract, checks.DISTINCT_ROWS + 1) == set()  # too long to hold


@pytest.mark.parametrize(
    ("fixture", "status", "folder"),
    [("one_bad_email.csv", "rejected", "rejected/"), ("valid_customers.csv", "succeeded", "archive/")],
)
def test_summary_json_says_how_the_run_ended_and_where_its_file_rests(conn, importer, land, fixture, status, folder):
    run = importer.import_file(conn, land(fixture))

    summary = json.loads((importer.settings.data_dir / run.report_dir / "summary.json").read_text())
    ended = summary["import_run"]
    assert (ended["status"], ended["finished_at"], ended["stage"]) == (status, run.finished_at.isoformat(), None)
    assert ended["file_path"] == run.file_path and run.file_path.startswith(folder)
