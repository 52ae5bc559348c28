"""The data folders on object storage (`CUSTOMER_IMPORT_DATA_URL`), mirrored on each worker.

With a URL such as `s3://customer_data@bucket/prefix` (the Airflow connection named before the `@`
holds the credentials and, for a local S3, the endpoint), landing/, processing/, archive/,
rejected/ and reports/ live in the store: the one place every worker, the watch and the Imports
page share. Without one (or with `file://`), the data folder is the store, as it always was.

A step of an import works on this machine's copy of its run's folders under
`CUSTOMER_IMPORT_DATA_DIR`: it pulls what the earlier steps (perhaps on another worker) left in
processing/<run id>/, and pushes back what it wrote before it ends. Files are streamed in blocks,
never held whole in memory. A move is a copy, then a delete: a crash between the two leaves both
copies, never neither. A claim takes its landing file under a database lock (`claim_lock`), so
two runs never take one file, and a run that crashed after its copy finds the file it took.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO

from customer_import.storage.folders import _IN_PROGRESS, Folders
from customer_import.storage.names import carriable
from customer_import.storage.regular import open_regular

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

BLOCK = 1 << 20


@cache
def object_root(url: str) -> ObjectStoragePath:
    """The store at `url` (one per process: its connection is looked up once)."""
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(url.rstrip("/"))


@dataclass(frozen=True)
class ObjectFolders(Folders):
    """`Folders` on object storage: the same layout, the same names and the same arrival order.

    An object store has no links, pipes or folders to set aside and no rename: a name is given by a
    copy and a delete (an object appears whole when its upload completes, so a reader never sees
    half of one).
    """

    root: Any = None  # an ObjectStoragePath

    def waiting_files(self, settled_seconds: float = 0) -> list[str]:
        now, ready = time.time(), []
        for name, _, mtime in self.listing():
            if name.startswith(".") or PurePosixPath(name).suffix in _IN_PROGRESS:
                continue
            if not carriable(name):
                name = self._rename_carriable(name)
            ready.append((mtime, name))
        return [name for mtime, name in sorted(ready) if now - mtime >= settled_seconds]

    def listing(self) -> list[tuple[str, int, float]]:
        """(name, size, mtime) of each file in landing (not below it), read afresh from the store."""
        landing: Any = self.landing
        try:
            found = self.root.fs.ls(landing.path, detail=True, refresh=True)
        except FileNotFoundError:
            return []
        return [
            (PurePosixPath(info["name"]).name, info["size"], info["LastModified"].timestamp())
            for info in found
            if info.get("type") == "file"
        ]

    def size_and_mtime_ns(self, name: str) -> tuple[int, int]:
        stat = self.landing_file(name).stat()
        return stat.st_size, round(stat.st_mtime * 1e9)

    def set_aside_files(self) -> list[tuple[str, str, float]]:
        return []

    def link(self, source: Any, target: Any) -> None:
        self.root.fs.invalidate_cache(target.parent.path)
        if target.exists():
            raise FileExistsError(target.name)
        source.copy(target)

    def rename(self, source: Any, target: Any) -> None:
        source.copy(target)
        source.unlink()

    def claim_name(self, target: Any) -> None:
        # no exclusive create on an object store: a file written between this look and the copy is replaced
        self.root.fs.invalidate_cache(target.parent.path)
        if target.exists():
            raise FileExistsError(f"cannot give a file the name {target.name!r}: a file of that name is waiting")

    def create(self) -> ObjectFolders:
        return self  # an object store has no folders to make


@dataclass(frozen=True)
class DataStore:
    """The data folders: `local` (this machine's), and the object store it mirrors, if any."""

    local: Path
    url: str = ""

    @property
    def remote(self) -> bool:
        return bool(self.url)

    @property
    def root(self) -> Any:
        """Where the watch and the page look: the store's root, or the local data folder."""
        return object_root(self.url) if self.url else self.local

    def location(self, relative: str) -> str:
        """Where a file of the data folders is, in words for a person (a path or a URL)."""
        return f"{self.url.rstrip('/')}/{relative}" if self.url else str(self.local / relative)

    # --- the mirror ------------------------------------------------------------------

    def pull(self, *relatives: str) -> None:
        """Bring the store's copies of these files and folders (with what is under them) here, where
        this machine's copy is missing or of another size."""
        if not self.url:
            return
        fs, root = object_root(self.url).fs, object_root(self.url)
        for relative in relatives:
            base = root / relative
            fs.invalidate_cache(base.path)  # what an earlier step wrote from another machine
            try:
                found = fs.find(base.path, detail=True, withdirs=False)
            except FileNotFoundError:
                continue
            for key, info in found.items():
                target = self.local / PurePosixPath(key).relative_to(root.path)
                if target.exists() and target.stat().st_size == info["size"]:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(f".{target.name}.pull")
                with fs.open(key, "rb") as data, partial.open("wb") as out:
                    shutil.copyfileobj(data, out, BLOCK)
                os.replace(partial, target)

    def push(self, *relatives: str) -> None:
        """Copy these local files and folders (with what is under them) to the store."""
        if not self.url:
            return
        root = object_root(self.url)
        for relative in relatives:
            local = self.local / relative
            files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
            for path in files:
                target: Any = root / path.relative_to(self.local).as_posix()
                with open_regular(path) as data, target.open("wb") as out:
                    shutil.copyfileobj(data, out, BLOCK)

    def delete(self, relative: str) -> None:
        """Remove a file or folder from the store (this machine's copy stays)."""
        if self.url:
            path = object_root(self.url) / relative
            if path.exists() or path.is_dir():
                path.fs.rm(path.path, recursive=True)

    def remove(self, relative: str) -> tuple[int, int]:
        """Delete a file or folder of the data folders, in the store and here: how many files and
        bytes it held (0, 0 when it is gone already)."""
        files = size = 0
        if self.url:
            stored = object_root(self.url) / relative
            stored.fs.invalidate_cache(stored.path)
            try:
                found = stored.fs.find(stored.path, detail=True, withdirs=False)
            except FileNotFoundError:
                found = {}
            files, size = len(found), sum(info["size"] for info in found.values())
            if found:
                stored.fs.rm(stored.path, recursive=True)
            self.forget(relative)
            return files, size
        local = self.local / relative
        for path in [local] if local.is_file() else local.rglob("*"):
            if path.is_file() and not path.is_symlink():
                files, size = files + 1, size + path.stat().st_size
        shutil.rmtree(local, ignore_errors=True) if local.is_dir() else local.unlink(missing_ok=True)
        return files, size

    def forget(self, *relatives: str) -> None:
        """Remove this machine's copies (the store keeps the files), and the folders they leave empty."""
        if self.url:
            for relative in relatives:
                local = self.local / relative
                shutil.rmtree(local, ignore_errors=True) if local.is_dir() else local.unlink(missing_ok=True)
                folder = local.parent
                while folder != self.local and folder.is_relative_to(self.local) and folder.is_dir():
                    if any(folder.iterdir()):
                        break
                    folder.rmdir()
                    folder = folder.parent

    @contextmanager
    def mirrored(self, *relatives: str) -> Iterator[None]:
        """Pull `relatives`, run the block, push back the files it wrote or changed under them; then
        forget this machine's copy (the next step may run elsewhere, and a worker keeps no stale files)."""
        self.pull(*relatives)
        try:
            before = self._local_files(relatives)
            yield
            after = self._local_files(relatives)
            self.push(*(str(path) for path, stamp in after.items() if before.get(path) != stamp))
        finally:
            self.forget(*relatives)

    def _local_files(self, relatives: tuple[str, ...]) -> dict[Path, tuple[int, int]]:
        if not self.url:
            return {}
        found = {}
        for relative in relatives:
            local = self.local / relative
            for path in [local] if local.is_file() else local.rglob("*"):
                if path.is_file():
                    stat = path.stat()
                    found[path.relative_to(self.local)] = (stat.st_size, stat.st_mtime_ns)
        return found

    # --- reading, for the page ----------------------------------------------------------

    def find(self, relative: str | None) -> Any:
        """A file of the data folders, by its path relative to them, only if it is one and stays
        inside them; None otherwise."""
        if not relative or PurePosixPath(relative).is_absolute() or ".." in PurePosixPath(relative).parts:
            return None
        if self.url:
            stored = object_root(self.url) / relative
            return stored if stored.is_file() else None
        root = self.local.resolve()
        path = (root / relative).resolve()
        return path if path.is_relative_to(root) and path.is_file() else None

    @staticmethod
    def open(path: Any) -> BinaryIO:
        """Read a file `find` returned: a local one only if it is a regular file (never through a link)."""
        return open_regular(path) if isinstance(path, Path) else path.open("rb")
