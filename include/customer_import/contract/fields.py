"""The field contract: what a customer field is, read and checked from `contract.yaml`.

Each field's type gives its meaning (`rules`: its PostgreSQL type, how a staged text value becomes a
typed value, the validation rules). The template, the GX suite, the DDL and the MERGE are all built
from `load_contract()`.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

from customer_import.contract.rules import FIELD_TYPES, INVISIBLE, Rule, rules_of

CONTRACT_PATH = Path(__file__).parents[1] / "contract.yaml"

Required = Literal["always", "on_insert", "never"]
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
#: The history's typed columns are `before_<column>` and `after_<column>` (history.py).
_MAX_COLUMN = 63 - len("before_")
_HEADER_NOISE = re.compile(rf"[\s_\-]+|{INVISIBLE}")


class ContractError(ValueError):
    """The contract file itself is invalid (a developer error, not a data error)."""


@dataclass(frozen=True)
class FieldSpec:
    header: str
    column: str
    type: str
    max_length: int | None = None
    required: Required = "never"
    unique: bool = False
    multiline: bool = False
    minimum: int | None = None
    example: str = ""
    personal: bool = False  # its values stay out of task logs, DAG run notes and alerts
    description: str = ""  # what it means, for the field guide

    @property
    def limit(self) -> int | None:
        """The most characters a value may hold: the contract's max_length, else the type's own.
        The length rule and the column type both derive from it, so the database never refuses
        a value the rules passed."""
        return self.max_length or FIELD_TYPES[self.type].max_length

    @property
    def trimmed(self) -> bool:
        """Typed values (emails, phones, codes, dates, numbers, yes/no) lose surrounding spaces;
        text is kept exactly as written."""
        return self.type != "text"

    @property
    def identifying(self) -> bool:
        """The key and email-like fields: a look-alike value would be another customer or address."""
        return self.required == "always" or self.unique or self.type == "email"

    @property
    def sql_type(self) -> str:
        return FIELD_TYPES[self.type].sql_type(self)

    @property
    def sql_cast(self) -> str:
        """SQL template (one `{}` for the staged text) that yields this field's typed value."""
        return FIELD_TYPES[self.type].sql_cast

    @property
    def rules(self) -> list[Rule]:
        return rules_of(self)


@dataclass(frozen=True)
class Contract:
    table: str
    key: FieldSpec
    fields: tuple[FieldSpec, ...]
    version: int = 1
    _by_name: dict[str, FieldSpec] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({normalise_header(f.header): f for f in self.fields})

    @property
    def headers(self) -> list[str]:
        return [f.header for f in self.fields]

    def template_csv(self) -> bytes:
        """The CSV template: the header row, UTF-8 with a BOM so that Excel reads it as UTF-8."""
        row = io.StringIO()
        csv.writer(row).writerow(self.headers)
        return ("\ufeff" + row.getvalue()).encode("utf-8")

    def field_for(self, header: str) -> FieldSpec | None:
        """The field a CSV header names, matching case- and space-insensitively."""
        return self._by_name.get(normalise_header(header))

    def field_for_column(self, column: str) -> FieldSpec | None:
        return next((f for f in self.fields if f.column == column), None)

    @property
    def max_columns(self) -> int:
        """The most columns a file or a row may have (report columns and a few extras included):
        wider is not a customer file, and is refused before any work per column is done."""
        return max(4 * len(self.fields), 100)

    @property
    def unique_fields(self) -> list[FieldSpec]:
        return [f for f in self.fields if f.unique]


def normalise_header(name: str) -> str:
    """`Account Reference ID`, `account_reference_id` and `AccountReferenceID` are one name (and so
    is the name with an invisible character, such as a second byte-order mark, in it)."""
    return _HEADER_NOISE.sub("", name).casefold()


# --- loading -----------------------------------------------------------------------------


@cache
def load_contract(path: Path = CONTRACT_PATH) -> Contract:
    """Read and check the contract file."""
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    specs = tuple(_field_spec(entry) for entry in raw["fields"])
    by_header = {f.header: f for f in specs}
    if len(by_header) != len(specs) or len({f.column for f in specs}) != len(specs):
        raise ContractError("two fields share a header or a column")
    if len({normalise_header(h) for h in by_header}) != len(specs):
        raise ContractError("two headers differ only in case or spacing")
    key = by_header.get(raw["key"])
    if key is None or key.required != "always":
        raise ContractError(f"the key {raw['key']!r} must be a field with required: always")
    if not _IDENTIFIER.match(raw["table"]):
        raise ContractError(f"table {raw['table']!r} is not a plain lower-case SQL identifier")
    return Contract(table=raw["table"], key=key, fields=specs, version=raw.get("version", 1))


def _field_spec(entry: dict[str, Any]) -> FieldSpec:
    values: dict[str, Any] = {k: (str(v) if k == "example" else v) for k, v in entry.items()}
    spec = FieldSpec(**values)
    if spec.type not in FIELD_TYPES:
        raise ContractError(f"{spec.header}: unknown type {spec.type!r}; use one of {sorted(FIELD_TYPES)}")
    if not _IDENTIFIER.match(spec.column):
        raise ContractError(f"{spec.header}: column {spec.column!r} is not a lower-case SQL identifier")
    if len(spec.column) > _MAX_COLUMN:
        raise ContractError(
            f"{spec.header}: column {spec.column!r} is longer than {_MAX_COLUMN} characters: the history keeps"
            " it as before_<column> and after_<column>, and a PostgreSQL name holds 63"
        )
    if spec.required not in ("always", "on_insert", "never"):
        raise ContractError(f"{spec.header}: required must be always, on_insert or never")
    if spec.max_length is not None and (not isinstance(spec.max_length, int) or spec.max_length < 1):
        raise ContractError(f"{spec.header}: max_length must be a positive whole number")
    if spec.minimum not in (None, 0):
        raise ContractError(f"{spec.header}: only `minimum: 0` is supported")
    return spec
