"""Real-world exports: no row silently lost, no value silently changed, and the fix-and-re-import loop.

The single-file cases are in test_validation_corpus.py (REAL_WORLD); these follow a file through
more than one import, or many generated files through one.
"""

from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

import pytest

from customer_import.contract.fields import load_contract
from customer_import.database.runs import ImportOptions
from customer_import.reading.csvfile import CsvFile
from tests.conftest import DATA

pytestmark = pytest.mark.integration

SKIP = ImportOptions(on_error="skip_invalid_rows", max_error_rate=1.0)


def report_rows(importer, run) -> list[dict[str, str]]:
    with (importer.folders.reports(run.id) / "errors.csv").open(encoding="utf-8-sig", newline="") as report:
        return list(csv.DictReader(report))


def names(conn) -> dict[str, str | None]:
    return dict(conn.execute("SELECT account_reference_id, name FROM customers"))


def test_rows_after_a_quote_error_are_imported_and_its_report_keeps_every_line(conn, importer, land, tmp_path):
    run = importer.import_file(conn, land("unterminated_quote_then_rows.csv"), SKIP)

    assert (run.status, run.rows_total, run.inserted, run.rows_rejected) == ("partial", 5, 4, 1)
    rows = report_rows(importer, run)
    assert [(r["ImportLine"], r["ImportStatus"]) for r in rows] == [
        ("2", "imported"),
        ("3", "imported"),
        ("4", "error"),
        ("5", "imported"),
        ("6", "imported"),
    ]
    assert (rows[2]["AccountReferenceID"], rows[2]["Name"]) == ("U-3", '"Never closed')

    # Dropped again unchanged, the report imports nothing new and still refuses the broken line.
    again = tmp_path / "unchanged.errors.csv"
    shutil.copyfile(importer.folders.reports(run.id) / "errors.csv", again)
    rerun = importer.import_file(conn, land(again), SKIP)
    assert (rerun.status, rerun.rows_rejected, rerun.inserted) == ("partial", 1, 0)
    issue = json.loads((importer.folders.reports(rerun.id) / "summary.json").read_text())["issues"][0]
    assert (issue["line"], issue["column"], issue["code"]) == (4, "Name", "stray_quote")
    assert "U-3" not in names(conn)


def test_a_leading_apostrophe_survives_the_fix_and_re_import_loop(conn, importer, land, tmp_path):
    run = importer.import_file(conn, land("apostrophe_and_formula_values.csv"))
    assert run.status == "rejected"
    report = importer.folders.rejected(run.id) / "apostrophe_and_formula_values.errors.csv"
    fixed = tmp_path / "fixed.csv"
    fixed.write_bytes(report.read_bytes().replace(b"not-an-email", b"a2@example.com"))

    rerun = importer.import_file(conn, land(fixed))

    assert rerun.status == "succeeded", rerun.outcome
    stored = {k: (n, d) for k, n, d in conn.execute("SELECT account_reference_id, name, description FROM customers")}
    assert stored == {"A-1": ("'=literal", "'quoted"), "A-2": ("Formula Ltd", "=1+1")}


def test_a_declared_encoding_that_does_not_fit_names_the_line(conn, importer, land):
    run = importer.import_file(conn, land("non_ascii_values.csv"), ImportOptions(encoding="ascii"))

    assert run.status == "rejected"
    issues = json.loads((importer.folders.reports(run.id) / "summary.json").read_text())["issues"]
    assert [(i["line"], i["code"]) for i in issues] == [(2, "wrong_encoding")]
    assert "Line 2 cannot be read as ascii, the encoding this import declared" in issues[0]["message"]


def test_an_unknown_encoding_is_refused_with_the_names_to_use():
    with pytest.raises(ValueError, match="not a known text encoding: use a name such as utf-8, windows-1252"):
        ImportOptions.from_params({"encoding": "klingon"})
    with pytest.raises(ValueError, match="not a text encoding"):
        ImportOptions.from_params({"encoding": "base64"})
    assert ImportOptions.from_params({"encoding": "Windows-1252"}).encoding == "cp1252"


def test_the_report_says_which_values_reading_changed(conn, importer, land):
    run = importer.import_file(conn, land("meaningful_invisible_characters.csv"))

    assert run.status == "succeeded", run.outcome
    reports = importer.folders.reports(run.id)
    changed = json.loads((reports / "summary.json").read_text())["value_changes"]
    assert [(c["kind"], c["values"], c["columns"], c["lines"]) for c in changed] == [
        ("invisible_removed", 1, ["Name"], [5]),
        ("spaces_made_plain", 1, ["Description"], [5]),
        ("separators_made_line_breaks", 1, ["Description"], [4]),
    ]
    assert changed[0]["message"] == (
        "1 value in Name had invisible characters removed (zero-width space, word joiner, byte-order mark): line 5."
    )
    html = (reports / "report.html").read_text()
    assert "Values changed on reading" in html and "made line breaks: line 4." in html


def test_a_clean_file_says_nothing_was_changed(conn, importer, land):
    run = importer.import_file(conn, land("non_ascii_values.csv"))

    summary = json.loads((importer.folders.reports(run.id) / "summary.json").read_text())
    assert run.status == "succeeded" and summary["value_changes"] == []
    assert "Values changed on reading" not in (importer.folders.reports(run.id) / "report.html").read_text()


# --- the fix loop: any number of passes stores what the person typed --------------------------

PREFIXES = ["=", "+", "-", "@", "'", "''", "'=", "'-", "'@", "=-", ""]


def _typed_values(rng: random.Random, n: int) -> list[tuple[str, str]]:
    """(Name, Description) pairs that start the way a spreadsheet would read as a formula, or with `'`."""
    body = "ab1 +=-@'\""
    values = []
    for _ in range(n):
        name = rng.choice(PREFIXES) + "".join(rng.choice(body) for _ in range(rng.randint(1, 6)))
        description = rng.choice([*PREFIXES, "\t", "\t'"]) + "".join(rng.choice(body) for _ in range(rng.randint(0, 6)))
        values.append((name.rstrip() or "x", description))
    return values


@pytest.mark.parametrize("seed", range(3))
def test_three_passes_of_the_fix_loop_store_exactly_what_was_typed(seed, conn, importer, land, tmp_path):
    typed = _typed_values(random.Random(seed), 12)
    first = tmp_path / f"typed_{seed}.csv"
    with first.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["AccountReferenceID", "Name", "Description", "ContactEmail"])
        for n, (name, description) in enumerate(typed):
            writer.writerow(
                [f"L{seed}-{n}", name, description, "not-an-email" if n == 0 else f"l{seed}.{n}@example.com"]
            )

    run = importer.import_file(conn, land(first))
    for rerun in range(3):  # the report dropped back unchanged, three times: rejected each time
        assert run.status == "rejected", run.outcome
        report = importer.folders.rejected(run.id) / f"{Path(run.file_name).stem}.errors.csv"
        rows = list(csv.DictReader(report.open(encoding="utf-8-sig", newline="")))
        assert [(r["Name"], r["Description"]) for r in rows] == [(_escaped(a), _escaped(b)) for a, b in typed]
        again = tmp_path / f"pass{rerun}" / f"typed_{seed}.csv"
        again.parent.mkdir()
        again.write_bytes(report.read_bytes())
        run = importer.import_file(conn, land(again))
    assert run.status == "rejected"
    fixed = tmp_path / "fixed" / f"typed_{seed}.csv"
    fixed.parent.mkdir()
    report = importer.folders.rejected(run.id) / f"typed_{seed}.errors.csv"
    fixed.write_bytes(report.read_bytes().replace(b"not-an-email", f"l{seed}.0@example.com".encode()))

    run = importer.import_file(conn, land(fixed))

    assert run.status == "succeeded", run.outcome
    stored = {k: (n, d) for k, n, d in conn.execute("SELECT account_reference_id, name, description FROM customers")}
    assert stored == {f"L{seed}-{n}": (name, description or None) for n, (name, description) in enumerate(typed)}


def _escaped(value: str) -> str:
    """What errors.csv must show for `value`: one `'` before a value a spreadsheet would take for a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r", "'") else value


# --- generated files with random structural damage -------------------------------------------

HEADER = ["AccountReferenceID", "Name", "Description", "ContactEmail"]


FAULTS = ["open_quote", "inner_quote", "close_quote", "extra_comma", "lost_comma", "cut", "header", "blank_after"]


def _damage(line: str, kind: str, rng: random.Random) -> str:
    """One structural fault of the kinds exports and hand edits produce."""
    cells = line.split(",")
    at = rng.randrange(len(cells))
    if kind == "open_quote":
        cells[at] = '"' + cells[at]
    elif kind == "inner_quote":
        cells[at] = cells[at][:2] + '"' + cells[at][2:]
    elif kind == "close_quote":
        cells[at] += '"'
    elif kind == "extra_comma":
        cells[at] += ",x"
    elif kind == "lost_comma":
        return line.replace(",", " ", 1)
    elif kind == "cut":
        return line[: len(line) // 2]
    elif kind == "header":
        return ",".join(HEADER)
    else:
        return line + "\n"
    return ",".join(cells)


#: Characters that mean something inside text and are stored as written (issue 29): zero-width joiner
#: and non-joiner, direction marks, embeddings and isolates, the soft hyphen.
MEANINGFUL = [
    "\u200d",
    "\u200c",
    "\u200e",
    "\u200f",
    "\u202a",
    "\u202b",
    "\u202c",
    "\u2066",
    "\u2067",
    "\u2069",
    "\u00ad",
]


def damaged_file(path: Path, seed: int, rows: int = 40, separator: str = ",") -> list[str]:
    """A generated file with every kind of fault once, each on a line of its own, at random places; its
    names and notes hold characters of MEANINGFUL; `separator` is `,` or the `a, b, c` dialect's `, `."""
    rng = random.Random(seed)
    lines = [
        separator.join(
            [
                f"G{seed}-{n}",
                f"Name{rng.choice(MEANINGFUL)}{n}",
                f"Note {n}{rng.choice(MEANINGFUL)}",
                f"g{seed}.{n}@example.com",
            ]
        )
        for n in range(1, rows + 1)
    ]
    for index, kind in zip(rng.sample(range(rows), len(FAULTS)), rng.sample(FAULTS, len(FAULTS)), strict=True):
        lines[index] = _damage(lines[index], kind, rng)
    text = "\n".join([separator.join(HEADER), *lines]) + "\n"
    path.write_text(text, encoding="utf-8")
    return text.split("\n")[:-1]  # the physical lines, header first


@pytest.mark.parametrize("seed", range(8))
def test_every_line_of_a_damaged_file_is_imported_as_written_or_reported(seed, conn, importer, land, tmp_path):
    path = tmp_path / f"damaged_{seed}.csv"
    separator = ", " if seed % 2 else ","  # every other file in the `a, b, c` dialect
    physical = damaged_file(path, seed, separator=separator)
    data_lines = {n for n, text in enumerate(physical, start=1) if n > 1 and text.strip()}
    with CsvFile(path, load_contract()) as source:
        spans = {r.line: r.last_line for r in source.records()}

    run = importer.import_file(conn, land(path), SKIP)

    covered = [n for start, end in spans.items() for n in range(start, end + 1)]  # blank lines inside a quote too
    assert len(covered) == len(set(covered)) and data_lines <= set(covered) <= set(range(2, len(physical) + 1)), (
        "a line belongs to no record, or to two"
    )
    rows = {int(r["ImportLine"]): r["ImportStatus"] for r in report_rows(importer, run)}
    assert set(rows) == set(spans), "errors.csv leaves out a record"
    imported = dict(conn.execute("SELECT line, customer_key FROM customer_history WHERE run_id = %s", [run.id]))
    reported = {line for line, status in rows.items() if status == "error"}
    assert set(imported) | reported == set(spans) and not set(imported) & reported
    assert run.inserted + run.rows_rejected == len(spans) == run.rows_total
    stored = {
        r[0]: list(r)
        for r in conn.execute("SELECT account_reference_id, name, description, contact_email FROM customers")
    }
    for line, key in imported.items():
        assert spans[line] == line, f"line {line}: an imported record spans lines {line}-{spans[line]}"
        assert stored[key] == physical[line - 1].split(separator), f"line {line} was stored other than written"


def test_the_fixtures_are_what_their_names_say():
    assert (DATA / "nul_byte_past_64kb.csv").stat().st_size > 64 * 1024
    assert (DATA / "nul_byte_past_64kb.csv").read_bytes().index(b"\x00") > 64 * 1024
