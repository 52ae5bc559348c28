"""Airflow's execution API for `dag.test`, served from a process of its own beside the command.

`dag.test` runs each task in the command's process and answers the task's calls (start, XComs,
the end state) with an in-process execution API, built on the first call: Cadwyn generates its
routes for every version of the API, about 4 s of CPU on a 2-core VM, more than everything the
one-row import does. A local command (`make import`, `make demo`, `make rollback`, `make forget`)
instead starts, before it even imports Airflow, `python -m customer_import.local.execution_api`,
which builds the same application (Airflow's `InProcessExecutionAPI`: the same routes, the same
bypass of the task tokens), for the one version of the API the tasks speak (see `application`),
on the machine's other core and serves it on a Unix socket in a private directory, while the
command imports Airflow, the DAG and what the tasks use. `dag.test` is then pointed at it: nothing
else changes for a task, and its run is the same DAG run.

When the process does not answer, the command says so and its tasks use an in-process API, as
`dag.test`'s own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import cached_property
from pathlib import Path
from types import SimpleNamespace
from typing import Any

#: How long a command waits for the served API to answer before it builds its own.
READY_SECONDS = 120.0


class ServedExecutionApi:
    """The execution API process of one command; `in_process_api_server()`'s stand-in while it serves.

    `dag.test`'s supervisor asks `in_process_api_server()` for `.transport` (which this answers with
    the socket) and sets `.app.dependency_overrides` (a DBDagBag per task): the served application
    keeps the DBDagBag it was built with, which reads the DAG versions this command syncs.
    """

    def __init__(self, log_file: Path) -> None:
        self._directory = Path(tempfile.mkdtemp(prefix="customer-import-api-"))  # 0700: this user's only
        self.socket = self._directory / "api.sock"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(self.socket), str(os.getpid())],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.log_file = log_file
        self.app = SimpleNamespace(dependency_overrides={})

    @cached_property
    def transport(self) -> Any:
        """The socket, once the process answers (asked at the first task: dag.test first syncs the DAGs
        and creates its run); dag.test's own in-process API when it does not."""
        import httpx

        if self._answers():
            return httpx.HTTPTransport(uds=str(self.socket))  # one for the command: each builds an SSL context
        print(
            f"Airflow's execution API did not start beside this command (see {self.log_file}):"
            " the tasks use one built in this process.",
            file=sys.stderr,
            flush=True,
        )
        from airflow.api_fastapi.execution_api.app import InProcessExecutionAPI

        return InProcessExecutionAPI().transport

    def _answers(self) -> bool:
        """Whether the process answers (its routes built), waiting for it up to `READY_SECONDS`."""
        import httpx

        deadline = time.monotonic() + READY_SECONDS
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)), timeout=READY_SECONDS) as client:
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    return client.get("http://execution-api/health/ping").status_code == 200
                except httpx.TransportError:  # not listening yet
                    time.sleep(0.05)
        return False

    @contextmanager
    def answering_dag_test(self) -> Iterator[None]:
        """While the block runs, `dag.test` in this process asks this for its execution API."""
        from unittest.mock import patch

        from airflow.sdk.execution_time import supervisor

        with patch.object(supervisor, "in_process_api_server", lambda: self):
            yield

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self._directory, ignore_errors=True)


@contextmanager
def served_beside(log_file: Path) -> Iterator[ServedExecutionApi]:
    """Start the execution API process for the block's `dag.test` runs (see `run_dag(api=…)`)."""
    api = ServedExecutionApi(log_file)
    try:
        yield api
    finally:
        api.stop()


def serve(socket: Path, parent: int) -> None:
    """Build Airflow's execution API as `dag.test` does (for the one version its tasks speak: see
    `application`), its routes at once, and serve it on `socket` until the command (`parent`) ends."""
    import uvicorn

    app = application()
    server = uvicorn.Server(uvicorn.Config(app, uds=str(socket), log_level="warning", lifespan="on"))
    threading.Thread(target=_build_routes, args=(server, socket), daemon=True).start()
    threading.Thread(target=_end_with, args=(parent, server), daemon=True).start()
    try:
        server.run()
    finally:
        shutil.rmtree(socket.parent, ignore_errors=True)


def application() -> Any:
    """Airflow's `InProcessExecutionAPI` application, its routes generated for the one version of the API
    that this installation's task SDK speaks (the header of its every call).

    Cadwyn otherwise generates the routes of every version the API has had (ten, in Airflow 3.3), each
    from the one after it: 3–4 s of CPU that answer no call of this command's tasks. Given a bundle of
    that one version, it generates the same routes, the same models, the same OpenAPI document for it
    (a test compares them with the full application's); the routes that exist only in older versions
    are left out first, as Cadwyn leaves them out of that version. When the SDK speaks a version the
    server does not know, every version is generated, as in `dag.test`.
    """
    from airflow.api_fastapi.execution_api import versions
    from airflow.api_fastapi.execution_api.app import InProcessExecutionAPI
    from airflow.api_fastapi.execution_api.routes import execution_api_router
    from airflow.sdk.api.datamodels._generated import API_VERSION
    from cadwyn import HeadVersion, Version, VersionBundle
    from cadwyn.route_generation import _DELETED_ROUTE_TAG
    from fastapi.routing import APIRoute

    if API_VERSION in {version.value for version in versions.bundle.versions}:
        # this process builds one application, for one client: the module-level router and bundle are its own
        execution_api_router.routes[:] = [
            route
            for route in execution_api_router.routes
            if not (isinstance(route, APIRoute) and _DELETED_ROUTE_TAG in route.tags)
        ]
        versions.bundle = VersionBundle(HeadVersion(), Version(API_VERSION))
    return InProcessExecutionAPI().app


def _build_routes(server: Any, socket: Path) -> None:
    """Ask once as soon as the server listens: Cadwyn builds the routes on the first request, which
    is better paid now, on this core, than on the command's first task."""
    import httpx

    while not server.started and not server.should_exit:
        time.sleep(0.02)
    with suppress(httpx.HTTPError), httpx.Client(transport=httpx.HTTPTransport(uds=str(socket))) as client:
        client.get("http://execution-api/health/ping", timeout=READY_SECONDS)


def _end_with(parent: int, server: Any) -> None:
    """Stop serving once the command that started this process is gone (killed outright, say)."""
    while os.getppid() == parent:
        time.sleep(1)
    server.should_exit = True


if __name__ == "__main__":
    serve(Path(sys.argv[1]), int(sys.argv[2]))
