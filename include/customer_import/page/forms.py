"""What the page's forms and buttons send, read into options and handovers; an upload counted as it
streams in; the progress a running import reports."""

from __future__ import annotations

import codecs
import math
from collections.abc import Iterator
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.types import Message

from customer_import.contract.options import OFFERED, ImportOptions, check_encoding_name
from customer_import.database.runs import ImportRun
from customer_import.page.rendering import IMPORT_DAG_ID, Notice
from customer_import.reading.charsets import suggested_encoding
from customer_import.sources.profiles import DEFAULT, Source, Sources
from customer_import.storage.folders import UploadTooLarge
from customer_import.storage.names import UploadRefused


def counted(request: Request, limit: int) -> Request:
    """`request` with its body counted as it streams in: a body that cannot hold a file of `limit`
    bytes or less (the form's other fields and boundaries take well under 64 KiB) raises
    UploadTooLarge as soon as it is read that far, whatever Content-Length said, chunked or not."""
    most = limit + 65536
    if int(request.headers.get("content-length") or 0) > most:
        raise UploadTooLarge("The file", limit)
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > most:
            raise UploadTooLarge("The file", limit)
        return message

    return Request(request.scope, receive)


def again(run: ImportRun, action: str) -> ImportOptions | None:
    """The options of importing a run's file again: for real (it was a dry run), with force (a duplicate),
    with its invalid rows skipped (a rejected file whose rows could be), at a rate that admits them,
    or allowing the deactivations a full snapshot was refused for."""
    if action == "force" and run.status == "duplicate":
        return replace(run.options, force=True, dry_run=False)
    if action == "apply" and run.status == "dry_run":
        return replace(run.options, dry_run=False)
    if action == "encoding" and (encoding := suggested_for(run)) is not None:
        return replace(run.options, encoding=check_encoding_name(encoding))
    if action == "allow_deactivation" and run.status == "rejected" and run.deactivation_refused:
        return replace(run.options, allow_mass_deactivation=True, dry_run=False)
    rows_were_why = not run.file_rejected and not run.deactivation_refused
    if action == "valid_rows" and run.status == "rejected" and rows_were_why and run.rows_valid:
        rate = math.ceil(1000 * (run.rows_rejected or 0) / (run.rows_total or 1)) / 1000
        return replace(run.options, on_error="skip_invalid_rows", max_error_rate=min(1.0, rate))
    return None


def suggested_for(run: ImportRun) -> str | None:
    """The encoding a run rejected for its encoding should have been imported with, when its reason
    names one (see `charsets.suggested_encoding`)."""
    if run.status != "rejected" or not run.file_rejected:
        return None
    return suggested_encoding(run.message)


def encoding_label(encoding: str) -> str:
    """`Windows-1252` for windows-1252 or cp1252: how the upload form names an encoding."""
    canonical = codecs.lookup(encoding).name
    named = {codecs.lookup(name).name: label.split(" (")[0] for name, label in OFFERED.items()}
    return named.get(canonical, encoding)


def changed(options: ImportOptions) -> dict[str, Any]:
    """The options that differ from the DAG's defaults: what a run's conf carries."""
    return {k: v for k, v in asdict(options).items() if v != getattr(ImportOptions(), k)}


def now_handover(prefix: str, conf: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {"trigger_run_id": f"{prefix}__{now}", "conf": conf, "logical_date": now, "run_after": now}


def form_options(form: Any) -> ImportOptions:
    """The upload form's options, checked as the run's Params are (the same defaults and meanings)."""
    fields = ("mode", "on_error", "max_error_rate", "dry_run", "force", "encoding", "snapshot")
    params = {name: form.get(name) for name in fields}
    if str(form.get("encoding_other") or "").strip():  # another encoding, named: it wins over the list's
        params["encoding"] = str(form.get("encoding_other")).strip()
    try:
        return ImportOptions.from_params(params)
    except ValueError as unknown:
        raise UploadRefused(f"{str(unknown)[0].upper()}{str(unknown)[1:]}.") from None


def form_source(sources: Sources, form: Any) -> Source:
    """The upload form's source: the default one unless it names another."""
    try:
        return sources[str(form.get("source") or DEFAULT)]
    except KeyError as unknown:
        raise UploadRefused(unknown.args[0]) from None


def progress_of(run: ImportRun) -> dict[str, Any]:
    """What progress.json says of a run: enough to update its row and page in place."""
    counts = {
        "rows": run.rows_total,
        "inserted": run.inserted,
        "updated": run.updated,
        "unchanged": run.unchanged,
        "rejected": run.rows_rejected,
    }
    return {
        "status": run.shown_status,
        "progress": run.progress,
        "percent": run.percent,
        **{name: f"{n:,}" if n is not None else None for name, n in counts.items()},
    }


def chunks(upload: UploadFile, size: int = 1 << 20) -> Iterator[bytes]:
    upload.file.seek(0)
    while chunk := upload.file.read(size):
        yield chunk


def upload_notice(uploaded: str | None, airflow_run: str | None) -> Notice | None:
    if not uploaded:
        return None
    then = (
        f"Its import started as Airflow run {airflow_run}: the list below shows its status."
        if airflow_run
        else "It waits in the landing folder: the landing watch hands it to the import within a minute."
    )
    return Notice("ok", f"Uploaded {uploaded}. {then}", (IMPORT_DAG_ID, airflow_run) if airflow_run else None)
