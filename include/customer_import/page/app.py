"""The Imports page: the status box of every import, its reports, the template and an upload.

A FastAPI app with no Airflow in it. The Airflow plugin (`plugins/customer_import_plugin.py`)
mounts it at `/customer-import/` and hands it what only Airflow knows: who may read and who may
upload (route dependencies), a connection to the target database, how to start an import run
and where the login page is.

Every file it serves is found through `import_runs` and must resolve inside the data folder;
report names come from a fixed list. An upload gets a safe name of its own in landing, and its
size is counted while it streams in. A state-changing request that a browser sends with Airflow's
session cookie must come from this site (Origin) and carry the session's form token; API clients
with a bearer token need neither. Every response says nosniff, no-store and a CSP that lets the
page load only its own resources and be framed only by Airflow; report.html is sandboxed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import psycopg
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from customer_import.contract.fields import load_contract
from customer_import.database import drafts
from customer_import.database.runs import last_change, list_runs, runs_by_id
from customer_import.fixing import Fixer
from customer_import.page import fix
from customer_import.page.forms import (
    again,
    changed,
    chunks,
    counted,
    encoding_label,
    form_options,
    form_source,
    now_handover,
    progress_of,
    suggested_for,
    upload_notice,
)
from customer_import.page.guard import CrossSiteGuard
from customer_import.page.host import PAGE_SIZE, Host, StartImport
from customer_import.page.rendering import IMPORT_DAG_ID, ROLLBACK_DAG_ID, Notice, render
from customer_import.report import (
    CHANGES_CSV,
    DEACTIVATIONS_CSV,
    ERRORS_CSV,
    REPORT_HTML,
    ROLLBACK_JSON,
    SUMMARY_JSON,
)
from customer_import.settings import Settings
from customer_import.sources.guide import GUIDE_FILE, HEADINGS, field_guide, guide_csv
from customer_import.storage.folders import UploadTooLarge
from customer_import.storage.names import UploadRefused
from customer_import.storage.store import DataStore

ISSUES_SHOWN = 200
ICON = Path(__file__).with_name("templates") / "icon.svg"
STYLESHEET = Path(__file__).with_name("templates") / "page.css"
SCRIPT = Path(__file__).with_name("templates") / "page.js"
MAX_PAGE = 1_000_000
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none';"
    " form-action 'self'; frame-ancestors 'self'",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
#: report.html holds text from the file: served sandboxed, no script of it runs on Airflow's origin.
REPORT_HTML_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'"
#: The reports a run may have, and how each is served (inline, or as a download).
REPORT_FILES = {
    ERRORS_CSV: ("text/csv; charset=utf-8", "attachment"),
    SUMMARY_JSON: ("application/json", "inline"),
    REPORT_HTML: ("text/html; charset=utf-8", "inline"),
    CHANGES_CSV: ("text/csv; charset=utf-8", "attachment"),
    DEACTIVATIONS_CSV: ("text/csv; charset=utf-8", "attachment"),
    ROLLBACK_JSON: ("application/json", "inline"),
}


def _host(request: Request) -> Host:
    host: Host = request.app.state.host
    return host


HostDep = Annotated[Host, Depends(_host)]
#: The routes: `reading` needs the right to read the import runs, `uploading` to start them
#: (`create_app` includes each router with the dependencies that check it).
reading = APIRouter()
uploading = APIRouter()


def create_app(
    *,
    read: Sequence[Any],
    upload: Sequence[Any],
    connect: Callable[[], psycopg.Connection],
    start_import: StartImport,
    secret: bytes,
    login_url: Callable[[Request], str] | None = None,
    origins: Sequence[str] = (),
    may_upload: Callable[[Request], bool] = lambda request: True,
    settings: Callable[[], Settings] = Settings.from_env,
) -> FastAPI:
    """The Imports page app.

    `read` and `upload` are the route dependencies that authorize a reader and an uploader;
    `start_import(handover, request)` starts `customer_import` for a file just uploaded (the
    kwargs `Folders.handovers` gives) and returns the Airflow run id, or None when it could not
    (the landing watch then hands the file over); `login_url(request)` is where an unauthenticated
    browser is sent. `secret` keys the form tokens and the upload notice (the same on every API
    server worker); `origins` are URLs the site is also reached at (Airflow's base_url), besides
    the Host a request names.
    """
    app = FastAPI(title="Customer imports", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.host = Host(connect, start_import, CrossSiteGuard(secret, origins), login_url, may_upload, settings)
    app.middleware("http")(_security_headers)
    app.exception_handler(StarletteHTTPException)(_send_browsers_to_login)
    # the grid's routes first: `/runs/{run_id}/fix` is not a report nor an action
    app.include_router(fix.fixing, dependencies=list(upload))
    app.include_router(fix.static, dependencies=list(read))
    app.include_router(reading, dependencies=list(read))
    app.include_router(uploading, dependencies=list(upload))
    return app


async def _security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    response = await call_next(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


async def _send_browsers_to_login(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    wants_page = "text/html" in request.headers.get("accept", "")
    login_url = _host(request).login_url
    if error.status_code == status.HTTP_401_UNAUTHORIZED and wants_page and login_url is not None:
        return RedirectResponse(login_url(request), status_code=status.HTTP_303_SEE_OTHER)
    if wants_page:
        return render("error.html", request, status_code=error.status_code, error=error)
    return JSONResponse({"detail": error.detail}, error.status_code, headers=error.headers)


@reading.get("/", response_class=HTMLResponse, name="imports")
def imports(
    request: Request,
    host: HostDep,
    page: int = Query(1, ge=1, le=MAX_PAGE),
    source: str | None = Query(None, max_length=40),
    uploaded: str | None = None,
    done: str | None = None,
    run: str | None = None,
    sig: str | None = None,
) -> HTMLResponse:
    notice = None  # only what this server itself said: the notice is signed
    if uploaded and host.guard.signed(uploaded, run, sig):
        notice = upload_notice(uploaded, run)
    elif done and host.guard.signed(done, run, sig):
        dag_id = ROLLBACK_DAG_ID if run and run.startswith("rollback__") else IMPORT_DAG_ID
        notice = Notice(
            "ok",
            f"{done}: Airflow run {run or '(not started: see the log of the API server)'}."
            " The list below shows the outcome when it ends.",
            (dag_id, run) if run else None,
        )
    return host.imports_page(request, page, notice, source=source or None)


@reading.get("/progress.json", name="progress")
def progress(
    host: HostDep,
    run: Annotated[list[int], Query(max_length=PAGE_SIZE)] = [],  # noqa: B006 (FastAPI copies it)
    newest: Annotated[int, Query(ge=0)] = 0,
) -> JSONResponse:
    """How the runs a page shows as running stand now, whether newer runs exist, and when any run
    last changed (a page compares it with the moment it shows)."""
    with host.customer_db() as conn:
        found = runs_by_id(conn, run)
        latest, _ = list_runs(conn, 1)
        changed = last_change(conn)
    return JSONResponse(
        {
            "runs": {str(r.id): progress_of(r) for r in found},
            "newer": bool(latest) and latest[0].id > newest,
            "changed": changed,
        }
    )


@reading.get("/runs/{run_id}", response_class=HTMLResponse, name="import_run")
def import_run(request: Request, host: HostDep, run_id: int) -> HTMLResponse:
    run = host.find_run(run_id)
    summary = host.summary(run)
    issues = summary.get("issues", [])
    reports = [name for name in REPORT_FILES if host.report_path(run, name) is not None]
    suggested = suggested_for(run)
    with host.customer_db() as conn:
        draft = drafts.get_draft(conn, run.id)
        fixes = drafts.edits(conn, run.fixed_from) if run.fixed_from else []
    return render(
        "import_run.html",
        request,
        run=run,
        draft=draft,
        fixes=fixes,
        fixable=Fixer(host.settings(), load_contract()).refusal(run) is None,
        suggested=suggested and encoding_label(suggested),
        encoding=encoding_label(run.encoding),
        issues=issues[:ISSUES_SHOWN],
        issues_total=sum(summary.get("issue_counts", {}).values()),
        issue_counts=summary.get("issue_counts", {}),
        reports=reports,
        file_issues=[i for i in issues if i.get("line") is None or run.file_rejected],
        kept_file=host.data_path(run.file_path) is not None,
        refresh=not run.is_finished,
        newest=run.id,
        upload_label="Upload the fixed file",
        # the fixed-file form reads the file as it likely is
        **host.upload_context(request, again(run, "encoding") or run.options, run.source),
    )


@reading.get("/runs/{run_id}/file", name="kept_file")
def kept_file(host: HostDep, run_id: int) -> Response:
    run = host.find_run(run_id)
    path = host.data_path(run.file_path)
    if path is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"the file of import run {run_id} is not kept here")
    return _file_response(path, media_type="text/csv", filename=run.file_name)


@reading.get("/runs/{run_id}/{report}", name="report_file")
def report_file(host: HostDep, run_id: int, report: str) -> Response:
    if report not in REPORT_FILES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"an import run has no report called {report!r}")
    run = host.find_run(run_id)
    path = host.report_path(run, report)
    if path is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"import run {run_id} has no {report}")
    media_type, disposition = REPORT_FILES[report]
    download_name = f"{Path(run.file_name).stem}.{report}" if disposition == "attachment" else None
    headers = {"Content-Security-Policy": REPORT_HTML_CSP} if report == REPORT_HTML else None
    return _file_response(
        path, media_type=media_type, filename=download_name, content_disposition_type=disposition, headers=headers
    )


def _file_response(
    path: Any,
    media_type: str,
    filename: str | None = None,
    content_disposition_type: str = "attachment",
    headers: dict[str, str] | None = None,
) -> Response:
    """A file of the data folders as a response: sent from disk, or streamed from the object store."""
    if isinstance(path, Path):
        return FileResponse(
            path,
            media_type=media_type,
            filename=filename,
            content_disposition_type=content_disposition_type,
            headers=headers,
        )
    headers = dict(headers or {})
    if filename:
        quoted = quote(filename)
        named = f"filename*=utf-8''{quoted}" if quoted != filename else f'filename="{filename}"'
        headers["Content-Disposition"] = f"{content_disposition_type}; {named}"

    def chunks() -> Iterator[bytes]:
        with DataStore.open(path) as data:
            while block := data.read(1 << 20):
                yield block

    return StreamingResponse(chunks(), media_type=media_type, headers=headers)


@reading.get("/icon.svg", name="icon")
def icon() -> FileResponse:  # the page's entry in Airflow's navigation
    return FileResponse(ICON, media_type="image/svg+xml")


@reading.get("/page.css", name="stylesheet")
def stylesheet() -> FileResponse:
    return FileResponse(STYLESHEET, media_type="text/css")


@reading.get("/page.js", name="script")
def script() -> FileResponse:
    return FileResponse(SCRIPT, media_type="text/javascript")


@reading.get("/template.csv", name="template")
def template() -> Response:
    return Response(
        load_contract().template_csv(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="customers_template.csv"'},
    )


@reading.get("/guide", response_class=HTMLResponse, name="guide")
def guide(request: Request, host: HostDep, source: str | None = None) -> HTMLResponse:
    """The field guide: every column of the file (a CRM source's: under its export's names)."""
    chosen = host.crm_source(source)
    rows = field_guide(load_contract(), chosen)
    return render("guide.html", request, rows=rows, headings=HEADINGS, source=chosen, sources=host.sources.names)


@reading.get("/guide.csv", name="guide_sheet")
def guide_sheet(host: HostDep, source: str | None = None) -> Response:
    chosen = host.crm_source(source)
    name = f"{chosen.name}_field_guide.csv" if chosen else GUIDE_FILE
    return Response(
        guide_csv(load_contract(), chosen),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@uploading.post("/upload", name="upload")
async def upload_file(request: Request, host: HostDep) -> Response:
    limit = host.settings().upload_max_bytes
    host.guard.check_origin(request)
    try:
        request = counted(request, limit)
        async with request.form(max_files=1, max_fields=10) as form:
            host.guard.check_token(request, form.get("csrf_token"))
            sent = form.get("file")
            if not isinstance(sent, UploadFile) or not sent.filename:
                raise UploadRefused("Choose a CSV file to upload.")
            options = form_options(form)
            source = form_source(host.sources, form)
            folders = host.folders(source.name)
            name, size = await run_in_threadpool(folders.receive_upload, chunks(sent), sent.filename, limit)
    except UploadRefused as refused:
        code = 413 if isinstance(refused, UploadTooLarge) else 400
        notice = Notice("bad", f"Not uploaded. {refused}")
        return await run_in_threadpool(host.imports_page, request, 1, notice, code)
    # the source's options, and those the form changed from the Params' defaults
    handover = folders.handovers([name], source.run_name, {**source.run_conf, **changed(options)})[0]
    airflow_run = await run_in_threadpool(host.start_import, handover, request)
    uploaded = f"{name} ({size:,} bytes)"
    target = request.url_for("imports").include_query_params(
        uploaded=uploaded, **({"run": airflow_run} if airflow_run else {}), sig=host.guard.sign(uploaded, airflow_run)
    )
    return RedirectResponse(str(target), status_code=status.HTTP_303_SEE_OTHER)


#: The page's actions that import a run's kept file again, and how the notice says it.
AGAIN = {
    "apply": "applying the dry run's changes",
    "encoding": "in the encoding its bytes point to",
    "force": "with force",
    "valid_rows": "its valid rows only",
    "allow_deactivation": "allowing its deactivations",
}


@uploading.post("/runs/{run_id}/{action}", name="run_action")
async def run_action(request: Request, host: HostDep, run_id: int, action: str) -> Response:
    """A run page's buttons: import the kept file again (with force, or its valid rows only), or roll back."""
    host.guard.check_origin(request)
    async with request.form(max_files=0, max_fields=2) as form:
        host.guard.check_token(request, form.get("csrf_token"))
    run = await run_in_threadpool(host.find_run, run_id)
    if action == "roll_back" and run.status in ("succeeded", "partial"):
        handover = now_handover(f"rollback__{run.id}", {"import_run_id": run.id})
        airflow_run = await run_in_threadpool(host.start_import, handover, request, ROLLBACK_DAG_ID)
        said = f"Rolling back import run {run.id}"
    elif action in AGAIN and (kept := host.data_path(run.file_path)) is not None:
        options = again(run, action)
        if options is None:
            raise HTTPException(status.HTTP_409_CONFLICT, f"import run {run_id} ({run.status}) has no {action}")
        try:
            folders = host.folders(run.source)
        except KeyError as gone:
            raise HTTPException(status.HTTP_409_CONFLICT, gone.args[0]) from None
        with DataStore.open(kept) as file:
            name, _ = await run_in_threadpool(
                folders.receive_upload,
                iter(lambda: file.read(1 << 20), b""),
                run.file_name,
                host.settings().upload_max_bytes,
            )
        handover = folders.handovers([name], host.sources[run.source].run_name, changed(options))[0]
        airflow_run = await run_in_threadpool(host.start_import, handover, request)
        said = f"Importing {run.file_name} again ({AGAIN[action]})"
    else:
        raise HTTPException(status.HTTP_409_CONFLICT, f"import run {run_id} ({run.status}) cannot {action}")
    target = request.url_for("imports").include_query_params(
        done=said, **({"run": airflow_run} if airflow_run else {}), sig=host.guard.sign(said, airflow_run)
    )
    return RedirectResponse(str(target), status_code=status.HTTP_303_SEE_OTHER)
