"""What a file in the data folders may be called: a name the page, a log and a run id can carry,
an uploaded file's name, and a file name as Airflow takes it in a run id."""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata

_RUN_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.~:+-]")
_UPLOAD_UNSAFE = re.compile(r"[^\w.-]+")
_UPLOAD_NAME_BYTES = 120
_NAME_BYTES = 200  # of a landing name; file systems allow 255, the run id adds a little
_UNCARRIABLE = re.compile(r"[\\\x00-\x1f\x7f\ud800-\udfff]")  # backslash, controls, undecodable bytes


class UploadRefused(ValueError):
    """An upload that is not taken; the message says why and what to do."""


def run_id_part(name: str) -> str:
    """`name` as Airflow takes it in a run id: letters, digits and `_.~:+-`, never `..` (Airflow refuses
    run ids with `..`, against path traversal: `x..y.csv` is `x._y.csv` there)."""
    part = _RUN_ID_UNSAFE.sub("_", name)
    while ".." in part:
        part = part.replace("..", "._")
    return part


def safe_upload_name(file_name: str) -> str:
    """A landing name for a file a browser sent: its base name only (no folders, no dotfile),
    letters, digits, `.`, `-` and `_`, at most 120 bytes in UTF-8, ending `.csv`."""
    base = re.split(r"[/\\]", unicodedata.normalize("NFKC", file_name or ""))[-1]
    if not base.lower().endswith(".csv"):
        raise UploadRefused(
            f"{escaped_name(base)[:120] or 'The file'} is not a .csv file: in Excel use File > Save As >"
            " 'CSV UTF-8 (Comma delimited)' and upload that file."
        )
    stem = _UPLOAD_UNSAFE.sub("_", base[:-4]).strip("._-")
    stem = stem.encode("utf-8")[: _UPLOAD_NAME_BYTES - 4].decode("utf-8", "ignore") or "upload"
    return f"{stem}.csv"


def escaped_name(name: str) -> str:
    """`name` with what a page, a log or a run id cannot carry percent-escaped by its bytes
    (`M\\xfcller.csv` -> `M%FCller.csv`), at most 200 bytes; carriable names are left alone."""
    if carriable(name):
        return name
    escaped = _UNCARRIABLE.sub(lambda m: "".join(f"%{b:02X}" for b in os.fsencode(m.group())), name)
    if len(escaped.encode("utf-8")) > _NAME_BYTES:
        stem, suffix = os.path.splitext(escaped)
        digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:8]  # keeps shortened names apart
        room = _NAME_BYTES - len(suffix.encode("utf-8")) - 9
        escaped = f"{stem.encode('utf-8')[:room].decode('utf-8', 'ignore')}-{digest}{suffix}"
    return escaped


def carriable(name: str) -> bool:
    return not _UNCARRIABLE.search(name) and len(name.encode("utf-8", "surrogateescape")) <= _NAME_BYTES
