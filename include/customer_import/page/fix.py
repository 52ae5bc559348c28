"""Fix in the browser: the grid of a rejected run's file, its draft's endpoints, and its import.

Every route needs the right to trigger `customer_import` (`create_app` includes this router with the
upload dependencies): a viewer gets 403 from each. The JSON posts carry the session's form token
(`csrf_token`) and the draft they edit (`draft`, the run id), as the page's forms do; the grid
itself is `fix.js` over Tabulator (vendored under `templates/vendor/`), which never builds HTML
from a value. What a cell may hold and every rule it is checked by are the import's
(`customer_import.fixing`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from customer_import.contract.fields import load_contract
from customer_import.database import drafts
from customer_import.database.runs import ImportRun
from customer_import.fixing import CellTooLong, Fixer, FixRefused
from customer_import.page.forms import changed
from customer_import.page.host import Host
from customer_import.page.rendering import render

T = TypeVar("T")
#: Tabulator, vendored with its licence (templates/vendor/tabulator/VERSION): the grid's component.
VENDOR = Path(__file__).with_name("templates") / "vendor" / "tabulator"
TABULATOR = "6.5.3"
FIX_SCRIPT = Path(__file__).with_name("templates") / "fix.js"
PAGE_ROWS = 50
MAX_ROWS = 200
MAX_BULK_SHOWN = 10

fixing = APIRouter()
static = APIRouter()


def _host(request: Request) -> Host:
    host: Host = request.app.state.host
    return host


def _user(request: Request) -> str:
    return str(getattr(request.state, "airflow_user", None) or "an API client")


def _fixer(host: Host) -> Fixer:
    return Fixer(host.settings(), load_contract())


def _refused(work: Callable[[], T]) -> T:
    """`work`, with what a draft refuses said as HTTP: 400 for a value it cannot take, 409 for the rest."""
    try:
        return work()
    except CellTooLong as too_long:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(too_long)) from None
    except FixRefused as refused:
        raise HTTPException(status.HTTP_409_CONFLICT, str(refused)) from None


async def _sent(request: Request, run_id: int) -> dict[str, Any]:
    """A JSON post's body, after the guard's checks and the check that it edits this run's draft."""
    host = _host(request)
    host.guard.check_origin(request)
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Send a JSON object.")
    host.guard.check_token(request, body.get("csrf_token"))
    if body.get("draft") != run_id:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"This change is for the draft of import run {body.get('draft')}, not of import run {run_id}:"
            " reload the page of the draft you are fixing.",
        )
    return body


async def _form_sent(request: Request) -> Host:
    """After the guard's checks of a button's form (its origin and token): the host."""
    host = _host(request)
    host.guard.check_origin(request)
    async with request.form(max_files=0, max_fields=2) as form:
        host.guard.check_token(request, form.get("csrf_token"))
    return host


def _rows_json(host: Host, run: ImportRun, rows: list[drafts.FixRow]) -> JSONResponse:
    with host.customer_db() as conn:
        counts = drafts.counts(conn, run.id)
    return JSONResponse({"rows": [r.as_json() for r in rows], "counts": counts})


def _int(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"`{name}` must be a whole number.")
    return value


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"`{name}` must be text.")
    return value


@fixing.post("/runs/{run_id}/fix", name="fix_open")
async def open_draft(request: Request, run_id: int) -> Response:
    """The run page's Fix in the browser: the draft is made (once), then the grid is shown."""
    host = await _form_sent(request)
    run = await run_in_threadpool(host.find_run, run_id)

    def made() -> None:
        with host.customer_db() as conn:
            _fixer(host).open(conn, run, _user(request), connect=host.connect)

    await run_in_threadpool(_refused, made)
    return RedirectResponse(str(request.url_for("fix_grid", run_id=run_id)), status_code=status.HTTP_303_SEE_OTHER)


@fixing.get("/runs/{run_id}/fix", response_class=HTMLResponse, name="fix_grid")
def grid(request: Request, run_id: int) -> Response:
    host = _host(request)
    run = host.find_run(run_id)
    with host.customer_db() as conn:
        draft = drafts.get_draft(conn, run_id)
        counts = drafts.counts(conn, run_id) if draft else {}
        edits = drafts.edits(conn, run_id) if draft else []
    if draft is None:
        return RedirectResponse(str(request.url_for("import_run", run_id=run_id)), status.HTTP_303_SEE_OTHER)
    return render(
        "fix.html",
        request,
        run=run,
        draft=draft,
        counts=counts,
        edits=edits,
        csrf=host.guard.token(request),
        config={
            "draft": run.id,
            "header": draft.header,
            "fields": {f["index"]: f["label"] for f in draft.fields},
            "open": draft.is_open,
            "loading": draft.is_loading,
            "csrf": host.guard.token(request),
            "urls": {
                name: str(request.url_for(f"fix_{name}", run_id=run.id))
                for name in ("rows", "edit", "check", "bulk", "skip")
            },
        },
    )


@fixing.get("/runs/{run_id}/fix/rows.json", name="fix_rows")
def rows(
    request: Request,
    run_id: int,
    flagged: bool = True,
    page: int = Query(1, ge=1),
    size: int = Query(PAGE_ROWS, ge=1, le=MAX_ROWS),
) -> JSONResponse:
    """One page of the draft's rows: those with issues (`flagged`), or every row."""
    host = _host(request)
    with host.customer_db() as conn:
        draft = drafts.get_draft(conn, run_id)
        if draft is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"Import run {run_id} has no draft.")
        found, total = drafts.page(conn, run_id, flagged_only=flagged, offset=(page - 1) * size, limit=size)
        counts = drafts.counts(conn, run_id)
    return JSONResponse(
        {
            "rows": [r.as_json() for r in found],
            "total": total,
            "last_page": max(1, -(-total // size)),
            "counts": counts,
            "loading": draft.is_loading,
        }
    )


@fixing.post("/runs/{run_id}/fix/edit", name="fix_edit")
async def edit(request: Request, run_id: int) -> JSONResponse:
    """Set one cell; the rows whose issues were checked again (the row, and those sharing its key or email)."""
    body = await _sent(request, run_id)
    line, column, value = _int(body, "line"), _int(body, "column"), _text(body, "value")
    return await run_in_threadpool(
        _change, request, run_id, lambda f, c, r: f.edit(c, r, [(line, column, value)], _user(request))
    )


@fixing.post("/runs/{run_id}/fix/check", name="fix_check")
async def check(request: Request, run_id: int) -> JSONResponse:
    """Check rows again by every rule, as they stand in the draft: what importing them would say."""
    body = await _sent(request, run_id)
    lines = body.get("lines")
    if not isinstance(lines, list) or not all(isinstance(n, int) for n in lines) or not 0 < len(lines) <= MAX_ROWS:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"`lines` must list 1 to {MAX_ROWS} line numbers.")
    return await run_in_threadpool(_change, request, run_id, lambda f, c, r: f.recheck(c, r, lines))


@fixing.post("/runs/{run_id}/fix/skip", name="fix_skip")
async def skip(request: Request, run_id: int) -> JSONResponse:
    body = await _sent(request, run_id)
    line, leave_out = _int(body, "line"), body.get("skip") is not False
    who = _user(request) if leave_out else None
    return await run_in_threadpool(_change, request, run_id, lambda f, c, r: f.skip(c, r, line, who))


@fixing.post("/runs/{run_id}/fix/bulk", name="fix_bulk")
async def bulk(request: Request, run_id: int) -> JSONResponse:
    """A change to every cell of a column that is (`whole`) or contains `find`: its count first
    (`apply` false), then the change."""
    body = await _sent(request, run_id)
    column, find, replacement = _int(body, "column"), _text(body, "find"), _text(body, "replace")
    whole = body.get("whole") is not False
    host = _host(request)
    run = await run_in_threadpool(host.find_run, run_id)
    if body.get("apply") is not True:

        def preview() -> JSONResponse:
            with host.customer_db() as conn:
                lines = _fixer(host).matching(conn, run, column, find, whole=whole)
            return JSONResponse({"count": len(lines), "lines": lines[:MAX_BULK_SHOWN]})

        return await run_in_threadpool(_refused, preview)
    return await run_in_threadpool(
        _change,
        request,
        run_id,
        lambda f, c, r: f.bulk(c, r, column, find, replacement, whole=whole, edited_by=_user(request)),
    )


def _change(request: Request, run_id: int, work: Callable[..., list[drafts.FixRow]]) -> JSONResponse:
    host = _host(request)
    run = host.find_run(run_id)

    def done() -> list[drafts.FixRow]:
        with host.customer_db() as conn:
            return work(_fixer(host), conn, run)

    return _rows_json(host, run, _refused(done))


@fixing.post("/runs/{run_id}/fix/discard", name="fix_discard")
async def discard(request: Request, run_id: int) -> Response:
    host = await _form_sent(request)

    run = await run_in_threadpool(host.find_run, run_id)

    def gone() -> None:
        with host.customer_db() as conn:
            _fixer(host).discard(conn, run)

    await run_in_threadpool(gone)
    return RedirectResponse(str(request.url_for("import_run", run_id=run_id)), status_code=status.HTTP_303_SEE_OTHER)


@fixing.post("/runs/{run_id}/fix/import", name="fix_import")
async def import_fixed(request: Request, run_id: int) -> Response:
    """Write the fixed file into the landing folder of the run's source and start its import, with the
    run's options (read as UTF-8: it is written so)."""
    host = await _form_sent(request)
    run = await run_in_threadpool(host.find_run, run_id)

    def written() -> str:
        with host.customer_db() as conn:
            return _fixer(host).write_fixed(conn, run, _user(request))

    name = await run_in_threadpool(_refused, written)
    options = changed(Fixer.fixed_options(run))
    handover = host.folders(run.source).handovers([name], host.sources[run.source].run_name, options)[0]
    airflow_run = await run_in_threadpool(host.start_import, handover, request)
    said = f"Importing {name}, fixed in the browser from import run {run.id}"
    target = request.url_for("imports").include_query_params(
        done=said, **({"run": airflow_run} if airflow_run else {}), sig=host.guard.sign(said, airflow_run)
    )
    return RedirectResponse(str(target), status_code=status.HTTP_303_SEE_OTHER)


@static.get("/fix.js", name="fix_script")
def fix_script() -> FileResponse:
    return FileResponse(FIX_SCRIPT, media_type="text/javascript")


@static.get("/vendor/tabulator.min.js", name="tabulator_script")
def tabulator_script() -> FileResponse:
    return FileResponse(VENDOR / "tabulator.min.js", media_type="text/javascript")


@static.get("/vendor/tabulator.min.css", name="tabulator_style")
def tabulator_style() -> FileResponse:
    return FileResponse(VENDOR / "tabulator.min.css", media_type="text/css")
