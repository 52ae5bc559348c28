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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from customer_import.contract.fields import CLEAR_MARKER, Contract, FieldSpec, normalise_header
from customer_import.contract.options import MODES, ON_ERROR_CHOICES, ImportOptions, Mode, OnError, check_encoding_name
from customer_import.storage.folders import Folders
from customer_import.storage.store import ObjectFolders

SOURCES_PATH = Path(__file__).parents[1] / "sources.yaml"
DEFAULT = "default"
#: What an alert may be sent for.
AlertEvent = Literal["rejected", "failed", "missing"]
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class SourcesError(ValueError):
    """sources.yaml is wrong: the message names the file, the line and the key."""


class UnreadableValue(ValueError):
    """A value a source's format cannot read; the message says what was expected."""


# --- the file's shape ----------------------------------------------------------------------


def _duration(value: Any) -> Any:
    """`30s`, `15m`, `24h`, `7d` as a timedelta."""
    if isinstance(value, str):
        found = _DURATION.match(value)
        if not found:
            raise ValueError(f"`{value}` is not a duration: write a number and a unit, e.g. 30s, 15m, 24h or 7d")
        return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
    return value


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


Duration = Annotated[timedelta, BeforeValidator(_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Format(_Strict):
    """How one field's values are written in the export; exactly one kind per field."""

    date: Annotated[list[str], BeforeValidator(_listed)] | None = None
    boolean: dict[bool, list[str]] | None = None
    country: Literal["names"] | None = None
    aliases: dict[str, str] = Field(default_factory=dict)
    phone: Literal["clean"] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Format:
        kinds = [k for k in ("date", "boolean", "country", "phone") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of date, boolean, country or phone")
        if self.aliases and self.country is None:
            raise ValueError("aliases go with `country: names`")
        if self.boolean is not None and set(self.boolean) != {True, False}:
            raise ValueError("boolean lists the words for true and for false: {true: [Yes], false: [No]}")
        if self.date is not None:
            for pattern in self.date:
                if "%" not in pattern:
                    raise ValueError(f"`{pattern}` is not a date format: write it like %m/%d/%Y")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("date", "boolean", "country", "phone") if getattr(self, k) is not None)

    def read(self, value: str) -> str:
        """The value as the contract wants it; UnreadableValue when it cannot be read."""
        if self.date is not None:
            return _read_date(value, self.date)
        if self.boolean is not None:
            for truth, words in self.boolean.items():
                if value.casefold() in (w.casefold() for w in words):
                    return "true" if truth else "false"
            raise UnreadableValue(
                f"`{value}` is none of the words this export uses for yes or no ("
                + ", ".join(w for words in self.boolean.values() for w in words)
                + ")"
            )
        if self.country is not None:
            return _read_country(value, self.aliases)
        return _clean_phone(value)


def _read_date(value: str, patterns: list[str]) -> str:
    for pattern in patterns:
        try:
            return datetime.strptime(value, pattern).date().isoformat()
        except ValueError:
            continue
    shown = " or ".join(f"{p} (like {datetime(2024, 1, 31, 9, 30).strftime(p)})" for p in patterns)
    raise UnreadableValue(f"`{value}` is not a date in {shown}")


def _read_country(value: str, aliases: Mapping[str, str]) -> str:
    import pycountry

    by_alias = {alias.casefold(): code for alias, code in aliases.items()}
    if value.casefold() in by_alias:
        return _read_country(by_alias[value.casefold()], {})
    try:
        return str(pycountry.countries.lookup(value).alpha_2)
    except LookupError:
        raise UnreadableValue(
            f"`{value}` is not a country name or code this export's format knows: write the country's English"
            " name or ISO code, or add it under aliases in sources.yaml"
        ) from None


_PHONE_SEPARATORS = re.compile(r"(?<=\d)[./](?=\d)")


def _clean_phone(value: str) -> str:
    """`tel:+1.555.010.2030` as `+1 555 010 2030`: the link prefix goes, dots and slashes between
    digits become spaces, runs of spaces one space. What is left the contract's phone rule checks."""
    text = re.sub(r"^tel:", "", value.strip(), flags=re.IGNORECASE)
    return " ".join(_PHONE_SEPARATORS.sub(" ", text).split())


class Options(_Strict):
    """The options the source's runs take (SPEC §6), unless a run is given others."""

    mode: Mode = MODES[0]
    on_error: OnError = ON_ERROR_CHOICES[0]
    max_error_rate: float = Field(0.0, ge=0, le=1)
    encoding: Annotated[str, BeforeValidator(check_encoding_name)] = "utf-8"


class Alerts(_Strict):
    """Whom to tell, and of what: an email through Airflow's SMTP connection, a JSON POST, or both."""

    on: list[AlertEvent] = Field(default_factory=lambda: list(get_args(AlertEvent)))
    email: Annotated[list[str], BeforeValidator(_listed)] = Field(default_factory=list)
    email_from: str | None = None
    smtp_conn_id: str = "smtp_default"
    webhook: str | None = Field(None, pattern=r"^https?://")

    @model_validator(mode="after")
    def _somewhere(self) -> Alerts:
        if not self.email and not self.webhook:
            raise ValueError("alerts need an email address or a webhook URL")
        return self


class Source(_Strict):
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


class _File(_Strict):
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
    data, lines = _read_yaml(path, text)
    if data is None:
        data = {}
    try:
        parsed = _File.model_validate(data)
    except ValidationError as invalid:
        first = invalid.errors()[0]
        loc = tuple(first["loc"])
        raise SourcesError(_where(path, lines, loc) + _explain(first, loc)) from None
    by_name: dict[str, Source] = {DEFAULT: Source()}
    for name, source in parsed.sources.items():
        problem = _check(name, source, contract)
        if problem:
            loc, message = problem
            raise SourcesError(_where(path, lines, ("sources", name, *loc)) + message)
        by_name[name] = source.model_copy(update={"name": name})
    folders: dict[str, str] = {}
    for source in by_name.values():
        if source.landing_folder in folders:
            raise SourcesError(
                _where(path, lines, ("sources", source.name))
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
                _read_country(code, {})
            except UnreadableValue:
                return ("formats", header, "aliases", alias), f"`{code}` is not a country name or ISO code."
    return None


# --- reading the YAML with its lines --------------------------------------------------------


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's booleans: `true`/`false` only (`Yes`, `No`, `on` are words)."""


_BOOL = "tag:yaml.org,2002:bool"
_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _read_yaml(path: Path, text: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """The document and the line of each key (by its path); a key given twice is an error."""
    loader = _Yaml12Loader(text)
    try:
        node = loader.get_single_node()
        lines: dict[tuple[Any, ...], int] = {}
        if node is not None:
            _mark_lines(loader, node, (), lines, path)
        return (loader.construct_document(node) if node is not None else None), lines
    except yaml.MarkedYAMLError as broken:
        mark = broken.problem_mark
        line = f", line {mark.line + 1}" if mark else ""
        raise SourcesError(f"{path.name}{line}: not valid YAML: {broken.problem}") from None
    finally:
        loader.dispose()


def _mark_lines(
    loader: _Yaml12Loader, node: yaml.Node, at: tuple[Any, ...], lines: dict[tuple[Any, ...], int], path: Path
) -> None:
    lines.setdefault(at, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if (*at, key) in lines:
                raise SourcesError(
                    f"{path.name}, line {key_node.start_mark.line + 1} ({_dotted((*at, key))}): `{key}` is given twice"
                    f" (first on line {lines[(*at, key)]}): keep one."
                )
            lines[(*at, key)] = key_node.start_mark.line + 1
            _mark_lines(loader, value_node, (*at, key), lines, path)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _mark_lines(loader, item, (*at, index), lines, path)


def _where(path: Path, lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> str:
    """`sources.yaml, line 12 (sources.salesforce.formats): `: the deepest part of `loc` with a line."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return f"{path.name}, line {lines[loc[:end]]} ({_dotted(loc) or 'top'}): "
    return f"{path.name}: "


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part).lower() if isinstance(part, bool) else str(part) for part in loc)


def _explain(error: Any, loc: tuple[Any, ...]) -> str:
    """pydantic's error in the words of this file: an unknown key gets a did-you-mean."""
    if error["type"] == "extra_forbidden":
        known = _keys_at(loc[:-1])
        guess = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.5)
        hint = f"did you mean `{guess[0]}`?" if guess else "the keys here are " + ", ".join(known) + "."
        return f"unknown key `{loc[-1]}`: {hint}"
    message = str(error["msg"])
    return message.removeprefix("Value error, ") + ("" if message.endswith(".") else ".")


def _keys_at(loc: tuple[Any, ...]) -> list[str]:
    """The keys the model at `loc` takes (walking the models' annotations along the path)."""
    kind: Any = _File
    for part in loc:
        kind = _unwrapped(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            kind = kind.model_fields[str(part)].annotation
        elif get_origin(kind) is dict:
            kind = get_args(kind)[1]
    kind = _unwrapped(kind)
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return [name for name in kind.model_fields if name != "name"]
    return []


def _unwrapped(kind: Any) -> Any:
    """`Source | None` and `Annotated[...]` as the model or dict inside."""
    while get_origin(kind) in (Annotated, Union) or type(kind).__name__ == "UnionType":
        kind = next(a for a in get_args(kind) if a is not type(None))
    return kind
