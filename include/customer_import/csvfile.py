"""Reading a customer CSV file: the checks GX cannot express on a DataFrame.

Bytes (encoding, binary content), dialect (separator, quotes) and the header are checked
here, in plain Python, and reported as the same `Issue` values the GX rules produce. The
records stream out one at a time with the physical line on which each one starts, so a
file of any size is read in constant memory.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from customer_import.contract import Contract, FieldSpec, normalise_header
from customer_import.issues import Issue

#: Columns the error report adds; a fixed report can be imported as it is, they are ignored.
REPORT_COLUMNS = ("ImportLine", "ImportStatus", "ImportIssues")
#: What a spreadsheet would read as a formula; the report prefixes such cells with `'`.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_REPORT_NAMES = {normalise_header(c) for c in REPORT_COLUMNS}
_SNIFF_BYTES = 64 * 1024
_SEPARATORS = {";": "semicolon (;)", "\t": "tab", "|": "pipe (|)"}
_RE_SAVE = "In Excel use File > Save As > 'CSV UTF-8 (Comma delimited)'."


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


@dataclass(frozen=True)
class Record:
    """One record of the file: its first physical line and its cells as written."""

    line: int
    cells: list[str]
    issue: Issue | None = None  # a structural problem: the cells cannot be trusted


class CsvFile:
    """A customer file opened for reading.

    After `open()`, `file_issues` lists every problem with the file as a whole; when there is
    none, `fields` are the contract fields the header names (in file order) and `records()`
    streams the rows.
    """

    def __init__(self, path: Path, contract: Contract) -> None:
        self.path = Path(path)
        self.contract = contract
        self.file_issues: list[Issue] = []
        self.header: list[str] = []
        self.fields: list[FieldSpec] = []
        self._field_indexes: list[int] = []
        self.is_report = False  # the file is one of our errors.csv, fixed and dropped again
        self._text: io.TextIOWrapper | None = None
        self._reader = None
        self._header_end = 0

    # --- opening -------------------------------------------------------------------

    def open(self) -> CsvFile:
        issue = self._check_bytes()
        if issue:
            self.file_issues.append(issue)
            return self
        raw = self.path.open("rb")
        self._text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline="")
        self._reader = csv.reader(self._text, strict=True)
        try:
            header = next(self._reader, None)
        except UnicodeDecodeError:
            self.file_issues.append(self._encoding_issue())
            return self
        except csv.Error:
            header = None
        self._header_end = self._reader.line_num
        if header is None or not any(cell.strip() for cell in header):
            self.file_issues.append(
                Issue(None, None, "empty_file", "The file has no header row: " + self._template_hint())
            )
            return self
        self.header = header
        self.file_issues.extend(self._check_header(header))
        return self

    def close(self) -> None:
        if self._text is not None:
            self._text.close()

    def __enter__(self) -> CsvFile:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_bytes(self) -> Issue | None:
        with self.path.open("rb") as raw:
            head = raw.read(_SNIFF_BYTES)
        if head.startswith(b"PK\x03\x04"):
            return Issue(None, None, "binary_file",
                         "The file is an Excel workbook (.xlsx) with a .csv name, not a CSV file. "
                         + _RE_SAVE)
        if head.startswith(b"\xd0\xcf\x11\xe0"):
            return Issue(None, None, "binary_file",
                         "The file is an old Excel workbook (.xls) with a .csv name, not a CSV file. "
                         + _RE_SAVE)
        if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
            return Issue(None, None, "wrong_encoding", f"The file is encoded as UTF-32, not UTF-8. {_RE_SAVE}")
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or _looks_utf16(head):
            return Issue(None, None, "wrong_encoding", f"The file is encoded as UTF-16, not UTF-8. {_RE_SAVE}")
        if b"\x00" in head:
            offset = head.index(b"\x00")
            return Issue(None, None, "binary_file",
                         f"The file contains binary data (a NUL byte at byte offset {offset}), so it is"
                         " not a text CSV file. Export the data again as CSV UTF-8.")
        if not head.removeprefix(codecs.BOM_UTF8).strip():
            return Issue(None, None, "empty_file", "The file is empty: " + self._template_hint())
        return None

    def _check_header(self, header: list[str]) -> list[Issue]:
        issues: list[Issue] = []
        seen: dict[str, int] = {}
        known = {normalise_header(h): h for h in self.contract.headers}
        unknown: list[tuple[int, str]] = []
        for index, name in enumerate(header):
            norm = normalise_header(name)
            if not norm:
                issues.append(Issue(None, None, "blank_header",
                                    f"The header of {column_label(index)} is blank: name the column"
                                    " or delete it."))
            elif norm in _REPORT_NAMES:
                self.is_report = True
            elif norm in seen:
                issues.append(Issue(None, name, "duplicate_header",
                                    f"The column `{name}` appears twice in the header"
                                    f" ({column_label(seen[norm])} and {column_label(index)}):"
                                    " keep one of them."))
            elif norm in known:
                seen[norm] = index
                self.fields.append(self.contract.field_for(name))
                self._field_indexes.append(index)
            else:
                unknown.append((index, name))
        if not seen and not self.is_report:
            preview = ",".join(header)[:80]
            separator = self._detected_separator(header)
            if separator:
                return [Issue(None, None, "wrong_separator",
                              f"The columns are separated by {separator}, not by commas. {_RE_SAVE}"
                              " Or replace the separator with a comma.")]
            return [Issue(None, None, "no_header",
                          f"The first line (`{preview}`) is not a header row: "
                          + self._template_hint())]
        for index, name in unknown:
            guess = closest_header(name, self.contract.headers)
            hint = (f"did you mean `{guess}`?" if guess
                    else "remove it or rename it to one of " + ", ".join(self.contract.headers) + ".")
            issues.append(Issue(None, name, "unknown_column",
                                f"Unknown column `{name}` in {column_label(index)}: {hint}"))
        if normalise_header(self.contract.key.header) not in seen:
            issues.append(Issue(None, None, "missing_key",
                                f"The header has no {self.contract.key.header} column: every file needs"
                                " it to match rows to customers. Add it as a column."))
        return issues

    def _detected_separator(self, header: list[str]) -> str | None:
        line = ",".join(header)
        counts = {sep: line.count(sep) for sep in _SEPARATORS}
        best = max(counts, key=counts.get)
        return _SEPARATORS[best] if counts[best] else None

    def _template_hint(self) -> str:
        return ("the first line must be the header row of the template (`make template`): "
                + ",".join(self.contract.headers) + ".")

    def _encoding_issue(self) -> Issue:
        """Find the first byte that is not UTF-8, by line, and guess the file's real encoding."""
        offset = 0
        with self.path.open("rb") as raw:
            line_no = 0
            for chunk in raw:
                for line in chunk.splitlines(keepends=True):
                    line_no += 1
                    try:
                        line.decode("utf-8")
                    except UnicodeDecodeError as err:
                        return Issue(line_no, None, "not_utf8", _not_utf8_message(line, err, offset, line_no))
                    offset += len(line)
        return Issue(None, None, "not_utf8", f"The file is not valid UTF-8. {_RE_SAVE}")

    # --- reading ---------------------------------------------------------------------

    @property
    def data_columns(self) -> list[int]:
        """Indexes of the header's columns other than the report's own."""
        return [i for i, name in enumerate(self.header) if normalise_header(name) not in _REPORT_NAMES]

    def records(self) -> Iterator[Record]:
        """Every non-blank record after the header, with the line on which it starts.

        A record whose structure is broken (field count, quotes) carries an `issue`. An
        encoding error stops the stream and is added to `file_issues`.
        """
        assert self._reader is not None and self.header, "open() a file with a header first"
        reader, width, end = self._reader, len(self.header), self._header_end
        data_columns = self.data_columns

        def blank(cells: list[str]) -> bool:  # joined first: one C-level strip per row, not per cell
            if self.is_report:
                cells = [cells[i] for i in data_columns if i < len(cells)]
            return not "".join(cells).strip()

        while True:
            start = end + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError:
                self.file_issues.append(self._encoding_issue())
                return
            except csv.Error as err:
                yield Record(start, [], _quote_issue(start, str(err)))
                if "unexpected end of data" in str(err) or "field larger" in str(err):
                    return
                end = reader.line_num
                continue
            end = reader.line_num
            if blank(cells):
                continue  # blank lines and rows of empty cells (left by spreadsheets) are skipped
            if len(cells) != width:
                yield Record(start, cells, _width_issue(start, len(cells), width))
            else:
                yield Record(start, cells)

    def columns(self, rows: list[list[str]]) -> list[list[str]]:
        """The cells of each contract field (in `fields` order) across `rows` of full width: a blank
        or whitespace-only cell is '', the report's escaping is undone. Column-wise: one pass per
        field rather than a function call per row."""
        by_column = list(zip(*rows, strict=True)) if rows else [()] * len(self.header)
        columns = []
        for index in self._field_indexes:
            cells = by_column[index]
            if self.is_report:
                cells = [v[1:] if v[:1] == "'" and v[1:2] and v[1] in FORMULA_PREFIXES else v for v in cells]
            columns.append([v if not v[:1].isspace() or v.strip() else "" for v in cells])  # strip what may be blank
        return columns


def _looks_utf16(head: bytes) -> bool:
    """UTF-16 without a BOM: ASCII text with a NUL byte beside every character."""
    sample = head[:200]
    return len(sample) >= 8 and (sample[1::2].count(0) > len(sample) // 3 or sample[0::2].count(0) > len(sample) // 3)


def _not_utf8_message(line: bytes, err: UnicodeDecodeError, offset: int, line_no: int) -> str:
    bad, around = line[err.start], line[max(0, err.start - 20): err.start + 20]
    try:  # Windows-1252 leaves five bytes undefined; Latin-1 decodes anything
        encoding, label, snippet = "WINDOWS-1252", "Windows-1252 (Western European)", around.decode("cp1252").strip()
    except UnicodeDecodeError:
        encoding, label, snippet = "ISO-8859-1", "ISO-8859-1 (Latin-1)", around.decode("latin-1").strip()
    return (f"Line {line_no} is not valid UTF-8: byte 0x{bad:02X} at byte offset {offset + err.start}"
            f" (byte {err.start + 1} of the line, near `{snippet}`). The file looks like {label}."
            f" {_RE_SAVE} Or convert it: iconv -f {encoding} -t UTF-8 in.csv > out.csv")


def _quote_issue(start: int, error: str) -> Issue:
    if "unexpected end of data" in error or "field larger" in error:
        return Issue(start, None, "unterminated_quote",
                     f"A quoted value opened on line {start} is never closed: add the closing double"
                     " quote (\") or remove the opening one.")
    return Issue(start, None, "stray_quote",
                 f"Line {start} has a stray double quote: a value wrapped in double quotes must double"
                 " every quote inside it, e.g. \"The \"\"Best\"\" Shop\".")


def _width_issue(line: int, found: int, expected: int) -> Issue:
    if found > expected:
        hint = "a value that contains a comma must be wrapped in double quotes, e.g. \"Acme, Inc.\""
    else:
        hint = "a separator is missing; every row needs a cell for every column, even an empty one"
    return Issue(line, None, "wrong_field_count",
                 f"Line {line} has {found} values but the header has {expected} columns: {hint}.")
