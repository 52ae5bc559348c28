"""File-level and structural checks, before any row reaches GX."""

from pathlib import Path

import pytest

from customer_import.contract.fields import load_contract
from customer_import.reading import columnar
from customer_import.reading.csvfile import CsvFile

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


def _verdict_of_records(source: CsvFile) -> tuple[bool, int, int]:
    records = list(source.records())
    clean = not source.file_issues and all(r.issue is None for r in records)
    return clean, len(records), records[-1].last_line if records else 0


def _read_in_columns(name: str) -> bool:
    """The fast path would read the file (and ask for the quick verdict)."""
    with CsvFile(DATA / name, load_contract()) as source:
        return not source.file_issues and bool(source.header) and columnar.eligible(source)


SWALLOWED = (
    "AccountReferenceID,Name,Description\n"
    'K-1,One,"opened here and never closed\n'
    "K-2,Two,a row of its own\n"
    'K-3,Three,closed here"\n'
)
INSIDE_A_VALUE = 'AccountReferenceID,Name,Description\nK-1,One,"a list:\n,,\nand more"\nK-2,Two,plain\n'


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.csv") if _read_in_columns(p.name)))
def test_the_quick_structure_verdict_never_passes_what_records_finds_broken(name):
    with CsvFile(DATA / name, load_contract()) as quick:
        verdict = quick.structure_verdict()
    with CsvFile(DATA / name, load_contract()) as precise:
        expected = _verdict_of_records(precise)
    assert verdict == expected if expected[0] else not verdict[0], (verdict, expected)


@pytest.mark.parametrize(("text", "clean"), [(SWALLOWED, False), (INSIDE_A_VALUE, True)], ids=["swallowed", "inside"])
def test_a_value_over_several_lines_is_judged_on_the_lines_in_the_file(text, clean, tmp_path):
    path = tmp_path / "f.csv"
    path.write_text(text, encoding="utf-8")
    with CsvFile(path, load_contract()) as quick:
        verdict = quick.structure_verdict()
    with CsvFile(path, load_contract()) as precise:
        expected = _verdict_of_records(precise)
    assert verdict[0] is expected[0] is clean
    assert verdict == expected or not clean


def test_a_line_near_the_limit_is_left_to_the_precise_reader(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("AccountReferenceID,Name\nK-1," + "x" * 600 + "\n", encoding="utf-8")
    with CsvFile(path, load_contract(), max_field_chars=200) as quick:  # a line may hold 800 characters
        assert quick.structure_verdict() == (False, 0, 0)
