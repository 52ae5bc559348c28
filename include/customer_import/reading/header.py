"""Which contract fields a file's header names: its columns matched to the contract's headers (or
a source's export names), and the issues of a header (blank, twice, unknown, no key) in words that
say which column, as a spreadsheet user finds it."""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING

from customer_import.contract.fields import FieldSpec, normalise_header
from customer_import.contract.issues import Issue

if TYPE_CHECKING:
    from customer_import.reading.csvfile import CsvFile

#: Columns the error report adds; a fixed report can be imported as it is, they are ignored.
REPORT_COLUMNS = ("ImportLine", "ImportStatus", "ImportIssues")
REPORT_NAMES = {normalise_header(c) for c in REPORT_COLUMNS}


def column_label(index: int) -> str:
    """`column 4 (D)`, as a spreadsheet user finds it; `index` counts from 0."""
    letters, n = "", index + 1
    while n:
        n, rem = divmod(n - 1, 26)
        letters = chr(65 + rem) + letters
    return f"column {index + 1} ({letters})"


def closest_header(name: str, headers: list[str]) -> str | None:
    """The known header `name` most likely misspells: compared whole and word by word
    (`Emial` is close to the `Email` of `ContactEmail`)."""
    typed, best, score = normalise_header(name), None, 0.0
    for header in headers:
        for candidate in (normalise_header(header), *(w.lower() for w in re.findall(r"[A-Z][a-z]+", header))):
            ratio = difflib.SequenceMatcher(None, typed, candidate).ratio()
            if ratio > score:
                best, score = header, ratio
    return best if score >= 0.75 else None


def map_header(file: CsvFile, header: list[str]) -> list[Issue] | None:
    """Which contract fields `header` names, set on `file` (its fields, their header indexes, labels,
    a source's defaults, whether it is one of our reports); the issues of the header. None when it
    names no field the contract knows: it is not a header (`CsvFile` says what it may be)."""
    issues: list[Issue] = []
    seen: dict[str, int] = {}  # field column: the header index that gives it
    known = file.source.headers(file.contract)
    mapped = {n.casefold() for n in file.source.columns}
    unknown: list[tuple[int, str]] = []
    for index, name in enumerate(header):
        norm = normalise_header(name)
        spec = known.get(norm)
        if not norm:
            issues.append(
                Issue(
                    None,
                    None,
                    "blank_header",
                    f"The header of {column_label(index)} is blank: name the column or delete it.",
                )
            )
        elif norm in REPORT_NAMES:
            file.is_report = True
        elif spec is not None and spec.column in seen:
            first = seen[spec.column]
            issues.append(_twice(header[first], first, name, index, spec))
        elif spec is not None:
            seen[spec.column] = index
            file.fields.append(spec)
            file._field_indexes.append(index)
            file.labels[spec.column] = f"{name} (→ {spec.header})" if name.casefold() in mapped else spec.header
        elif not file.source.ignores(name):
            unknown.append((index, name))
    if not seen and not file.is_report:
        return None
    names = [*file.contract.headers, *file.source.columns]
    for index, name in unknown:
        guess = closest_header(name, names)
        hint = f"did you mean `{guess}`?" if guess else "remove it or rename it to one of " + ", ".join(names) + "."
        if file.source.columns:
            hint += f" (Or map it in sources.yaml, source `{file.source.name}`: under columns, or ignore.)"
        issues.append(Issue(None, name, "unknown_column", f"Unknown column `{name}` in {column_label(index)}: {hint}"))
    if file.contract.key.column not in seen:
        key = file.contract.key.header
        names = [
            key,
            *(n for n, target in file.source.columns.items() if normalise_header(target) == normalise_header(key)),
        ]
        issues.append(
            Issue(
                None,
                None,
                "missing_key",
                f"The header has no {' or '.join(names)} column: every file needs"
                " it to match rows to customers. Add it as a column.",
            )
        )
    for spec, value in file.source.defaults_for(file.contract):
        if spec.column not in seen:
            file.fields.append(spec)
            file._field_indexes.append(None)
            file.labels[spec.column] = f"{spec.header} (default of source {file.source.name})"
            file._defaults[spec.column] = value
    return issues


def _twice(first_name: str, first: int, name: str, index: int, spec: FieldSpec) -> Issue:
    if normalise_header(first_name) == normalise_header(name):
        message = (
            f"The column `{name}` appears twice in the header ({column_label(first)} and {column_label(index)}):"
            " keep one of them."
        )
    else:
        message = (
            f"The columns `{first_name}` ({column_label(first)}) and `{name}` ({column_label(index)}) are both"
            f" {spec.header}: keep one of them, or list one under ignore in sources.yaml."
        )
    return Issue(None, name, "duplicate_header", message)
