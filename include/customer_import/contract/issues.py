"""Problems found in a file, as values a report can show."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True, order=True)
class Issue:
    """One problem, written for the person fixing the file.

    `line` is the physical line in the file where the record starts (1 is the header);
    None for a problem with the file as a whole. `column` is the CSV header it concerns.
    `public` is the message without what it quotes of personal data (a personal field's value, a
    line of the file), for what travels beyond the Imports page and the reports: task logs, DAG
    run notes, alerts. None when the message quotes none.
    """

    line: int | None
    column: str | None
    code: str
    message: str
    public: str | None = None

    @property
    def public_text(self) -> str:
        """`message` as a task log, note or alert may say it."""
        return self.message if self.public is None else self.public

    def to_dict(self) -> dict[str, object]:
        """As the reports list it (the message, with what it quotes)."""
        return {k: v for k, v in asdict(self).items() if k != "public"}

    def __str__(self) -> str:
        where = "file" if self.line is None else f"line {self.line}"
        if self.column:
            where += f", column {self.column}"
        return f"{where}: {self.message}"

    @property
    def public_line(self) -> str:
        """`line 3, ContactEmail: the value (12 characters) is not a valid email address...`: where, and
        the public text."""
        where = "file" if self.line is None else f"line {self.line}"
        return f"{where}{f', {self.column}' if self.column else ''}: {self.public_text}"


_CODE = re.compile(r"`([^`]+)`")


def plain_quotes(message: str) -> str:
    """A message as a spreadsheet cell or a report's plain text shows it: what it quotes between
    quotation marks (“not-an-email”) rather than a Markdown-like `not-an-email`."""
    return _CODE.sub("\u201c\\1\u201d", message)


#: Around text a message quotes from the file (a line, part of one): `quoting`, `quoted_issue`.
_OPEN, _CLOSE = "\x02", "\x03"
_QUOTED = re.compile(f"{_OPEN}[^{_CLOSE}]*{_CLOSE}")


def quoting(text: str) -> str:
    """`text` of the file, marked as quoted in a message that `quoted_issue` makes."""
    return _OPEN + text.replace(_OPEN, "").replace(_CLOSE, "") + _CLOSE


def quoted_issue(line: int | None, column: str | None, code: str, marked: str) -> Issue:
    """An issue whose message quotes the file (`quoting`): the page shows the quotes in backticks,
    the public text leaves them out (a line of a customer file holds names, emails, phones)."""
    message = marked.replace(_OPEN, "`").replace(_CLOSE, "`")
    return Issue(line, column, code, message, _QUOTED.sub("…", marked) if _OPEN in marked else None)


def hide_value(message: str, value: str, header: str) -> str:
    """`message` with its quote of a personal field's `value` replaced by the value's length (the
    header before it too: a log line names the column before the message)."""
    length = f"the value ({len(value):,} character{'' if len(value) == 1 else 's'})"
    return message.replace(f"{header} `{value}`", length).replace(f"`{value}`", length)


def write_issues(path: Path, issues: Iterable[Issue]) -> int:
    """Write issues as JSON lines (replacing the file); return how many were written."""
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for issue in issues:
            written = asdict(issue)
            if issue.public is None:
                del written["public"]
            out.write(json.dumps(written, ensure_ascii=False) + "\n")
            count += 1
    return count


def read_issues(*paths: Path) -> Iterator[Issue]:
    for path in paths:
        if path.exists():
            with path.open(encoding="utf-8") as lines:
                for line in lines:
                    yield Issue(**json.loads(line))
