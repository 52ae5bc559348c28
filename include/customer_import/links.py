"""Where a person opens an import run: its page inside Airflow's shell (the navigation, the session,
dark mode), never the bare page in a tab of its own.

The plugin mounts the page at `/customer-import/` and shows it in Airflow's frame at
`/plugin/customer-imports`; Airflow 3.3 opens the frame at whatever path follows that route, so
`/plugin/customer-imports/customer-import/runs/5` is run 5's page inside Airflow.

A DAG run note is read in Airflow itself: its link is a path from the site's root, right whatever
host or port the person reached Airflow by. A task log or an alert is read elsewhere too: its link
is absolute, on Airflow's `api.base_url`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from customer_import.database.runs import ImportRun

PAGE_PREFIX = "/customer-import"  # where the plugin mounts the page
SHELL_ROUTE = "customer-imports"  # its view in Airflow's navigation: /plugin/<route>
DEFAULT_BASE_URL = "http://127.0.0.1:8080"  # where `make airflow` serves when api.base_url is unset


def in_airflow(path: str = "", base_url: str = "") -> str:
    """The page at `path` (`runs/5`) inside Airflow's shell, as a path from the site's root; under a
    base path (`https://example.com/airflow`) both Airflow's route and the page's carry it."""
    root = urlsplit(base_url).path.rstrip("/")
    return f"{root}/plugin/{SHELL_ROUTE}{root}{PAGE_PREFIX}/{path}"


def airflow_base_url() -> str:
    """Airflow's `api.base_url` (`make airflow` and `make import` set it to where Airflow serves)."""
    from airflow.configuration import conf

    return (conf.get("api", "base_url", fallback="") or DEFAULT_BASE_URL).rstrip("/")


def page_url(path: str = "") -> str:
    """The absolute URL of the page at `path` inside Airflow's shell, for a task log or an alert."""
    base = airflow_base_url()
    parts = urlsplit(base)
    return f"{parts.scheme}://{parts.netloc}{in_airflow(path, base)}"


def run_note(run: ImportRun, base_url: str = "") -> str:
    """A `customer_import` DAG run's note. Airflow shows a note's first line: the outcome and the link
    to the run's page inside Airflow; the run's message follows (no text of the file: `public_message`)."""
    first = f"{run.headline} · [Open import run {run.id}]({in_airflow(f'runs/{run.id}', base_url)})"
    return f"{first}\n\n{run.public_message}" if run.public_message else first


def rollback_note(run: ImportRun, rolled_back: bool, base_url: str = "") -> str:
    """A `customer_import_rollback` DAG run's note: whether the import run was rolled back, and its page."""
    link = f"[Open import run {run.id}]({in_airflow(f'runs/{run.id}', base_url)})"
    if rolled_back:
        return f"Rolled back import run {run.id} ({run.file_name}) · {link}\n\n{run.message or ''}".rstrip()
    return f"Import run {run.id} ({run.file_name}) was not rolled back: the log of roll_back_run says why · {link}"


def imported_elsewhere_note(other: ImportRun, base_url: str = "") -> str:
    """The note of a run whose file another run imported first (an empty-file run took it)."""
    link = f"[Open import run {other.id}]({in_airflow(f'runs/{other.id}', base_url)})"
    return f"Imported by import run {other.id}: another Airflow run took {other.file_name} first · {link}"
