"""Sources: the CRM exports that land here, each described once in `sources.yaml`.

A source names where its files land (`landing/<folder>/`), how its export's columns map onto
the contract's headers, how its values are written (dates, yes/no words, country names, phone
numbers), defaults for fields the export lacks, the options its runs take, how often a file is
expected, and whom to alert. The `default` source is the template itself, in `landing/`.

The file is read as YAML 1.2 reads it (only `true` and `false` are booleans, so `Yes` and `No`
stay words), checked with pydantic, and checked against the contract; any mistake is reported
with the key's path and line (`SourcesError`), when the DAGs are parsed and by `make test`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BeforeValidator, Field, ValidationError, model_validator

from customer_import.contract.fields import Contract, FieldSpec, normalise_header
from customer_import.contract.options import (
    MAX_DEACTIVATE_SHARE,
    MODES,
    ON_ERROR_CHOICES,
    SNAPSHOTS,
    ImportOptions,
    Mode,
    OnError,
    Snapshot,
    check_encoding_name,
)
from customer_import.contract.rules import CLEAR_MARKER
from customer_import.sources.formats import Format, Strict, UnreadableValue, as_list, read_country
from customer_import.sources.yaml_lines import SourcesError, explain, read_yaml, where
from customer_import.storage.folders import Folders
from customer_import.storage.store import ObjectFolders

SOURCES_PATH = Path(__file__).parents[1] / "sources.yaml"
DEFAULT = "default"
#: What an alert may be sent for.
AlertEvent = Literal["rejected", "failed", "missing"]
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


# --- the file's shape ----------------------------------------------------------------------


def _duration(value: Any) -> Any:
    """`30s`, `15m`, `24h`, `7d` as a timedelta."""
    if isinstance(value, str):
        found = _DURATION.match(value)
        if not found:
            raise ValueError(f"`{value}` is not a duration: write a number and a unit, e.g. 30s, 15m, 24h or 7d")
        return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]


class Options(Strict):
    """The options the source's runs take (SPEC §6), unless a run is given others."""

    mode: Mode = MODES[0]
    on_error: OnError = ON_ERROR_CHOICES[0]
    max_error_rate: float = Field(0.0, ge=0, le=1)
    encoding: Annotated[str, BeforeValidator(check_encoding_name)] = "utf-8"
    snapshot: Snapshot = SNAPSHOTS[0]
    max_deactivate_share: float = Field(MAX_DEACTIVATE_SHARE, ge=0, le=1)


class Alerts(Strict):
    """Whom to tell, and of what: an email through Airflow's SMTP connection, a JSON POST, or both."""

    on: list[AlertEvent] = Field(default_factory=lambda: list(get_args(AlertEvent)))
    email: Annotated[list[str], BeforeValidator(as_list)] = Field(default_factory=list)
    email_from: str | None = None
    smtp_conn_id: str = "smtp_default"
    webhook: str | None = Field(None, pattern=r"^https?://")

    @model_validator(mode="after")
    def _somewhere(self) -> Alerts:
        if not self.email and not self.webhook:
            raise ValueError("alerts need an email address or a webhook URL")
        return self


class Source(Strict):
    """One source of files (see the module's docstring); `name` is its key in sources.yaml."""

    name: str = DEFAULT
    description: str = ""
    folder: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    columns: dict[str, str] = Field(default_factory=dict)
    ignore: list[str] = Field(default_factory=list)
    formats: dict[str, Format] = Field(default_factory=dict)
    defaults: dict[str, str] = Field(default_factory=dict)
    options: Options = Field(default_factory=Options)
    expected_every: Duration | None = None
    grace: Duration = timedelta(0)
    alerts: Alerts | None = None

    @property
    def landing_folder(self) -> str:
        """Its folder under landing/: `''` (landing/ itself) for the default source."""
        if self.folder is not None:
            return self.folder
        return "" if self.name == DEFAULT else self.name

    @property
    def import_options(self) -> ImportOptions:
        return ImportOptions(**self.options.model_dump())

    @property
    def run_name(self) -> str:
        """How a run's id and conf name the source: `''` for the default source."""
        return "" if self.name == DEFAULT else self.name

    @property
    def run_conf(self) -> dict[str, Any]:
        """The options its runs are started with, where they differ from the DAG's defaults."""
        default = Options()
        return {k: v for k, v in self.options.model_dump().items() if v != getattr(default, k)}

    def headers(self, contract: Contract) -> dict[str, FieldSpec]:
        """The field each header names (normalised): the contract's headers, then the export's."""
        known = {normalise_header(f.header): f for f in contract.fields}
        for name, target in self.columns.items():
            spec = contract.field_for(target)
            assert spec is not None, "checked when sources.yaml is loaded"
            known[normalise_header(name)] = spec
        return known

    def ignores(self, header: str) -> bool:
        return normalise_header(header) in {normalise_header(name) for name in self.ignore}

    def format_for(self, spec: FieldSpec) -> Format | None:
        return next(
            (f for header, f in self.formats.items() if normalise_header(header) == normalise_header(spec.header)), None
        )

    def defaults_for(self, contract: Contract) -> Iterator[tuple[FieldSpec, str]]:
        for header, value in self.defaults.items():
            spec = contract.field_for(header)
            assert spec is not None, "checked when sources.yaml is loaded"
            yield spec, value

    def alerts_on(self, event: str) -> Alerts | None:
        return self.alerts if self.alerts is not None and event in self.alerts.on else None


class _File(Strict):
    sources: dict[str, Source] = Field(default_factory=dict)


# --- the sources of a deployment --------------------------------------------------------------


@dataclass(frozen=True)
class Sources:
    """The sources sources.yaml declares, the default one always among them."""

    by_name: dict[str, Source]

    def __getitem__(self, name: str | None) -> Source:
        found = self.by_name.get(name or DEFAULT)
        if found is None:
            raise KeyError(
                f"There is no source `{_shown(name or '')}` in sources.yaml: the sources are {', '.join(self.by_name)}."
            )
        return found

    def __iter__(self) -> Iterator[Source]:
        return iter(self.by_name.values())

    @property
    def names(self) -> list[str]:
        return list(self.by_name)

    @property
    def subfolders(self) -> frozenset[str]:
        """The landing sub-folders that belong to sources (the default source's scan skips them)."""
        return frozenset(s.landing_folder for s in self if s.landing_folder)

    def folders(self, root: Any, name: str | None = DEFAULT) -> Folders:
        """The data folders at `root` (a local folder, or an object store's root), with the landing
        folder of source `name`."""
        source = self[name]
        kind = Folders if isinstance(root, Path) else ObjectFolders
        if source.landing_folder:
            return kind(root, source.landing_folder)
        return kind(root, skipped=self.subfolders)

    def handovers(self, root: Any, settled_seconds: float) -> list[dict[str, Any]]:
        """Every settled file of every source as `Folders.handovers` hands it over, in arrival order
        across the sources (two of one moment a microsecond apart: a run's logical date is unique)."""
        found: list[dict[str, Any]] = []
        for source in self:
            folders = self.folders(root, source.name)
            found += folders.handovers(folders.waiting_files(settled_seconds), source.run_name, source.run_conf)
        found.sort(key=lambda handover: str(handover["logical_date"]))
        last: datetime | None = None
        for handover in found:
            moment = datetime.fromisoformat(handover["logical_date"])
            if last is not None and moment <= last:
                moment = last + timedelta(microseconds=1)
                handover["logical_date"] = handover["run_after"] = moment.isoformat()
            last = moment
        return found


def load_sources(path: Path, contract: Contract) -> Sources:
    """Read and check `path` (the file may be missing: then only the default source exists)."""
    path = Path(path)
    stamp = path.stat().st_mtime_ns if path.exists() else 0
    return _load(path, stamp, contract)


@cache
def _load(path: Path, stamp: int, contract: Contract) -> Sources:
    if not stamp:
        return Sources({DEFAULT: Source()})
    text = path.read_text(encoding="utf-8")
    data, lines = read_yaml(path, text)
    if data is None:
        data = {}
    try:
        parsed = _File.model_validate(data)
    except ValidationError as invalid:
        first = invalid.errors()[0]
        loc = tuple(first["loc"])
        raise SourcesError(where(path, lines, loc) + explain(first, loc, _File)) from None
    by_name: dict[str, Source] = {DEFAULT: Source()}
    for name, source in parsed.sources.items():
        problem = _check(name, source, contract)
        if problem:
            loc, message = problem
            raise SourcesError(where(path, lines, ("sources", name, *loc)) + message)
        by_name[name] = source.model_copy(update={"name": name})
    folders: dict[str, str] = {}
    for source in by_name.values():
        if source.landing_folder in folders:
            raise SourcesError(
                where(path, lines, ("sources", source.name))
                + f"sources `{folders[source.landing_folder]}` and `{source.name}` share the landing folder"
                f" `{source.landing_folder or '.'}`: give each its own folder."
            )
        folders[source.landing_folder] = source.name
    return Sources(by_name)


def _shown(name: str) -> str:
    """A source name as a message quotes it: it may come from a form, so never more than 60 characters."""
    return name if len(name) <= 60 else f"{name[:57]}..."


def _check(name: str, source: Source, contract: Contract) -> tuple[tuple[Any, ...], str] | None:
    """What is wrong with a source against the contract, and where: None when nothing is."""
    if not _NAME.match(name):
        return (), f"`{_shown(name)}` is not a source name: use lower-case letters, digits, - and _ (it names a run)."
    headers = contract.headers

    def unknown(header: str) -> str:
        guess = difflib.get_close_matches(header, headers, n=1, cutoff=0.6)
        hint = f"did you mean `{guess[0]}`?" if guess else "the contract's headers are " + ", ".join(headers) + "."
        return f"`{header}` is not a header of the contract: {hint}"

    for export, target in source.columns.items():
        if contract.field_for(target) is None:
            return ("columns", export), unknown(target)
    for header, value in source.defaults.items():
        spec = contract.field_for(header)
        if spec is None:
            return ("defaults", header), unknown(header)
        if spec is contract.key:
            return ("defaults", header), f"{header} is the key: every row must carry its own, it has no default."
        if value == CLEAR_MARKER:
            return ("defaults", header), f"a default of {CLEAR_MARKER} would clear {header} on every import."
    for header, fmt in source.formats.items():
        spec = contract.field_for(header)
        if spec is None:
            return ("formats", header), unknown(header)
        if fmt.kind != spec.type:
            return (
                ("formats", header, fmt.kind),
                f"{header} is a field of type {spec.type}, so a {fmt.kind} format does not apply to it.",
            )
        for alias, code in fmt.aliases.items():
            try:
                read_country(code, {})
            except UnreadableValue:
                return ("formats", header, "aliases", alias), f"`{code}` is not a country name or ISO code."
    return None
