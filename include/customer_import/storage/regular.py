"""What an entry of the data folders is, looked at without following it: only a regular file of one
link is ever read (opened with O_NOFOLLOW and checked once open), only a real directory is listed
(through a descriptor opened O_DIRECTORY | O_NOFOLLOW)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import BinaryIO

from customer_import.storage.names import escaped_name


class NotRegularFile(ValueError):
    """A landing entry that is not a regular file of one link: it is never read."""

    def __init__(self, path: Path, what: str) -> None:
        self.what = what
        super().__init__(f"{escaped_name(Path(path).name)} is {what}, not a regular file: it is not read")


def lstat_or_none(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def is_real_dir(path: Path) -> bool:
    info = lstat_or_none(path)
    return info is not None and stat.S_ISDIR(info.st_mode)


def listed(folder: Path) -> list[tuple[str, os.stat_result]]:
    """The entries of `folder` with their own lstat, read through a descriptor that refuses a link
    (O_NOFOLLOW) and anything but a directory (O_DIRECTORY): never the entries of what a link
    points to. An entry gone before it was looked at is left out."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        found = []
        for name in os.listdir(fd):
            try:
                found.append((name, os.stat(name, dir_fd=fd, follow_symlinks=False)))
            except FileNotFoundError:
                continue
        return found
    finally:
        os.close(fd)


def is_plain_file(info: os.stat_result) -> bool:
    return stat.S_ISREG(info.st_mode) and info.st_nlink == 1


def kind_of(info: os.stat_result) -> str:
    """What a landing entry is, in plain words."""
    mode = info.st_mode
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISREG(mode) and info.st_nlink > 1:
        return f"a file with {info.st_nlink} hard links (another name for a file elsewhere)"
    return "a regular file"


def open_regular(path: Path) -> BinaryIO:
    """Open `path` for reading only if it is a regular file of one link: never through a symbolic
    link (O_NOFOLLOW), never a pipe or device (checked on the open file, so nothing can swap it)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    info = os.fstat(fd)
    if not is_plain_file(info):
        os.close(fd)
        raise NotRegularFile(path, kind_of(info))
    return os.fdopen(fd, "rb")


def check_regular(path: Path) -> None:
    """Raise NotRegularFile unless `path` itself (not what it may point to) is a regular file of one link."""
    info = os.lstat(path)
    if not is_plain_file(info):
        raise NotRegularFile(path, kind_of(info))


def sha256_of(path: Path) -> tuple[str, int]:
    """The file's SHA-256 (hex) and size, read in blocks (a local file, or an object in the data store)."""
    digest, size = hashlib.sha256(), 0
    with open_regular(path) if isinstance(path, Path) else path.open("rb") as data:
        while block := data.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size
