"""The page's HTML: its templates, how each status looks, a notice, and times as a person reads them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from customer_import.database.runs import ImportRun
from customer_import.housekeeping import size_in_words
from customer_import.reading.charsets import suggested_encoding
from customer_import.report import codes

#: The DAGs the page starts and links to.
IMPORT_DAG_ID = "customer_import"
ROLLBACK_DAG_ID = "customer_import_rollback"

templates = Environment(loader=PackageLoader("customer_import.page"), autoescape=select_autoescape())
templates.filters["codes"] = codes  # `code` in a message renders as code, as in report.html


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


@dataclass(frozen=True)
class Notice:
    kind: str  # "ok" or "bad"
    text: str
    dag_run: tuple[str, str] | None = None  # (dag id, run id) of the Airflow run it started: linked


def render(template: str, request: Request, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = templates.get_template(template).render(
        request=request,
        url=request.url_for,
        airflow_root=request.scope.get("app_root_path", ""),
        dag_id=IMPORT_DAG_ID,
        look=STATUS_LOOK,
        when=when,
        short_when=short_when,
        reason=reason,
        size=size_in_words,
        **context,
    )
    return HTMLResponse(html, status_code=status_code)


def when(moment: datetime | float | None) -> str:
    if moment is None:
        return ""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def short_when(moment: datetime | None, now: datetime | None = None) -> Markup:
    """A time in the list, compact: `08:09` today, `2 Dec 08:09` this year, `2025-12-02` before;
    the full time (UTC) on hover and in the `datetime` attribute."""
    if moment is None:
        return Markup("")
    moment, now = moment.astimezone(UTC), (now or datetime.now(UTC)).astimezone(UTC)
    if moment.date() == now.date():
        shown = moment.strftime("%H:%M")
    elif moment.year == now.year:
        shown = f"{moment.day} {moment.strftime('%b %H:%M')}"
    else:
        shown = moment.strftime("%Y-%m-%d")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(moment.isoformat(), when(moment), shown)


def reason(run: ImportRun) -> str:
    """A rejected or failed run's reason in a few words: the first sentence of its message."""
    text = (run.message or "").removeprefix("The whole file was rejected: ")
    first = text.split(". ", 1)[0].split(": ", 1)[0]
    first = first if len(first) <= 90 else first[:87] + "..."
    likely = suggested_encoding(run.message) if run.file_rejected else None
    return f"{first} (likely {likely})" if likely else first
