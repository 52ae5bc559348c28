"""Files are picked up by event: the landing watcher's trigger fires once for each file that has
settled, within its poke interval, and the watch DAG is scheduled by it (and every minute)."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta

import pytest

from tests.conftest import REPO

# Airflow is configured once per process, when first imported: its metadata database must be set first
pytestmark = [pytest.mark.dag, pytest.mark.usefixtures("airflow_ready")]


def test_the_trigger_fires_once_for_each_file_that_settles(tmp_path, monkeypatch):
    from customer_import.sources.landing_watch import SettledFilesTrigger

    monkeypatch.setenv("CUSTOMER_IMPORT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CUSTOMER_IMPORT_SETTLED_SECONDS", "1")
    landing = tmp_path / "data" / "landing"
    landing.mkdir(parents=True)

    def drop(name: str, age: float) -> None:
        (landing / name).write_text("AccountReferenceID\nK-1\n")
        os.utime(landing / name, (time.time() - age, time.time() - age))

    async def watch() -> tuple[list[tuple[float, list[str]]], float]:
        events: list[tuple[float, list[str]]] = []

        async def record() -> None:
            async for event in SettledFilesTrigger(poke_interval=0.05).run():
                events.append((time.monotonic(), event.payload["files"]))

        drop("settled.csv", 60)
        drop(".upload.part", 60)  # never a file being uploaded
        watching = asyncio.create_task(record())
        await asyncio.sleep(1)  # settled.csv fires; still waiting, it does not fire again
        drop("later.csv", 0)
        dropped = time.monotonic()
        for _ in range(100):
            await asyncio.sleep(0.1)
            if len(events) > 1:
                break
        await asyncio.sleep(0.5)  # and nothing more
        watching.cancel()
        return events, dropped

    events, dropped = asyncio.run(watch())

    assert [files for _, files in events] == [["settled.csv"], ["later.csv"]]
    assert events[1][0] - dropped >= 1  # once it had settled (CUSTOMER_IMPORT_SETTLED_SECONDS)


def test_the_watch_runs_on_the_landing_watcher_and_every_minute():
    from airflow.dag_processing.dagbag import DagBag

    from customer_import.sources.landing_watch import CLASSPATH

    dag = DagBag(dag_folder=str(REPO / "dags")).dags["customer_import_watch"]

    landing = dag.timetable.asset_condition
    assert landing.name == "customer_import_landing"
    [watcher] = landing.watchers
    assert watcher.trigger.serialize() == (CLASSPATH, {"poke_interval": 2.0})
    assert dag.timetable.timetable.delta == timedelta(minutes=1)
