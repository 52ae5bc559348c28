"""Fix in the browser: a rejected file's rows in a draft, every change checked by the import's own rules.

A draft (`database.drafts`) is made from the run's kept file, read by the import's reader, and the
issues the import found (kept beside its reports). Rows are checked again exactly as the import
checks a file, because they are a file: the file's header as written, then each row checked, at
its own line (blank lines before it, which the reader skips, so every message names the line the
import named), through `check_file` (the reader, the contract's formats, the GX suite) and then
the staging table's checks (`checks.check_staging`: a value repeated in the file, an email another
customer has, a key the mode needs or forbids, what a new customer needs) over the checked rows and
every row of the draft that shares a key or an email with them. Every rule is a rule of one column,
so a row whose cells changed is checked by GX on those cells only; its other cells keep their issues.

The fixed file is the draft written out: the header as written, every row not skipped as written
in the file (untouched) or as CSV of its cells (changed), UTF-8, named after the original
(`customers.fixed-1.csv`), into the landing folder of the run's source.
"""

from __future__ import annotations

import csv
import io
import logging
import queue
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg

from customer_import.contract.fields import Contract, load_contract
from customer_import.contract.issues import Issue, read_issues
from customer_import.contract.options import ImportOptions
from customer_import.database import checks, db, drafts, staging
from customer_import.database.drafts import DRAFT_LOCK, Draft, FixRow
from customer_import.database.runs import ImportRun
from customer_import.database.staging import STAGED_FILE
from customer_import.reading import charsets
from customer_import.reading.expectations import RowValidator, read_suite
from customer_import.reading.records import physical_lines
from customer_import.reading.validation import check_file
from customer_import.run_files import ISSUES_FILES, RunFiles
from customer_import.settings import Settings

log = logging.getLogger(__name__)
#: The runs whose file can be fixed in the browser: rejected for some of their rows, or imported without them.
FIXABLE = ("rejected", "partial")
_FIXED = re.compile(r"\.fixed-(\d+)$")


class FixRefused(ValueError):
    """What a person asked of a draft that cannot be done, in words that say why (HTTP 409)."""


class CellTooLong(FixRefused):
    """A value longer than its field may hold (HTTP 400)."""


@dataclass
class Fixer:
    """The drafts of rejected runs: opened, edited and checked, imported (see the module's docstring)."""

    settings: Settings = field(default_factory=Settings.from_env)
    contract: Contract = field(default_factory=load_contract)

    @property
    def files(self) -> RunFiles:
        return RunFiles(self.settings, self.contract)

    @staticmethod
    def fixed_options(run: ImportRun) -> ImportOptions:
        """The options its fixed file is imported with: the run's, read as UTF-8 (as it is written)."""
        return replace(run.options, encoding="utf-8")

    # --- opening -------------------------------------------------------------------

    def refusal(self, run: ImportRun) -> str | None:
        """Why the run's file cannot be fixed here (None: it can)."""
        if run.status not in FIXABLE or not run.is_finished:
            return f"Import run {run.id} is {run.status}: only a rejected or partial run's file is fixed here."
        if run.file_rejected or run.deactivation_refused:
            return (
                f"Import run {run.id} was rejected as a whole file ({run.message or 'see its page'}):"
                " that is fixed in the file itself, not row by row."
            )
        if not run.file_path or self.settings.store.find(run.file_path) is None:
            return f"The file of import run {run.id} is no longer kept, so it cannot be fixed here."
        kept = [self.settings.store.find(f"{run.report_dir}/{name}") for name in ISSUES_FILES] if run.report_dir else []
        if not any(found is not None for found in kept):  # (each is kept when it lists an issue)
            return (
                f"Import run {run.id} ended before this version kept every issue beside its reports: import"
                " its file again to fix it here, or fix it with errors.csv."
            )
        return None

    def open(
        self,
        conn: psycopg.Connection,
        run: ImportRun,
        opened_by: str,
        connect: Callable[[], psycopg.Connection] | None = None,
    ) -> Draft:
        """The run's draft, made from its file and issues the first time it is opened.

        It is ready to show once its rows with issues are stored; then the others are added and the
        whole file is checked (`_load`). With `connect`, that goes on in a thread of its own, on a
        connection of its own, after this returns (a change waits for it: the draft's lock); GX is
        imported there too, for the first check of a change. Without, it is done before this returns.
        """
        draft = drafts.get_draft(conn, run.id)
        if draft is not None and not (draft.is_loading and drafts.loader_gone(conn, run.id)):
            return draft
        if (why := self.refusal(run)) is not None:
            raise FixRefused(why)
        if connect is None:
            return self._load(conn, run, opened_by, lambda draft: None)
        ready: queue.Queue[Draft | BaseException] = queue.Queue()

        def load() -> None:
            try:
                with connect() as own:
                    db.use_schema(own, self.settings.schema)
                    self._load(own, run, opened_by, ready.put)
                self.warm_up()
            except BaseException as error:
                log.exception("Import run %s: its draft could not be loaded.", run.id)
                ready.put(error)

        threading.Thread(target=load, name=f"fix-draft-{run.id}", daemon=True).start()
        made = ready.get()
        if isinstance(made, BaseException):
            raise made
        return made

    def _load(self, conn: psycopg.Connection, run: ImportRun, opened_by: str, ready: Callable[[Draft], None]) -> Draft:
        with drafts.loading(conn, run.id):
            draft = drafts.get_draft(conn, run.id)
            if draft is not None and not draft.is_loading:
                ready(draft)  # opened by another request meanwhile
                return draft
            if draft is not None:
                drafts.delete(conn, run.id)  # its loader stopped half-way: made again
            with self.settings.store.mirrored(run.claimed_file, f"{run.report_dir}"):
                draft, rows = self._make(conn, run, opened_by)
            ready(draft)
            with conn.transaction():
                drafts.add_rows(conn, run.id, (row for row in rows if not row.issues))
                if run.rows_staged is None:  # its rows' issues rejected it before the checks of the whole file
                    self._check_whole_file(conn, run, draft, rows)
                drafts.set_status(conn, run.id, "open")
        return replace(draft, status="open")

    def warm_up(self) -> None:
        """Import GX and build its suites (seconds, once per process), before the first change is checked."""
        RowValidator(read_suite(self.settings.expectations_dir), self.contract.fields).warm_up()

    def _check_whole_file(self, conn: psycopg.Connection, run: ImportRun, draft: Draft, rows: list[FixRow]) -> None:
        """Run the checks of the whole file and the database the import did not get to (GX's rules
        found every row's own issues already, and are not run again)."""
        found = self.check(conn, run, draft, rows, columns=set())
        drafts.set_issues(
            conn,
            run.id,
            {
                row.line: sorted([*row.issues, *database], key=_issue_order)
                for row in rows
                if (database := [i for i in found.get(row.line, []) if i["database"]])
            },
        )

    def _make(self, conn: psycopg.Connection, run: ImportRun, opened_by: str) -> tuple[Draft, list[FixRow]]:
        """The draft of the run's file with its rows that have issues (what the grid shows first); every row."""
        path = self.files.path(run.claimed_file)
        codec = "utf-8-sig" if charsets.is_utf8(run.encoding) else run.encoding
        lines = physical_lines(path.read_bytes().decode(codec, errors="replace"))
        report_dir = self.files.path(run.report_dir or "")
        found: dict[int, list[Issue]] = {}
        database = set(read_issues(report_dir / ISSUES_FILES[1]))
        for issue in read_issues(*(report_dir / name for name in ISSUES_FILES)):
            if issue.line is not None:
                found.setdefault(issue.line, []).append(issue)
        with self.files.csv_file(run, path) as source:
            if source.file_issues or not source.header:
                raise FixRefused(f"The file of import run {run.id} cannot be read row by row: fix it in the file.")
            fields: list[dict[str, Any]] = [
                {
                    "index": index,
                    "column": spec.column,
                    "label": source.labels.get(spec.column, spec.header),
                    "limit": spec.limit,
                }
                for spec, index in zip(source.fields, source.field_indexes, strict=True)
                if index is not None
            ]
            columns = {f["label"]: f["index"] for f in fields}
            rows = [
                FixRow(
                    record.line,
                    record.last_line,
                    record.cells,
                    "".join(lines[record.line - 1 : max(record.last_line, record.read_to)]),
                    [_as_dict(i, columns, i in database) for i in found.get(record.line, [])],
                )
                for record in source.records()
            ]
        header_text = "".join(lines[: source.header_line])
        flagged = [row for row in rows if row.issues]
        draft = drafts.create_draft(conn, run.id, source.header, header_text, fields, opened_by, flagged)
        return draft, rows

    def discard(self, conn: psycopg.Connection, run: ImportRun) -> None:
        """Delete the run's draft (once it is loaded) unless its fixed file was written."""
        with db.locked(conn, DRAFT_LOCK.format(run.id)):
            drafts.discard(conn, run.id)

    def draft(self, conn: psycopg.Connection, run: ImportRun) -> Draft:
        """The run's open draft (refused when there is none, or it was imported)."""
        draft = drafts.get_draft(conn, run.id)
        if draft is None:
            raise FixRefused(f"Import run {run.id} has no draft: open Fix in the browser on its page first.")
        if not draft.is_open:
            raise FixRefused(
                f"The draft of import run {run.id} was imported as {draft.fixed_file}"
                + (f" (import run {draft.fixed_run})" if draft.fixed_run else "")
                + ": it can no longer be changed."
            )
        return draft

    # --- changing ------------------------------------------------------------------

    def edit(
        self, conn: psycopg.Connection, run: ImportRun, changes: list[tuple[int, int, str]], edited_by: str
    ) -> list[FixRow]:
        """Set cells (line, column index, value) and check their rows again; the rows that changed."""
        draft = self.draft(conn, run)
        for _, index, value in changes:
            self._check_value(draft, index, value)
        with db.locked(conn, DRAFT_LOCK.format(run.id)):
            before = drafts.rows_at(conn, run.id, {line for line, _, _ in changes})
            if len(before) != len({line for line, _, _ in changes}):
                raise FixRefused(f"The draft of import run {run.id} has no such line.")
            drafts.set_cells(conn, run.id, changes, draft.header, edited_by)
            after = drafts.rows_at(conn, run.id, [r.line for r in before])
            edited: dict[int, set[int]] = {}
            for line, index, _ in changes:
                edited.setdefault(line, set()).add(index)
            return self._recheck(conn, run, draft, after, edited, [*before, *after])

    def skip(self, conn: psycopg.Connection, run: ImportRun, line: int, skipped_by: str | None) -> list[FixRow]:
        """Leave a row out of the fixed file (or take it back: `skipped_by` None); the rows that changed."""
        draft = self.draft(conn, run)
        with db.locked(conn, DRAFT_LOCK.format(run.id)):
            rows = drafts.rows_at(conn, run.id, [line])
            if not rows:
                raise FixRefused(f"The draft of import run {run.id} has no line {line}.")
            drafts.set_skipped(conn, run.id, line, skipped_by)
            # the rows that shared its key or email: a repeat may be gone, or back
            return [*drafts.rows_at(conn, run.id, [line]), *self._recheck(conn, run, draft, [], {}, rows)]

    def matching(self, conn: psycopg.Connection, run: ImportRun, index: int, find: str, *, whole: bool) -> list[int]:
        """The lines a bulk change would change: column `index` is `find` (`whole`) or contains it."""
        draft = self.draft(conn, run)
        if not 0 <= index < len(draft.header):
            raise FixRefused(f"The file has no column {index + 1}.")
        if not find and not whole:
            raise FixRefused("Say what to find: an empty text is in every cell.")
        with db.locked(conn, DRAFT_LOCK.format(run.id)):  # (a draft still loading has more rows to come)
            return drafts.lines_matching(conn, run.id, index, find, whole=whole)

    def bulk(
        self,
        conn: psycopg.Connection,
        run: ImportRun,
        index: int,
        find: str,
        replacement: str,
        *,
        whole: bool,
        edited_by: str,
    ) -> list[FixRow]:
        """Replace `find` in column `index` of every row not skipped: the whole value (`whole`) or each
        occurrence in it. One check of every row it changed."""
        with db.locked(conn, DRAFT_LOCK.format(run.id)):  # what it matched is what it changes
            rows = drafts.rows_at(conn, run.id, self.matching(conn, run, index, find, whole=whole))
            changes = [
                (row.line, index, replacement if whole else row.cells[index].replace(find, replacement)) for row in rows
            ]
            return self.edit(conn, run, changes, edited_by) if changes else []

    def recheck(self, conn: psycopg.Connection, run: ImportRun, lines: Iterable[int]) -> list[FixRow]:
        """Check whole rows again, every rule: what the import would say of them now."""
        draft = self.draft(conn, run)
        with db.locked(conn, DRAFT_LOCK.format(run.id)):
            rows = drafts.rows_at(conn, run.id, lines)
            return self._recheck(conn, run, draft, rows, {row.line: None for row in rows}, rows)

    def _check_value(self, draft: Draft, index: int, value: str) -> None:
        if not 0 <= index < len(draft.header):
            raise FixRefused(f"The file has no column {index + 1}.")
        limit = next((f["limit"] for f in draft.fields if f["index"] == index), None) or self.settings.max_field_chars
        if len(value) > limit:
            raise CellTooLong(
                f"{draft.header[index]} holds at most {limit:,} characters; the value typed has {len(value):,}."
                " Shorten it."
            )

    # --- checking ------------------------------------------------------------------

    def _recheck(
        self,
        conn: psycopg.Connection,
        run: ImportRun,
        draft: Draft,
        rows: list[FixRow],
        edited: Mapping[int, set[int] | None],
        sharing: list[FixRow],
    ) -> list[FixRow]:
        """Check `rows` again (`edited`: the cells whose rules run, None for every rule) and, for the
        rules of the whole file, every row that shares a key or an email with them or with `sharing`
        (the rows as they were); store and return the rows whose issues were checked."""
        neighbours = self._sharing(conn, draft, [*rows, *sharing])
        checked = {row.line: row for row in drafts.rows_at(conn, run.id, {*neighbours, *(r.line for r in rows)})}
        checked = {line: row for line, row in checked.items() if row.skipped_by is None or line in edited}
        whole_rows = {line for line, cells in edited.items() if cells is None}
        for line in edited.keys() & checked.keys():  # a row written anew: every rule, when its shape changed
            if checked[line].raw is None and any(i["column"] is None for i in checked[line].issues):
                whole_rows.add(line)
        columns = None
        if not whole_rows:
            by_index = {f["index"]: f["column"] for f in draft.fields}
            columns = {by_index[i] for cells in edited.values() if cells for i in cells if i in by_index}
        found = self.check(conn, run, draft, list(checked.values()), columns)
        issues: dict[int, list[dict[str, Any]]] = {}
        for line, row in checked.items():
            new = found.get(line, [])
            if line in edited and (line in whole_rows or columns is None):
                issues[line] = new
            elif line in edited:  # its other cells keep what their rules said
                cells = edited[line] or set()
                said = {i["column"] for i in new if not i["database"]}
                kept = [
                    i
                    for i in row.issues
                    if not i["database"] and i["column"] is not None and i["column"] not in cells | said
                ]
                issues[line] = sorted([*kept, *new], key=_issue_order)
            else:  # a row that shares a value: the checks of the whole file only
                issues[line] = sorted(
                    [*(i for i in row.issues if not i["database"]), *(i for i in new if i["database"])],
                    key=_issue_order,
                )
        drafts.set_issues(conn, run.id, issues)
        return drafts.rows_at(conn, run.id, issues)

    def _sharing(self, conn: psycopg.Connection, draft: Draft, rows: list[FixRow]) -> set[int]:
        """The rows of the draft that share a key or a value that must be unique with `rows`."""
        lines: set[int] = set()
        for spec, casefold in checks.once_per_file(self.contract):
            for f in (f for f in draft.fields if f["column"] == spec.column):
                index = f["index"]
                values = {row.cells[index] for row in rows if index < len(row.cells)}
                lines.update(drafts.lines_holding(conn, draft.run_id, index, values, casefold=casefold))
        return lines

    def check(
        self, conn: psycopg.Connection, run: ImportRun, draft: Draft, rows: list[FixRow], columns: set[str] | None
    ) -> dict[int, list[dict[str, Any]]]:
        """The issues the import finds in `rows` (GX only on `columns`, when given), by line."""
        if not rows:
            return {}
        labels = {f["label"]: f["index"] for f in draft.fields}
        with tempfile.TemporaryDirectory(prefix="fix-") as work:
            path = Path(work) / "rows.csv"
            text, placed = rows_text(draft.header_text, rows, keep_lines=True, alone=len(rows) == 1)
            path.write_text(text, encoding="utf-8", newline="")
            result = check_file(
                self.files.csv_file(replace(run, encoding="utf-8"), path),
                Path(work),
                read_suite(self.settings.expectations_dir),
                only=columns,
            )
            original = {at: line for line, at in placed.items()}
            found: dict[int, list[dict[str, Any]]] = {}
            row_issues = read_issues(Path(work) / ISSUES_FILES[0])
            database: list[Issue] = []
            if (Path(work) / STAGED_FILE).is_file() and not result.file_rejected:
                database = self._database_checks(conn, run, Path(work) / STAGED_FILE)
            for issue, is_database in [*((i, False) for i in row_issues), *((i, True) for i in database)]:
                # a file issue is every row's; one on a line no row starts on is of lines a broken row's
                # text took in, which are rows of their own
                lines = list(placed) if issue.line is None else [original[issue.line]] if issue.line in original else []
                for line in lines:
                    found.setdefault(line, []).append(_as_dict(issue, labels, is_database))
        return found

    def _database_checks(self, conn: psycopg.Connection, run: ImportRun, staged_csv: Path) -> list[Issue]:
        """`check_staging` over the checked rows, in a staging table of the draft's (the draft's lock is held)."""
        table = -run.id
        staged = staged_csv.read_bytes()
        if b"\x00" in staged:  # a control character the GX rules not run here reject: staged without it, as there
            staged_csv.write_bytes(staged.replace(b"\x00", b""))
        try:
            fields, _ = staging.copy_into_staging(conn, table, staged_csv, self.contract)
            return checks.check_staging(conn, table, self.contract, fields, run.mode)
        finally:
            staging.drop_staging(conn, table)

    # --- the fixed file ------------------------------------------------------------

    def fixed_name(self, run: ImportRun) -> str:
        """`customers.fixed-1.csv` for customers.csv; `customers.fixed-2.csv` for that one fixed again."""
        original = Path(run.file_name)
        stem, number = original.stem, 1
        if (earlier := _FIXED.search(stem)) is not None:
            stem, number = stem[: earlier.start()], int(earlier.group(1)) + 1
        return f"{stem}.fixed-{number}{original.suffix or '.csv'}"

    def write_fixed(self, conn: psycopg.Connection, run: ImportRun, imported_by: str) -> str:
        """Write the fixed file into the landing folder of the run's source; its name there. The run
        that claims it records that it fixes this one (`drafts.link_fixed_run`)."""
        draft = self.draft(conn, run)
        with db.locked(conn, DRAFT_LOCK.format(run.id)):
            rows = [row for row in drafts.all_rows(conn, run.id) if row.skipped_by is None]
            text, placed = rows_text(draft.header_text, rows, keep_lines=False)
            folders = self.files.landing(run.source)
            name, _ = folders.receive_upload(
                iter([text.encode("utf-8")]), self.fixed_name(run), max(self.settings.upload_max_bytes, len(text) * 4)
            )
            drafts.mark_importing(conn, run.id, name, imported_by, placed)
        return name


def rows_text(
    header_text: str, rows: Iterable[FixRow], *, keep_lines: bool, alone: bool = False
) -> tuple[str, dict[int, int]]:
    """The file of `header_text` and `rows` (each as written, or as CSV of its cells once changed) and the
    line each row starts on in it. `keep_lines`: each row on the line it has in the file (blank lines
    before it), so that what the reader says of it names that line. A broken row is written with the
    lines the reader took in before it gave up on it (`Record.read_to`) only when `alone`: otherwise
    those lines are rows of their own, written as such."""
    newline = "\r\n" if header_text.endswith("\r\n") else "\n"
    header = header_text if header_text.endswith(("\n", "\r")) else header_text + newline
    pieces, placed = [header], {}
    at = len(physical_lines(header)) + 1
    for row in sorted(rows, key=lambda r: r.line):
        if keep_lines and row.line > at:
            pieces.append(newline * (row.line - at))
            at = row.line
        if row.raw is None:
            text = _csv_line(row.cells, newline)
        else:
            text = row.raw if alone else "".join(physical_lines(row.raw)[: row.last_line - row.line + 1])
        if not text.endswith(("\n", "\r")):
            text += newline
        placed[row.line] = at
        pieces.append(text)
        at += len(physical_lines(text))
    return "".join(pieces), placed


def _csv_line(cells: list[str], newline: str) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator=newline).writerow(cells)
    return out.getvalue()


def _as_dict(issue: Issue, columns: dict[str, int], database: bool) -> dict[str, Any]:
    """An issue as a draft keeps it: on the column of the header it names (None: the row as a whole)."""
    return {
        "column": columns.get(issue.column or ""),
        "code": issue.code,
        "message": issue.message,
        "database": database,
    }


def _issue_order(issue: dict[str, Any]) -> tuple[int, int]:
    return (-1 if issue["column"] is None else issue["column"], int(issue["database"]))
