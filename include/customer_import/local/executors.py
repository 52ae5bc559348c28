"""Airflow's executors, with what the import's tasks use imported once, before they fork.

Every task of a run is a process forked from the executor's worker (LocalExecutor) or from a Celery
worker's pool process, and each re-imported what the import uses: the core package, pandas,
pyarrow and GX, whose import alone takes about 2.5 s of CPU. Imported here once, in the process the
others are forked from, they are there when a task starts: a 1,000-row file's tasks use about half
the CPU they used, which is what decides how fast a backlog drains on a small machine.

- `make airflow` (standalone) runs `PreloadedLocalExecutor`:
  `AIRFLOW__CORE__EXECUTOR=customer_import.local.executors.PreloadedLocalExecutor`.
- Celery workers (`make celery`, docker-compose.yaml) read `CELERY_CONFIG`:
  `AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=customer_import.local.executors.CELERY_CONFIG`: Airflow's
  Celery configuration, whose `imports` Celery imports before it starts its pool.

Nothing changes for a task but when its modules are imported.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from airflow.executors.local_executor import LocalExecutor

log = logging.getLogger(__name__)

#: What the steps of an import use (`reading.expectations` imports GX when it validates).
PRELOADED = (
    "customer_import.pipeline",
    "pandas",
    "pyarrow.csv",
    "pyarrow.compute",
    "great_expectations",
    "great_expectations.expectations",
    "great_expectations.execution_engine.pandas_execution_engine",
    "airflow.providers.postgres.hooks.postgres",
)


def preload(*also: str) -> None:
    """Import `PRELOADED` and `also` (a module that cannot be imported is left to the task that needs it)."""
    for name in (*PRELOADED, *also):
        try:
            importlib.import_module(name)
        except Exception:  # the task will say it in its own log, where it is looked for
            log.warning("Could not preload %s.", name, exc_info=True)


class PreloadedLocalExecutor(LocalExecutor):
    """LocalExecutor whose workers are forked with `PRELOADED` imported."""

    def start(self) -> None:
        preload()
        super().start()


def _celery_config() -> dict[str, Any]:
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

    return {**DEFAULT_CELERY_CONFIG, "imports": (*DEFAULT_CELERY_CONFIG.get("imports", ()), *PRELOADED)}


def __getattr__(name: str) -> Any:  # built when Airflow asks for it: the LocalExecutor's users have no Celery
    if name == "CELERY_CONFIG":
        return _celery_config()
    raise AttributeError(name)
