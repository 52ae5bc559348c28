"""Erasure of one customer on request (GDPR Art. 17): everything the imports kept of it, gone.

`forget` deletes, under the merge lock (no import merges meanwhile):

- the customer's row in `customers`, and its rows in the history of every run;
- its rows in every file and report the runs keep (the file in archive/ or rejected/, errors.csv,
  changes.csv, deactivations.csv, summary.json, report.html, rollback.json, the issue files), local or on object
  storage: each is rewritten without them, every other row left byte for byte as it was. A
  record of the kept file is the customer's when its key cell is the key; a file that could not be
  read as a CSV of the contract (rejected as a whole) loses each line that holds the key as a cell;
- the key where a message quotes it (another row's issue, a rollback's conflicts);
- the rows that hold it in drafts of files being fixed in the browser, and what was edited in them.

Then `erasures` records when, by whom and the key's SHA-256, never the key. A key found nowhere
is refused (`NothingToForget`) and nothing changes. A later import that holds the key again
creates the customer anew. landing/ and processing/ (files not imported yet) are not searched.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import psycopg
from psycopg import sql

from customer_import.contract.fields import Contract
from customer_import.database import db, drafts, history
from customer_import.database.runs import ImportRun, runs_by_id
from customer_import.reading.csvfile import unescaped
from customer_import.reading.records import physical_lines
from customer_import.report import CHANGES_CSV, DEACTIVATIONS_CSV, ERRORS_CSV, REPORT_HTML, ROLLBACK_JSON, SUMMARY_JSON
from customer_import.run_files import ISSUES_FILES, RunFiles
from customer_import.settings import Settings

_WIDE = ("utf_16", "utf_32", "utf-16", "utf-32")


class NothingToForget(LookupError):
    """No customer, history or kept file holds the key."""


@dataclass
class Erasure:
    key_sha256: str
    customers: int = 0
    history_rows: int = 0
    files: list[str] = field(default_factory=list)  # rewritten, relative to the data folders
    draft_rows: int = 0  # rows of files being fixed in the browser

    @property
    def message(self) -> str:
        return (
            f"Forgot the customer with key SHA-256 {self.key_sha256[:12]}…: {self.customers} customer row,"
            f" {self.history_rows} history row{'s' if self.history_rows != 1 else ''},"
            f" {len(self.files)} kept file{'s' if len(self.files) != 1 else ''} rewritten without it"
            + (
                f", {self.draft_rows} row{'s' if self.draft_rows != 1 else ''} of drafts fixed in the browser."
                if self.draft_rows
                else "."
            )
        )


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def forget(conn: psycopg.Connection, settings: Settings, contract: Contract, key: str, erased_by: str) -> Erasure:
    """Erase the customer `key` (see the module's docstring)."""
    key = key.strip()
    if not key:
        raise NothingToForget("Give the key (AccountReferenceID) of the customer to forget.")
    db.use_schema(conn, settings.schema)
    db.migrate(conn, contract, settings.schema)
    files = RunFiles(settings, contract)
    erasure = Erasure(key_hash(key))
    with db.locked(conn, db.MERGE_LOCK):
        erasure.customers = conn.execute(
            sql.SQL("DELETE FROM {} WHERE {} = %s").format(
                sql.Identifier(contract.table), sql.Identifier(contract.key.column)
            ),
            [key],
        ).rowcount
        erasure.history_rows = conn.execute(
            sql.SQL("DELETE FROM {} WHERE customer_key = %s").format(history.ROWS), [key]
        ).rowcount
        kept = [
            run_id
            for (run_id,) in conn.execute(
                "SELECT id FROM import_runs WHERE finished_at IS NOT NULL AND files_removed_at IS NULL ORDER BY id"
            )
        ]
        for run in runs_by_id(conn, kept):
            erasure.files += _forget_in_run(files, run, key)
        for run_id, message in conn.execute(
            "SELECT id, message FROM import_runs WHERE position(%s IN message) > 0", [key]
        ).fetchall():
            conn.execute("UPDATE import_runs SET message = %s WHERE id = %s", [_without_key(message, key), run_id])
        erasure.draft_rows = drafts.forget(conn, key)
        if not (erasure.customers or erasure.history_rows or erasure.files or erasure.draft_rows):
            raise NothingToForget(f"No customer, history or kept file holds the key {key!r}: nothing was changed.")
        conn.execute(
            "INSERT INTO erasures (erased_by, key_sha256, customers, history_rows, files) VALUES (%s, %s, %s, %s, %s)",
            [erased_by, erasure.key_sha256, erasure.customers, erasure.history_rows, len(erasure.files)],
        )
    return erasure


def _without_key(text: str, key: str) -> str:
    """`text` with the key, where it stands as a word of its own, replaced by `…`."""
    return re.sub(rf"(?<![\w-]){re.escape(key)}(?![\w-])", "…", text)


# --- the files of one run ------------------------------------------------------------------


def _forget_in_run(files: RunFiles, run: ImportRun, key: str) -> list[str]:
    """Rewrite the run's kept file and reports without the customer's rows: the paths rewritten."""
    store, local = files.store, files.settings.store.local
    folders = [f"archive/{run.id}", f"rejected/{run.id}", f"reports/{run.id}"]
    rewritten: list[str] = []
    with store.mirrored(*folders):
        lines: set[int] = set()
        kept = local / run.file_path if run.file_path else None
        if kept is not None and kept.is_file() and run.file_path and not run.file_path.startswith("processing/"):
            lines = _record_lines(files, run, kept, key)
            if lines and _rewrite(kept, _without_lines(kept.read_bytes(), run.encoding, lines)):
                rewritten.append(run.file_path)
        starts = _record_starts(lines)
        for folder in folders:
            for path in sorted((local / folder).glob("*")) if (local / folder).is_dir() else []:
                relative = f"{folder}/{path.name}"
                if relative == run.file_path:
                    continue
                if _rewrite(path, _report_without(path, key, starts)):
                    rewritten.append(relative)
    return rewritten


def _record_starts(lines: set[int]) -> set[int]:
    """The first line of each record in `lines` (a record spans consecutive lines)."""
    return {n for n in lines if n - 1 not in lines}


def _rewrite(path: Path, content: bytes | None) -> bool:
    if content is None or content == path.read_bytes():
        return False
    partial = path.with_name(f".{path.name}.forget")
    partial.write_bytes(content)
    partial.replace(path)
    return True


def _record_lines(files: RunFiles, run: ImportRun, kept: Path, key: str) -> set[int]:
    """The physical lines of the kept file that hold the customer's records."""
    try:
        with files.csv_file(run, kept) as rows:
            if rows.header:
                index = rows.key_index
                found: set[int] = set()
                for record in rows.records():
                    cell = record.cells[index] if index < len(record.cells) else ""
                    if (unescaped(cell) if rows.is_report else cell) == key:
                        found.update(range(record.line, record.last_line + 1))
                if not rows.file_issues:
                    return found
    except (ValueError, AssertionError, UnicodeError):
        pass  # the key column or the file cannot be read as the contract's: by lines, then
    text = _decoded(kept.read_bytes(), run.encoding)
    as_cell = re.compile(rf'(^|[,;\t|])\s*"?{re.escape(key)}"?\s*([,;\t|]|$)')
    return {n for n, line in enumerate(physical_lines(text), start=1) if as_cell.search(line.rstrip("\r\n"))}


def _decoded(raw: bytes, encoding: str) -> str:
    return raw.decode(encoding, errors="replace")


def _without_lines(raw: bytes, encoding: str, drop: set[int]) -> bytes:
    """`raw` without its physical lines `drop` (1 is the first); the others byte for byte."""
    if encoding.replace("-", "_").startswith(_WIDE):  # a line break is more than one byte: in text
        text = raw.decode(encoding)
        kept = "".join(line for n, line in enumerate(physical_lines(text), start=1) if n not in drop)
        return kept.encode(encoding)
    pieces = re.findall(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$", raw)
    return b"".join(line for n, line in enumerate(pieces, start=1) if n not in drop)


def _report_without(path: Path, key: str, starts: set[int]) -> bytes | None:
    """A report of the run without the customer's rows (None: not a report this knows)."""
    name = path.name
    if name == ERRORS_CSV or name.endswith(f".{ERRORS_CSV}"):  # every row of the file, by its line; beside a
        # rejected file, it is named after it
        return _csv_without(path, lambda row, header: bool(row) and row[0] in {str(n) for n in starts}, key)
    if name in (CHANGES_CSV, DEACTIVATIONS_CSV):  # a row per change, the key in the second column
        return _csv_without(path, lambda row, header: len(row) > 1 and unescaped(row[1]) == key, key)
    if name in ISSUES_FILES:  # an issue per line of text, by the line of the file it is on
        text = path.read_text(encoding="utf-8")
        kept = "".join(issue for issue in physical_lines(text) if json.loads(issue).get("line") not in starts)
        return _without_key(kept, key).encode("utf-8")
    if name == SUMMARY_JSON:
        summary = json.loads(path.read_text(encoding="utf-8"))
        summary["issues"] = [i for i in summary.get("issues", []) if i.get("line") not in starts]
        text = json.dumps(summary, indent=2, ensure_ascii=False)
        return _without_key(text, key).encode("utf-8")
    if name == ROLLBACK_JSON:
        rolled = json.loads(path.read_text(encoding="utf-8"))
        rolled["conflicts"] = [k for k in rolled.get("conflicts", []) if k != key]
        return _without_key(json.dumps(rolled, indent=2), key).encode("utf-8")
    if name == REPORT_HTML:
        row = re.compile(
            r"^\s*<tr><td>(?:" + "|".join(str(n) for n in sorted(starts) or [-1]) + r")</td>"
            r"|^\s*<tr><td>[^<]*</td><td>" + re.escape(escape(key)) + "</td>"
        )
        text = path.read_bytes().decode("utf-8")
        kept = "".join(line for line in physical_lines(text) if not row.search(line))
        return _without_key(kept, escape(key)).encode("utf-8")
    return None


def _csv_without(path: Path, drop: Callable[[list[str], list[str]], bool], key: str) -> bytes:
    """One of the run's CSV reports (UTF-8 with a BOM) without the records `drop` picks; the key
    left out of what the others say (an issue that names it)."""
    text = path.read_bytes().decode("utf-8-sig")  # its line ends as they are (CRLF, and LF in values)
    lines = physical_lines(text)
    kept: list[str] = []
    header: list[str] = []
    for row, first, last in _records(lines):
        if not header:
            header = row
        elif drop(row, header):
            continue
        kept.extend(lines[first:last])
    return ("\ufeff" + _without_key("".join(kept), key)).encode("utf-8")


def _records(lines: list[str]) -> Iterator[tuple[list[str], int, int]]:
    """The CSV records of `lines`, each with the span of lines it took."""
    position = 0

    def feed() -> Iterator[str]:
        nonlocal position
        while position < len(lines):
            position += 1
            yield lines[position - 1]

    start = 0
    for row in csv.reader(feed()):
        yield row, start, position
        start = position
