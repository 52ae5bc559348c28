"""Validating a file in one streaming pass: bytes and header, then GX over chunks of rows.

The pass writes two files into the run's work folder: the staged rows (`staging.StagedWriter`:
every readable row, with its line number and whether it passed, ready for COPY) and the issues found. Memory
holds one chunk at a time, whatever the file's size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from customer_import.contract.fields import FieldSpec
from customer_import.contract.issues import Issue, write_issues
from customer_import.contract.rules import CLEAR_MARKER
from customer_import.database.staging import LINE, STAGED_FILE, StagedWriter
from customer_import.reading import columnar
from customer_import.reading.cleaning import VALUE_CHANGES_FILE, ValueChanges
from customer_import.reading.csvfile import CsvFile
from customer_import.reading.expectations import RowValidator
from customer_import.reading.records import Record

log = logging.getLogger(__name__)

ISSUES_FILE = "issues-validation.jsonl"


@dataclass
class ValidationResult:
    rows: int = 0
    file_issues: list[Issue] = field(default_factory=list)
    rejected_lines: set[int] = field(default_factory=set)
    fields: list[FieldSpec] = field(default_factory=list)
    value_changes: ValueChanges = field(default_factory=ValueChanges)

    @property
    def file_rejected(self) -> bool:
        return bool(self.file_issues)


def check_file(
    file: CsvFile,
    work_dir: Path,
    suite: dict[str, Any],
    chunk_rows: int = 100_000,
    progress: Callable[[int, float], None] = lambda rows, share: None,
    only: Collection[str] | None = None,
) -> ValidationResult:
    """Check `file` against its contract; write the staged rows and the issues into `work_dir`.

    A structurally clean file is read in columns (`columnar`); one with a structural problem, or
    that the fast path does not take, by the precise reader. After each chunk, `progress(rows read,
    share of the file read)` is told how far it got. `only` names the contract columns whose GX
    rules run (`RowValidator`); all of them by default.
    """
    result = ValidationResult()
    issues: list[Issue] = []
    with file as source:
        if not source.file_issues:
            result.fields = list(source.fields)
            validator = RowValidator(suite, source.fields, source.labels, only)
            fast = columnar.eligible(source)
            if fast:
                try:
                    with StagedWriter(work_dir / STAGED_FILE, source.fields) as staged:
                        result.rows, issues = columnar.check_columns(source, staged, validator, chunk_rows, progress)
                except columnar.NeedsPreciseReader as reason:
                    log.info("Reading the file the precise way (%s).", reason)
                    fast = False
                    source.value_changes = ValueChanges()  # counted again, by the precise reader
            if not fast:
                result.rows, issues = _check_records(source, work_dir, validator, chunk_rows, progress)
            result.rejected_lines = {issue.line for issue in issues if issue.line is not None}
        result.file_issues = list(source.file_issues)
        result.value_changes = source.value_changes
    write_issues(work_dir / ISSUES_FILE, [*result.file_issues, *issues])
    result.value_changes.write(work_dir / VALUE_CHANGES_FILE)
    for sentence in result.value_changes.sentences():
        log.info("Changed on reading: %s", sentence)
    return result


def _check_records(
    source: CsvFile, work_dir: Path, validator: RowValidator, chunk_rows: int, progress: Callable[[int, float], None]
) -> tuple[int, list[Issue]]:
    """The precise path: records one by one (with their structural issues), GX per chunk."""
    rows, issues = 0, []
    with StagedWriter(work_dir / STAGED_FILE, source.fields) as staged:
        for chunk in _chunks(source.records(), chunk_rows):
            rows += len(chunk)
            readable = [r for r in chunk if r.issue is None]
            lines = [r.line for r in readable]
            columns = source.columns([r.cells for r in readable], lines)
            chunk_issues = [r.issue for r in chunk if r.issue is not None]
            unreadable = source.read_formats(lines, columns)
            told = {(issue.line, issue.column) for issue in unreadable}  # GX would say it again, less well
            chunk_issues += unreadable
            chunk_issues += [
                i for i in _check_rows(lines, columns, source.fields, validator) if (i.line, i.column) not in told
            ]
            chunk_issues.sort(key=lambda issue: issue.line or 0)  # in file order, whatever the chunks
            bad = {issue.line for issue in chunk_issues}
            _blank_nul_bytes(lines, columns, chunk_issues)
            staged.write_rows(lines, [line not in bad for line in lines], columns)
            issues.extend(chunk_issues)
            progress(rows, 1.0 if len(chunk) < chunk_rows else source.share_read)  # a short chunk is the last
    return rows, issues


def _chunks(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    while chunk := list(islice(records, size)):
        yield chunk


def _blank_nul_bytes(lines: list[int], columns: list[list[str]], issues: list[Issue]) -> None:
    """A NUL byte is a row issue (a control character), but PostgreSQL cannot hold one even in the
    staging table: the rejected value is staged without it, and errors.csv still shows the file's."""
    rows = {issue.line for issue in issues if issue.code == "control_character" and issue.line is not None}
    if rows:
        index = {line: i for i, line in enumerate(lines)}
        for column in columns:
            for line in rows & index.keys():
                column[index[line]] = column[index[line]].replace("\x00", "")


def _check_rows(
    lines: list[int], columns: list[list[str]], fields: list[FieldSpec], validator: RowValidator
) -> list[Issue]:
    """GX over a chunk of rows: their lines, and the values of each field."""
    import pandas as pd

    if not lines:
        return []
    frame = pd.DataFrame(
        {LINE: lines, **{spec.column: _for_gx(spec, col) for spec, col in zip(fields, columns, strict=True)}}
    )
    return validator.validate(frame)


def _for_gx(spec: FieldSpec, values: Iterable[str]) -> list[str | None]:
    """Blank cells become nulls (GX skips them in format rules). `#NULL` clears an optional
    field, so it is a null to GX too; on a required field it stays, for the rule that forbids it."""
    if spec.required == "never":
        return [v if v and v != CLEAR_MARKER else None for v in values]
    return [v or None for v in values]
