"""The import of one file, step by step: claim, validate, stage, merge, publish.

Each step is what one task of the `customer_import` DAG does. A step reads the run's state
from `import_runs`, so every step can be retried or cleared and run again: a decided run is
left alone, and the merge commits together with the mark that it happened.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, closing, nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import psycopg

from customer_import.contract.fields import Contract, FieldSpec, load_contract, normalise_header
from customer_import.contract.issues import Issue, read_issues, write_issues
from customer_import.contract.options import ImportOptions
from customer_import.database import checks, db, drafts, merge, runs, snapshots, staging
from customer_import.database.checks import DATABASE_ISSUES_FILE
from customer_import.database.rollback import RollbackResult, roll_back
from customer_import.database.runs import ImportRun
from customer_import.reading.cleaning import VALUE_CHANGES_FILE, ValueChanges
from customer_import.reading.expectations import read_suite
from customer_import.reading.validation import ISSUES_FILE, check_file
from customer_import.report import HTML_CHANGES, ROLLBACK_JSON, write_reports
from customer_import.run_files import RunFiles
from customer_import.settings import Settings
from customer_import.sources.profiles import DEFAULT, Sources
from customer_import.storage.folders import Folders
from customer_import.storage.store import DataStore

log = logging.getLogger(__name__)
EMPTY_FILE = "The file has a header but no data rows (an empty export): there was nothing to import."
REPORTS_FAILED = "The reports could not be written (see the log of the publish_report task); the file is kept."
#: Issues on the key column of rows whose key is valid (it names a customer the file holds).
_VALID_KEY_CODES = frozenset({"duplicate_in_file", "unknown_customer", "existing_customer"})
INFRASTRUCTURE_FAILURE = (
    "The import stopped on an error outside the file (database or infrastructure): see the log of"
    " the failed task. Nothing was merged and the file is kept; clear the run in Airflow to retry."
)


def decide(run: ImportRun) -> tuple[Literal["rejected", "dry_run", "merge"], str]:
    """What happens to a validated and staged run, and the sentence that says so."""
    total, bad = run.rows_total or 0, run.rows_rejected or 0
    if run.file_rejected:
        return "rejected", (
            "The whole file was rejected: "
            + (run.message or "see the issues in the report.")
            + " Fix the file and import it again."
        )
    if bad and run.on_error == "reject_file":
        return "rejected", (
            f"{bad} of {total} rows {'has' if bad == 1 else 'have'} problems and on_error is"
            " reject_file, so nothing was"
            " imported: fix the rows errors.csv marks and import the fixed file again."
        )
    if bad and bad / total > run.max_error_rate:
        return "rejected", (
            f"{bad} of {total} rows ({bad / total:.1%}) have problems, more than max_error_rate"
            f" {run.max_error_rate:.1%} allows, so nothing was imported."
        )
    if run.dry_run:
        return "dry_run", "Dry run: nothing was written."
    return "merge", ""


@dataclass
class Importer:
    """The steps of one import, each what one task of the DAG runs (see the module's docstring)."""

    settings: Settings = field(default_factory=Settings.from_env)
    contract: Contract = field(default_factory=load_contract)

    @property
    def files(self) -> RunFiles:
        """Where the runs' files are, and the claim of a file (made afresh: the settings may change)."""
        return RunFiles(self.settings, self.contract)

    @property
    def sources(self) -> Sources:
        return self.files.sources

    @property
    def store(self) -> DataStore:
        return self.settings.store

    @property
    def folders(self) -> Folders:
        """The data folders where files land (landing/ is the default source's)."""
        return self.files.folders

    def claim_file(
        self,
        conn: psycopg.Connection,
        file_name: str,
        options: ImportOptions,
        dag_id: str | None = None,
        airflow_run_id: str | None = None,
        source_name: str = DEFAULT,
    ) -> int:
        """The first step: `RunFiles.claim`."""
        return self.files.claim(conn, file_name, options, dag_id, airflow_run_id, source_name)

    @property
    def file_to_claim(self) -> Callable[..., str | None]:
        """The file an Airflow run imports: `RunFiles.file_to_claim`."""
        return self.files.file_to_claim

    def claimed_by(self, conn: psycopg.Connection, dag_id: str, airflow_run_id: str) -> ImportRun | None:
        """The import run of an Airflow run, once it claimed its file."""
        db.use_schema(conn, self.settings.schema)
        return runs.find_claimed(conn, dag_id, airflow_run_id)

    def _open(self, conn: psycopg.Connection, run_id: int) -> ImportRun:
        db.use_schema(conn, self.settings.schema)
        db.set_session(conn, "work_mem", self.settings.work_mem)
        return runs.get_run(conn, run_id)

    # --- the steps -----------------------------------------------------------------

    def validate_file(self, conn: psycopg.Connection, run_id: int) -> ImportRun:
        """Check the file (bytes, header, then GX rules per chunk) and stage its rows on disk. When
        its issues already reject it, the run ends `rejected` here: no later check could save it."""
        run = self._open(conn, run_id)
        if not run.is_open:
            return run
        with self.files.mirrored(run):
            result = check_file(
                self.files.csv_file(run, self.files.path(run.claimed_file)),
                self.files.local.real_dir(self.files.local.processing(run_id)),
                read_suite(self.settings.expectations_dir),
                self.settings.chunk_rows,
                stage_started(conn, run, "validating"),
            )
        run = runs.update_run(
            conn,
            run_id,
            rows_total=result.rows,
            file_rejected=result.file_rejected,
            message=result.file_issues[0].message if result.file_issues else None,
            rows_rejected=len(result.rejected_lines),
            rows_valid=None if result.file_rejected else result.rows - len(result.rejected_lines),
        )
        return reject_if_decided(conn, run)

    def load_staging(self, conn: psycopg.Connection, run_id: int) -> ImportRun:
        """COPY the staged rows into the run's staging table and run the database-level checks; the
        run ends `rejected` here when they reject it."""
        run = self._open(conn, run_id)
        if not run.is_open or run.file_rejected:
            return run
        with self.files.mirrored(run):
            return self._stage(conn, run)

    def _stage(self, conn: psycopg.Connection, run: ImportRun) -> ImportRun:
        stage_started(conn, run, "staging")
        staged_csv = self.files.staged_file(run.id)
        with ThreadPoolExecutor(1, "duplicates") as arrow:  # Arrow reads the file while PostgreSQL loads it
            distinct = arrow.submit(checks.distinct_columns, staged_csv, self.contract, run.rows_total or 0)
            fields, staged = staging.copy_into_staging(conn, run.id, staged_csv, self.contract)
        run = runs.update_run(conn, run.id, rows_staged=staged)
        stage_started(conn, run, "checking")
        issues = checks.check_staging(conn, run.id, self.contract, fields, run.mode, distinct.result())
        return reject_if_decided(
            conn, reject_rows(conn, self.files.local.processing(run.id), run, issues, keep_earlier=False)
        )

    def issues(self, run_id: int) -> Iterator[Issue]:
        """The issues a run found so far (file, rows, database), in the order they were found (on
        object storage, read from a passing copy of the run's issue files)."""
        work = self.files.local.processing(run_id)
        with self.store.mirrored(*(f"processing/{run_id}/{name}" for name in (ISSUES_FILE, DATABASE_ISSUES_FILE))):
            yield from read_issues(work / ISSUES_FILE, work / DATABASE_ISSUES_FILE)

    def merge_customers(self, conn: psycopg.Connection, run_id: int) -> ImportRun:
        """Decide the outcome; merge the accepted rows in one transaction under the merge lock."""
        run = self._open(conn, run_id)
        if not run.is_open:
            return run
        with self.files.mirrored(run):
            return self._merge(conn, run)

    def _merge(self, conn: psycopg.Connection, run: ImportRun) -> ImportRun:
        run_id, work = run.id, self.files.local.processing(run.id)
        if not run.file_rejected and staging.staged_count(conn, run_id) != run.rows_staged:
            run = self._stage(conn, run)  # the server lost the unlogged staging table (a crash)
            if not run.is_open:
                return run
        verdict, message = decide(run)
        if verdict == "rejected":
            return runs.update_run(conn, run_id, status="rejected", message=message)
        fields = staging.staged_fields(self.files.staged_file(run_id), self.contract)
        if verdict == "dry_run":
            return self._dry_run(conn, run, fields, message)
        stage_started(conn, run, "merging")
        with db.locked(conn, db.MERGE_LOCK):
            run = runs.get_run(conn, run_id, for_update=True)
            if run.merged_at is not None:
                return run
            run = recheck(conn, work, run, self.contract, fields, unique_values=False)
            if run.status == "rejected":
                return run
            snapshot = self._snapshot(conn, run, keep=True)
            if snapshot is not None and snapshot.refused:
                return refuse_snapshot(conn, work, run, snapshot)
            try:
                with conn.transaction():  # a savepoint: what the merge did is undone if it is refused
                    counts = merge.apply_merge(conn, run_id, self.contract, fields, run.mode, run.source)
            except psycopg.errors.UniqueViolation as refused:
                # A value that must be unique (an email) was taken since the checks, by another import
                # or another writer: those rows are rejected like any other, and the rest is merged.
                why = refused.diag.message_primary or str(refused)
                log.info("The merge was refused (%s): checking the rows against the customers again.", why)
                run = recheck(conn, work, run, self.contract, fields, unique_values=True)
                if run.status == "rejected":
                    return run
                counts = merge.apply_merge(conn, run_id, self.contract, fields, run.mode, run.source)
            if snapshot is not None and snapshot.deactivates:
                counts = replace(counts, deactivated=snapshots.deactivate(conn, run, self.contract))
            skipped = run.rows_rejected or 0
            outcome = EMPTY_FILE if not run.rows_total else None
            if skipped:
                outcome = (
                    f"{skipped} row{' was' if skipped == 1 else 's were'} skipped for their problems (see errors.csv)."
                )
            return runs.update_run(
                conn,
                run_id,
                status="partial" if skipped else "succeeded",
                merged_at=datetime.now(UTC),
                message=_sentences(outcome, snapshots.outcome(snapshot, run, counts.deactivated)),
                **vars(counts),
            )

    def _dry_run(self, conn: psycopg.Connection, run: ImportRun, fields: list[FieldSpec], message: str) -> ImportRun:
        counts = merge.preview_counts(conn, run.id, self.contract, fields, run.source)
        snapshot = self._snapshot(conn, run, keep=False)
        if snapshot is not None and not snapshot.skipped:
            counts = replace(counts, deactivated=snapshot.absent)
        would = [f"insert {counts.inserted}", f"update {counts.updated}"]
        would += [
            f"{verb} {n}" for verb, n in (("reactivate", counts.reactivated), ("deactivate", counts.deactivated)) if n
        ]
        message += (
            f" It would {', '.join(would)} and leave {counts.unchanged} unchanged:"
            " changes.csv lists every field it would change, before and after."
        )
        if snapshot is not None and snapshot.refused:
            message += f" The import itself would be refused: {snapshot.refused}"
        return runs.update_run(
            conn,
            run.id,
            status="dry_run",
            message=_sentences(message, snapshot.skipped if snapshot else None),
            **vars(counts),
        )

    def _snapshot(self, conn: psycopg.Connection, run: ImportRun, *, keep: bool) -> snapshots.Plan | None:
        """What the run deactivates as a full snapshot (see snapshots.py); None for a delta."""
        if run.snapshot != "full":
            return None
        key = self.contract.key
        names = {h for h, spec in self.sources[run.source].headers(self.contract).items() if spec is key}
        work = self.files.local.processing(run.id)
        invalid = min(
            (
                i.line
                for i in read_issues(work / ISSUES_FILE, work / DATABASE_ISSUES_FILE)
                if i.line is not None
                and i.column is not None
                and normalise_header(i.column) in names | {normalise_header(key.column)}
                and i.code not in _VALID_KEY_CODES
            ),
            default=None,
        )
        return snapshots.plan(conn, run, self.contract, invalid, keep=keep)

    def publish_report(self, conn: psycopg.Connection, run_id: int, failure: str | None = None) -> ImportRun:
        """Write the reports, move the file to archive/ or rejected/, and close the run.

        A run still open here had a step fail on infrastructure: it ends `failed`.
        """
        run = self._open(conn, run_id)
        if run.finished_at is not None:
            return run
        if run.is_open:
            run = runs.update_run(conn, run_id, status="failed", message=failure or INFRASTRUCTURE_FAILURE)
        if run.file_path is None:  # it never got a file (refused at the claim): nothing to report on or move
            return runs.update_run(conn, run_id, finished_at=datetime.now(UTC))
        stage_started(conn, run, "reporting")
        try:
            with self.files.mirrored(run):
                self._publish(conn, run)
        except Exception:
            # whatever stopped the reports, the run is finished (never left "running" for good): a retry
            # of this step finds it so, and the page says where to look
            log.exception("Import run %s: the reports could not be written.", run_id)
            unfinished = runs.get_run(conn, run_id)
            runs.update_run(
                conn,
                run_id,
                finished_at=datetime.now(UTC),
                message=f"{unfinished.message or ''} {REPORTS_FAILED}".strip(),
            )
            raise
        self.store.forget(f"processing/{run_id}", f"archive/{run_id}", f"rejected/{run_id}", f"reports/{run_id}")
        finished = runs.update_run(conn, run_id, finished_at=datetime.now(UTC), stage=None, stage_started_at=None)
        self.files.update_summary(finished)  # summary.json says how the run ended, where its file rests
        return finished

    def _publish(self, conn: psycopg.Connection, run: ImportRun) -> None:
        work = self.files.local.processing(run.id)
        source, target_dir, report_dir = self.files.publication(run)
        changes: Iterable[merge.Change] = ()
        lifecycle: Iterable[merge.Change] = ()
        if run.merged_at is not None:
            changes = merge.first_changes(conn, run.id, limit=HTML_CHANGES)
            if run.deactivated or run.reactivated:
                lifecycle = merge.lifecycle_changes(conn, run.id)
        elif run.status == "dry_run":
            fields = staging.staged_fields(self.files.staged_file(run.id), self.contract)
            deactivations = snapshots.absent(self.contract, run) if run.deactivated else None
            changes = merge.preview(conn, run.id, self.contract, fields, deactivations)
        with _closed(changes), _closed(lifecycle):
            write_reports(
                run,
                self.files.csv_file(run, source),
                read_issues(work / ISSUES_FILE, work / DATABASE_ISSUES_FILE),
                report_dir,
                self.settings.issues_in_summary,
                changes,
                ValueChanges.read(work / VALUE_CHANGES_FILE),
                lifecycle,
                drafts.edits(conn, run.fixed_from) if run.fixed_from else None,
            )
        self.files.keep(conn, run, source, target_dir, report_dir)
        staging.drop_staging(conn, run.id)

    def roll_back(self, conn: psycopg.Connection, run_id: int) -> RollbackResult:
        """Undo an import run (see `rollback`); the result is also written to its rollback.json."""
        db.use_schema(conn, self.settings.schema)
        result = roll_back(conn, run_id, self.contract)
        self.files.write_report(
            run_id, ROLLBACK_JSON, json.dumps({**vars(result), "message": result.message}, indent=2)
        )
        return result

    # --- all at once -----------------------------------------------------------------

    def import_file(
        self, conn: psycopg.Connection, file_name: str, options: ImportOptions | None = None, source: str = DEFAULT
    ) -> ImportRun:
        """Every step in this process, for a file in the landing folder of `source` (tests, notebooks, bench);
        without options, the source's."""
        if options is None:
            options = self.files.sources[source].import_options
        run_id = self.claim_file(conn, file_name, options, source_name=source)
        try:
            self.validate_file(conn, run_id)
            self.load_staging(conn, run_id)
            self.merge_customers(conn, run_id)
        except psycopg.OperationalError as error:
            return self.publish_report(conn, run_id, failure=f"{INFRASTRUCTURE_FAILURE} ({error})")
        return self.publish_report(conn, run_id)


def stage_started(conn: psycopg.Connection, run: ImportRun, stage: str) -> Callable[[int, float], None]:
    """Record that the run entered `stage`; a function that records (and logs) how far it got."""
    runs.update_run(conn, run.id, stage=stage, stage_started_at=datetime.now(UTC), rows_done=None, rows_expected=None)

    def progress(rows: int, share: float) -> None:
        expected = max(rows, round(rows / share)) if share else None
        log.info("%s", runs.update_run(conn, run.id, rows_done=rows, rows_expected=expected).progress)

    return progress


def _closed(rows: Iterable[merge.Change]) -> AbstractContextManager[object]:
    """Closes a streamed query's generator (its cursor and transaction) however the reports end."""
    return closing(rows) if isinstance(rows, Generator) else nullcontext()


def _sentences(*parts: str | None) -> str | None:
    return " ".join(p for p in parts if p) or None


def refuse_snapshot(conn: psycopg.Connection, work: Path, run: ImportRun, snapshot: snapshots.Plan) -> ImportRun:
    """Reject a full snapshot that would deactivate more than its source allows, before it writes
    anything: a whole-file issue in the reports, and the count the page's confirmation states."""
    assert snapshot.refused is not None
    earlier = list(read_issues(work / DATABASE_ISSUES_FILE))
    write_issues(work / DATABASE_ISSUES_FILE, [*earlier, Issue(None, None, "mass_deactivation", snapshot.refused)])
    return runs.update_run(
        conn, run.id, status="rejected", message=snapshot.refused, deactivation_refused=snapshot.absent
    )


def reject_if_decided(conn: psycopg.Connection, run: ImportRun) -> ImportRun:
    """The run rejected when `decide` says so; else as it is."""
    verdict, message = decide(run)
    return runs.update_run(conn, run.id, status="rejected", message=message) if verdict == "rejected" else run


def reject_rows(
    conn: psycopg.Connection, work: Path, run: ImportRun, issues: list[Issue], *, keep_earlier: bool
) -> ImportRun:
    """Record database-level issues for the report, take their rows out of the merge, recount."""
    earlier = list(read_issues(work / DATABASE_ISSUES_FILE)) if keep_earlier else []
    write_issues(work / DATABASE_ISSUES_FILE, [*earlier, *(i for i in issues if i not in earlier)])
    staging.reject_lines(conn, run.id, {i.line for i in issues if i.line is not None})
    rejected = {i.line for i in read_issues(work / ISSUES_FILE, work / DATABASE_ISSUES_FILE)}
    return runs.update_run(conn, run.id, rows_rejected=len(rejected), rows_valid=(run.rows_total or 0) - len(rejected))


def recheck(
    conn: psycopg.Connection,
    work: Path,
    run: ImportRun,
    contract: Contract,
    fields: list[FieldSpec],
    *,
    unique_values: bool,
) -> ImportRun:
    """Check the accepted rows against the stored customers again, inside the merge transaction:
    another import may have added a key or taken an email since staging. Rows that now break a
    rule are rejected in this transaction and reported like any other; the run is rejected when
    the error policy says so.

    The values that must be unique (emails) are checked again only when the merge was refused
    for one (`unique_values`): their unique index refuses a taken one anyway, and checking a
    million emails costs more than a second, on every import, for what is rare.
    """
    late = checks.check_against_customers(
        conn, run.id, contract, fields, run.mode, accepted_only=True, unique_values=unique_values
    )
    return reject_if_decided(conn, reject_rows(conn, work, run, late, keep_earlier=True) if late else run)
