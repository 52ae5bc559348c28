"""Where files rest: landing -> processing -> archive or rejected; reports beside. Nothing is deleted.

    landing/<name>                  dropped by the CRM export (or `make import`)
    landing/<source>/<name>         dropped by the export of a source (sources.yaml)
    processing/<run id>/<name>      claimed by one import run (an atomic rename)
    archive/<run id>/<name>         imported (succeeded, partial, dry run, duplicate)
    rejected/<run id>/<name>        rejected or failed, with errors.csv beside it
    reports/<run id>/               errors.csv, summary.json, report.html
    quarantine/<time>__<name>       what landed but is not a regular file: never read

Only regular files with one link are ever read: a symbolic link, named pipe, device, folder or
hard-linked file in landing is moved aside to quarantine/ (the link itself, never what it points
to), and every file is opened with O_NOFOLLOW and checked again once open. Folders get the same
care: every folder below the data root that is scanned or written (landing/ and a source's folder
in it, processing/, archive/, rejected/, reports/, quarantine/ and their run folders) is checked
with lstat, one that is a link or not a directory is moved aside and never followed, and landing
is listed through a descriptor opened with O_DIRECTORY | O_NOFOLLOW. A name the page or
Airflow cannot carry (not UTF-8, a backslash, a control character, too long) is renamed to its
percent-escaped form (`M%FCller.csv`), which keeps the original bytes readable.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from customer_import.storage.names import UploadRefused, carriable, escaped_name, run_id_part, safe_upload_name
from customer_import.storage.regular import is_plain_file, is_real_dir, kind_of, listed, lstat_or_none

log = logging.getLogger(__name__)
_SAFE_NAME = re.compile(r"^[^/\\\x00]+$")
_IN_PROGRESS = {".part", ".tmp", ".crdownload"}


class UploadTooLarge(UploadRefused):
    """An upload over the size limit."""

    def __init__(self, file_name: str, max_bytes: int) -> None:
        super().__init__(
            f"{file_name} is larger than the upload limit of {max_bytes / 2**20:.3g} MiB"
            " (CUSTOMER_IMPORT_UPLOAD_MAX_MB): split it, or drop it into the landing folder directly."
        )


@dataclass(frozen=True)
class Folders:
    """The folders of the data root; `landing` is the landing folder of one source: `landing/` itself
    for the default source (whose scan leaves the other sources' sub-folders, `skipped`, alone)."""

    root: Path
    landing_folder: str = ""
    skipped: frozenset[str] = frozenset()

    @property
    def landing(self) -> Path:
        return self.root / "landing" / self.landing_folder if self.landing_folder else self.root / "landing"

    def processing(self, run_id: int) -> Path:
        return self.root / "processing" / str(run_id)

    def archive(self, run_id: int) -> Path:
        return self.root / "archive" / str(run_id)

    def rejected(self, run_id: int) -> Path:
        return self.root / "rejected" / str(run_id)

    def reports(self, run_id: int) -> Path:
        return self.root / "reports" / str(run_id)

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    def landing_file(self, name: str) -> Path:
        """The landing file called `name`; a name that would leave the folder is refused."""
        if not _SAFE_NAME.match(name) or name in (".", "..") or name.startswith("."):
            raise ValueError(f"{name!r} is not a plain file name in the landing folder")
        return self.landing / name

    def waiting_files(self, settled_seconds: float = 0) -> list[str]:
        """Names of the regular files waiting in landing, oldest first.

        Dotfiles and names ending .part/.tmp/.crdownload are uploads still being written, and so is
        a file changed less than `settled_seconds` ago (its writer may not be done). Anything else
        that is not a regular file is moved to quarantine/ on the way, and a name that cannot be
        carried is renamed (see the module's docstring), so one odd entry never stops the others.
        A landing folder that is a link is moved to quarantine/ itself, and nothing is listed.
        """
        if not self._real_or_set_aside(self.landing):
            return []
        now, ready = time.time(), []
        for entry, info in listed(self.landing):
            if entry.startswith(".") or Path(entry).suffix in _IN_PROGRESS or entry in self.skipped:
                continue
            try:
                if not is_plain_file(info):
                    self.set_aside(self.landing / entry, kind_of(info))
                    continue
                name = entry if carriable(entry) else self._rename_carriable(entry)
            except OSError as error:  # gone meanwhile, or cannot be moved: leave it, tell why
                log.warning("Landing entry %r is left where it is: %s", entry, error)
                continue
            ready.append((info.st_mtime, name))
        return [name for mtime, name in sorted(ready) if now - mtime >= settled_seconds]

    def set_aside(self, path: Path, what: str) -> Path:
        """Move an entry of the data folders that must not be read or followed into quarantine/ (a
        rename of the entry itself, never of what a link points to)."""
        quarantine = self._quarantine()
        target = quarantine / f"{time.strftime('%Y%m%dT%H%M%S')}__{escaped_name(path.name)}"
        n = 1
        while os.path.lexists(target):
            n += 1
            target = quarantine / f"{time.strftime('%Y%m%dT%H%M%S')}-{n}__{escaped_name(path.name)}"
        os.rename(path, target)
        where = path.relative_to(self.root) if path.is_relative_to(self.root) else path.name
        log.warning(
            "Not used: %s is %s; moved to quarantine/%s, never read.", escaped_name(str(where)), what, target.name
        )
        return target

    def _quarantine(self) -> Path:
        """quarantine/ as a real folder: a link or file in its place is renamed beside it, never followed."""
        info = lstat_or_none(self.quarantine)
        if info is not None and not stat.S_ISDIR(info.st_mode):
            aside = self.root / f"quarantine.not-a-folder.{time.strftime('%Y%m%dT%H%M%S')}.{time.monotonic_ns()}"
            os.rename(self.quarantine, aside)
            log.warning("quarantine/ was %s: renamed to %s, never followed.", kind_of(info), aside.name)
        self.quarantine.mkdir(parents=True, exist_ok=True)
        return self.quarantine

    def set_aside_files(self) -> list[tuple[str, str, float]]:
        """What quarantine/ holds: (name, what it is, since when), newest first (nothing through a link)."""
        if not is_real_dir(self.quarantine):
            return []
        found = []
        for name, info in listed(self.quarantine):
            found.append((name, kind_of(info), info.st_mtime))
        return sorted(found, key=lambda item: item[2], reverse=True)

    def real_dir(self, path: Path) -> Path:
        """`path`, a folder under the data root, made with every folder between them as a real
        directory: an entry in the way that is a link or not a directory is moved to quarantine/
        first (the entry itself), so nothing is ever written through a link. Returns `path`."""
        current = self.root
        for part in path.relative_to(self.root).parts:
            current = current / part
            info = lstat_or_none(current)
            if info is not None and not stat.S_ISDIR(info.st_mode):
                self.set_aside(current, kind_of(info))
                info = None
            if info is None:
                try:
                    os.mkdir(current)
                except FileExistsError:  # made meanwhile, by another step: checked again
                    return self.real_dir(path)
        return path

    def _real_or_set_aside(self, path: Path) -> bool:
        """Whether `path` (under the root) and the folders above it are real directories; a link or
        file among them is moved to quarantine/. False when it is missing or was set aside."""
        current = self.root
        for part in path.relative_to(self.root).parts:
            current = current / part
            info = lstat_or_none(current)
            if info is None:
                return False
            if not stat.S_ISDIR(info.st_mode):
                try:
                    self.set_aside(current, kind_of(info))
                except OSError as error:
                    log.warning("%s is %s and is not followed: %s", current.name, kind_of(info), error)
                return False
        return True

    def _rename_carriable(self, name: str) -> str:
        safe = escaped_name(name)
        self.claim_name(self.landing / safe)
        self.rename(self.landing / name, self.landing / safe)
        log.warning("Renamed landing file %s to %s: its name could not be carried as it was.", ascii(name), safe)
        return safe

    def arrival_times(self, names: list[str]) -> list[datetime]:
        """When each file arrived (its mtime, UTC, to the microsecond), strictly increasing along
        `names` (oldest first): a tie is moved on by a microsecond, so each is a distinct moment."""
        times: list[datetime] = []
        for name in names:
            arrived = datetime.fromtimestamp(self.size_and_mtime_ns(name)[1] // 1000 / 1e6, UTC)
            if times and arrived <= times[-1]:
                arrived = times[-1] + timedelta(microseconds=1)
            times.append(arrived)
        return times

    def arrival_id(self, name: str) -> str:
        """An id of this version of a landing file (name, size, mtime): the watch triggers one run per id."""
        size, mtime_ns = self.size_and_mtime_ns(name)
        return f"{run_id_part(name)}__{size}__{mtime_ns}"

    def size_and_mtime_ns(self, name: str) -> tuple[int, int]:
        """A landing file's size and when it last changed (ns since the epoch)."""
        stat = self.landing_file(name).stat()
        return stat.st_size, stat.st_mtime_ns

    def handovers(self, names: list[str], source: str = "", conf: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """How each waiting file is handed to `customer_import` (TriggerDagRunOperator's kwargs):
        one run per arrival id, its logical date and `run_after` the arrival time, so that runs
        are started in arrival order and a file is never handed over twice. A source other than the
        default is named in the run id and the conf, with the options it runs with (`conf`)."""
        named = f"{source}__" if source else ""
        return [
            {
                "trigger_run_id": f"file__{named}{self.arrival_id(name)}",
                "conf": {"file": name, **({"source": source} if source else {}), **(conf or {})},
                "logical_date": arrived.isoformat(),
                "run_after": arrived.isoformat(),
            }
            for name, arrived in zip(names, self.arrival_times(names), strict=True)
        ]

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
                self.link(partial, self.landing / candidate)
                return candidate
            except FileExistsError:
                continue
        raise UploadRefused(f"too many files called {name} are waiting in the landing folder")

    def link(self, source: Path, target: Path) -> None:
        """Give `source` a second name, `target`; FileExistsError if that name is taken."""
        os.link(source, target)

    def claim_name(self, target: Path) -> None:
        """Take the name `target` before a rename gives it to a file: created empty and exclusively
        (O_EXCL), so that a file written there in between is never replaced; FileExistsError if taken."""
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        except FileExistsError:
            raise FileExistsError(
                f"cannot give a file the name {target.name!r}: a file of that name is waiting"
            ) from None

    def rename(self, source: Path, target: Path) -> None:
        """Give a file in the data folders its final name at once (a rename on one filesystem)."""
        os.replace(source, target)

    def create(self) -> Folders:
        self.root.mkdir(parents=True, exist_ok=True)
        for path in (
            self.landing,
            self.root / "processing",
            self.root / "archive",
            self.root / "rejected",
            self.root / "reports",
        ):
            self.real_dir(path)
        return self


def drop_into_landing(source: Path, folders: Folders) -> str:
    """Copy a file into landing the way an export job should: under a temporary name, then
    renamed, so that it is never picked up half-written. Returns its name in landing."""
    folders.create()
    target = folders.landing_file(source.name)
    if target.exists() or (isinstance(target, Path) and target.is_symlink()):  # (on object storage: no links)
        raise FileExistsError(f"{target.name} is already waiting in the landing folder {folders.landing}")
    partial = folders.landing / f".{source.name}.part"
    with source.open("rb") as data, partial.open("wb") as out:
        shutil.copyfileobj(data, out, 1 << 20)
    try:
        folders.claim_name(target)  # a file that arrived meanwhile under the same name is not replaced
    except FileExistsError:
        partial.unlink()
        raise FileExistsError(f"{target.name} is already waiting in the landing folder {folders.landing}") from None
    folders.rename(partial, target)
    return target.name


def move(source: Path, target_dir: Path) -> Path:
    """Move `source` into `target_dir` atomically (a rename on one filesystem)."""
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / source.name
    os.replace(source, target)
    return target
