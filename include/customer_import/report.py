"""The reports of one run: errors.csv (fix it in Excel, import it again), summary.json, report.html."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from customer_import.contract.fields import Contract
from customer_import.contract.issues import Issue, plain_quotes
from customer_import.database.merge import Change
from customer_import.database.runs import ImportRun
from customer_import.reading import columnar
from customer_import.reading.cleaning import ValueChanges
from customer_import.reading.csvfile import ESCAPED_PREFIXES, CsvFile, unescaped
from customer_import.reading.header import REPORT_COLUMNS

ERRORS_CSV = "errors.csv"
CHANGES_CSV = "changes.csv"
SUMMARY_JSON = "summary.json"
REPORT_HTML = "report.html"
ROLLBACK_JSON = "rollback.json"
DEACTIVATIONS_CSV = "deactivations.csv"
_HTML_ISSUES = 500
_FILE_ISSUES_IN_CSV = 20  # on errors.csv's first row; summary.json lists them all
HTML_CHANGES = 200
#: A cell `_safe` escapes, as an RE2 class for Arrow (ESCAPED_PREFIXES with tab and CR spelled out).
_FORMULA_START = "[" + "".join({"\t": "\\t", "\r": "\\r", "-": "\\-"}.get(c, c) for c in ESCAPED_PREFIXES) + "]"

_templates = Environment(loader=PackageLoader("customer_import"), autoescape=select_autoescape())


def codes(text: object) -> Markup:
    """A message as HTML: escaped first, then what it quotes in backquotes as <code> (a report's and the
    page's Jinja filter `codes`)."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


_templates.filters["codes"] = codes


def write_reports(
    run: ImportRun,
    source: CsvFile,
    issues: Iterable[Issue],
    report_dir: Path,
    issues_in_summary: int,
    changes: Iterable[Change] = (),
    value_changes: ValueChanges | None = None,
    lifecycle: Iterable[Change] = (),
    fixes: list[dict[str, Any]] | None = None,
) -> None:
    """Write the reports of `run` into `report_dir`; `fixes`, the cells changed in the browser when
    the file was fixed there (`drafts.edits`); `changes` as `merge.preview` yields them;
    `value_changes`, what reading changed in the values (it is said, never done silently);
    `lifecycle`, the customers a merged run deactivated or reactivated (deactivations.csv).

    A dry run's changes are its preview: all go to changes.csv. A real run's complete record is
    the customer_history view; the first ones are shown on the HTML page.
    """
    report_dir.mkdir(parents=True, exist_ok=True)
    file_issues: list[Issue] = []
    by_line: dict[int, list[Issue]] = defaultdict(list)
    for issue in issues:
        (file_issues if issue.line is None or issue.code == "not_utf8" else by_line[issue.line]).append(issue)
    write_errors_csv(run, source, file_issues, by_line, report_dir / ERRORS_CSV)
    everything = sorted(
        [*file_issues, *(i for line in by_line.values() for i in line)], key=lambda i: (i.line or 0, i.column or "")
    )
    counts = Counter(i.code for i in everything)
    listed, per_code = [], Counter[str]()
    for issue in everything:
        per_code[issue.code] += 1
        if per_code[issue.code] <= issues_in_summary:
            listed.append(issue)
    changed = (value_changes or ValueChanges()).to_list()
    summary = {
        "import_run": run.to_dict(),
        "value_changes": changed,
        "issue_counts": dict(counts),
        "issues": [i.to_dict() for i in listed],
        "issues_listed": f"{len(listed)} of {len(everything)}"
        + (
            ""
            if len(listed) == len(everything)
            else f" (at most {issues_in_summary} of each code; errors.csv marks every row)"
        ),
    }
    if run.fixed_from is not None:
        summary["fixed_in_the_browser"] = {
            "from_import_run": run.fixed_from,
            "by": run.fixed_by,
            "cells_changed": [
                {k: e[k] for k in ("line", "fixed_line", "column", "before", "after", "edited_by")} for e in fixes or []
            ],
        }
    (report_dir / SUMMARY_JSON).write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    first_changes = write_changes_csv(changes, report_dir / CHANGES_CSV if run.dry_run else None, source.contract)
    lifecycle_csv = None
    if run.merged_at is not None and (run.deactivated or run.reactivated):
        write_changes_csv(lifecycle, report_dir / DEACTIVATIONS_CSV, source.contract)
        lifecycle_csv = DEACTIVATIONS_CSV
    html = _templates.get_template("report.html").render(
        run=run,
        counts=counts,
        issues=everything[:_HTML_ISSUES],
        total=len(everything),
        errors_csv=ERRORS_CSV,
        changes=first_changes,
        changes_csv=CHANGES_CSV,
        lifecycle_csv=lifecycle_csv,
        value_changes=[c["message"] for c in changed],
        fixes=fixes or [],
    )
    (report_dir / REPORT_HTML).write_text(html, encoding="utf-8")


def write_errors_csv(
    run: ImportRun, source: CsvFile, file_issues: list[Issue], by_line: dict[int, list[Issue]], target: Path
) -> None:
    """Every row of the file, in its column order, after ImportLine, ImportStatus, ImportIssues.

    UTF-8 with a BOM (Excel reads it right); cells a spreadsheet would take for a formula get a
    leading `'`, which the importer removes again when the fixed report is dropped back in.
    """
    merged = run.merged_at is not None
    if not file_issues and not by_line:  # a clean file: its rows written by Arrow, when it reads it
        try:
            _write_clean_errors_csv(source, target, "imported" if merged else "not imported")
            return
        except columnar.NeedsPreciseReader:
            pass
    with target.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out)
        with source as rows:
            keep = rows.data_columns
            writer.writerow([*REPORT_COLUMNS, *(_safe(rows.header[i]) for i in keep)])
            if file_issues:
                more = len(file_issues) - _FILE_ISSUES_IN_CSV
                listed = _joined(file_issues[:_FILE_ISSUES_IN_CSV])
                writer.writerow(["", "error", listed + (f" | and {more} more (see summary.json)" if more > 0 else "")])
            if rows.file_issues and not rows.header:
                return
            for record in rows.records():
                problems = by_line.get(record.line, [])
                if record.issue and record.issue not in problems:
                    problems = [record.issue, *problems]
                status = "error" if problems else ("imported" if merged else "not imported")
                cells = [record.cells[i] if i < len(record.cells) else "" for i in keep]
                if len(record.cells) > len(rows.header):
                    cells += record.cells[len(rows.header) :]
                if rows.is_report:  # escaped once already: the values as written, escaped once again
                    cells = [unescaped(c) for c in cells]
                writer.writerow([record.line, status, _joined(problems), *(_safe(c) for c in cells)])


def _write_clean_errors_csv(source: CsvFile, target: Path, status: str) -> None:
    with target.open("w", encoding="utf-8-sig", newline="") as out, source as rows:
        if not columnar.eligible(rows):
            raise columnar.NeedsPreciseReader("not a file the fast path reads")
        csv.writer(out).writerow([*REPORT_COLUMNS, *(_safe(rows.header[i]) for i in rows.data_columns)])
        out.flush()
        columnar.write_report_rows(rows, out.buffer, status, _FORMULA_START)


def write_changes_csv(changes: Iterable[Change], target: Path | None, contract: Contract) -> list[list[Any]]:
    """A row per new customer, and a row per changed field of an updated one (in contract order,
    with its value before and after), into `target` if given. Returns the first rows."""
    first: list[list[Any]] = []
    with target.open("w", encoding="utf-8-sig", newline="") if target else nullcontext() as out:
        writer = csv.writer(out) if out else None
        if writer:
            writer.writerow(["ImportLine", contract.key.header, "Action", "Field", "Before", "After"])
        for row in _change_rows(changes, contract):  # read to the end: see merge.preview
            if writer:
                writer.writerow([_safe(str(cell)) for cell in row])
            if len(first) < HTML_CHANGES:
                first.append(row)
    return first


def _change_rows(changes: Iterable[Change], contract: Contract) -> Iterator[list[Any]]:
    """A row per changed field; one row without a field for a new, deactivated (no line: it is not
    in the file) or reactivated customer whose fields did not change."""
    for line, key, action, before, after in changes:
        fields = [
            [line, key, action, spec.header, _text(before.get(spec.column)), _text(after[spec.column])]
            for spec in contract.fields
            if before is not None
            and after is not None
            and spec.column in after
            and before.get(spec.column) != after[spec.column]
        ]
        yield from fields or ([] if action == "update" else [["" if line is None else line, key, action, "", "", ""]])


def _text(value: object) -> str:
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _joined(issues: list[Issue]) -> str:
    return _safe(" | ".join(plain_quotes(i.message) for i in issues))


def _safe(cell: str) -> str:
    """Neutralise formula injection: a cell starting like a formula gets a leading `'` (and so does
    one starting with `'`, so that the importer's removing one `'` gives every value back)."""
    return "'" + cell if cell.startswith(ESCAPED_PREFIXES) else cell
