"""Splitting an opened file into records: every physical line ends up in one.

A record the reader cannot parse carries an issue and its cells as best they can be read (errors.csv
keeps them); after a quote that is never closed, or that closes lines later where no value can end,
the reader starts again on the next line, so no row after it is lost. `structure_verdict` is a
quicker twin of `records()` for the columnar path.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from customer_import.contract.fields import Contract, FieldSpec, normalise_header
from customer_import.contract.issues import Issue, quoted_issue, quoting
from customer_import.reading import charsets
from customer_import.reading.header import REPORT_NAMES
from customer_import.storage.regular import open_regular

#: A physical line of decoded text with its line break (CRLF, CR or LF), or the last line without one.
PHYSICAL_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


def physical_lines(text: str) -> list[str]:
    """`text` as its physical lines, each with its line break: line n of the file is item n - 1."""
    return PHYSICAL_LINE.findall(text)


class LineTooLong(Exception):
    """A physical line longer than the reader takes (it is never held whole in memory)."""


@dataclass(frozen=True)
class Record:
    """One record of the file: the physical lines it spans and its cells as written."""

    line: int
    cells: list[str]
    issue: Issue | None = None  # a structural problem: the cells cannot be trusted
    end: int = 0  # its last physical line (0: the same as `line`)
    #: The last physical line the reader took for it before it found the record broken and read the
    #: lines after `line` again as rows of their own (a quote that closed lines later); 0: none.
    read_to: int = 0

    @property
    def last_line(self) -> int:
        return self.end or self.line


class LineReader:
    """The physical lines of a file, decoded as declared, none longer than `max_line_chars` held."""

    path: Path
    encoding: str
    contract: Contract
    header_line: int
    max_field_chars: int
    max_line_chars: int
    _pending: list[str]  # the physical lines of the record being read
    _spaced: bool  # `"a", "b"` or `a, b`: a space after each comma, part of the separator
    _text: io.TextIOWrapper | None
    _raw: BinaryIO | None
    _line_offset: int

    def close(self) -> None:
        if self._text is not None:
            self._text.close()

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
        than `max_line_chars` raises LineTooLong after reading only that much of it."""
        pending, limit = self._pending, self.max_line_chars
        surrogates = not charsets.is_utf8(self.encoding)  # strict UTF-8 never decodes to one
        while line := text.readline(limit):
            if len(line) == limit and line[-1] not in "\r\n":
                raise LineTooLong
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

    def _encoding_issues(self) -> list[Issue]:
        if charsets.is_utf8(self.encoding):
            return charsets.not_utf8_issues(self.path)
        return [charsets.undeclared_issue(self.path, self.encoding)]


class RecordReader(LineReader):
    """The records of a file whose header `CsvFile.open` read."""

    header: list[str]
    file_issues: list[Issue]
    is_report: bool
    fields: list[FieldSpec]
    _field_indexes: list[int | None]
    _reader: Any

    @property
    def data_columns(self) -> list[int]:
        """Indexes of the header's columns other than the report's own."""
        return [i for i, name in enumerate(self.header) if normalise_header(name) not in REPORT_NAMES]

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
            except LineTooLong:
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
                yield Record(
                    start, _split(pending[:1]), _merged_lines_issue(start, end, len(cells), width), read_to=end
                )
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
            read_to=end,
        )

    def _swallowed_rows(self, start: int, end: int, lines: list[str]) -> Issue | None:
        """A quoted value over several lines (`lines`, from `start` to `end`) that takes in lines
        shaped like rows of their own: a closing quote is missing, and importing the record would
        silently swallow those rows."""
        width, key = len(self.header), self.key_index
        for number, line in enumerate(lines[1:], start=start + 1):
            parts = line.rstrip("\r\n").split(",")
            if width > 2 and len(parts) >= width and parts[key].strip() and not any(c.isspace() for c in parts[key]):
                return quoted_issue(
                    start,
                    None,
                    "swallowed_rows",
                    (
                        f"The quoted value opened on line {start} runs to line {end} and takes in line {number},"
                        f' which looks like a row of its own ({quoting(line.strip()[:60])}): a closing double quote (")'
                        f" is probably missing on line {start}."
                    ),
                )
        return None

    @property
    def key_index(self) -> int:
        index = self._field_indexes[[f.column for f in self.fields].index(self.contract.key.column)]
        assert index is not None, "the key is never a default"
        return index


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
