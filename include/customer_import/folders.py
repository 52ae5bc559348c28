"""Where files rest: landing -> processing -> archive or rejected; reports beside. Nothing is deleted.

    landing/<name>                  dropped by the CRM export (or `make import`)
    processing/<run id>/<name>      claimed by one import run (an atomic rename)
    archive/<run id>/<name>         imported (succeeded, partial, dry run, duplicate)
    rejected/<run id>/<name>        rejected or failed, with errors.csv beside it
    reports/<run id>/               errors.csv, summary.json, report.html
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

_SAFE_NAME = re.compile(r"^[^/\\\x00]+$")
_IN_PROGRESS = {".part", ".tmp", ".crdownload"}
_RUN_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.~:+-]")
_UPLOAD_UNSAFE = re.compile(r"[^\w.-]+")
_UPLOAD_NAME_LENGTH = 120


class UploadRefused(ValueError):
    """An upload that is not taken; the message says why and what to do."""


class UploadTooLarge(UploadRefused):
    """An upload over the size limit."""

    def __init__(self, file_name: str, max_bytes: int) -> None:
        super().__init__(f"{file_name} is larger than the upload limit of {max_bytes / 2**20:.3g} MiB"
                         " (CUSTOMER_IMPORT_UPLOAD_MAX_MB): split it, or drop it into the landing folder directly.")


@dataclass(frozen=True)
class Folders:
    root: Path

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    def processing(self, run_id: int) -> Path:
        return self.root / "processing" / str(run_id)

    def archive(self, run_id: int) -> Path:
        return self.root / "archive" / str(run_id)

    def rejected(self, run_id: int) -> Path:
        return self.root / "rejected" / str(run_id)

    def reports(self, run_id: int) -> Path:
        return self.root / "reports" / str(run_id)

    def landing_file(self, name: str) -> Path:
        """The landing file called `name`; a name that would leave the folder is refused."""
        if not _SAFE_NAME.match(name) or name in (".", "..") or name.startswith("."):
            raise ValueError(f"{name!r} is not a plain file name in the landing folder")
        return self.landing / name

    def waiting_files(self, settled_seconds: float = 0) -> list[str]:
        """Names of the files waiting in landing, oldest first.

        Dotfiles and names ending .part/.tmp/.crdownload are uploads still being written, and so is
        a file changed less than `settled_seconds` ago (its writer may not be done).
        """
        if not self.landing.is_dir():
            return []
        now = time.time()
        ready = [(p.stat().st_mtime, p.name) for p in self.landing.iterdir()
                 if p.is_file() and not p.name.startswith(".") and p.suffix not in _IN_PROGRESS]
        return [name for mtime, name in sorted(ready) if now - mtime >= settled_seconds]

    def arrival_times(self, names: list[str]) -> list[datetime]:
        """When each file arrived (its mtime, UTC, to the microsecond), strictly increasing along
        `names` (oldest first): a tie is moved on by a microsecond, so each is a distinct moment."""
        times: list[datetime] = []
        for name in names:
            arrived = datetime.fromtimestamp(self.landing_file(name).stat().st_mtime_ns // 1000 / 1e6, UTC)
            if times and arrived <= times[-1]:
                arrived = times[-1] + timedelta(microseconds=1)
            times.append(arrived)
        return times

    def arrival_id(self, name: str) -> str:
        """An id of this version of a landing file (name, size, mtime): the watch triggers one run per id."""
        stat = self.landing_file(name).stat()
        return f"{_RUN_ID_UNSAFE.sub('_', name)}__{stat.st_size}__{stat.st_mtime_ns}"

    def handovers(self, names: list[str]) -> list[dict]:
        """How each waiting file is handed to `customer_import` (TriggerDagRunOperator's kwargs):
        one run per arrival id, its logical date and `run_after` the arrival time, so that runs
        are started in arrival order and a file is never handed over twice."""
        return [{"trigger_run_id": f"file__{self.arrival_id(name)}", "conf": {"file": name},
                 "logical_date": arrived.isoformat(), "run_after": arrived.isoformat()}
                for name, arrived in zip(names, self.arrival_times(names), strict=True)]

    def receive_upload(self, chunks: Iterator[bytes], file_name: str, max_bytes: int) -> tuple[str, int]:
        """Write an uploaded file into landing under a safe, unused name; returns (name, size).

        It is written as a dotfile (which the watch ignores) and linked to its name only when
        complete, so it is never picked up half-written and never replaces a waiting file.
        """
        name = safe_upload_name(file_name)
        self.create()
        partial = self.landing / f".{name}.{os.getpid()}.{time.monotonic_ns()}.part"
        size = 0
        try:
            with partial.open("wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise UploadTooLarge(file_name, max_bytes)
                    out.write(chunk)
            if size == 0:
                raise UploadRefused(f"{file_name} is empty: choose the CSV file with your customers.")
            return self._link_unused(partial, name), size
        finally:
            partial.unlink(missing_ok=True)

    def _link_unused(self, partial: Path, name: str) -> str:
        """Give `partial` the name `name`, or `name-2`, `name-3`... if taken (a hard link fails
        rather than replace a file)."""
        stem, suffix = os.path.splitext(name)
        for n in range(1, 1000):
            candidate = name if n == 1 else f"{stem}-{n}{suffix}"
            try:
                os.link(partial, self.landing / candidate)
                return candidate
            except FileExistsError:
                continue
        raise UploadRefused(f"too many files called {name} are waiting in the landing folder")

    def create(self) -> Folders:
        for path in (self.landing, self.root / "processing", self.root / "archive",
                     self.root / "rejected", self.root / "reports"):
            path.mkdir(parents=True, exist_ok=True)
        return self


def safe_upload_name(file_name: str) -> str:
    """A landing name for a file a browser sent: its base name only (no folders, no dotfile),
    letters, digits, `.`, `-` and `_`, at most 120 characters, ending `.csv`."""
    base = re.split(r"[/\\]", unicodedata.normalize("NFKC", file_name or ""))[-1]
    if not base.lower().endswith(".csv"):
        raise UploadRefused(
            f"{base or 'The file'} is not a .csv file: in Excel use File > Save As > 'CSV UTF-8 (Comma delimited)'"
            " and upload that file.")
    stem = _UPLOAD_UNSAFE.sub("_", base[:-4]).strip("._-")[: _UPLOAD_NAME_LENGTH - 4] or "upload"
    return f"{stem}.csv"


def drop_into_landing(source: Path, folders: Folders) -> str:
    """Copy a file into landing the way an export job should: under a temporary name, then
    renamed, so that it is never picked up half-written. Returns its name in landing."""
    folders.create()
    target = folders.landing_file(source.name)
    if target.exists():
        raise FileExistsError(f"{target.name} is already waiting in the landing folder {folders.landing}")
    partial = folders.landing / f".{source.name}.part"
    shutil.copyfile(source, partial)
    os.replace(partial, target)
    return target.name


def move(source: Path, target_dir: Path) -> Path:
    """Move `source` into `target_dir` atomically (a rename on one filesystem)."""
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / source.name
    os.replace(source, target)
    return target


def sha256_of(path: Path) -> tuple[str, int]:
    """The file's SHA-256 (hex) and size, read in blocks."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as data:
        while block := data.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size
