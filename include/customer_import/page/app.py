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

import hashlib
import hmac
import json
import math
import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import psycopg
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.security.utils import get_authorization_scheme_param
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message

from customer_import.contract.fields import load_contract
from customer_import.contract.options import MODES, ON_ERROR_CHOICES, ImportOptions
from customer_import.database import db
from customer_import.database.runs import ImportRun, get_run, last_change, list_runs, oldest_unfinished, runs_by_id
from customer_import.report import CHANGES_CSV, ERRORS_CSV, REPORT_HTML, ROLLBACK_JSON, SUMMARY_JSON
from customer_import.settings import Settings
from customer_import.sources import freshness
from customer_import.sources.profiles import DEFAULT, Source, Sources, load_sources
from customer_import.storage.folders import Folders, UploadTooLarge
from customer_import.storage.names import UploadRefused
from customer_import.storage.store import DataStore

PAGE_SIZE = 25
ISSUES_SHOWN = 200
IMPORT_DAG_ID = "customer_import"
ROLLBACK_DAG_ID = "customer_import_rollback"
ICON = Path(__file__).with_name("templates") / "icon.svg"
STYLESHEET = Path(__file__).with_name("templates") / "page.css"
SCRIPT = Path(__file__).with_name("templates") / "page.js"
MAX_PAGE = 1_000_000
#: Files waiting behind an import in progress longer than this are shown as waiting behind it.
QUEUE_NOTICE_AFTER = timedelta(minutes=5)
SESSION_COOKIE = "_token"  # Airflow's UI session (a JWT); API clients send `Authorization: Bearer` instead
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
    ROLLBACK_JSON: ("application/json", "inline"),
}
#: The status box's look: (colour class, icon, what it means).
STATUS_LOOK = {
    "succeeded": ("ok", "✔", "imported"),
    "partial": ("warn", "!", "imported without its invalid rows"),
    "rejected": ("bad", "⚠", "rejected: nothing was imported; download errors.csv, fix it and upload it again"),
    "failed": ("bad", "⚠", "failed on an infrastructure error; clear the Airflow run to retry"),
    "dry_run": ("muted", "○", "dry run: nothing was written"),
    "duplicate": ("muted", "=", "already imported: nothing was written"),
    "rolled_back": ("muted", "↶", "rolled back"),
    "running": ("busy", "…", "being imported"),
}

StartImport = Callable[..., str | None]  # (handover, request[, dag_id]) -> the Airflow run id, or None
_templates = Environment(loader=PackageLoader("customer_import.page"), autoescape=select_autoescape())
# `code` in a message renders as code: the text is escaped first, then only the backquotes become tags
_templates.filters["codes"] = lambda text: Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


@dataclass(frozen=True)
class Notice:
    kind: str  # "ok" or "bad"
    text: str
    dag_run: tuple[str, str] | None = None  # (dag id, run id) of the Airflow run it started: linked


@dataclass(frozen=True)
class Host:
    """What the page gets from the Airflow it runs in, held by its app (`create_app`): a connection
    to the target, how to start a DAG run, the form guard, where to log in, who may upload, and
    the settings. Routes receive it as a FastAPI dependency (`HostDep`)."""

    connect: Callable[[], psycopg.Connection]
    start_import: StartImport
    guard: _CrossSiteGuard
    login_url: Callable[[Request], str] | None
    may_upload: Callable[[Request], bool]
    settings: Callable[[], Settings]

    @property
    def sources(self) -> Sources:
        return load_sources(self.settings().sources_file, load_contract())

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
            "upload_limit_mb": self.settings().upload_max_bytes / 2**20,
            "sources": self.sources.names,
        }

    def imports_page(
        self, request: Request, page: int, notice: Notice | None, status_code: int = 200, source: str | None = None
    ) -> HTMLResponse:
        with self.customer_db() as conn:
            runs, total = list_runs(conn, PAGE_SIZE, (page - 1) * PAGE_SIZE, source)
            blocker = oldest_unfinished(conn)
            changed = last_change(conn)
            missing = freshness.open_gaps(conn)
        if blocker is not None and datetime.now(UTC) - blocker.received_at < QUEUE_NOTICE_AFTER:
            blocker = None  # an import in progress, not yet one to point out
        waiting = []
        for each in self.sources:
            landing = self.folders(each.name)
            shown = f"{landing.landing_folder}/" if landing.landing_folder else ""
            waiting += [(shown + name, landing.landing_file(name).stat()) for name in landing.waiting_files()]
        folders = self.folders()
        busy = bool(waiting) or not all(r.is_finished for r in runs)
        return _page(
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
            **self.upload_context(request, source=source),
        )


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
    app.state.host = Host(connect, start_import, _CrossSiteGuard(secret, origins), login_url, may_upload, settings)
    app.middleware("http")(_security_headers)
    app.exception_handler(StarletteHTTPException)(_send_browsers_to_login)
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
        return _page("error.html", request, status_code=error.status_code, error=error)
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
        notice = _upload_notice(uploaded, run)
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
            "runs": {str(r.id): _progress_of(r) for r in found},
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
    return _page(
        "import_run.html",
        request,
        run=run,
        issues=issues[:ISSUES_SHOWN],
        issues_total=sum(summary.get("issue_counts", {}).values()),
        issue_counts=summary.get("issue_counts", {}),
        reports=reports,
        file_issues=[i for i in issues if i.get("line") is None],
        kept_file=host.data_path(run.file_path) is not None,
        refresh=not run.is_finished,
        newest=run.id,
        upload_label="Upload the fixed file",
        **host.upload_context(request, run.options, run.source),
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


@uploading.post("/upload", name="upload")
async def upload_file(request: Request, host: HostDep) -> Response:
    limit = host.settings().upload_max_bytes
    host.guard.check_origin(request)
    try:
        request = _counted(request, limit)
        async with request.form(max_files=1, max_fields=10) as form:
            host.guard.check_token(request, form.get("csrf_token"))
            sent = form.get("file")
            if not isinstance(sent, UploadFile) or not sent.filename:
                raise UploadRefused("Choose a CSV file to upload.")
            options = _form_options(form)
            source = _form_source(host.sources, form)
            folders = host.folders(source.name)
            name, size = await run_in_threadpool(folders.receive_upload, _chunks(sent), sent.filename, limit)
    except UploadRefused as refused:
        code = 413 if isinstance(refused, UploadTooLarge) else 400
        notice = Notice("bad", f"Not uploaded. {refused}")
        return await run_in_threadpool(host.imports_page, request, 1, notice, code)
    # the source's options, and those the form changed from the Params' defaults
    handover = folders.handovers([name], source.run_name, {**source.run_conf, **_changed(options)})[0]
    airflow_run = await run_in_threadpool(host.start_import, handover, request)
    uploaded = f"{name} ({size:,} bytes)"
    target = request.url_for("imports").include_query_params(
        uploaded=uploaded, **({"run": airflow_run} if airflow_run else {}), sig=host.guard.sign(uploaded, airflow_run)
    )
    return RedirectResponse(str(target), status_code=status.HTTP_303_SEE_OTHER)


@uploading.post("/runs/{run_id}/{action}", name="run_action")
async def run_action(request: Request, host: HostDep, run_id: int, action: str) -> Response:
    """A run page's buttons: import the kept file again (with force, or its valid rows only), or roll back."""
    host.guard.check_origin(request)
    async with request.form(max_files=0, max_fields=2) as form:
        host.guard.check_token(request, form.get("csrf_token"))
    run = await run_in_threadpool(host.find_run, run_id)
    if action == "roll_back" and run.status in ("succeeded", "partial"):
        handover = _now_handover(f"rollback__{run.id}", {"import_run_id": run.id})
        airflow_run = await run_in_threadpool(host.start_import, handover, request, ROLLBACK_DAG_ID)
        said = f"Rolling back import run {run.id}"
    elif action in ("force", "valid_rows") and (kept := host.data_path(run.file_path)) is not None:
        options = _again(run, action)
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
        handover = folders.handovers([name], host.sources[run.source].run_name, _changed(options))[0]
        airflow_run = await run_in_threadpool(host.start_import, handover, request)
        said = f"Importing {run.file_name} again ({'with force' if action == 'force' else 'its valid rows only'})"
    else:
        raise HTTPException(status.HTTP_409_CONFLICT, f"import run {run_id} ({run.status}) cannot {action}")
    target = request.url_for("imports").include_query_params(
        done=said, **({"run": airflow_run} if airflow_run else {}), sig=host.guard.sign(said, airflow_run)
    )
    return RedirectResponse(str(target), status_code=status.HTTP_303_SEE_OTHER)


class _CrossSiteGuard:
    """Refuses state-changing requests a browser was made to send from another site (CSRF).

    Airflow's session cookie rides along with any request a browser sends to this site, whichever
    page made it; so a request that carries it must name this site as its Origin (or Referer) and
    echo the session's form token, which only a page of this site can read. A request with a
    bearer token carries no ambient credentials, so API clients need neither.
    """

    def __init__(self, secret: bytes, origins: Sequence[str]) -> None:
        self._secret = secret
        self._hosts = {urlsplit(o).netloc for o in origins if o}

    def _mac(self, *parts: str) -> str:
        return hmac.new(self._secret, "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()[:32]

    def token(self, request: Request) -> str:
        cookie = request.cookies.get(SESSION_COOKIE)
        return self._mac("form", cookie) if cookie else ""

    def _by_cookie(self, request: Request) -> bool:
        """Whether Airflow takes the request's identity from the session cookie: it has one, and no
        non-empty `Bearer` credential (Airflow's `get_user`). Any other Authorization header (`Basic`,
        `Negotiate` or `NTLM` added by a proxy, an empty `Bearer`) leaves the cookie in charge."""
        if SESSION_COOKIE not in request.cookies:
            return False
        scheme, credentials = get_authorization_scheme_param(request.headers.get("authorization"))
        return not (scheme.lower() == "bearer" and credentials.strip())

    def check_origin(self, request: Request) -> None:
        if not self._by_cookie(request):
            return
        sent_from = request.headers.get("origin") or request.headers.get("referer") or ""
        if urlsplit(sent_from).netloc not in {request.headers.get("host", ""), *self._hosts}:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "Refused: this request was sent from another site"
                f" ({sent_from or 'no Origin'}). Use the Imports page itself.",
            )

    def check_token(self, request: Request, sent: object) -> None:
        if self._by_cookie(request) and not hmac.compare_digest(str(sent or ""), self.token(request)):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "Refused: the form is missing its token or is from an"
                " earlier session. Reload the Imports page and send it again.",
            )

    def sign(self, uploaded: str, airflow_run: str | None) -> str:
        return self._mac("notice", uploaded, airflow_run or "")

    def signed(self, uploaded: str | None, airflow_run: str | None, sig: str | None) -> bool:
        if not uploaded or not sig:
            return False
        return hmac.compare_digest(sig, self.sign(uploaded, airflow_run))


def _counted(request: Request, limit: int) -> Request:
    """`request` with its body counted as it streams in: a body that cannot hold a file of `limit`
    bytes or less (the form's other fields and boundaries take well under 64 KiB) raises
    UploadTooLarge as soon as it is read that far, whatever Content-Length said, chunked or not."""
    most = limit + 65536
    if int(request.headers.get("content-length") or 0) > most:
        raise UploadTooLarge("The file", limit)
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > most:
            raise UploadTooLarge("The file", limit)
        return message

    return Request(request.scope, receive)


def _again(run: ImportRun, action: str) -> ImportOptions | None:
    """The options of importing a run's file again: with force (it was a duplicate or a dry run), or
    with its invalid rows skipped (a rejected file whose rows could be), at a rate that admits them."""
    if action == "force" and run.status in ("duplicate", "dry_run"):
        return replace(run.options, force=True, dry_run=False)
    if action == "valid_rows" and run.status == "rejected" and not run.file_rejected and run.rows_valid:
        rate = math.ceil(1000 * (run.rows_rejected or 0) / (run.rows_total or 1)) / 1000
        return replace(run.options, on_error="skip_invalid_rows", max_error_rate=min(1.0, rate))
    return None


def _changed(options: ImportOptions) -> dict[str, Any]:
    """The options that differ from the DAG's defaults: what a run's conf carries."""
    return {k: v for k, v in asdict(options).items() if v != getattr(ImportOptions(), k)}


def _now_handover(prefix: str, conf: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {"trigger_run_id": f"{prefix}__{now}", "conf": conf, "logical_date": now, "run_after": now}


def _form_options(form: Any) -> ImportOptions:
    """The upload form's options, checked as the run's Params are (the same defaults and meanings)."""
    fields = ("mode", "on_error", "max_error_rate", "dry_run", "force", "encoding")
    try:
        return ImportOptions.from_params({name: form.get(name) for name in fields})
    except ValueError as unknown:
        raise UploadRefused(f"{str(unknown)[0].upper()}{str(unknown)[1:]}.") from None


def _form_source(sources: Sources, form: Any) -> Source:
    """The upload form's source: the default one unless it names another."""
    try:
        return sources[str(form.get("source") or DEFAULT)]
    except KeyError as unknown:
        raise UploadRefused(unknown.args[0]) from None


def _progress_of(run: ImportRun) -> dict[str, Any]:
    """What progress.json says of a run: enough to update its row and page in place."""
    counts = {
        "rows": run.rows_total,
        "inserted": run.inserted,
        "updated": run.updated,
        "unchanged": run.unchanged,
        "rejected": run.rows_rejected,
    }
    return {
        "status": run.shown_status,
        "progress": run.progress,
        "percent": run.percent,
        **{name: f"{n:,}" if n is not None else None for name, n in counts.items()},
    }


def _reason(run: ImportRun) -> str:
    """A rejected or failed run's reason in a few words: the first sentence of its message."""
    text = (run.message or "").removeprefix("The whole file was rejected: ")
    first = text.split(". ", 1)[0].split(": ", 1)[0]
    return first if len(first) <= 90 else first[:87] + "..."


def _chunks(upload: UploadFile, size: int = 1 << 20) -> Iterator[bytes]:
    upload.file.seek(0)
    while chunk := upload.file.read(size):
        yield chunk


def _upload_notice(uploaded: str | None, airflow_run: str | None) -> Notice | None:
    if not uploaded:
        return None
    then = (
        f"Its import started as Airflow run {airflow_run}: the list below shows its status."
        if airflow_run
        else "It waits in the landing folder: the landing watch hands it to the import within a minute."
    )
    return Notice("ok", f"Uploaded {uploaded}. {then}", (IMPORT_DAG_ID, airflow_run) if airflow_run else None)


def _page(template: str, request: Request, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = _templates.get_template(template).render(
        request=request,
        url=request.url_for,
        airflow_root=request.scope.get("app_root_path", ""),
        dag_id=IMPORT_DAG_ID,
        look=STATUS_LOOK,
        when=_when,
        reason=_reason,
        **context,
    )
    return HTMLResponse(html, status_code=status_code)


def _when(moment: datetime | float | None) -> str:
    if moment is None:
        return ""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
