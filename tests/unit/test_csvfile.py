"""File-level and structural checks, before any row reaches GX."""

from pathlib import Path

import pytest

from customer_import.contract import load_contract
from customer_import.csvfile import CsvFile

pytestmark = pytest.mark.unit

DATA = Path(__file__).parents[1] / "data"


def read(name: str):
    with CsvFile(DATA / name, load_contract()) as source:
        records = list(source.records()) if not source.file_issues else []
        return source, records


def test_bom_crlf_and_a_missing_final_newline_are_accepted():
    source, records = read("bom_crlf_no_final_newline.csv")
    assert source.file_issues == []
    assert [(r.line, r.cells) for r in records] == [(2, ["B-1", "With BOM"]), (3, ["B-2", "And CRLF"])]


def test_header_names_match_ignoring_case_and_spaces():
    source, _ = read("header_case_and_spaces.csv")
    assert source.file_issues == []
    assert [f.header for f in source.fields] == ["AccountReferenceID", "Name", "ContactEmail"]


def test_records_carry_the_physical_line_where_they_start():
    _, records = read("quoted_newline_then_bad_row.csv")
    assert [r.line for r in records] == [2, 5]


@pytest.mark.parametrize(
    ("name", "code", "words"),
    [
        ("semicolon_separated.csv", "wrong_separator", "separated by semicolon (;), not by commas"),
        (
            "unknown_column_emial.csv",
            "unknown_column",
            "Unknown column `Emial` in column 3 (C): did you mean `ContactEmail`?",
        ),
        ("windows1252.csv", "not_utf8", "Line 2 is not valid UTF-8: byte 0xE9"),
        ("utf16.csv", "wrong_encoding", "encoded as UTF-16"),
    ],
)
def test_file_level_problems_say_what_and_how_to_fix(name, code, words):
    source, _ = read(name)
    assert [i.code for i in source.file_issues] == [code]
    assert words in source.file_issues[0].message


def test_windows_1252_is_recognised_and_the_fix_named():
    source, _ = read("windows1252.csv")
    message = source.file_issues[0].message
    assert "Windows-1252" in message and "CSV UTF-8" in message and "iconv -f WINDOWS-1252" in message


def test_an_unterminated_quote_is_reported_where_it_opens_and_the_rows_after_it_are_read():
    _, records = read("unterminated_quote.csv")
    broken = records[-2]
    assert broken.issue.code == "unterminated_quote"
    assert broken.issue.line == 3
    assert "opened on line 3 is never closed" in broken.issue.message
    assert broken.cells == ["T-2", '"Never closed']  # errors.csv keeps what the line holds
    assert (records[-1].line, records[-1].cells, records[-1].issue) == (4, ["T-3", "Swallowed"], None)
