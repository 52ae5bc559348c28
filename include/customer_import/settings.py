"""Every setting of the project, read from the environment in one place.

| variable | default | meaning |
|---|---|---|
| CUSTOMER_IMPORT_DATA_DIR | `<repo>/.state/data` | root of landing/, processing/, archive/, rejected/, reports/ |
| CUSTOMER_IMPORT_EXPECTATIONS_DIR | `<repo>/expectations` | where the GX suites are read from |
| CUSTOMER_IMPORT_SCHEMA | `public` | schema of the customers, import_runs and history tables |
| CUSTOMER_IMPORT_CONN_ID | `customer_db` | the Airflow connection of the target database |
| CUSTOMER_IMPORT_CHUNK_ROWS | `100000` | rows validated by GX at a time (memory is flat in file size) |
| CUSTOMER_IMPORT_ISSUES_IN_SUMMARY | `1000` | issues of one code listed in summary.json (all are counted) |
| CUSTOMER_IMPORT_SETTLED_SECONDS | `10` | a landing file unchanged this long is complete and gets imported |
| CUSTOMER_IMPORT_UPLOAD_MAX_MB | `512` | largest file the Imports page accepts as an upload |
| CUSTOMER_IMPORT_MAX_FIELD_MB | `1` | longest value (a line: 4 times as much); longer, the whole file is refused |
| CUSTOMER_IMPORT_TASK_RETRIES | `3` | retries of a task that failed on infrastructure (read by the DAG at parse time) |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The Airflow asset that stands for the customers table: an event is emitted when customers change.
CUSTOMERS_ASSET = {"name": "customers", "uri": "customer-import://customer_db/customers"}


def _path(name: str, default: Path) -> Path:
    return Path(os.environ.get(name) or default).resolve()


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    expectations_dir: Path
    schema: str
    conn_id: str
    chunk_rows: int
    issues_in_summary: int
    settled_seconds: float
    upload_max_bytes: int
    max_field_chars: int

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            data_dir=_path("CUSTOMER_IMPORT_DATA_DIR", REPO_ROOT / ".state" / "data"),
            expectations_dir=_path("CUSTOMER_IMPORT_EXPECTATIONS_DIR", REPO_ROOT / "expectations"),
            schema=os.environ.get("CUSTOMER_IMPORT_SCHEMA", "public"),
            conn_id=os.environ.get("CUSTOMER_IMPORT_CONN_ID", "customer_db"),
            chunk_rows=int(os.environ.get("CUSTOMER_IMPORT_CHUNK_ROWS", "100000")),
            issues_in_summary=int(os.environ.get("CUSTOMER_IMPORT_ISSUES_IN_SUMMARY", "1000")),
            settled_seconds=float(os.environ.get("CUSTOMER_IMPORT_SETTLED_SECONDS", "10")),
            upload_max_bytes=int(float(os.environ.get("CUSTOMER_IMPORT_UPLOAD_MAX_MB", "512")) * 2**20),
            max_field_chars=int(float(os.environ.get("CUSTOMER_IMPORT_MAX_FIELD_MB", "1")) * 2**20),
        )
