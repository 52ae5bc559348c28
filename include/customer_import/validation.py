"""Validating a file in one streaming pass: bytes and header, then GX over chunks of rows.

The pass writes two files into the run's work folder: the staged rows (`staging.StagedWriter`:
every readable row, with its line number and whether it passed, ready for COPY) and the issues found. Memory
holds one chunk at a time, whatever the file's size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from customer_import.contract import CLEAR_MARKER, FieldSpec
from customer_import.csvfile import CsvFile, Record
from customer_import.expectations import RowValidator
from customer_import.issues import Issue, write_issues
from customer_import.staging import LINE, STAGED_FILE, StagedWriter

ISSUES_FILE = "issues-validation.jsonl"


@dataclass
class ValidationResult:
    rows: int = 0
    file_issues: list[Issue] = field(default_factory=list)
    rejected_lines: set[int] = field(default_factory=set)
    fields: list[FieldSpec] = field(default_factory=list)

    @property
    def file_rejected(self) -> bool:
        return bool(self.file_issues)


def check_file(file: CsvFile, work_dir: Path, suite: dict[str, Any], chunk_rows: int = 100_000,
                  progress: Callable[[int, float], None] = lambda rows, share: None) -> ValidationResult:
    """Check `file` against its contract; write `staged.csv` and the issues into `work_dir`.

    After each chunk, `progress(rows read, share of the file read)` is told how far it got.
    """
    result = ValidationResult()
    issues: list[Issue] = []
    with file as source:
        if not source.file_issues:
            result.fields = list(source.fields)
            validator = RowValidator(suite, source.fields)
            with StagedWriter(work_dir / STAGED_FILE, source.fields) as staged:
                for chunk in _chunks(source.records(), chunk_rows):
                    result.rows += len(chunk)
                    readable = [r for r in chunk if r.issue is None]
                    lines = [r.line for r in readable]
                    columns = source.columns([r.cells for r in readable])
                    chunk_issues = [r.issue for r in chunk if r.issue is not None]
                    chunk_issues += _check_rows(lines, columns, source.fields, validator)
                    bad = {issue.line for issue in chunk_issues}
                    _blank_nul_bytes(lines, columns, chunk_issues)
                    staged.write_rows(lines, [line not in bad for line in lines], columns)
                    result.rejected_lines |= bad
                    issues.extend(chunk_issues)
                    progress(result.rows, source.share_read)
        result.file_issues = list(source.file_issues)
    write_issues(work_dir / ISSUES_FILE, [*result.file_issues, *issues])
    return result


def _chunks(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    while chunk := list(islice(records, size)):
        yield chunk


def _blank_nul_bytes(lines: list[int], columns: list[list[str]], issues: list[Issue]) -> None:
    """A NUL byte is a row issue (a control character), but PostgreSQL cannot hold one even in the
    staging table: the rejected value is staged without it, and errors.csv still shows the file's."""
    rows = {issue.line for issue in issues if issue.code == "control_character"}
    if rows:
        index = {line: i for i, line in enumerate(lines)}
        for column in columns:
            for line in rows & index.keys():
                column[index[line]] = column[index[line]].replace("\x00", "")


def _check_rows(lines: list[int], columns: list[list[str]], fields: list[FieldSpec],
                validator: RowValidator) -> list[Issue]:
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
