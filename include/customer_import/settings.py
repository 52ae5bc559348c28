"""Every setting of the project, read from the environment here and nowhere else.

Each field of `Settings` declares its variable, default and meaning once; `make generate` writes
the configuration table of docs/configuration.md from them (`settings_table`), and a test fails when it is stale.
A relative path is taken from the repository's root, wherever the process runs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from customer_import.storage.store import DataStore

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The Airflow asset that stands for the customers table: an event is emitted when customers change.
CUSTOMERS_ASSET_NAME, CUSTOMERS_ASSET_URI = "customers", "customer-import://customer_db/customers"
MIB = 2**20


def _setting(env: str, default: str, meaning: str, parse: Callable[[str], Any] = str, shown: str = "") -> Any:
    """A field read from `env` (unset or empty: `default`); `shown` is the default as the docs say it."""
    return field(
        metadata={"env": env, "default": default, "meaning": meaning, "parse": parse, "shown": shown or default}
    )


def _repo_path(value: str) -> Path:
    return (REPO_ROOT / value).resolve()  # an absolute value stays as it is


def _mib(value: str) -> int:
    return int(float(value) * MIB)


def _postgres_memory(value: str) -> str:
    """A PostgreSQL memory size (`64MB`, `1GB`, `65536kB`), checked before it reaches the server."""
    if re.fullmatch(r"[1-9][0-9]*(?:kB|MB|GB)", value) is None:
        raise ValueError(value)
    return value


def _positive(value: str) -> int:
    """A whole number of at least 1."""
    if int(value) < 1:
        raise ValueError(value)
    return int(value)


def _days_or_keep(value: str) -> int | None:
    """A number of days (at least 1), or `keep`: for ever."""
    return None if value.strip().lower() == "keep" else _positive(value)


@dataclass(frozen=True)
class Settings:
    data_dir: Path = _setting(
        "CUSTOMER_IMPORT_DATA_DIR",
        ".state/data",
        "root of `landing/ processing/ archive/ rejected/ reports/`",
        _repo_path,
    )
    data_url: str = _setting(
        "CUSTOMER_IMPORT_DATA_URL",
        "",
        "the data folders on object storage, e.g. `s3://customer_data@bucket/prefix` (an Airflow connection"
        " before the `@`); a step then works on a copy of its run's files under CUSTOMER_IMPORT_DATA_DIR, deleted"
        " when it ends (docs/several-machines.md). `file://` or a path: the data folder is there",
        shown="(none: the data folder)",
    )
    expectations_dir: Path = _setting(
        "CUSTOMER_IMPORT_EXPECTATIONS_DIR",
        "expectations",
        "where the GX suite (and the rendered SQL beside it) is read from",
        _repo_path,
    )
    sources_file: Path = _setting(
        "CUSTOMER_IMPORT_SOURCES",
        "include/customer_import/sources.yaml",
        "the sources: where each CRM export lands, how its columns and values map onto the contract,"
        " its alerts (README: Loading a CRM export)",
        _repo_path,
    )
    schema: str = _setting(
        "CUSTOMER_IMPORT_SCHEMA", "public", "schema of `customers`, `import_runs`, `customer_history`"
    )
    conn_id: str = _setting(
        "CUSTOMER_IMPORT_CONN_ID",
        "customer_db",
        "the Airflow connection the DAGs and the Imports page use for the target",
    )
    chunk_rows: int = _setting(
        "CUSTOMER_IMPORT_CHUNK_ROWS",
        "100000",
        "rows validated at a time, twice as many when read in columns (memory stays flat in file size)",
        int,
    )
    work_mem: str = _setting(
        "CUSTOMER_IMPORT_WORK_MEM",
        "64MB",
        "PostgreSQL's `work_mem` for an import's statements (its checks, finding the changes, the MERGE):"
        " with the server's default of 4MB, a million rows join through temporary files",
        _postgres_memory,
    )
    issues_in_summary: int = _setting(
        "CUSTOMER_IMPORT_ISSUES_IN_SUMMARY",
        "1000",
        "issues of one kind listed in `summary.json` (all are counted, and `errors.csv` marks every row)",
        int,
    )
    settled_seconds: float = _setting(
        "CUSTOMER_IMPORT_SETTLED_SECONDS",
        "10",
        "a landing file unchanged this long is complete and gets imported",
        float,
    )
    upload_max_bytes: int = _setting(
        "CUSTOMER_IMPORT_UPLOAD_MAX_MB",
        "512",
        "the largest file (MiB) the Imports page accepts as an upload (counted while it streams in)",
        _mib,
    )
    max_field_chars: int = _setting(
        "CUSTOMER_IMPORT_MAX_FIELD_MB",
        "1",
        "the longest value (Mi characters) a file may hold (a line: four times as much);"
        " a longer one refuses the whole file, unread",
        _mib,
    )
    parallel_files: int = _setting(
        "CUSTOMER_IMPORT_PARALLEL_FILES",
        "3",
        "files imported at the same time (the DAG's `max_active_runs`): each is read and validated"
        " beside the others, and merged only after every file that arrived before it (read when the"
        " DAG is parsed)",
        _positive,
    )
    stalled_seconds: float = _setting(
        "CUSTOMER_IMPORT_STALLED_SECONDS",
        "300",
        "a file waits for the file that arrived before it to merge, unless that one has not moved for this"
        " long (its Airflow run left running with no scheduler to run it): then it goes first, saying so",
        float,
    )
    task_retries: int = _setting(
        "CUSTOMER_IMPORT_TASK_RETRIES",
        "3",
        "retries, with exponential backoff from 10 s, of a task that failed on"
        " infrastructure (read when the DAG is parsed)",
        int,
    )
    keep_files_days: int | None = _setting(
        "CUSTOMER_IMPORT_KEEP_FILES_DAYS",
        "90",
        "days the files and reports of a finished import run are kept (archive/, rejected/, reports/; locally and"
        " on object storage); then `customer_import_housekeeping` deletes them (the run's row and counts stay)."
        " `keep`: for ever",
        _days_or_keep,
    )
    keep_history_days: int | None = _setting(
        "CUSTOMER_IMPORT_KEEP_HISTORY_DAYS",
        "keep",
        "days the history of an import run's changes is kept (`customer_history`); then it is deleted and the run"
        " can no longer be rolled back. `keep`: for ever",
        _days_or_keep,
    )
    pgdata: Path = _setting(
        "CUSTOMER_IMPORT_PGDATA",
        ".state/pgdata",
        "data folder of the embedded PostgreSQL the local commands start when no `AIRFLOW_CONN_CUSTOMER_DB` is set",
        _repo_path,
    )

    @classmethod
    def from_env(cls) -> Settings:
        values = {}
        for spec in fields(cls):
            meta = spec.metadata
            raw = os.environ.get(meta["env"]) or meta["default"]
            try:
                values[spec.name] = meta["parse"](raw)
            except ValueError:
                raise ValueError(f"{meta['env']}={raw!r} is not valid: the default is {meta['default']}") from None
        url = values["data_url"]
        if url.startswith("file://") or (url and "://" not in url):  # the data folder is there
            values["data_dir"], values["data_url"] = _repo_path(url.removeprefix("file://")), ""
        return cls(**values)

    @property
    def store(self) -> DataStore:
        """The data folders: the local data folder, or the object store it mirrors."""
        return DataStore(self.data_dir, self.data_url)


def settings_table() -> str:
    """The table of the settings in docs/configuration.md, as Markdown."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    rows += [f"| `{f.metadata['env']}` | `{f.metadata['shown']}` | {f.metadata['meaning']} |" for f in fields(Settings)]
    return "\n".join(rows) + "\n"
