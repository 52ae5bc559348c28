"""Reading a customer CSV file: the checks GX cannot express on a DataFrame.

Bytes (encoding, binary content), dialect (separator, quotes) and the header are checked
here, in plain Python, and reported as the same `Issue` values the GX rules produce. The
records stream out one at a time with the physical lines they span, so a file of any size
is read in constant memory.

Every physical line ends up in a record: a record the reader cannot parse carries an issue
and its cells as best they can be read (errors.csv keeps them), and after a quote that is
never closed the reader starts again on the next line, so no row after it is lost.
"""

from __future__ import annotations

import csv
import difflib
import functools
import io
import itertools
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from customer_import.contract.fields import Contract, FieldSpec, normalise_header
from customer_import.contract.issues import Issue
from customer_import.contract.rules import CLEAR_MARKER, INVISIBLE, TRIM
from customer_import.reading import charsets
from customer_import.reading.charsets import RE_SAVE, SNIFF_BYTES
from customer_import.reading.cleaning import ValueChanges, translation
from customer_import.sources.formats import UnreadableValue
from customer_import.sources.profiles import Source
from customer_import.storage.regular import NotRegularFile, open_regular

#: Columns the error report adds; a fixed report can be imported as it is, they are ignored.
REPORT_COLUMNS = ("ImportLine", "ImportStatus", "ImportIssues")
#: What a spreadsheet would read as a formula; the report prefixes such cells with `'`, and
#: cells that start with `'` themselves, so that removing one `'` always gives the value back.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
ESCAPED_PREFIXES = (*FORMULA_PREFIXES, "'")
#: The most characters one value may hold before the file is refused as not a customer file;
#: a physical line may hold four times as many.
MAX_FIELD_CHARS = 1 << 20
_REPORT_NAMES = {normalise_header(c) for c in REPORT_COLUMNS}
_SEPARATORS = {";": "semicolon (;)", "\t": "tab", "|": "pipe (|)"}
_SPACED_QUOTED_HEADER = re.compile(r'^\s*"[^"]*"(?:\s*,\s+"[^"]*")+\s*$')
_SPACED_HEADER = re.compile(r'^[^",]+(?:, +[^",]+)+$')  # `a, b, c`: a space after every comma
_SPACED_QUOTE = re.compile(r'^\s+"((?:[^"]|"")*)"\s*$')
_INVISIBLE = re.compile(INVISIBLE)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


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


class _LineTooLong(Exception):
    """A physical line longer than the reader takes (it is never held whole in memory)."""


@dataclass(frozen=True)
class Record:
    """One record of the file: the physical lines it spans and its cells as written."""

    line: int
    cells: list[str]
    issue: Issue | None = None  # a structural problem: the cells cannot be trusted
    end: int = 0  # its last physical line (0: the same as `line`)

    @property
    def last_line(self) -> int:
        return self.end or self.line


class CsvFile:
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
        except _LineTooLong:
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
        self.file_issues.extend(self._check_header(self.header))
        return self

    def close(self) -> None:
        if self._text is not None:
            self._text.close()

    def __enter__(self) -> CsvFile:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reader_after(self, lines: int) -> Any:
        """A CSV reader over the file from the line after `lines` (0: from the start)."""
        self.close()
        raw = self._raw = open_regular(self.path)
        self._text = io.TextIOWrapper(
            raw, encoding="utf-8-sig" if charsets.is_utf8(self.encoding) else self.encoding, errors="strict", newline=""
        )
        for _ in range(lines):
            next(self._text, None)
        self._line_offset = lines
        return csv.reader(self._remembered(self._text), strict=True, skipinitialspace=self._spaced)

    def _remembered(self, text: io.TextIOWrapper) -> Iterator[str]:
        """The lines of `text`, each kept in `_pending` until the next record starts; a line longer
        than `max_line_chars` raises _LineTooLong after reading only that much of it."""
        pending, limit = self._pending, self.max_line_chars
        surrogates = not charsets.is_utf8(self.encoding)  # strict UTF-8 never decodes to one
        while line := text.readline(limit):
            if len(line) == limit and line[-1] not in "\r\n":
                raise _LineTooLong
            if surrogates and charsets.has_surrogates(line):
                raise UnicodeError("a lone surrogate: the file is not in the declared encoding")
            pending.append(line)
            yield line

    def _line_too_long(self, line: int) -> Issue:
        return Issue(
            None,
            None,
            "line_too_long",
            (
                f"Line {line} is longer than {self.max_line_chars:,} characters, the most a line may hold: this is"
                " not a customer file (or its line breaks were lost), so it was not read further."
            ),
        )

    def _too_wide(self, line: int, cells: int) -> Issue:
        limit = self.contract.max_columns
        what = "The header has" if line == self.header_line else f"Line {line} has"
        return Issue(
            None,
            None,
            "too_many_columns",
            (
                f"{what} {cells:,} columns; a customer file has at most {limit} ({len(self.contract.fields)} fields"
                " and room for more): this is not a customer file, or its separator is not a comma."
            ),
        )

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

    def _check_header(self, header: list[str]) -> list[Issue]:
        issues: list[Issue] = []
        seen: dict[str, int] = {}  # field column: the header index that gives it
        known = self.source.headers(self.contract)
        mapped = {n.casefold() for n in self.source.columns}
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
            elif norm in _REPORT_NAMES:
                self.is_report = True
            elif spec is not None and spec.column in seen:
                first = seen[spec.column]
                issues.append(self._twice(header[first], first, name, index, spec))
            elif spec is not None:
                seen[spec.column] = index
                self.fields.append(spec)
                self._field_indexes.append(index)
                self.labels[spec.column] = f"{name} (→ {spec.header})" if name.casefold() in mapped else spec.header
            elif not self.source.ignores(name):
                unknown.append((index, name))
        if not seen and not self.is_report:
            return [self._no_header_issue()]
        names = [*self.contract.headers, *self.source.columns]
        for index, name in unknown:
            guess = closest_header(name, names)
            hint = f"did you mean `{guess}`?" if guess else "remove it or rename it to one of " + ", ".join(names) + "."
            if self.source.columns:
                hint += f" (Or map it in sources.yaml, source `{self.source.name}`: under columns, or ignore.)"
            issues.append(
                Issue(None, name, "unknown_column", f"Unknown column `{name}` in {column_label(index)}: {hint}")
            )
        if self.contract.key.column not in seen:
            key = self.contract.key.header
            names = [
                key,
                *(n for n, target in self.source.columns.items() if normalise_header(target) == normalise_header(key)),
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
        for spec, value in self.source.defaults_for(self.contract):
            if spec.column not in seen:
                self.fields.append(spec)
                self._field_indexes.append(None)
                self.labels[spec.column] = f"{spec.header} (default of source {self.source.name})"
                self._defaults[spec.column] = value
        return issues

    def _twice(self, first_name: str, first: int, name: str, index: int, spec: FieldSpec) -> Issue:
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

    def _no_header_issue(self) -> Issue:
        """No header the contract knows: another separator, or a file that starts with data."""
        first = self._first_line()
        counts = {sep: first.count(sep) for sep in _SEPARATORS}
        separator = max(counts, key=counts.__getitem__)
        if counts[separator] and counts[separator] >= first.count(","):
            return self._separator_issue(_SEPARATORS[separator])
        where = f"line {self.header_line} (`{first[:80]}`)" if self.header_line > 1 else f"first line (`{first[:80]}`)"
        return Issue(None, None, "no_header", f"The {where} is not a header row: " + self._template_hint())

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

    def _encoding_issues(self) -> list[Issue]:
        if charsets.is_utf8(self.encoding):
            return charsets.not_utf8_issues(self.path)
        return [charsets.undeclared_issue(self.path, self.encoding)]

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

    @property
    def data_columns(self) -> list[int]:
        """Indexes of the header's columns other than the report's own."""
        return [i for i, name in enumerate(self.header) if normalise_header(name) not in _REPORT_NAMES]

    def records(self) -> Iterator[Record]:
        """Every non-blank record after the header, with the physical lines it spans.

        A record whose structure is broken (field count, quotes, a repeated header) carries an
        `issue`. An encoding error, or a value over `max_field_chars` on one line, stops the
        stream and is added to `file_issues`.
        """
        assert self._reader is not None and self.header, "open() a file with a header first"
        reader, width, end, pending = self._reader, len(self.header), self.header_line, self._pending
        blank, header_again = self._blank_test(), self._header_test()
        while True:
            start = end + 1
            pending.clear()
            try:
                cells = next(reader)
            except StopIteration:
                return
            except UnicodeError:
                self.file_issues.extend(self._encoding_issues())
                return
            except _LineTooLong:
                self.file_issues.append(self._line_too_long(self._line_offset + reader.line_num + 1))
                return
            except csv.Error as err:
                end = self._line_offset + reader.line_num
                broken = self._broken(start, end, str(err))
                if broken is None:
                    return
                yield broken
                if broken.last_line == start and end > start:  # read again right after its first line
                    reader, end = self._reader_after(start), start
                continue
            end = self._line_offset + reader.line_num
            if len(cells) > self.contract.max_columns:
                self.file_issues.append(self._too_wide(start, len(cells)))
                return
            if blank(cells):
                continue  # blank lines and rows of empty cells (left by spreadsheets) are skipped
            if len(cells) != width and end > start:  # a quote opened on `start` closed lines later
                yield Record(start, _split(pending[:1]), _merged_lines_issue(start, end, len(cells), width))
                reader, end = self._reader_after(start), start
            elif len(cells) != width:
                yield Record(start, cells, _width_issue(start, len(cells), width), end)
            elif header_again(cells):
                yield Record(
                    start,
                    cells,
                    Issue(
                        start,
                        None,
                        "header_repeated",
                        (f"The header row repeats on line {start} (two files pasted together?): delete that line."),
                    ),
                    end,
                )
            elif end > start:
                yield Record(start, cells, self._swallowed_rows(start, end, pending), end)
            else:
                yield Record(start, cells)

    def structure_verdict(self) -> tuple[bool, int, int]:
        """A quick twin of `records()` for a plain UTF-8 file: (no record has a structural issue,
        how many records, the last line of the last), reading the file again from its start.

        The lines come from `readline` in C and the records from the csv module, with one short
        Python step per record (about a third of the time of `records()`); the physical lines of
        a record are looked at only when it spans several. It may call a file broken that
        `records()` would accept (a record that could hold a line over `max_line_chars`), never
        the other way round: then the caller reads the file the precise way, which is only slower.
        """
        assert self.header and not self.is_report, "open() a plain file with a header first"
        width, limit = len(self.header), self.max_line_chars
        header_again = self._header_test()
        with open_regular(self.path) as raw, io.TextIOWrapper(raw, "utf-8-sig", errors="strict", newline="") as text:
            # the csv reader takes one copy of the lines, a record over several lines another
            parsed, lines = itertools.tee(iter(functools.partial(text.readline, limit), ""))
            reader, behind = csv.reader(parsed, strict=True), 0
            records, last, end = 0, 0, self.header_line
            try:
                if next(reader, None) is None or reader.line_num != self.header_line:
                    return False, 0, 0
                for cells in reader:
                    start, end = end + 1, reader.line_num
                    joined = "".join(cells)
                    if 2 * len(joined) + 3 * len(cells) >= limit:
                        return False, records, last  # one of its lines may be over the limit
                    if not joined.strip():
                        if len(cells) > self.contract.max_columns:
                            return False, records, last
                        continue
                    if len(cells) != width or header_again(cells):
                        return False, records, last
                    if end > start or end - behind > 10_000:  # the copy of the lines keeps up
                        next(itertools.islice(lines, start - 1 - behind, start - 1 - behind), None)
                        spanned, behind = list(itertools.islice(lines, end - start + 1)), end
                        if end > start and self._swallowed_rows(start, end, spanned) is not None:
                            return False, records, last
                    records, last = records + 1, end
            except (csv.Error, UnicodeDecodeError):
                return False, records, last
        return True, records, last

    def _blank_test(self) -> Callable[[list[str]], bool]:
        data_columns = self.data_columns

        def blank(cells: list[str]) -> bool:  # joined first: one C-level strip per row, not per cell
            if self.is_report:
                cells = [cells[i] for i in data_columns if i < len(cells)]
            return not "".join(cells).strip()

        return blank

    def _header_test(self) -> Callable[[list[str]], bool]:
        names = [normalise_header(h) for h in self.header]
        first = names[0]

        def header_again(cells: list[str]) -> bool:  # a cheap look at the first cell before the whole row
            return (
                cells[0][-1:].casefold() == first[-1:]
                and normalise_header(cells[0]) == first
                and [normalise_header(c) for c in cells] == names
            )

        return header_again

    def _broken(self, start: int, end: int, error: str) -> Record | None:
        """The record the reader could not parse, with its cells as best they can be read."""
        lines = self._pending
        if "field larger" in error and len(lines) <= 1:
            self.file_issues.append(
                Issue(
                    None,
                    None,
                    "field_too_long",
                    (
                        f"Line {start} holds a value of more than {self.max_field_chars:,} characters, the most one"
                        " value may hold: this is not a customer file, or a double quote is missing on that line."
                    ),
                )
            )
            return None
        if "unexpected end of data" in error or "field larger" in error:
            return Record(
                start,
                _split(lines[:1]),
                Issue(
                    start,
                    None,
                    "unterminated_quote",
                    (
                        f'A quoted value opened on line {start} is never closed: add the closing double quote (")'
                        " or remove the opening one. The lines after it were read as rows of their own."
                    ),
                ),
            )
        if end == start:
            message = f"Line {start} has a stray double quote (line {start} could not be read)"
        else:  # the quote that opened on `start` closed on `end`, before something other than a comma
            message = (
                f"A double quote opened on line {start} closes only on line {end}, so line {start} could not be read"
                f" (line {start + 1} and the lines after it were read again as rows of their own)"
            )
        return Record(
            start,
            _split(lines[:1]),
            Issue(
                start,
                None,
                "stray_quote",
                message
                + ': a value wrapped in double quotes must double every quote inside it, e.g. "The ""Best"" Shop".',
            ),
        )

    def _swallowed_rows(self, start: int, end: int, lines: list[str]) -> Issue | None:
        """A quoted value over several lines (`lines`, from `start` to `end`) that takes in lines
        shaped like rows of their own: a closing quote is missing, and importing the record would
        silently swallow those rows."""
        width, key = len(self.header), self._key_index
        for number, line in enumerate(lines[1:], start=start + 1):
            parts = line.rstrip("\r\n").split(",")
            if width > 2 and len(parts) >= width and parts[key].strip() and not any(c.isspace() for c in parts[key]):
                return Issue(
                    start,
                    None,
                    "swallowed_rows",
                    (
                        f"The quoted value opened on line {start} runs to line {end} and takes in line {number},"
                        f' which looks like a row of its own (`{line.strip()[:60]}`): a closing double quote (") is'
                        f" probably missing on line {start}."
                    ),
                )
        return None

    @property
    def _key_index(self) -> int:
        index = self._field_indexes[[f.column for f in self.fields].index(self.contract.key.column)]
        assert index is not None, "the key is never a default"
        return index

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
                    issues.append(
                        Issue(lines[i], self.labels[spec.column], code, f"{unreadable}: correct it in the export.")
                    )
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


def _split(lines: list[str]) -> list[str]:
    """Cells of lines the CSV reader refused, split at every comma, quotes left as they are."""
    return "".join(lines).rstrip("\r\n").split(",")


def _merged_lines_issue(start: int, end: int, found: int, expected: int) -> Issue:
    """A record that a quote stretched over several lines, with the wrong number of values."""
    return Issue(
        start,
        None,
        "wrong_field_count",
        (
            f"A double quote opened on line {start} closes only on line {end}, so lines {start} to {end} read as"
            f" one row of {found} values (the header has {expected} columns): the double quote on line {start} is"
            " stray, or its closing one is missing. Remove it, or close it where the value ends. Line"
            f" {start + 1} and the lines after it were read again as rows of their own."
        ),
    )


def _width_issue(line: int, found: int, expected: int) -> Issue:
    if found > expected:
        hint = 'a value that contains a comma must be wrapped in double quotes, e.g. "Acme, Inc."'
    else:
        hint = "a separator is missing; every row needs a cell for every column, even an empty one"
    return Issue(
        line,
        None,
        "wrong_field_count",
        f"Line {line} has {found} values but the header has {expected} columns: {hint}.",
    )
