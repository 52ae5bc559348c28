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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

_SAFE_NAME = re.compile(r"^[^/\\\x00]+$")
_IN_PROGRESS = {".part", ".tmp", ".crdownload"}
_RUN_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.~:+-]")


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

    def create(self) -> Folders:
        for path in (self.landing, self.root / "processing", self.root / "archive",
                     self.root / "rejected", self.root / "reports"):
            path.mkdir(parents=True, exist_ok=True)
        return self


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
