"""Files are picked up by event: an Airflow event trigger (run by the triggerer, for the
`AssetWatcher` of the `customer_import_landing` asset) that fires as soon as a file has settled in
a landing folder, so `customer_import_watch` hands it over within seconds instead of at its next
one-minute tick.

The triggerer keeps one such trigger running. It lists the landing folders every `poke_interval`
seconds, as the watch does (`Sources.handovers`: settled files only, on local disk or object
storage), and fires once for each set of files it has not fired for; a file that stays waiting
does not fire again. Fired twice (after a triggerer restart), the watch hands nothing over twice:
each file's run id is made of its name, size and modification time.

Airflow's import is the reason this module exists: the listing itself is `sources.profiles`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from customer_import.contract.fields import load_contract
from customer_import.settings import Settings
from customer_import.sources.profiles import load_sources

CLASSPATH = f"{__name__}.SettledFilesTrigger"


def settled_files() -> dict[str, str]:
    """The files waiting to be handed over: run id -> file name."""
    settings = Settings.from_env()
    sources = load_sources(settings.sources_file, load_contract())
    return {
        h["trigger_run_id"]: h["conf"]["file"] for h in sources.handovers(settings.store.root, settings.settled_seconds)
    }


class SettledFilesTrigger(BaseEventTrigger):
    """Fires when a file has settled in a landing folder (one event for the files seen together)."""

    def __init__(self, poke_interval: float = 2.0) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # (Airflow's, untyped)
        self.poke_interval = poke_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return CLASSPATH, {"poke_interval": self.poke_interval}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        fired: set[str] = set()
        while True:
            try:
                waiting = await asyncio.to_thread(settled_files)
            except Exception:  # a folder or sources.yaml being fixed: said, and tried again
                self.log.exception("Could not list the landing folders; trying again in %s s.", self.poke_interval)
                waiting = {}
            if new := sorted(waiting.keys() - fired):
                self.log.info("Settled in landing: %s", ", ".join(waiting[run_id] for run_id in new))
                yield TriggerEvent({"files": [waiting[run_id] for run_id in new]})  # type: ignore[no-untyped-call]
            fired = set(waiting)  # a file handed over and claimed leaves the landing folder, and this set
            await asyncio.sleep(self.poke_interval)
