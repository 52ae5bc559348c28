"""Problems found in a file, as values a report can show."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True, order=True)
class Issue:
    """One problem, written for the person fixing the file.

    `line` is the physical line in the file where the record starts (1 is the header);
    None for a problem with the file as a whole. `column` is the CSV header it concerns.
    """

    line: int | None
    column: str | None
    code: str
    message: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def __str__(self) -> str:
        where = "file" if self.line is None else f"line {self.line}"
        if self.column:
            where += f", column {self.column}"
        return f"{where}: {self.message}"


def write_issues(path: Path, issues: Iterable[Issue]) -> int:
    """Write issues as JSON lines (replacing the file); return how many were written."""
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for issue in issues:
            out.write(json.dumps(issue.to_dict(), ensure_ascii=False) + "\n")
            count += 1
    return count


def read_issues(*paths: Path) -> Iterator[Issue]:
    for path in paths:
        if path.exists():
            with path.open(encoding="utf-8") as lines:
                for line in lines:
                    yield Issue(**json.loads(line))
