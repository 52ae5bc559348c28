"""The columnar fast path and the precise reader give the same issues, lines and staged rows.

Every file of tests/data (and generated files with multi-line values, CRLF and CR line ends and
blank rows) is validated twice: as the importer does (the fast path when the file is eligible,
falling back when its structure check finds a problem), and by the precise reader alone.
"""

from __future__ import annotations

import csv
import logging
import random

import pytest

from customer_import.contract.fields import load_contract
from customer_import.contract.generate import write_customers
from customer_import.contract.issues import read_issues
from customer_import.database.staging import STAGED_FILE
from customer_import.reading import columnar
from customer_import.reading.csvfile import CsvFile
from customer_import.reading.expectations import read_suite
from customer_import.reading.validation import ISSUES_FILE, check_file
from customer_import.settings import Settings
from tests.conftest import DATA

pytestmark = pytest.mark.integration
SUITE = read_suite(Settings.from_env().expectations_dir)
CONTRACT = load_contract()


def validated(path, work, chunk_rows=1000):
    work.mkdir()
    result = check_file(CsvFile(path, CONTRACT), work, SUITE, chunk_rows)
    staged = _rows(work / STAGED_FILE)
    issues = list(read_issues(work / ISSUES_FILE))
    return result.rows, sorted(result.rejected_lines), issues, staged, result.value_changes.to_list()


def _rows(staged):
    if not staged.exists():
        return []
    with staged.open(encoding="utf-8", newline="") as rows:
        # the writers differ in spelling only: "t"/"true", and how a value is quoted
        return [[*r[:1], r[1][0], *r[2:]] for r in list(csv.reader(rows))[1:]]


def both_ways(path, tmp_path, monkeypatch, caplog, chunk_rows=1000):
    with caplog.at_level(logging.INFO, logger="customer_import.reading.validation"):
        fast = validated(path, tmp_path / "fast", chunk_rows)
    fell_back = "precise way" in caplog.text
    monkeypatch.setattr(columnar, "eligible", lambda source: False)
    precise = validated(path, tmp_path / "precise", chunk_rows)
    return fast, precise, fell_back


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.csv")))
def test_the_fast_path_reports_what_the_precise_reader_reports(name, tmp_path, monkeypatch, caplog):
    fast, precise, _ = both_ways(DATA / name, tmp_path, monkeypatch, caplog)
    assert fast == precise


def _messy_file(path, line_end):
    """Generated rows with multi-line values, blank rows and blank lines, in the given line ends."""
    write_customers(path, 40, seed=7)
    lines = path.read_bytes().decode().split("\n")
    rng = random.Random(3)
    out = [lines[0]]
    for line in lines[1:]:
        out.append(line)
        if rng.random() < 0.15:
            out.append(rng.choice(["", ",,,,,,,,,,", " , ,,,,,,,,,"]))
    path.write_bytes(line_end.join(out).replace('\n"', line_end + '"').encode())
    return path


@pytest.mark.parametrize("line_end", ["\n", "\r\n", "\r"])
def test_line_numbers_agree_with_multi_line_values_blank_rows_and_any_line_end(line_end, tmp_path, monkeypatch, caplog):
    path = _messy_file(tmp_path / "messy.csv", line_end)
    fast, precise, fell_back = both_ways(path, tmp_path, monkeypatch, caplog, chunk_rows=7)  # chunk ends too
    assert fast == precise
    assert fast[0] == 40 and not fell_back  # the fast path took it, to the end


@pytest.mark.parametrize("checked_in", ["a thread", "a process of its own"])
def test_a_clean_file_takes_the_fast_path_and_a_stray_quote_still_names_its_line(
    checked_in, tmp_path, monkeypatch, caplog
):
    """Small files have their structure checked in a thread, large ones in a process: the same verdicts."""
    own_process_bytes = 0 if checked_in == "a process of its own" else columnar.OWN_PROCESS_BYTES
    monkeypatch.setattr(columnar, "OWN_PROCESS_BYTES", own_process_bytes)
    (tmp_path / "a").mkdir()
    _, _, fell_back = both_ways(DATA / "valid_customers.csv", tmp_path / "a", monkeypatch, caplog)
    assert not fell_back
    monkeypatch.undo()
    monkeypatch.setattr(columnar, "OWN_PROCESS_BYTES", own_process_bytes)
    caplog.clear()
    (tmp_path / "b").mkdir()
    fast, precise, fell_back = both_ways(DATA / "stray_quote.csv", tmp_path / "b", monkeypatch, caplog)
    assert fell_back and fast == precise
    assert [(i.line, i.code) for i in fast[2]] == [(i.line, i.code) for i in precise[2]]
    assert any(
        i.code == "stray_quote" and i.line == 2 and "Line 2 has a stray double quote" in i.message for i in fast[2]
    ), fast[2]


def test_line_breaks_at_the_edges_of_cells_count_as_the_precise_reader_counts_them(tmp_path, monkeypatch, caplog):
    """A CR that ends a value, above a value that starts with a LF in the same column: two line
    breaks, not one CRLF; a row of spaces only is blank; spaces around a value are trimmed."""
    rows = [
        "AccountReferenceID,Name,Description,ContactEmail",
        'K-1,One,"ends with a CR\r",one@example.com',
        'K-2,Two,"\nstarts with a LF",two@example.com',
        "  ,  ,\u00a0, ",
        'K-3,\u2003Three\u00a0,"mid\r\nCRLF and\rCR",three@example.com',
        "K-4,\u200bFour,plain,not an email",
    ]
    path = tmp_path / "edges.csv"
    path.write_bytes("\n".join(rows).encode())
    fast, precise, fell_back = both_ways(path, tmp_path, monkeypatch, caplog)
    assert fast == precise and not fell_back
    assert [i.line for i in fast[2]] == [10]  # K-4's email: K-1 on lines 2-3, K-2 4-5, blank 6, K-3 7-9
