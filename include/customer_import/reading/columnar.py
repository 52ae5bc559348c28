"""The fast path of validation: the file read once, in columns, by Arrow's C reader.

A file the precise reader (`csvfile`) would read without a structural issue is read here
instead, column by column: Arrow parses it, physical line numbers come from the line breaks
inside each record, and the cells are normalised exactly as `CsvFile.columns` does, with
Arrow's compute functions. The GX suite runs on large Arrow-backed batches, and the staged rows
are written by Arrow's CSV writer.

Whether the file is structurally clean is known only at its end: the precise reader checks its
structure in a process of its own, on the other core, while this path validates. When it finds a
problem (a stray quote, a ragged row, a repeated header...), or counts records or lines
differently, `NeedsPreciseReader` is raised and the caller reads the file again the precise way,
whose messages say where a quote opened. So both paths always report the same issues.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from customer_import.contract.fields import Contract, FieldSpec, load_contract
from customer_import.contract.issues import Issue
from customer_import.contract.rules import CLEAR_MARKER, SPACES, TRIM
from customer_import.database.staging import ACCEPTED, LINE, StagedWriter
from customer_import.reading import charsets
from customer_import.reading.cleaning import CHANGED, REPLACEMENT, changes_in
from customer_import.reading.csvfile import CsvFile
from customer_import.reading.expectations import RowValidator

#: Arrow parses blocks of this size, and reads several ahead: small blocks keep memory flat. A record
#: longer than a block (values of megabytes) is read the precise way.
_BLOCK_BYTES = 4 << 20
#: Files from this size on have their structure checked by a process of their own.
OWN_PROCESS_BYTES = 16 << 20
#: Arrow holds a chunk's cells in a fraction of the memory Python rows take: this path validates
#: this many times `chunk_rows` at a time, and pays GX's cost per batch that much less often.
COLUMNAR_CHUNKS = 2
#: What `^[SPACES]+|[SPACES]+$` takes off a value, for Arrow's utf8_trim (a blank cell is only these).
SPACE_CHARACTERS = "".join(c for c in map(chr, range(0x3001)) if c.isspace())
_SPACED_QUOTE = f'^[{SPACES}]+"'
_CHANGED = f"[{CHANGED}]"


class NeedsPreciseReader(Exception):
    """The file has something only the precise reader reports right; read it that way."""


@dataclass(frozen=True)
class Structure:
    """What the precise reader found in a file: whether any record or the file has an issue,
    how many records it read, and the last line of the last one."""

    clean: bool
    records: int
    last_line: int


def eligible(source: CsvFile) -> bool:
    """Files the fast path reads as the precise reader would: UTF-8, the header on line 1, plain
    quoting, not one of our error reports (whose escaping the precise reader undoes)."""
    return (
        charsets.is_utf8(source.encoding)
        and source.header_line == 1
        and source.plain_dialect
        and not source.is_report
        and not source.file_issues
        and not source.converts
        and len(source.header) >= 2
        and source.contract == _bundled_contract()
    )


@cache
def _bundled_contract() -> Contract:
    return load_contract()  # the one the structure check in its own process reads


def structure(path: Path, encoding: str, max_field_chars: int) -> Structure:
    """The verdict of the precise reader's cautious twin (`CsvFile.structure_verdict`) on the file."""
    with CsvFile(path, load_contract(), encoding, max_field_chars) as source:
        if source.file_issues or not source.header:
            return Structure(False, 0, 1)
        return Structure(*source.structure_verdict())


def check_columns(
    source: CsvFile,
    staged: StagedWriter,
    validator: RowValidator,
    chunk_rows: int,
    progress: Callable[[int, float], None],
) -> tuple[int, list[Issue]]:
    """Validate and stage every record of `source` (opened, with a header): rows read and issues.

    Raises NeedsPreciseReader when the file is not structurally clean; what was written is then void.
    """
    with _structure_check(source) as verdict, ThreadPoolExecutor(1, "gx") as gx:
        rows, last_line, issues = 0, source.header_line, []
        size = source.path.stat().st_size or 1
        # GX validates a chunk in its own thread while this one reads the next: Arrow's reading and
        # compute release the GIL, so the two overlap on the machine's cores (GX's import too).
        validating: Future[Any] = gx.submit(validator.warm_up)
        pending: tuple[Any, list[Any]] | None = None

        def stage(validated: Future[Any], lines: Any, chunk: list[Any]) -> None:
            chunk_issues = sorted(validated.result(), key=_by_line)
            bad = sorted({issue.line for issue in chunk_issues if issue.line is not None})
            staged.write_table(_staged(source.fields, lines, chunk, bad))
            issues.extend(chunk_issues)

        for columns, lines, end, bytes_read in _chunks(source, chunk_rows * COLUMNAR_CHUNKS, last_line + 1):
            rows += len(lines)
            chunk = _normalised(source, columns, lines)
            frame = _for_gx(source.fields, lines, chunk)
            validating.result()  # the chunk before: validated, and staged below
            if pending is not None:
                stage(validating, *pending)
            progress(rows, min(1.0, bytes_read / size))  # these rows are being validated now
            validating, pending = gx.submit(validator.validate, frame), (lines, chunk)
            last_line = end if len(lines) else last_line
        if pending is not None:
            stage(validating, *pending)
        found = verdict()
    if not found.clean or found.records != rows or (rows and found.last_line != last_line):
        raise NeedsPreciseReader(f"structure: {found}, read in columns: {rows} records to line {last_line}")
    return rows, issues


def _by_line(issue: Issue) -> int:
    return issue.line or 0


@contextmanager
def _structure_check(source: CsvFile) -> Iterator[Callable[[], Structure]]:
    """`structure` of the file, checked while it is read in columns; yields the wait for its verdict.

    A large file is checked in a Python process of its own (the machine's other core); a small one in
    a thread, since starting that process costs about 0.4 s of CPU: more than checking it.
    """
    if source.path.stat().st_size < OWN_PROCESS_BYTES:
        with ThreadPoolExecutor(1, "structure") as pool:
            checked = pool.submit(structure, source.path, source.encoding, source.max_field_chars)

            def in_thread() -> Structure:
                try:
                    return checked.result()
                except Exception as error:
                    raise NeedsPreciseReader(f"the structure check stopped ({error!r})") from error

            yield in_thread
        return
    package_root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", __name__, str(source.path), source.encoding, str(source.max_field_chars)]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": path}
    ) as checking:

        def in_process() -> Structure:
            out, _ = checking.communicate()
            if checking.returncode != 0:
                raise NeedsPreciseReader(f"the structure check stopped (exit code {checking.returncode})")
            return Structure(**json.loads(out))

        try:
            yield in_process
        except BaseException:
            checking.kill()  # its verdict is not needed any more
            raise


def _chunks(source: CsvFile, chunk_rows: int, first_line: int) -> Iterator[tuple[list[Any], Any, int, int]]:
    """(every column's cells as written, their lines, the last line of the last, bytes read) for
    chunks of about `chunk_rows` non-blank records."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    names = [f"c{i}" for i in range(len(source.header))]
    try:
        reader = pacsv.open_csv(
            source.path,
            read_options=pacsv.ReadOptions(skip_rows=source.header_line, column_names=names, block_size=_BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        batches: list[Any] = []
        held, next_line, bytes_read = 0, first_line, 0
        for batch in reader:
            batches.append(batch)
            held += batch.num_rows
            # about the bytes the records took: their cells, a separator or line end after each
            bytes_read += sum(pc.sum(pc.binary_length(c)).as_py() or 0 for c in batch.columns)
            bytes_read += batch.num_rows * batch.num_columns
            if held >= chunk_rows:
                cells, lines, last, next_line = _located(pa.Table.from_batches(batches).combine_chunks(), next_line)
                yield cells, lines, last, bytes_read
                batches, held = [], 0
        if batches:  # the last chunk: the whole file is read
            cells, lines, last, next_line = _located(pa.Table.from_batches(batches).combine_chunks(), next_line)
            yield cells, lines, last, source.path.stat().st_size
    except (pa.ArrowInvalid, UnicodeDecodeError) as error:
        # Arrow quotes the row it could not parse ("Expected 11 columns, got 12: C-1,Acme,..."): the
        # reason is logged, and a row of a customer file is personal data
        raise NeedsPreciseReader(re.sub(r"(got \d+): .*", r"\1", str(error), flags=re.DOTALL)) from error


def _located(table: Any, first_line: int) -> tuple[list[Any], Any, int, int]:
    """The columns of `table`'s non-blank records; their lines; the last line of the last of them;
    and the line after the table. A record's lines are its first plus the line breaks in its cells.

    Each column's bytes are scanned once (numpy) for line breaks, NUL and double quotes; the
    regular expressions run only on the columns or rows that scan points at."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = [c.chunk(0) if c.num_chunks == 1 else c.combine_chunks() for c in table.columns]  # no copy
    rows = table.num_rows
    breaks = np.zeros(rows, dtype=np.int64)
    for column in columns:
        data, offsets = _bytes(column)
        control = np.flatnonzero(data <= 13)  # NUL, LF and CR are all at or below 13
        if (data[control] == 0).any() or (
            (data == 34).any() and pc.any(pc.match_substring_regex(column, _SPACED_QUOTE)).as_py()
        ):
            raise NeedsPreciseReader("a NUL byte, or a quoted value after spaces")
        # a line break is a LF, or a CR not followed by a LF in its cell; counted for the cell's row
        lf, cr = control[data[control] == 10], control[data[control] == 13]
        if len(cr):
            cell_end = offsets[np.searchsorted(offsets, cr, side="right")]
            cr = cr[(cr + 1 >= cell_end) | (data[np.minimum(cr + 1, len(data) - 1)] != 10)]
        at = np.concatenate((lf, cr))
        if len(at):
            breaks += np.bincount(np.searchsorted(offsets, at, side="right") - 1, minlength=rows)
    blank = _only_spaces(columns[0]) if columns else np.ones(rows, dtype=bool)
    if blank.any():  # rare: the rows whose first cell is blank, looked at whole
        maybe = np.flatnonzero(blank)
        for column in columns[1:]:
            blank[maybe] &= _only_spaces(column.take(pa.array(maybe)))
    starts = first_line + np.arange(rows) + np.concatenate(([0], np.cumsum(breaks)[:-1]))
    after = int(starts[-1] + breaks[-1] + 1) if rows else first_line
    last = int((starts + breaks)[~blank][-1]) if (~blank).any() else 0
    if not blank.any():
        return columns, pa.array(starts, pa.int64()), last, after
    keep = pa.array(~blank)
    return (
        [pc.filter(column, keep) for column in columns],
        pc.filter(pa.array(starts, pa.int64()), keep),
        last,
        after,
    )


def _bytes(column: Any) -> tuple[Any, Any]:
    """A string column's UTF-8 bytes, and where each cell starts in them (then where the last ends)."""
    import numpy as np

    _, offsets_buffer, data_buffer = column.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int32, count=len(column) + 1, offset=column.offset * 4)
    if data_buffer is None:
        return np.empty(0, np.uint8), offsets - offsets[0]
    return np.frombuffer(data_buffer, np.uint8)[offsets[0] : offsets[-1]], offsets - offsets[0]


def _only_spaces(column: Any) -> Any:
    """Which cells are empty or spaces only, as a numpy array."""
    import pyarrow.compute as pc

    return pc.equal(pc.binary_length(pc.utf8_trim(column, SPACE_CHARACTERS)), 0).to_numpy(zero_copy_only=False)


def _normalised(source: CsvFile, columns: list[Any], lines: Any) -> list[Any]:
    """The fields' cells, normalised as `CsvFile.columns` does (and its changes counted the same way)."""
    import pyarrow.compute as pc

    cells = []
    for spec, index in zip(source.fields, source.field_indexes, strict=True):
        trimmed = pc.utf8_trim(columns[index], TRIM)
        column = trimmed if spec.trimmed else pc.if_else(pc.equal(trimmed, ""), "", columns[index])
        kinds = changes_in(spec)
        if (
            kinds
            and not pc.all(pc.string_is_ascii(column)).as_py()
            and pc.any(pc.match_substring_regex(column, _CHANGED)).as_py()
        ):
            for kind, characters in kinds.items():
                found = pc.match_substring_regex(column, f"[{characters}]")
                if pc.any(found).as_py():
                    source.value_changes.add(kind, source.labels[spec.column], pc.filter(lines, found).to_pylist())
                    column = pc.replace_substring_regex(column, f"[{characters}]", REPLACEMENT[kind] or "")
        cells.append(column)
    return cells


def write_report_rows(source: CsvFile, target: Any, status: str, escape: str) -> None:
    """errors.csv's rows for a file without any issue, by Arrow: the line, `status`, no issues, and
    every cell as written, those matching `escape` (a formula's first character) behind a `'`."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    def write(columns: list[Any], lines: Any) -> None:
        n = len(lines)
        table = pa.table(
            [
                lines,
                pa.repeat(pa.scalar(status, pa.string()), n),
                pa.repeat(pa.scalar("", pa.string()), n),
                *(pc.replace_substring_regex(c, f"^({escape})", "'\\1") for c in columns),
            ],
            names=["line", "status", "issues", *(f"c{i}" for i in range(len(columns)))],
        )
        pacsv.write_csv(table, target, pacsv.WriteOptions(include_header=False, quoting_style="needed", eol="\r\n"))

    with ThreadPoolExecutor(1, "report") as writer:  # a chunk is written while the next is read
        written: Future[None] | None = None
        for columns, lines, _, _ in _chunks(source, 200_000, source.header_line + 1):
            if written is not None:
                written.result()
            written = writer.submit(write, columns, lines)
        if written is not None:
            written.result()


def _for_gx(fields: list[FieldSpec], lines: Any, cells: list[Any]) -> Any:
    """The chunk as the GX batch: blank cells (and `#NULL` where a field may be cleared) are nulls."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = {LINE: lines}
    for spec, column in zip(fields, cells, strict=True):
        empty = pc.equal(column, "")
        if spec.required == "never":
            empty = pc.or_(empty, pc.equal(column, CLEAR_MARKER))
        columns[spec.column] = pc.if_else(empty, pa.scalar(None, pa.string()), column)
    return pa.table(columns).to_pandas()


def _staged(fields: list[FieldSpec], lines: Any, cells: list[Any], bad: list[int]) -> Any:
    """The chunk as staged rows: line, accepted, then the cells (blank: null, NULL in the table)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    accepted = pc.invert(pc.is_in(lines, value_set=pa.array(bad, pa.int64())))
    blanked = [pc.if_else(pc.equal(c, ""), pa.scalar(None, pa.string()), c) for c in cells]
    return pa.table([lines, accepted, *blanked], names=[LINE, ACCEPTED, *(f.column for f in fields)])


# the structure check: python -m customer_import.reading.columnar FILE ENCODING MAX_FIELD_CHARS
if __name__ == "__main__":
    print(json.dumps(asdict(structure(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))))
