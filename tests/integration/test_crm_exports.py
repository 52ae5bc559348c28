"""CRM exports through their source profiles (sources.yaml): mapped headers, read values, defaults.

The bundled Salesforce- and HubSpot-style samples are imported with their stored values checked
one by one; a value a format cannot read is reported with the export's column name and line,
and errors.csv keeps the export's own columns.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from customer_import.settings import REPO_ROOT
from customer_import.storage.folders import drop_into_landing

pytestmark = pytest.mark.integration
SAMPLES = REPO_ROOT / "include" / "customer_import" / "sample"
FIELDS = (
    "account_reference_id, name, description, contact_email, contact_first_name, contact_last_name, phone, country,"
    " customer_since, seats, is_reseller"
)


def import_export(importer, conn, source: str, path: Path, **options):
    from customer_import.contract.options import ImportOptions

    name = drop_into_landing(path, importer.sources.folders(importer.settings.data_dir, source))
    given = ImportOptions(**options) if options else None
    return importer.import_file(conn, name, given, source=source)


def customers(conn):
    return conn.execute(f"SELECT {FIELDS} FROM customers ORDER BY account_reference_id").fetchall()


def summary_of(importer, run):
    return json.loads((importer.settings.data_dir / run.report_dir / "summary.json").read_text())


def test_a_salesforce_export_imports_with_exact_values(importer, conn):
    run = import_export(importer, conn, "salesforce", SAMPLES / "salesforce_accounts.csv")

    assert (run.status, run.source, run.inserted) == ("succeeded", "salesforce", 4), run.outcome
    assert run.file_path.startswith("archive/")
    assert customers(conn) == [
        (
            "0015g00000AcmeDEAA",
            "Acme GmbH",
            "Key account, renews in March",
            "jane.doe@acme.example",
            "Jane",
            "Doe",
            "+49 30 1234567",
            "DE",
            dt.date(2024, 1, 31),
            25,
            False,
        ),
        (
            "0015g00000GlobxAAB",
            "Globex Corporation",
            None,
            "hank.scorpio@globex.example",
            "Hank",
            "Scorpio",
            "(555) 010-2030",
            "US",
            dt.date(2023, 11, 5),
            120,
            False,
        ),
        (
            "0015g00000InitCAAC",
            "Initech Ltd",
            "Upgrade talk in Q1",
            "bill.lumbergh@initech.example",
            "Bill",
            "Lumbergh",
            "020 7946 0958",
            "GB",
            dt.date(2024, 2, 29),
            8,
            False,
        ),
        (
            "0015g00000UmbrAAAD",
            "Umbrella S.A.",
            None,
            "alice@umbrella.example",
            "Alice",
            "Abernathy",
            "+33 1 23 45 67 89",
            "FR",
            dt.date(2022, 7, 14),
            40,
            False,
        ),
    ]


def test_a_hubspot_export_imports_with_exact_values(importer, conn):
    run = import_export(importer, conn, "hubspot", SAMPLES / "hubspot_companies.csv")

    assert (run.status, run.inserted, run.on_error, run.max_error_rate) == ("succeeded", 3, "skip_invalid_rows", 0.05)
    assert customers(conn) == [
        (
            "18462349012",
            "Soylent Corp",
            None,
            None,
            None,
            None,
            "+31 20 123 4567",
            "NL",
            dt.date(2024, 1, 31),
            15,
            False,
        ),
        (
            "18462349013",
            "Stark Industries",
            None,
            None,
            None,
            None,
            "+1 555 010 9999",
            "US",
            dt.date(2023, 6, 1),
            300,
            True,
        ),
        (
            "18462349014",
            "Wayne Enterprises",
            None,
            None,
            None,
            None,
            "+1 (555) 010-4242",
            "US",
            dt.date(2022, 12, 24),
            None,
            True,
        ),
    ]


def bad_export(tmp_path: Path, old: str, new: str) -> Path:
    path = tmp_path / "salesforce_accounts.csv"
    text = (SAMPLES / "salesforce_accounts.csv").read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8", newline="")
    return path


def test_a_date_the_format_cannot_read_is_reported_by_the_exports_column_and_line(importer, conn, tmp_path):
    run = import_export(importer, conn, "salesforce", bad_export(tmp_path, '"02/29/2024"', '"13/31/2024"'))

    assert (run.status, run.rows_rejected) == ("rejected", 1)
    [issue] = summary_of(importer, run)["issues"]
    assert (issue["line"], issue["column"], issue["code"]) == (4, "Created Date (→ CustomerSince)", "invalid_date")
    assert issue["message"] == ("`13/31/2024` is not a date in %m/%d/%Y (like 01/31/2024): correct it in the export.")
    assert customers(conn) == []
    with (importer.settings.data_dir / run.report_dir / "errors.csv").open(encoding="utf-8-sig") as report:
        rows = list(csv.reader(report))
    assert rows[0][:5] == ["ImportLine", "ImportStatus", "ImportIssues", "Account ID", "Account Name"]  # the export's
    # errors.csv quotes the value between quotation marks, as a spreadsheet shows text (issue 33, point 8)
    assert rows[3][:3] == ["4", "error", issue["message"].replace("`13/31/2024`", "\u201c13/31/2024\u201d")]
    assert rows[3][rows[0].index("Created Date")] == "13/31/2024"  # as the user wrote it
    page = (importer.settings.data_dir / run.report_dir / "report.html").read_text()
    assert "Created Date (→ CustomerSince)" in page


def test_gx_rules_name_the_exports_column_too(importer, conn, tmp_path):
    run = import_export(
        importer, conn, "salesforce", bad_export(tmp_path, "hank.scorpio@globex.example", "hank at globex")
    )

    [issue] = summary_of(importer, run)["issues"]
    assert (issue["line"], issue["column"], issue["code"]) == (
        3,
        "Primary Contact Email (→ ContactEmail)",
        "invalid_email",
    )


def test_words_and_countries_the_formats_do_not_know_are_reported(importer, conn, tmp_path):
    path = tmp_path / "hubspot.csv"
    text = (SAMPLES / "hubspot_companies.csv").read_text(encoding="utf-8")
    path.write_text(text.replace('"Netherlands"', '"Atlantis"').replace('"yes"', '"Maybe"'), encoding="utf-8")

    run = import_export(importer, conn, "hubspot", path, on_error="skip_invalid_rows", max_error_rate=1.0)

    assert (run.status, run.inserted, run.rows_rejected) == ("partial", 1, 2)
    issues = {(i["line"], i["column"]): i["message"] for i in summary_of(importer, run)["issues"]}
    assert issues == {
        (2, "Country/Region (→ Country)"): "`Atlantis` is not a country name or code this export's format knows:"
        " write the country's English name or ISO code, or add it under aliases in sources.yaml: correct it in the"
        " export.",
        (4, "Is Reseller (→ IsReseller)"): "`Maybe` is none of the words this export uses for yes or no (Yes, No):"
        " correct it in the export.",
    }


def test_an_export_column_that_maps_to_nothing_is_unknown_with_a_did_you_mean(importer, conn, tmp_path):
    run = import_export(importer, conn, "salesforce", bad_export(tmp_path, '"Billing Country"', '"Biling Country"'))

    assert (run.status, run.file_rejected) == ("rejected", True)
    [issue] = summary_of(importer, run)["issues"]
    assert issue["code"] == "unknown_column"
    assert issue["message"].startswith(
        "Unknown column `Biling Country` in column 5 (E): did you mean `Billing Country`?"
    )


def test_an_export_without_its_key_column_names_both_names(importer, conn, tmp_path):
    run = import_export(importer, conn, "salesforce", bad_export(tmp_path, '"Account ID"', '"Account Number"'))

    messages = [i["message"] for i in summary_of(importer, run)["issues"]]
    assert "The header has no AccountReferenceID or Account ID column" in " ".join(messages)


def test_a_fixed_errors_csv_dropped_again_imports_through_its_source(importer, conn, tmp_path):
    run = import_export(importer, conn, "salesforce", bad_export(tmp_path, '"02/29/2024"', '"13/31/2024"'))
    fixed = tmp_path / "fixed" / "salesforce_accounts.csv"
    fixed.parent.mkdir()
    report = (importer.settings.data_dir / run.report_dir / "errors.csv").read_text(encoding="utf-8-sig")
    fixed.write_text(report.replace("13/31/2024", "12/31/2024"), encoding="utf-8")

    again = import_export(importer, conn, "salesforce", fixed)

    assert (again.status, again.inserted) == ("succeeded", 4), again.outcome
    assert conn.execute("SELECT customer_since FROM customers WHERE name = 'Initech Ltd'").fetchone() == (
        dt.date(2024, 12, 31),
    )


def test_the_default_source_still_takes_the_template_only(importer, conn, tmp_path):
    """A Salesforce export dropped into landing/ itself is not read as Salesforce: its columns are unknown."""
    landing = importer.folders.create().landing
    shutil.copyfile(SAMPLES / "salesforce_accounts.csv", landing / "export.csv")

    run = importer.import_file(conn, "export.csv")

    assert (run.status, run.source) == ("rejected", "default")
    codes = {i["code"] for i in summary_of(importer, run)["issues"]}
    assert codes == {"unknown_column", "missing_key"}


def test_the_salesforce_sample_of_the_next_day_deactivates_the_account_that_is_gone(importer, conn):
    """README, "Full exports": the two bundled samples, the second one as a full snapshot."""
    import_export(importer, conn, "salesforce", SAMPLES / "salesforce_accounts.csv")
    next_day = SAMPLES / "salesforce_accounts_next_day.csv"

    refused = import_export(importer, conn, "salesforce", next_day, snapshot="full")
    assert refused.outcome == (
        "rejected: 3 rows (import run 2, salesforce_accounts_next_day.csv). This full export would deactivate"
        " 1 of 4 customers (25 %); the limit is 5 %. If the export is complete, import it again with"
        " allow_mass_deactivation."
    )
    run = import_export(importer, conn, "salesforce", next_day, snapshot="full", allow_mass_deactivation=True)

    assert run.outcome.startswith("succeeded: 3 rows, 0 inserted, 1 updated, 2 unchanged, 1 deactivated")
    assert conn.execute(
        "SELECT account_reference_id, seats FROM customers WHERE NOT active OR seats = 30 ORDER BY 1"
    ).fetchall() == [("0015g00000AcmeDEAA", 30), ("0015g00000UmbrAAAD", 40)]
    assert conn.execute(
        "SELECT active FROM customers WHERE account_reference_id = '0015g00000UmbrAAAD'"
    ).fetchone() == (False,)
