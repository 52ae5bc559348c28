"""Reading a customer CSV file: the checks GX cannot express on a DataFrame.

Bytes (encoding, binary content), dialect (separator, quotes) and the header are checked here, in
plain Python, and reported as the same `Issue` values the GX rules produce; which fields the header
names is `header`'s, and the records are `records`' (they stream out one at a time with the
physical lines they span, so a file of any size is read in constant memory). `columns()` turns the
cells of a chunk of records into the fields' values.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path
from typing import Any, BinaryIO

from customer_import.contract.fields import Contract, FieldSpec
from customer_import.contract.issues import Issue, hide_value, quoted_issue, quoting
from customer_import.contract.rules import CLEAR_MARKER, INVISIBLE, TRIM
from customer_import.reading import charsets
from customer_import.reading.charsets import RE_SAVE, SNIFF_BYTES
from customer_import.reading.cleaning import ValueChanges, translation
from customer_import.reading.header import map_header
from customer_import.reading.records import LineTooLong, RecordReader
from customer_import.sources.formats import UnreadableValue
from customer_import.sources.profiles import Source
from customer_import.storage.regular import NotRegularFile, open_regular

#: What a spreadsheet would read as a formula; the report prefixes such cells with `'`, and
#: cells that start with `'` themselves, so that removing one `'` always gives the value back.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
ESCAPED_PREFIXES = (*FORMULA_PREFIXES, "'")
#: The most characters one value may hold before the file is refused as not a customer file;
#: a physical line may hold four times as many.
MAX_FIELD_CHARS = 1 << 20
_SEPARATORS = {";": "semicolon (;)", "\t": "tab", "|": "pipe (|)"}
_SPACED_QUOTED_HEADER = re.compile(r'^\s*"[^"]*"(?:\s*,\s+"[^"]*")+\s*$')
_SPACED_HEADER = re.compile(r'^[^",]+(?:, +[^",]+)+$')  # `a, b, c`: a space after every comma
_SPACED_QUOTE = re.compile(r'^\s+"((?:[^"]|"")*)"\s*$')
_INVISIBLE = re.compile(INVISIBLE)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class CsvFile(RecordReader):
    """A customer file opened for reading.

    After `open()`, `file_issues` lists every problem with the file as a whole; when there is
    none, `fields` are the contract fields the header names (in file order) and `records()`
    streams the rows.
    """

    def __init__(
        self,
        path: Path,
        contract: Contract,
        encoding: str = "utf-8",
        max_field_chars: int = MAX_FIELD_CHARS,
        source: Source | None = None,
    ) -> None:
        self.path = Path(path)
        self.contract = contract
        self.source = source or Source()  # the default source: the template's headers and values
        self.encoding = encoding
        self.max_field_chars = max_field_chars
        self.max_line_chars = 4 * max_field_chars
        self.file_issues: list[Issue] = []
        self.header: list[str] = []
        self.header_line = 1
        self.fields: list[FieldSpec] = []
        self._field_indexes: list[int | None] = []  # None: a source's default, not in the file
        #: How an issue names each field's column: the export's name when the source maps it,
        #: `Billing Country (→ Country)`; the contract's header otherwise.
        self.labels: dict[str, str] = {}
        self._defaults: dict[str, str] = {}
        self.is_report = False  # the file is one of our errors.csv, fixed and dropped again
        #: What `columns()` changed in the values it read (invisible characters, Unicode spaces).
        self.value_changes = ValueChanges()
        self._text: io.TextIOWrapper | None = None
        self._reader: Any = None  # a csv reader (its line_num counts the physical lines it read)
        self._raw: BinaryIO | None = None
        self._spaced = False  # `"a", "b"` or `a, b`: a space after each comma, part of the separator
        self._head = ""  # the file's first bytes as text, to sniff the dialect
        self._pending: list[str] = []  # the physical lines of the record being read

    # --- opening -------------------------------------------------------------------

    def open(self) -> CsvFile:
        try:
            issue = self._check_bytes()
        except NotRegularFile as not_regular:
            issue = Issue(None, None, "not_regular_file", str(not_regular))
        if issue:
            self.file_issues.append(issue)
            return self
        csv.field_size_limit(self.max_field_chars + 1)
        self._reader = self._reader_after(0)
        try:
            header = self._read_header()
        except UnicodeError:
            self.file_issues.extend(self._encoding_issues())
            return self
        except LineTooLong:
            self.file_issues.append(self._line_too_long(self._line_offset + self._reader.line_num + 1))
            return self
        except csv.Error:
            header = None
        if self.file_issues:
            return self
        if header is None or not any(cell.strip() for cell in header):
            self.file_issues.append(self._no_header_issue())
            return self
        if len(header) > self.contract.max_columns:
            self.file_issues.append(self._too_wide(self.header_line, len(header)))
            return self
        self.header = [_unquote_spaced(_INVISIBLE.sub("", name)) for name in header]
        issues = map_header(self, self.header)
        self.file_issues.extend(issues if issues is not None else [self._no_header_issue()])
        return self

    def __enter__(self) -> CsvFile:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_header(self) -> list[str] | None:
        """The first row that is not blank; Excel's `sep=` line before it is read as Excel does."""
        for row in self._reader:
            line = self._line_offset + self._reader.line_num
            if line == 1 and row and row[0].lower().startswith("sep=") and len(row) <= 2:
                separator = row[0][4:] or ","
                if separator != ",":
                    self.file_issues.append(self._separator_issue(_SEPARATORS.get(separator, f"`{separator}`")))
                    return None
                continue
            if any(cell.strip() for cell in row):
                self.header_line = line
                return list(row)
        return None

    def _check_bytes(self) -> Issue | None:
        with open_regular(self.path) as raw:
            head = raw.read(SNIFF_BYTES)
        issue = charsets.binary_issue(self.path, head, self.encoding)
        if issue:
            return issue
        try:
            text = head.decode("utf-8-sig" if charsets.is_utf8(self.encoding) else self.encoding, errors="replace")
        except UnicodeError:  # a codec that refuses even with errors="replace" (idna, undefined)
            return charsets.undeclared_issue(self.path, self.encoding)
        if not text.strip("\x00\ufeff \t\r\n"):
            return Issue(None, None, "empty_file", "The file is empty: " + self._template_hint())
        self._head = text
        first = self._first_line()
        self._spaced = bool(_SPACED_QUOTED_HEADER.match(first) or _SPACED_HEADER.match(first))
        return None

    def _first_line(self) -> str:
        """The header line as written: the first line that is neither blank nor Excel's `sep=`."""
        for line in self._head.splitlines():
            if line.strip() and not line.lower().startswith("sep="):
                return line
        return ""

    def _no_header_issue(self) -> Issue:
        """No header the contract knows: another separator, or a file that starts with data."""
        first = self._first_line()
        counts = {sep: first.count(sep) for sep in _SEPARATORS}
        separator = max(counts, key=counts.__getitem__)
        if counts[separator] and counts[separator] >= first.count(","):
            return self._separator_issue(_SEPARATORS[separator])
        where = f"line {self.header_line}" if self.header_line > 1 else "first line"
        return quoted_issue(
            None,
            None,
            "no_header",
            f"The {where} ({quoting(first[:80])}) is not a header row: " + self._template_hint(),
        )

    def _separator_issue(self, separator: str) -> Issue:
        return Issue(
            None,
            None,
            "wrong_separator",
            f"The columns are separated by {separator}, not by commas. {RE_SAVE}"
            " Or replace the separator with a comma.",
        )

    def _template_hint(self) -> str:
        return (
            "the first line must be the header row of the template (Download template on the Imports page):"
            " " + ",".join(self.contract.headers) + "."
        )

    # --- reading ---------------------------------------------------------------------

    @property
    def share_read(self) -> float:
        """How much of the file the reader has consumed, from 0 to 1 (for progress, not exact)."""
        if self._text is None or self._text.closed:
            return 0.0
        assert self._raw is not None
        size = os.fstat(self._raw.fileno()).st_size
        return min(1.0, self._raw.tell() / size) if size else 1.0

    @property
    def plain_dialect(self) -> bool:
        """Commas and plain double quotes: no `"a", "b"` dialect (a space after each comma)."""
        return not self._spaced

    @property
    def field_indexes(self) -> list[int]:
        """The header index of each of `fields` (a file whose source adds defaults has none: see `converts`)."""
        indexes = [i for i in self._field_indexes if i is not None]
        assert len(indexes) == len(self.fields), "a field of a source's default is not in the file"
        return indexes

    @property
    def converts(self) -> bool:
        """Whether its source rewrites values (formats) or adds fields (defaults) as the file is read."""
        return bool(self._defaults) or any(self.source.format_for(spec) for spec in self.fields)

    def columns(self, rows: list[list[str]], lines: list[int]) -> list[list[str]]:
        """The values of each contract field (in `fields` order) across `rows` of full width, which
        start on `lines`.

        Column-wise, one pass per rule rather than a call per row: a blank or whitespace-only cell
        is ''; a value written `,  "quoted"` loses the spaces and quotes (as spreadsheets read it);
        typed values lose surrounding spaces; the report's escaping is undone; outside the key and
        email fields, the few characters `cleaning` names are changed, and counted in `value_changes`.
        """
        by_column = list(zip(*rows, strict=True)) if rows else [()] * len(self.header)
        columns = []
        for spec, index in zip(self.fields, self._field_indexes, strict=True):
            if index is None:
                columns.append([self._defaults[spec.column]] * len(rows))
                continue
            cells: list[str] = list(by_column[index])
            if self.is_report:
                cells = [unescaped(v) for v in cells]
            cells = [_spaced(v) if v[:1].isspace() else v for v in cells]
            if spec.trimmed:
                cells = [v.strip(TRIM) for v in cells]
            table = translation(spec)
            if table and not "".join(cells).isascii():
                cleaned = [v if v.isascii() else v.translate(table) for v in cells]
                self.value_changes.record(spec, self.labels[spec.column], lines, cells, cleaned)
                cells = cleaned
            columns.append(cells)
        return columns

    def read_formats(self, lines: list[int], columns: list[list[str]]) -> list[Issue]:
        """Rewrite `columns` (as `columns()` gives them) as the source's formats say, in place: an
        export's `1/31/2024` becomes `2024-01-31`. A value a format cannot read stays as written and
        is an issue of its row, naming the export's column."""
        issues = []
        for spec, cells in zip(self.fields, columns, strict=True):
            fmt = self.source.format_for(spec)
            if fmt is None:
                continue
            code = "invalid_" + spec.type
            for i, value in enumerate(cells):
                if not value or value == CLEAR_MARKER:
                    continue
                try:
                    cells[i] = fmt.read(value)
                except UnreadableValue as unreadable:
                    label, message = self.labels[spec.column], f"{unreadable}: correct it in the export."
                    public = hide_value(message, value, label) if spec.personal else None
                    issues.append(Issue(lines[i], label, code, message, public))
        return issues


def unescaped(cell: str) -> str:
    """A cell of one of our reports as the person wrote it: the `'` the report put before a value
    that starts like a formula (or with `'`) removed."""
    return cell[1:] if cell[:1] == "'" and cell[1:2] and cell[1] in ESCAPED_PREFIXES else cell


def _spaced(value: str) -> str:
    """A cell that starts with white space: blank, a quoted value after spaces, or itself."""
    if not value.strip(TRIM):
        return ""
    return _unquote_spaced(value)


def _unquote_spaced(value: str) -> str:
    quoted = _SPACED_QUOTE.match(value)
    return quoted.group(1).replace('""', '"') if quoted else value
