"""What the page gets from the Airflow it runs in (`Host`), and what it reads through it: the runs,
their reports and files, the sources and the data folders."""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from fastapi import HTTPException, Request, status
from fastapi.responses import HTMLResponse

from customer_import.contract.fields import load_contract
from customer_import.contract.options import MODES, OFFERED, ON_ERROR_CHOICES, SNAPSHOTS, ImportOptions
from customer_import.database import db
from customer_import.database.runs import ImportRun, get_run, housekept, last_change, list_runs, oldest_unfinished
from customer_import.page.guard import CrossSiteGuard
from customer_import.page.rendering import Notice, render
from customer_import.report import SUMMARY_JSON
from customer_import.settings import Settings
from customer_import.sources import freshness
from customer_import.sources.profiles import DEFAULT, Source, Sources, load_sources
from customer_import.storage.folders import Folders

PAGE_SIZE = 25
#: Files waiting behind an import in progress longer than this are shown as waiting behind it.
QUEUE_NOTICE_AFTER = timedelta(minutes=5)
StartImport = Callable[..., str | None]  # (handover, request[, dag_id]) -> the Airflow run id, or None


@dataclass(frozen=True)
class Host:
    """What the page gets from the Airflow it runs in, held by its app (`create_app`): a connection
    to the target, how to start a DAG run, the form guard, where to log in, who may upload, and
    the settings. Routes receive it as a FastAPI dependency (`HostDep`)."""

    connect: Callable[[], psycopg.Connection]
    start_import: StartImport
    guard: CrossSiteGuard
    login_url: Callable[[Request], str] | None
    may_upload: Callable[[Request], bool]
    settings: Callable[[], Settings]

    @property
    def sources(self) -> Sources:
        return load_sources(self.settings().sources_file, load_contract())

    def crm_source(self, name: str | None) -> Source | None:
        """The CRM source a filter or a guide names; None for the template's (the default source) or none."""
        return self.sources[name] if name and name != DEFAULT and name in self.sources.names else None

    def folders(self, source: str | None = None) -> Folders:
        return self.sources.folders(self.settings().store.root, source)

    @contextmanager
    def customer_db(self) -> Iterator[psycopg.Connection]:
        with self.connect() as conn:
            yield db.use_schema(conn, self.settings().schema)

    def find_run(self, run_id: int) -> ImportRun:
        with self.customer_db() as conn:
            try:
                return get_run(conn, run_id)
            except LookupError as missing:
                raise HTTPException(status.HTTP_404_NOT_FOUND, str(missing)) from None

    def data_path(self, relative: str | None) -> Any:
        """A path from import_runs, only if it is a file inside the data folders (local or in the store)."""
        return self.settings().store.find(relative)

    def report_path(self, run: ImportRun, report: str) -> Any:
        return self.data_path(f"{run.report_dir}/{report}") if run.report_dir else None

    def summary(self, run: ImportRun) -> dict[str, Any]:
        path = self.report_path(run, SUMMARY_JSON)
        return json.loads(path.read_text(encoding="utf-8")) if path else {}

    def upload_context(
        self, request: Request, defaults: ImportOptions | None = None, source: str | None = None
    ) -> dict[str, Any]:
        """What the upload form shows: its options' defaults, and the source it names (the filter's, a run's)."""
        return {
            "source": source,
            "can_upload": self.may_upload(request),
            "csrf": self.guard.token(request),
            "defaults": defaults or ImportOptions(),
            "modes": MODES,
            "on_errors": ON_ERROR_CHOICES,
            "snapshots": SNAPSHOTS,
            "upload_limit_mb": self.settings().upload_max_bytes / 2**20,
            "sources": self.sources.names,
            # the encodings offered, by the canonical name an option holds (`cp1252` for windows-1252)
            "encodings": {codecs.lookup(name).name: (name, label) for name, label in OFFERED.items()},
        }

    def imports_page(
        self, request: Request, page: int, notice: Notice | None, status_code: int = 200, source: str | None = None
    ) -> HTMLResponse:
        with self.customer_db() as conn:
            runs, total = list_runs(conn, PAGE_SIZE, (page - 1) * PAGE_SIZE, source)
            blocker = oldest_unfinished(conn)
            changed = last_change(conn)
            missing = freshness.open_gaps(conn)
            removed = housekept(conn)
        if blocker is not None and datetime.now(UTC) - blocker.received_at < QUEUE_NOTICE_AFTER:
            blocker = None  # an import in progress, not yet one to point out
        waiting = []
        for each in self.sources:
            landing = self.folders(each.name)
            shown = f"{landing.landing_folder}/" if landing.landing_folder else ""
            waiting += [(shown + name, landing.landing_file(name).stat()) for name in landing.waiting_files()]
        folders = self.folders()
        busy = bool(waiting) or not all(r.is_finished for r in runs)
        return render(
            "imports.html",
            request,
            status_code=status_code,
            runs=runs,
            total=total,
            page=page,
            pages=max(1, -(-total // PAGE_SIZE)),
            waiting=waiting,
            notice=notice,
            refresh=busy,
            newest=runs[0].id if runs else 0,
            changed=changed,
            set_aside=folders.set_aside_files(),
            blocker=blocker,
            missing=missing,
            housekept=removed,
            crm=self.crm_source(source),
            **self.upload_context(request, source=source),
        )
