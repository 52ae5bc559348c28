"""The options a run is asked for (SPEC §6), and the values each may take: stated here once.

The DAG's Params, the command line, the upload form and the CHECK constraints of `import_runs`
(tested against these) all take their choices from this module, which imports nothing heavy:
the DAG file imports it when Airflow parses it.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Any, Literal, get_args

Mode = Literal["upsert", "insert_only", "update_only"]
OnError = Literal["reject_file", "skip_invalid_rows"]
#: delta: the file holds what changed. full: it holds every customer of its source, and those of the
#: source it lacks are deactivated (SPEC §4, full snapshots).
Snapshot = Literal["delta", "full"]
Status = Literal["running", "succeeded", "partial", "rejected", "failed", "dry_run", "duplicate", "rolled_back"]
#: The first of each is the default.
MODES: tuple[Mode, ...] = get_args(Mode)
ON_ERROR_CHOICES: tuple[OnError, ...] = get_args(OnError)
SNAPSHOTS: tuple[Snapshot, ...] = get_args(Snapshot)
#: The counts of customers a run changed, as its outcome, asset event and alerts carry them.
CHANGE_COUNTS = ("inserted", "updated", "reactivated", "deactivated")
#: The largest share of a source's active customers a full snapshot deactivates without confirmation.
MAX_DEACTIVATE_SHARE = 0.05
STATUSES: tuple[Status, ...] = get_args(Status)


#: The encodings real exports come in, as the upload form offers them (any other character set of
#: Python's may be named, and is checked by `check_encoding_name`).
OFFERED = {
    "utf-8": "UTF-8 (Excel's CSV UTF-8)",
    "windows-1252": "Windows-1252 (Excel's plain CSV on Windows)",
    "mac-roman": "Mac Roman (older Excel on a Mac)",
    "latin-1": "ISO-8859-1 (Latin-1)",
    "utf-16": "UTF-16 (Unicode text, with its byte-order mark)",
}
#: Codecs of text that are not character sets a file is saved in: they turn text into other text
#: (domain names, escapes), or refuse everything.
_NOT_FILE_ENCODINGS = {"idna", "punycode", "undefined", "unicode-escape", "raw-unicode-escape", "unicode_escape"}


def check_encoding_name(encoding: str) -> str:
    """The codec's canonical name; a ValueError that says what to write for an unknown one."""
    offered = ", ".join(OFFERED)
    try:
        info = codecs.lookup(encoding)
    except (LookupError, ValueError):
        raise ValueError(
            f"encoding {encoding[:60]!r} is not a known text encoding: use a name such as {offered}"
        ) from None
    if not info._is_text_encoding:  # base64, zlib, rot13: codecs, but not of text files
        raise ValueError(f"encoding {encoding[:60]!r} is not a text encoding")
    if info.name in _NOT_FILE_ENCODINGS or info.name.replace("_", "-") in _NOT_FILE_ENCODINGS:
        raise ValueError(
            f"encoding {encoding[:60]!r} is not the character set of a file (it converts domain names or"
            f" escapes): use one such as {offered}"
        )
    return info.name


@dataclass(frozen=True)
class ImportOptions:
    """The run parameters of SPEC §6 (besides `file`)."""

    mode: Mode = MODES[0]
    on_error: OnError = ON_ERROR_CHOICES[0]
    max_error_rate: float = 0.0
    dry_run: bool = False
    force: bool = False
    encoding: str = "utf-8"
    snapshot: Snapshot = SNAPSHOTS[0]
    max_deactivate_share: float = MAX_DEACTIVATE_SHARE
    allow_mass_deactivation: bool = False

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ImportOptions:
        """Options from Airflow params or the command line, checked with a clear message."""
        options = cls(
            mode=params.get("mode") or MODES[0],
            on_error=params.get("on_error") or ON_ERROR_CHOICES[0],
            max_error_rate=float(params.get("max_error_rate") or 0.0),
            dry_run=_flag(params.get("dry_run")),
            force=_flag(params.get("force")),
            encoding=check_encoding_name(params.get("encoding") or "utf-8"),
            snapshot=params.get("snapshot") or SNAPSHOTS[0],
            max_deactivate_share=_fraction(params.get("max_deactivate_share"), MAX_DEACTIVATE_SHARE),
            allow_mass_deactivation=_flag(params.get("allow_mass_deactivation")),
        )
        if options.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {options.mode!r}")
        if options.on_error not in ON_ERROR_CHOICES:
            raise ValueError(f"on_error must be one of {', '.join(ON_ERROR_CHOICES)}, not {options.on_error!r}")
        if options.snapshot not in SNAPSHOTS:
            raise ValueError(f"snapshot must be one of {', '.join(SNAPSHOTS)}, not {options.snapshot!r}")
        for name in ("max_error_rate", "max_deactivate_share"):
            if not 0.0 <= getattr(options, name) <= 1.0:
                raise ValueError(f"{name} is a fraction from 0 to 1, not {getattr(options, name)}")
        return options


def _fraction(value: Any, default: float) -> float:
    return default if value is None or value == "" else float(value)


def _flag(value: Any) -> bool:
    return value is True or str(value).strip().lower() in {"1", "true", "yes"}
