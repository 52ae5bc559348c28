"""SPEC §3 case by case: each file of tests/data goes in; the outcome, every issue, the database
and the kept file are checked.

A rejected file must leave the customers exactly as they were (here: two customers imported
first) and be kept, byte for byte, in rejected/ beside its errors.csv.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field

import pytest

from customer_import.runs import ImportOptions
from tests.conftest import DATA

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Case:
    file: str
    status: str
    issues: list[tuple[int | None, str | None, str]] = field(default_factory=list)  # (line, column, code)
    says: tuple[str, ...] = ()  # words the messages must contain
    stored: dict[str, dict[str, object]] = field(default_factory=dict)  # key -> column -> value


FILE_LEVEL = [
    Case("empty.csv", "rejected", [(None, None, "empty_file")], ("The file is empty", "AccountReferenceID,Name")),
    Case("only_bom.csv", "rejected", [(None, None, "empty_file")]),
    Case("header_only.csv", "rejected", [(None, None, "no_rows")], ("add one row per customer",)),
    Case("no_header_row.csv", "rejected", [(None, None, "no_header")], ("(`C-1,Acme Ltd,,acme@example.com`)",)),
    Case("missing_key_column.csv", "rejected", [(None, None, "missing_key")],
         ("has no AccountReferenceID column",)),
    Case("blank_header_name.csv", "rejected", [(None, None, "blank_header")], ("column 2 (B) is blank",)),
    Case("duplicate_header.csv", "rejected", [(None, "name", "duplicate_header")],
         ("column 2 (B) and column 3 (C)",)),
    Case("unknown_column_emial.csv", "rejected", [(None, "Emial", "unknown_column")],
         ("did you mean `ContactEmail`?",)),
    Case("semicolon_separated.csv", "rejected", [(None, None, "wrong_separator")], ("semicolon (;)",)),
    Case("tab_separated.csv", "rejected", [(None, None, "wrong_separator")], ("separated by tab",)),
    Case("pipe_separated.csv", "rejected", [(None, None, "wrong_separator")], ("pipe (|)",)),
    Case("windows1252.csv", "rejected", [(2, None, "not_utf8")],
         ("Line 2", "byte 0xE9 at byte offset 31", "Windows-1252", "iconv -f WINDOWS-1252")),
    Case("latin1_undefined_in_cp1252.csv", "rejected", [(2, None, "not_utf8")], ("ISO-8859-1",)),
    Case("utf16.csv", "rejected", [(None, None, "wrong_encoding")], ("UTF-16", "CSV UTF-8")),
    Case("utf32.csv", "rejected", [(None, None, "wrong_encoding")], ("UTF-32",)),
    Case("xlsx_saved_as_csv.csv", "rejected", [(None, None, "binary_file")], ("Excel workbook (.xlsx)",)),
    Case("nul_bytes.csv", "rejected", [(None, None, "binary_file")], ("NUL byte at byte offset 30",)),
]

ROW_LEVEL = [
    Case("wrong_field_count.csv", "rejected", [(2, None, "wrong_field_count"), (3, None, "wrong_field_count")],
         ("Line 2 has 4 values but the header has 3 columns", "wrapped in double quotes", "a separator is missing")),
    Case("unterminated_quote.csv", "rejected", [(3, None, "unterminated_quote")], ("opened on line 3",)),
    Case("stray_quote.csv", "rejected", [(2, None, "stray_quote")], ('"The ""Best"" Shop"',)),
    Case("quoted_newline_then_bad_row.csv", "rejected", [(5, "Seats", "invalid_integer")], ("`many`",)),
    Case("control_character.csv", "rejected", [(2, "Name", "control_character")]),
    Case("too_long_name.csv", "rejected", [(2, "Name", "too_long")], ("256 characters long; the limit is 255",)),
    Case("every_type_rule_broken.csv", "rejected", [
        (2, "AccountReferenceID", "surrounding_space"), (3, "AccountReferenceID", "required"),
        (4, "Phone", "invalid_phone"), (5, "Country", "invalid_country"), (6, "CustomerSince", "invalid_date"),
        (7, "CustomerSince", "invalid_date"), (8, "Seats", "invalid_integer"), (9, "IsReseller", "invalid_boolean"),
        (10, "ContactEmail", "invalid_email")],
        ("` K-1 ` starts or ends with a space", "`2023-02-29` is not a real calendar date", "`31.01.2024` is not a"
         " date in YYYY-MM-DD form", "`jane@@example.com` is not a valid email")),
    Case("required_name_missing_for_new.csv", "rejected", [(2, "Name", "required")],
         ("`K-1` is new but its Name is blank",)),
    Case("null_marker_on_required.csv", "rejected", [(2, "Name", "required")], ("cannot be cleared with #NULL",)),
    Case("duplicate_keys.csv", "rejected",
         [(2, "AccountReferenceID", "duplicate_in_file"), (4, "AccountReferenceID", "duplicate_in_file")],
         ("`D-1` also appears on line 4", "`D-1` also appears on line 2")),
    Case("duplicate_emails_in_file.csv", "rejected",
         [(2, "ContactEmail", "duplicate_in_file"), (3, "ContactEmail", "duplicate_in_file")],
         ("compared ignoring case",)),
]

VALID = [
    Case("bom_crlf_no_final_newline.csv", "succeeded", stored={"B-1": {"name": "With BOM"},
                                                                "B-2": {"name": "And CRLF"}}),
    Case("cr_only_line_ends.csv", "succeeded", stored={"R-1": {"description": "two\rlines"}, "R-2": {}}),
    Case("header_case_and_spaces.csv", "succeeded", stored={"H-1": {"contact_email": "h1@example.com"}}),
    Case("leading_zero_and_exponent_keys.csv", "succeeded",
         stored={"007": {}, "1E5": {}, "00123": {}, "MiXeD-case": {}}),
    Case("non_ascii_values.csv", "succeeded", stored={"U-1": {
        "name": "北京科技有限公司", "contact_first_name": "Zoë", "contact_last_name": "Ñúñez-Østergaard",
        "description": "Ελληνικά – ✓ 🚀"}}),
    Case("blank_lines_between_rows.csv", "succeeded", stored={"B-1": {}, "B-2": {}}),
    Case("booleans_all_spellings.csv", "succeeded", stored={
        "B-1": {"is_reseller": True}, "B-2": {"is_reseller": False}, "B-3": {"is_reseller": True},
        "B-4": {"is_reseller": False}, "B-5": {"is_reseller": True}, "B-6": {"is_reseller": False}}),
    Case("lowercase_country_code.csv", "succeeded", stored={"L-1": {"country": "DE"}, "L-2": {"country": "GB"}}),
    Case("quote_inside_unquoted_value.csv", "succeeded", stored={"K-1": {"name": 'The "Best" Shop'}, "K-2": {}}),
    Case("report_columns_are_ignored.csv", "succeeded", stored={"R-1": {"name": "Fixed Ltd", "description": "=1+1"}}),
]

PRELOADED = {"P-1", "P-2"}


@pytest.fixture
def preloaded(conn, importer, land, tmp_path):
    """Two customers already stored, so 'the database is unchanged' means something."""
    seed = tmp_path / "seed.csv"
    seed.write_text("AccountReferenceID,Name,ContactEmail\nP-1,Kept One,p1@example.com\nP-2,Kept Two,p2@example.com\n")
    assert importer.import_file(conn, land(seed)).status == "succeeded"
    return snapshot(conn)


def snapshot(conn) -> list[tuple]:
    return conn.execute("SELECT * FROM customers ORDER BY account_reference_id").fetchall()


def stored(conn, key: str) -> dict[str, object]:
    cur = conn.execute("SELECT * FROM customers WHERE account_reference_id = %s", [key])
    row = cur.fetchone()
    assert row is not None, f"{key} was not stored"
    return dict(zip([c.name for c in cur.description], row, strict=True))


@pytest.mark.parametrize("case", FILE_LEVEL + ROW_LEVEL + VALID, ids=lambda c: c.file)
def test_corpus(case: Case, conn, importer, land, preloaded):
    run = importer.import_file(conn, land(case.file))

    assert run.status == case.status, run.outcome
    summary = json.loads((importer.folders.reports(run.id) / "summary.json").read_text())
    assert sorted(((i["line"], i["column"], i["code"]) for i in summary["issues"]), key=str) == sorted(
        case.issues, key=str)
    messages = " ".join(i["message"] for i in summary["issues"])
    for words in case.says:
        assert words in messages
    if case.status == "rejected":
        assert snapshot(conn) == preloaded
        kept = importer.folders.rejected(run.id)
        assert (kept / case.file).read_bytes() == (DATA / case.file).read_bytes()
        assert (kept / case.file.replace(".csv", ".errors.csv")).exists()
    for key, values in case.stored.items():
        row = stored(conn, key)
        assert {column: row[column] for column in values} == values
    if case.status == "succeeded":
        assert {r[0] for r in snapshot(conn)} == PRELOADED | set(case.stored)


def test_every_copy_of_a_duplicate_key_names_the_others(conn, importer, land, tmp_path):
    triple = tmp_path / "triple.csv"
    triple.write_text("AccountReferenceID,Name\nX,a\nY,b\nX,c\nX,d\n")
    run = importer.import_file(conn, land(triple))
    issues = json.loads((importer.folders.reports(run.id) / "summary.json").read_text())["issues"]
    assert {i["line"]: i["message"].split(":")[0] for i in issues} == {
        2: "AccountReferenceID `X` also appears on lines 4, 5",
        4: "AccountReferenceID `X` also appears on lines 2, 5",
        5: "AccountReferenceID `X` also appears on lines 2, 4"}


def test_many_issues_of_one_kind_are_summarised_while_every_row_is_marked(conn, importer, land, tmp_path):
    many = tmp_path / "many_bad_emails.csv"
    many.write_text("AccountReferenceID,Name,ContactEmail\n"
                    + "".join(f"M-{n},Name {n},broken-{n}\n" for n in range(1500)))
    importer.settings = importer.settings.__class__(**{**vars(importer.settings), "issues_in_summary": 100})

    run = importer.import_file(conn, land(many))

    summary = json.loads((importer.folders.reports(run.id) / "summary.json").read_text())
    assert summary["issue_counts"] == {"invalid_email": 1500}
    assert len(summary["issues"]) == 100
    assert summary["issues_listed"].startswith("100 of 1500")
    with (importer.folders.reports(run.id) / "errors.csv").open(encoding="utf-8-sig", newline="") as report:
        statuses = [row[1] for row in csv.reader(report)][1:]
    assert statuses == ["error"] * 1500


def test_email_already_used_by_another_customer(conn, importer, land, preloaded, tmp_path):
    clash = tmp_path / "clash.csv"
    clash.write_text("AccountReferenceID,Name,ContactEmail\nP-2,Kept Two,P1@EXAMPLE.COM\n")

    run = importer.import_file(conn, land(clash))

    assert run.status == "rejected"
    issue = json.loads((importer.folders.reports(run.id) / "summary.json").read_text())["issues"][0]
    assert (issue["line"], issue["code"]) == (2, "already_used")
    assert "already belongs to customer AccountReferenceID `P-1`" in issue["message"]
    assert snapshot(conn) == preloaded


@pytest.mark.parametrize(("mode", "code"), [("update_only", "unknown_customer"), ("insert_only", "existing_customer")])
def test_keys_that_break_the_mode_are_row_issues(mode, code, conn, importer, land, preloaded, tmp_path):
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("AccountReferenceID,Name\nP-1,Existing\nN-1,New\n")

    run = importer.import_file(conn, land(mixed), ImportOptions(mode=mode))

    assert run.status == "rejected"
    issues = json.loads((importer.folders.reports(run.id) / "summary.json").read_text())["issues"]
    assert [(i["line"], i["code"]) for i in issues] == [(3 if mode == "update_only" else 2, code)]
    assert f"mode {mode}" in issues[0]["message"]
    assert snapshot(conn) == preloaded
