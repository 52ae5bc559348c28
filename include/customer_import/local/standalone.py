"""`airflow standalone` as `make airflow` runs it: every component on this machine, none listening
beyond the address the UI binds.

Airflow's scheduler and triggerer each start a log server (ports 8793 and 8794) that binds every
interface, whatever `api.host` says (`airflow.utils.serve_logs` has no host setting). It serves task
logs to an API server on another machine; here the API server reads them from the shared log folder,
so both are started with `--skip-serve-logs`, which standalone has no option to pass.

Run as `python -m customer_import.local.standalone` (the venv's `airflow` first on PATH).
"""

from __future__ import annotations

from typing import Any

from airflow.cli.commands import standalone_command

#: The components that would start a log server, and the flag that stops them.
SERVE_LOGS = {"scheduler", "triggerer"}


class _LocalSubCommand(standalone_command.SubCommand):
    def __init__(self, parent: Any, name: str, command: list[str], env: dict[str, str]) -> None:
        super().__init__(parent, name, [*command, "--skip-serve-logs"] if name in SERVE_LOGS else command, env)


if __name__ == "__main__":
    standalone_command.SubCommand = _LocalSubCommand  # type: ignore[misc]  # what StandaloneCommand.run builds
    standalone_command.StandaloneCommand().run()  # type: ignore[no-untyped-call]
