"""The files of import runs: where a run's file and reports are, the copy of them a step works on
(on object storage, see `store`), and the claim that moves a file out of landing into a run.

`pipeline.Importer` runs the steps; this is what they share about files, apart from them.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from customer_import.contract.fields import Contract
from customer_import.contract.options import ImportOptions
from customer_import.database import db, drafts, runs
from customer_import.database.checks import DATABASE_ISSUES_FILE
from customer_import.database.runs import FAILED_STATUSES, ImportRun
from customer_import.database.staging import STAGED_FILE
from customer_import.reading.csvfile import CsvFile
from customer_import.reading.validation import ISSUES_FILE
from customer_import.report import ERRORS_CSV, SUMMARY_JSON
from customer_import.settings import Settings
from customer_import.sources.profiles import DEFAULT, Sources, load_sources
from customer_import.storage.folders import Folders, move
from customer_import.storage.regular import NotRegularFile, check_regular, sha256_of
from customer_import.storage.store import DataStore

#: The issue files of a run's work folder, kept beside its reports when it ends.
ISSUES_FILES = (ISSUES_FILE, DATABASE_ISSUES_FILE)


class ImportedElsewhere(LookupError):
    """The file a run names was imported by another run (one that took the oldest file waiting)."""

    def __init__(self, run: ImportRun) -> None:
        super().__init__(f"{run.file_name} was imported by import run {run.id}: another Airflow run took it first.")
        self.run = run


@dataclass(frozen=True)
class RunFiles:
    """The data folders as the steps of one deployment (its settings and contract) see them."""

    settings: Settings
    contract: Contract

    @property
    def sources(self) -> Sources:
        return load_sources(self.settings.sources_file, self.contract)

    @property
    def store(self) -> DataStore:
        return self.settings.store

    @property
    def folders(self) -> Folders:
        """The data folders where files land (the local folder or the object store; landing/ is the
        default source's)."""
        return self.sources.folders(self.store.root)

    @property
    def local(self) -> Folders:
        """This machine's data folders, where the steps work (on object storage: a copy, see `store`)."""
        return Folders(self.settings.data_dir)

    def landing(self, source: str) -> Folders:
        try:
            return self.sources.folders(self.store.root, source)
        except KeyError as unknown:
            raise ValueError(unknown.args[0]) from None

    def mirrored(self, run: ImportRun) -> AbstractContextManager[None]:
        """The block works on this machine's copy of the run's files (see `store`)."""
        return self.store.mirrored(f"processing/{run.id}", *([run.file_path] if run.file_path else []))

    def path(self, relative: str) -> Path:
        return self.settings.data_dir / relative

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.settings.data_dir))

    def staged_file(self, run_id: int) -> Path:
        return self.local.processing(run_id) / STAGED_FILE

    def claim(
        self,
        conn: psycopg.Connection,
        file_name: str,
        options: ImportOptions,
        dag_id: str | None = None,
        airflow_run_id: str | None = None,
        source_name: str = DEFAULT,
    ) -> int:
        """Move `file_name` out of the landing folder of its source into the run's processing folder;
        return the run id.

        Run again for the same Airflow run, it finds the run's file where it is; a rejected or
        failed run is reopened, so fixing the kept file and clearing the run imports it.
        """
        db.migrate(conn, self.contract, self.settings.schema)
        folders = self.landing(source_name).create()
        source = folders.landing_file(file_name)
        if airflow_run_id is None and not source.exists():
            raise FileNotFoundError(f"{file_name} is not in the landing folder {folders.landing}")
        if isinstance(source, Path) and os.path.lexists(source):
            self.refuse_unless_regular(source)
        run = runs.create_run(conn, file_name, options, dag_id, airflow_run_id, source_name)
        if run.file_path is None:
            try:
                if isinstance(source, Path) and not source.exists():  # (on object storage: `_take_object`)
                    raise FileNotFoundError(f"{file_name} is not in the landing folder {folders.landing}")
                self._take(conn, run.id, source)
            except FileNotFoundError:  # another run took it first: no row is left of a run that never had it
                runs.delete_unclaimed(conn, run.id)
                raise
            drafts.link_fixed_run(conn, run.id, file_name, source_name)  # a file fixed in the browser
        elif run.status in FAILED_STATUSES:
            self._take(conn, run.id, self.store.root / run.claimed_file)
            runs.update_run(
                conn,
                run.id,
                status="running",
                message=None,
                file_rejected=False,
                rows_total=None,
                rows_valid=None,
                rows_rejected=None,
                finished_at=None,
                report_dir=None,
            )
        run = runs.get_run(conn, run.id)
        if run.is_open and not options.force:
            full_snapshot_of = run.source if run.snapshot == "full" else None
            earlier = runs.find_imported(conn, run.sha256 or "", run.id, full_snapshot_of)
            if earlier is not None:
                runs.update_run(
                    conn,
                    run.id,
                    status="duplicate",
                    message=(
                        f"The same content was imported by import run {earlier.id} ({earlier.file_name}), so"
                        " nothing was applied. Import it again with force to apply it anyway."
                    ),
                )
        return run.id

    def file_to_claim(
        self,
        conn: psycopg.Connection,
        wanted: str,
        dag_id: str,
        airflow_run_id: str,
        source: str = DEFAULT,
        has_own_run: Callable[[str], bool] | None = None,
        arrived: datetime | None = None,
    ) -> str | None:
        """The file an Airflow run imports: `wanted` when it waits in landing or this run claimed it
        before (it was cleared to retry), else the oldest file waiting that has no run of its own
        (`has_own_run`: the watch, an upload or `make import` started one for it); None while none waits.

        A named file that is neither waiting nor claimed will not come: FileNotFoundError says so at
        once, rather than the run holding the queue while it waits for it; ImportedElsewhere when
        another run imported it since it `arrived` (that run took it first).
        """
        waiting = self.landing(source).waiting_files()
        if not wanted:
            return next((name for name in waiting if not (has_own_run and has_own_run(name))), None)
        if wanted in waiting:
            return wanted
        db.use_schema(conn, self.settings.schema)
        if runs.find_claimed(conn, dag_id, airflow_run_id) is not None:
            return wanted
        if arrived is not None and (other := runs.claimed_since(conn, wanted, source, arrived)) is not None:
            raise ImportedElsewhere(other)
        raise FileNotFoundError(
            f"{wanted} is not in landing/: upload it, or trigger with an empty file to import the oldest one waiting."
        )

    def own_run_id(self, name: str, source: str = DEFAULT) -> str:
        """The Airflow run id of a waiting file's own run (as the watch, an upload and `make import` name it)."""
        return str(self.landing(source).handovers([name], self.sources[source].run_name)[0]["trigger_run_id"])

    def refuse_unless_regular(self, path: Path) -> None:
        """A link, pipe, device, folder or hard-linked file is moved to quarantine/, never read."""
        try:
            check_regular(path)
        except NotRegularFile as not_regular:
            target = self.local.set_aside(path, not_regular.what)
            raise ValueError(f"{not_regular}; it was moved to quarantine/{target.name}.") from None

    def _take(self, conn: psycopg.Connection, run_id: int, source: Path) -> None:
        if self.store.remote:
            return self._take_object(conn, run_id, source)
        self.refuse_unless_regular(source)
        path = move(source, self.local.real_dir(self.local.processing(run_id)))
        self.refuse_unless_regular(path)  # swapped for a link between the check and the move
        sha256, size = sha256_of(path)
        runs.update_run(conn, run_id, file_path=self.relative(path), sha256=sha256, size_bytes=size)

    def _take_object(self, conn: psycopg.Connection, run_id: int, source: Any) -> None:
        """`_take` on object storage: copy, record, delete, under a lock per file, so that of two runs
        after one file only one gets it; after a crash between the copy and the delete, the run
        finds its copy (and a leftover landing copy is taken again by the same run only)."""
        relative = f"processing/{run_id}/{source.name}"
        target = self.store.root / relative
        with db.locked(conn, f"customer_import:claim:{source.path}"):
            source.fs.invalidate_cache()  # what another process did before it let go of the lock
            if source.exists():
                source.copy(target)
            elif not target.exists():
                raise FileNotFoundError(f"{source.name} is not in {source.parent}")
            sha256, size = sha256_of(target)
            runs.update_run(conn, run_id, file_path=relative, sha256=sha256, size_bytes=size)
            if source.exists():
                source.unlink()

    def csv_file(self, run: ImportRun, path: Path) -> CsvFile:
        """The run's file, read as the run declared (its encoding) within the configured limits."""
        try:
            source = self.sources[run.source]
        except KeyError as unknown:
            raise ValueError(f"Import run {run.id}: {unknown.args[0]}") from None
        return CsvFile(path, self.contract, run.encoding, self.settings.max_field_chars, source)

    def publication(self, run: ImportRun) -> tuple[Path, Path, Path]:
        """Where a finished run's file is, the folder it is kept in (archive/ or rejected/), and its
        report folder (both made, as real folders)."""
        folders = self.local
        failed = run.status in FAILED_STATUSES
        target_dir = folders.real_dir(folders.rejected(run.id) if failed else folders.archive(run.id))
        source = self.path(run.claimed_file)
        if not source.exists():  # moved already, by a publish that stopped before it recorded that
            source = target_dir / source.name
        return source, target_dir, folders.real_dir(folders.reports(run.id))

    def keep(self, conn: psycopg.Connection, run: ImportRun, source: Path, target_dir: Path, report_dir: Path) -> None:
        """Move the run's file into `target_dir` (a rejected one with its errors.csv beside it), record
        where it and the reports are, and remove the run's work folder (derived, now in the reports)."""
        kept = source if source.parent == target_dir else move(source, target_dir)
        if run.status in FAILED_STATUSES:
            shutil.copyfile(report_dir / ERRORS_CSV, target_dir / f"{kept.stem}.errors.csv")
        for name in ISSUES_FILES if run.status in ("rejected", "partial") else ():  # what the fix grid flags
            if (found := self.local.processing(run.id) / name).is_file() and found.stat().st_size:
                shutil.copyfile(found, report_dir / name)
        self.store.push(self.relative(report_dir), self.relative(target_dir))  # before the move is recorded
        runs.update_run(conn, run.id, file_path=self.relative(kept), report_dir=self.relative(report_dir))
        shutil.rmtree(self.local.processing(run.id), ignore_errors=True)
        self.store.delete(f"processing/{run.id}")

    def update_summary(self, run: ImportRun) -> None:
        """Give the run's summary.json the run as it ended (it is written before the file is moved
        and the run finished)."""
        with self.store.mirrored(f"reports/{run.id}/{SUMMARY_JSON}"):
            path = self.local.reports(run.id) / SUMMARY_JSON
            if path.is_file():
                summary = json.loads(path.read_text(encoding="utf-8"))
                summary["import_run"] = run.to_dict()
                path.write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")

    def write_report(self, run_id: int, name: str, text: str) -> None:
        """Write one more file into a run's reports (rollback.json), here and in the store."""
        report_dir = self.local.real_dir(self.local.reports(run_id))
        (report_dir / name).write_text(text)
        self.store.push(f"reports/{run_id}/{name}")
        self.store.forget(f"reports/{run_id}")
