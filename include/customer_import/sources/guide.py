"""The field guide beside the template: every column of the file, generated from the contract (and,
for a CRM source, from its entry in sources.yaml): what it means, when it is required, its format
with an example, its limits, and what a blank cell and `#NULL` do. The Imports page shows it; `make
template` writes it as a sheet beside the template.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, fields
from datetime import datetime

from customer_import.contract.fields import Contract, FieldSpec
from customer_import.contract.rules import CLEAR_MARKER
from customer_import.sources.formats import Format
from customer_import.sources.profiles import Source

GUIDE_FILE = "customers_field_guide.csv"  # beside the template
#: How each type's values are written, in the words of the rules' messages.
FORMATS = {
    "text": "text, kept as written",
    "email": "an email address, name@domain",
    "phone": "7 to 20 digits, optionally with a leading +, spaces, -, ( and )",
    "country": "an ISO 3166-1 alpha-2 code, two letters (US, DE, GB)",
    "date": "a date as YYYY-MM-DD",
    "integer": "a whole number, digits only",
    "boolean": "true or false (yes/no and 1/0 work too)",
}
REQUIRED = {
    "always": "every row",
    "on_insert": "new customers (an update may leave it blank)",
    "never": "never",
}


@dataclass(frozen=True)
class GuideRow:
    column: str  # as the file names it: the contract's header, or the CRM export's column
    field: str  # the contract's header
    meaning: str
    required: str
    format: str
    example: str
    limits: str
    blank: str
    clear: str  # what #NULL does


def field_guide(contract: Contract, source: Source | None = None) -> list[GuideRow]:
    """One row per field, in the template's order; for a CRM source, under the export's column names."""
    export = {target: name for name, target in (source.columns.items() if source else ())}
    defaults = dict(source.defaults) if source else {}
    rows = []
    for spec in contract.fields:
        column = export.get(spec.header, spec.header)
        shown_format, example = FORMATS[spec.type], spec.example
        if source is not None and (declared := source.format_for(spec)) is not None:
            shown_format = f"as the export writes it ({_declared(declared)}), read into {shown_format}"
            example = _as_exported(declared, example)
        if spec.header in defaults and spec.header not in export:
            column = f"(not in the export: {defaults[spec.header]!r} from sources.yaml)"
        rows.append(
            GuideRow(
                column=column,
                field=spec.header,
                meaning=spec.description,
                required=REQUIRED[spec.required],
                format=shown_format,
                example=example,
                limits=_limits(spec),
                blank=_blank(spec),
                clear=_clear(spec),
            )
        )
    return rows


def guide_csv(contract: Contract, source: Source | None = None) -> bytes:
    """The guide as a sheet: UTF-8 with a BOM, as the template, so that Excel opens it right."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADINGS)
    writer.writerows([getattr(row, f.name) for f in fields(GuideRow)] for row in field_guide(contract, source))
    return ("\ufeff" + out.getvalue()).encode("utf-8")


HEADINGS = ("Column", "Field", "Meaning", "Required", "Format", "Example", "Limits", "Blank cell", CLEAR_MARKER)


def _limits(spec: FieldSpec) -> str:
    limits = []
    if spec.limit:
        limits.append(f"at most {spec.limit:,} characters")
    if spec.minimum is not None:
        limits.append(f"{spec.minimum} or more")
    if spec.unique:
        limits.append("unique among customers (case-insensitive)")
    limits.append("line breaks allowed" if spec.multiline else "one line")
    return "; ".join(limits)


def _blank(spec: FieldSpec) -> str:
    if spec.required == "always":
        return "not allowed: every row needs one"
    if spec.required == "on_insert":
        return "keeps the stored value; not allowed for a new customer"
    return "keeps the stored value (a new customer gets none)"


def _clear(spec: FieldSpec) -> str:
    if spec.required != "never":
        return "not allowed: it is required"
    return "clears the stored value"


def _as_exported(declared: Format, example: str) -> str:
    """The contract's example as the export writes it, where the format says how: a date in the
    export's pattern, a yes/no in its words."""
    if declared.date:
        return datetime.strptime(example, "%Y-%m-%d").strftime(declared.date[0])
    if declared.boolean is not None and example.lower() in ("true", "false"):
        return declared.boolean[example.lower() == "true"][0]
    return example


def _declared(declared: Format) -> str:
    """How sources.yaml says the export writes a field: `date %m/%d/%Y`, `Yes for true; No for false`."""
    if declared.date is not None:
        return "date " + " or ".join(declared.date)
    if declared.boolean is not None:
        return "; ".join(f"{'/'.join(words)} for {str(truth).lower()}" for truth, words in declared.boolean.items())
    return "country names" if declared.country is not None else "phone numbers cleaned"
