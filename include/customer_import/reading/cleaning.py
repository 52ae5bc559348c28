"""What reading a file changes in a value, and the count the report gives of it.

A text value is stored as written, with three exceptions, each counted with its lines so that the
report can say what was changed ("3 values had invisible characters removed, lines 4, 9, 12"):

- characters that have no meaning inside text are removed: the zero-width space (U+200B), the word
  joiner (U+2060) and the byte-order mark (U+FEFF);
- Unicode spaces (no-break, thin, ideographic...) become plain spaces;
- in a multi-line field, the Unicode line and paragraph separators (U+2028, U+2029) become line
  breaks (`\\n`); in a single-line field they are spaces like the others.

Every other character is kept as written: the zero-width joiner and non-joiner (emoji sequences,
Persian and Indic spelling), direction marks and isolates (mixed Hebrew or Arabic and Latin text),
the soft hyphen. The key and the email fields change nothing: an invisible character there is a
row issue (see the contract's rules), since a look-alike key would be another customer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from customer_import.contract.fields import FieldSpec

#: Removed from text values.
STRIPPED = "\u200b\u2060\ufeff"
#: Made plain spaces in text values (the line and paragraph separators: line breaks in a multi-line field).
UNICODE_SPACES = (
    "\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
LINE_SEPARATORS = "\u2028\u2029"
#: Every character reading may change in a text value.
CHANGED = STRIPPED + UNICODE_SPACES

#: What the report says of each kind of change: `{values}` values had ... .
KINDS = {
    "invisible_removed": "invisible characters removed (zero-width space, word joiner, byte-order mark)",
    "spaces_made_plain": "Unicode spaces (no-break, thin, ideographic...) made plain spaces",
    "separators_made_line_breaks": "Unicode line or paragraph separators made line breaks",
}
#: What each kind of change puts in place of its characters.
REPLACEMENT: dict[str, str | None] = {
    "invisible_removed": None,
    "spaces_made_plain": " ",
    "separators_made_line_breaks": "\n",
}
_LINES_KEPT = 20  # lines named per kind; the count covers them all
VALUE_CHANGES_FILE = "value-changes.json"


def changes_in(spec: FieldSpec) -> dict[str, str]:
    """The characters of each kind of change reading makes in `spec`'s values (none for the key and
    email fields)."""
    if spec.identifying:
        return {}
    spaces = UNICODE_SPACES.replace(LINE_SEPARATORS, "") if spec.multiline else UNICODE_SPACES
    kinds = {"invisible_removed": STRIPPED, "spaces_made_plain": spaces}
    if spec.multiline:
        kinds["separators_made_line_breaks"] = LINE_SEPARATORS
    return kinds


def translation(spec: FieldSpec) -> dict[int, str | None]:
    """`str.translate`'s table for `spec`'s values (empty: the value is kept as written)."""
    table: dict[int, str | None] = {}
    for kind, characters in changes_in(spec).items():
        table.update(dict.fromkeys(map(ord, characters), REPLACEMENT[kind]))
    return table


@dataclass
class Changed:
    """One kind of change: how many values it changed, in which columns, the first lines."""

    values: int = 0
    columns: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def add(self, column: str, lines: list[int]) -> None:
        self.values += len(lines)
        if lines and column not in self.columns:
            self.columns.append(column)
        self.lines = sorted({*self.lines, *lines})[:_LINES_KEPT]


@dataclass
class ValueChanges:
    """The changes reading made to the values of one file, by kind."""

    kinds: dict[str, Changed] = field(default_factory=dict)

    def add(self, kind: str, column: str, lines: list[int]) -> None:
        if lines:
            self.kinds.setdefault(kind, Changed()).add(column, lines)
            self.kinds = {k: self.kinds[k] for k in KINDS if k in self.kinds}  # in the order of KINDS

    def record(self, spec: FieldSpec, label: str, lines: list[int], before: list[str], after: list[str]) -> None:
        """Count what changed between `before` and `after` (the same cells of `lines`) for `spec`."""
        changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a is not b and a != b]
        for kind, characters in changes_in(spec).items():
            self.add(kind, label, [lines[i] for i in changed if any(c in before[i] for c in characters)])

    def sentences(self) -> list[str]:
        """`3 values in Name had invisible characters removed (...): lines 4, 9, 12.`, a kind each."""
        return [_sentence(kind, changed) for kind, changed in self.kinds.items()]

    def to_list(self) -> list[dict[str, object]]:
        return [
            {"kind": kind, "values": c.values, "columns": c.columns, "lines": c.lines, "message": _sentence(kind, c)}
            for kind, c in self.kinds.items()
        ]

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_list(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> ValueChanges:
        if not path.exists():
            return cls()
        entries = json.loads(path.read_text(encoding="utf-8"))
        return cls({e["kind"]: Changed(e["values"], e["columns"], e["lines"]) for e in entries})


def _sentence(kind: str, changed: Changed) -> str:
    n = changed.values
    lines = ", ".join(map(str, changed.lines))
    more = f" (the first {_LINES_KEPT})" if n > _LINES_KEPT and len(changed.lines) == _LINES_KEPT else ""
    return (
        f"{n:,} value{'s' if n != 1 else ''} in {', '.join(changed.columns)} had {KINDS[kind]}:"
        f" line{'s' if len(changed.lines) != 1 else ''} {lines}{more}."
    )
