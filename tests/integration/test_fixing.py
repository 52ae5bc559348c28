"""Fixing a rejected file in a draft (issue 35): every change checked by the import's rules, the fixed file."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

pytestmark = pytest.mark.integration

HEADER = "AccountReferenceID,Name,ContactEmail,Country,Seats,CustomerSince\n"
#: Eight rows, six of them wrong in a way the grid fixes: what the browser test uploads too.
EIGHT_ROWS = HEADER + (
    "FIX-1,Alpha GmbH,alpha@example.com,DE,5,2024-01-31\n"
    "FIX-2,Beta AG,not-an-email,DE,5,2024-01-31\n"  # line 3: a bad email
    "FIX-3,Gamma SA,gamma@example.com,FR,5,31/01/2024\n"  # line 4: a date as Excel wrote it
    "FIX-4,Delta KG,delta@example.com,Germany,5,2024-01-31\n"  # line 5: a country by its name
    "FIX-5,Epsilon Ltd,epsilon@example.com,Germany,-5,2024-01-31\n"  # line 6: the name again, negative seats
    "FIX-1,Alpha Again,alpha2@example.com,DE,1,2024-01-31\n"  # line 7: a key repeated
    "FIX-7,,zeta@example.com,DE,5,2024-01-31\n"  # line 8: no name for a new customer
    "FIX-8,Eta Oy,eta@example.com,FI,5,2024-01-31\n"
)


@pytest.fixture
def fixer(importer):
    from customer_import.fixing import Fixer

    return Fixer(importer.settings, importer.contract)


@pytest.fixture
def rejected(importer, land, conn, tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text(EIGHT_ROWS, encoding="utf-8")
    run = importer.import_file(conn, land(path))
    assert run.status == "rejected", run.message
    return run


def flags(rows) -> dict[int, list[tuple[int | None, str]]]:
    return {row.line: [(i["column"], i["code"]) for i in row.issues] for row in rows}


def test_a_draft_holds_every_row_and_the_issues_the_import_found(fixer, rejected, conn):
    from customer_import.database import drafts

    draft = fixer.open(conn, rejected, "ada")
    rows, total = drafts.page(conn, rejected.id, flagged_only=True, offset=0, limit=50)
    everything, all_rows = drafts.page(conn, rejected.id, flagged_only=False, offset=0, limit=50)

    assert (all_rows, [r.line for r in everything]) == (8, [2, 3, 4, 5, 6, 7, 8, 9])
    assert draft.opened_by == "ada" and draft.header[2] == "ContactEmail"
    assert flags(rows) == {  # the import's own, and those of the whole file it did not get to
        2: [(0, "duplicate_in_file")],
        3: [(2, "invalid_email")],
        4: [(5, "invalid_date")],
        5: [(3, "invalid_country")],
        6: [(3, "invalid_country"), (4, "invalid_integer")],
        7: [(0, "duplicate_in_file")],
        8: [(1, "required")],
    }
    assert total == 7 and [i["database"] for i in rows[0].issues + rows[-1].issues] == [True, True]
    assert "Beta AG" in rows[1].cells and fixer.open(conn, rejected, "bob").opened_by == "ada"  # opened once


def test_an_edit_is_checked_by_the_imports_rules_and_clears_or_changes_the_flag(fixer, rejected, conn):
    fixer.open(conn, rejected, "ada")

    still_bad = fixer.edit(conn, rejected, [(3, 2, "still not an email")], "ada")
    assert flags(still_bad)[3] == [(2, "invalid_email")] and "`still not an email`" in still_bad[0].issues[0]["message"]
    fixed = fixer.edit(conn, rejected, [(3, 2, "beta@example.com")], "ada")
    assert flags(fixed)[3] == []
    date = fixer.edit(conn, rejected, [(4, 5, "2024-01-31")], "bob")
    assert flags(date)[4] == []
    # a row with two flags keeps the other one while one is fixed
    seats = fixer.edit(conn, rejected, [(6, 4, "5")], "ada")
    assert flags(seats)[6] == [(3, "invalid_country")]
    # the name a new customer needs is a check against the database, run again as the cell changes
    named = fixer.edit(conn, rejected, [(8, 1, "Zeta SARL")], "ada")
    assert flags(named)[8] == []


def test_bulk_fix_skip_and_the_fixed_file(fixer, rejected, conn, importer):
    from customer_import.database import drafts

    fixer.open(conn, rejected, "ada")
    assert fixer.matching(conn, rejected, 3, "Germany", whole=True) == [5, 6]
    changed = fixer.bulk(conn, rejected, 3, "Germany", "DE", whole=True, edited_by="ada")
    assert {r.line: r.cells[3] for r in changed if r.line in (5, 6)} == {5: "DE", 6: "DE"}
    assert flags(changed)[5] == []
    # skipping the repeated key clears the repeat on the other row too
    skipped = fixer.skip(conn, rejected, 7, "ada")
    assert {r.line: r.skipped_by for r in skipped}[7] == "ada"
    assert all(code != "duplicate_in_file" for _, code in flags(skipped).get(2, []))
    fixer.edit(conn, rejected, [(3, 2, "beta@example.com"), (4, 5, "2024-01-31"), (6, 4, "5"), (8, 1, "Zeta")], "bob")
    assert drafts.counts(conn, rejected.id) == {"rows": 8, "flagged": 0, "skipped": 1, "edited": 6}

    name = fixer.write_fixed(conn, rejected, "bob")
    assert name == "customers.fixed-1.csv"
    written = importer.folders.landing_file(name).read_text(encoding="utf-8")
    assert written.splitlines()[0] == HEADER.strip() and "FIX-1,Alpha Again" not in written
    assert "FIX-8,Eta Oy,eta@example.com,FI,5,2024-01-31\n" in written  # untouched rows as written
    assert "FIX-2,Beta AG,beta@example.com,DE,5,2024-01-31\n" in written

    run = importer.import_file(conn, name, replace(rejected.options, encoding="utf-8"))
    assert (run.status, run.inserted, run.fixed_from, run.fixed_by) == ("succeeded", 7, rejected.id, "bob")
    draft = drafts.get_draft(conn, rejected.id)
    assert (draft.status, draft.fixed_run) == ("imported", run.id)
    assert drafts.page(conn, rejected.id, flagged_only=False, offset=0, limit=10)[1] == 0  # its rows are gone
    edited = drafts.edits(conn, rejected.id)
    assert [(e["line"], e["column"], e["before"], e["after"], e["edited_by"]) for e in edited][:2] == [
        (3, "ContactEmail", "not-an-email", "beta@example.com", "bob"),
        (4, "CustomerSince", "31/01/2024", "2024-01-31", "bob"),
    ]
    assert {e["fixed_line"] for e in edited} == {3, 4, 5, 6, 7}  # line 8 moved up: line 7 was skipped
    reports = importer.settings.data_dir / run.report_dir
    summary = json.loads((reports / "summary.json").read_text(encoding="utf-8"))["fixed_in_the_browser"]
    assert (summary["from_import_run"], summary["by"], len(summary["cells_changed"])) == (rejected.id, "bob", 6)
    assert summary["cells_changed"][0] == {
        "line": 3,
        "fixed_line": 3,
        "column": "ContactEmail",
        "before": "not-an-email",
        "after": "beta@example.com",
        "edited_by": "bob",
    }
    assert "Fixed in the browser" in (reports / "report.html").read_text(encoding="utf-8")
    stored = dict(conn.execute("SELECT account_reference_id, name FROM customers").fetchall())
    assert stored["FIX-7"] == "Zeta" and stored["FIX-1"] == "Alpha GmbH"
    from customer_import.fixing import FixRefused

    with pytest.raises(FixRefused, match=r"was imported as customers\.fixed-1\.csv"):
        fixer.edit(conn, rejected, [(3, 2, "x@example.com")], "ada")


def test_what_a_draft_refuses(fixer, rejected, importer, land, conn):
    from customer_import.fixing import CellTooLong, FixRefused

    fixer.open(conn, rejected, "ada")
    with pytest.raises(CellTooLong, match="Name holds at most 255 characters; the value typed has 256"):
        fixer.edit(conn, rejected, [(3, 1, "x" * 256)], "ada")
    good = importer.import_file(conn, land("valid_customers.csv"))
    with pytest.raises(FixRefused, match=f"Import run {good.id} is succeeded: only a rejected or partial run"):
        fixer.open(conn, good, "ada")
    whole = importer.import_file(conn, land("semicolon_separated.csv"))
    with pytest.raises(FixRefused, match="rejected as a whole file"):
        fixer.open(conn, whole, "ada")
    with pytest.raises(FixRefused, match="has no draft"):
        fixer.edit(conn, replace(rejected, id=good.id), [(3, 1, "x")], "ada")


def test_a_draft_is_shown_from_its_flagged_rows_while_the_rest_loads_and_a_change_waits(
    fixer, rejected, conn, database_url, schema
):
    from customer_import.database import db, drafts

    def connect():
        own = db.connect(database_url)
        return db.use_schema(own, schema)

    first = fixer.open(conn, rejected, "ada", connect=connect)  # returns once the flagged rows are in
    assert first.status in ("loading", "open")
    changed = fixer.edit(conn, rejected, [(3, 2, "beta@example.com")], "ada")  # waits for the load
    assert flags(changed)[3] == [] and drafts.get_draft(conn, rejected.id).status == "open"
    assert drafts.counts(conn, rejected.id)["rows"] == 8


def test_a_draft_whose_loading_stopped_half_way_is_made_again(fixer, rejected, conn):
    from customer_import.database import drafts

    fixer._make(conn, rejected, "ada")  # the rows with issues stored, then the loader stopped
    assert drafts.get_draft(conn, rejected.id).status == "loading" and drafts.counts(conn, rejected.id)["rows"] == 4

    draft = fixer.open(conn, rejected, "bob")

    assert (draft.status, draft.opened_by, drafts.counts(conn, rejected.id)["rows"]) == ("open", "bob", 8)


def test_a_forgotten_customer_leaves_the_drafts_and_the_kept_issues_too(fixer, rejected, conn, importer):
    from customer_import.database import drafts
    from customer_import.erasure import forget
    from customer_import.run_files import ISSUES_FILES

    fixer.open(conn, rejected, "ada")
    fixer.edit(conn, rejected, [(3, 1, "Beta Renamed AG")], "ada")

    erasure = forget(conn, importer.settings, importer.contract, "FIX-2", "dpo")

    assert erasure.draft_rows == 1 and erasure.message.endswith(", 1 row of drafts fixed in the browser.")
    lines = [r.line for r in drafts.page(conn, rejected.id, flagged_only=False, offset=0, limit=50)[0]]
    assert 3 not in lines and len(lines) == 7 and drafts.edits(conn, rejected.id) == []
    kept = "".join((importer.settings.data_dir / rejected.report_dir / n).read_text() for n in ISSUES_FILES[:1])
    assert "not-an-email" not in kept and '"line": 4' in kept  # its issue gone, the others kept
