"""The field types and the rules of the contract: what each type means in PostgreSQL, how a staged
text value becomes a typed one, and the validation rules with the message a person fixing the file
reads. `fields` builds each field's rules from these.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from customer_import.contract.fields import FieldSpec

#: The literal a user writes in a cell to clear the stored value (a blank cell keeps it).
CLEAR_MARKER = "#NULL"


@dataclass(frozen=True)
class Rule:
    """One validation rule: a GX expectation plus the issue it reports when a value breaks it.

    `message` is a template for the person fixing the file; it may use {header}, {value},
    {length}, {max_length}, {example} and {chars} (`12 characters`: the value's length, which
    `without_value` says instead of a personal field's value).
    """

    expectation: str
    kwargs: dict[str, Any]
    code: str
    message: str


def without_value(template: str) -> str:
    """A rule's message template that says the value's length instead of the value (a personal
    field's issue, as task logs and alerts say it, after its line and column): `the value (12
    characters) is not a valid email address: ...`."""
    return template.replace("{header} `{value}`", "the value ({chars})").replace("`{value}`", "the value ({chars})")


# --- field types -----------------------------------------------------------------------


@dataclass(frozen=True)
class FieldType:
    sql_type: Callable[[FieldSpec], str]
    sql_cast: str  # the staged text value `{}` as a typed SQL value
    rules: Callable[[FieldSpec], list[Rule]]
    max_length: int | None = None  # stored as varchar of this length unless the field sets max_length


def _ascii_any_case(word: str) -> str:
    """`de` as `[Dd][Ee]`: case-insensitive for ASCII letters only. `(?i)` would also let the Kelvin
    sign pass for K (Python's re and RE2 both fold it), and the database would refuse the value."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


def _any_of(words: list[str]) -> str:
    return "^(?:" + "|".join(_ascii_any_case(w) for w in words) + ")$"


def _regex_rule(regex: str, code: str, message: str) -> Rule:
    return Rule("ExpectColumnValuesToMatchRegex", {"regex": regex}, code, message)


def _country_codes() -> str:
    """The ISO 3166-1 alpha-2 codes in either case, by first letter: `^(?:[Aa][DEFdef…]|…)$`."""
    import pycountry

    by_first: dict[str, str] = {}
    for code in sorted(c.alpha_2 for c in pycountry.countries):
        by_first[code[0]] = by_first.get(code[0], "") + code[1]
    return "^(?:" + "|".join(f"[{a}{a.lower()}][{bs}{bs.lower()}]" for a, bs in by_first.items()) + ")$"


FIELD_TYPES: dict[str, FieldType] = {
    "text": FieldType(
        sql_type=lambda f: f"varchar({f.limit})" if f.limit else "text",
        sql_cast="{}",
        rules=lambda f: [],
    ),
    "email": FieldType(
        sql_type=lambda f: f"varchar({f.limit})",
        sql_cast="{}",
        rules=lambda f: [
            Rule(
                "ExpectColumnValuesToNotMatchRegex",
                {"regex": r"^[Mm][Aa][Ii][Ll][Tt][Oo]:"},
                "invalid_email",
                "`{value}` is a mailto: link, not an email address: keep only the address after mailto:.",
            ),
            _regex_rule(
                EMAIL,
                "invalid_email",
                "`{value}` is not a valid email address: write it as name@domain, e.g. {example}.",
            ),
        ],
        max_length=254,
    ),
    "phone": FieldType(
        sql_type=lambda f: f"varchar({f.limit})",
        sql_cast="{}",
        # two plain rules with one message, not one with a look-ahead: RE2 (Arrow) runs plain ones
        rules=lambda f: [
            _regex_rule(
                regex,
                "invalid_phone",
                "`{value}` is not a valid phone number: use 7 to 20 digits,"
                " optionally with a leading +, spaces, -, ( and ), e.g. {example}.",
            )
            for regex in (r"^\+?[0-9 ()\-]+$", r"^(?:[^0-9]*[0-9]){7,20}[^0-9]*$")
        ],
        max_length=32,
    ),
    "country": FieldType(
        sql_type=lambda f: "char(2)",
        sql_cast="upper({})",
        rules=lambda f: [
            _regex_rule(
                _country_codes(),
                "invalid_country",
                "`{value}` is not an ISO 3166-1 alpha-2 country code: use two letters such as US, DE or GB.",
            )
        ],
    ),
    "date": FieldType(
        sql_type=lambda f: "date",
        sql_cast="{}::date",
        rules=lambda f: [
            _regex_rule(
                r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                "invalid_date",
                "`{value}` is not a date in YYYY-MM-DD form: write it like {example}.",
            ),
            _regex_rule(
                CALENDAR_DATE,
                "invalid_date",
                "`{value}` is not a real calendar date: check the day and month.",
            ),
        ],
    ),
    "integer": FieldType(
        sql_type=lambda f: "integer",
        sql_cast="{}::integer",
        rules=lambda f: [
            _regex_rule(
                r"^[0-9]{1,9}$" if f.minimum == 0 else r"^-?[0-9]{1,9}$",
                "invalid_integer",
                "`{value}` is not a whole number"
                + (" of 0 or more" if f.minimum == 0 else "")
                + ": write digits only, e.g. {example}.",
            )
        ],
    ),
    "boolean": FieldType(
        sql_type=lambda f: "boolean",
        sql_cast="{}::boolean",
        rules=lambda f: [
            _regex_rule(
                _any_of(["true", "false", "yes", "no", "1", "0"]),
                "invalid_boolean",
                "`{value}` is not a yes/no value: write true or false (yes/no and 1/0 work too).",
            )
        ],
    ),
}

#: A real Gregorian date as YYYY-MM-DD (years 0001-9999, leap years included). A regex, not
#: strptime: GX then checks it vectorised like every other rule (13 s saved per million rows).
#: ASCII digits only and no look-ahead, so that Python's re and Arrow's RE2 agree on it.
_YEAR = r"(?:[0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})"
_LEAP_YEAR = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][48]|[13579][26]|[2468]0)00)"
CALENDAR_DATE: str = (
    rf"^(?:{_YEAR}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    rf"|02-(?:0[1-9]|1[0-9]|2[0-8]))|{_LEAP_YEAR}-02-29)$"
)
#: An address as name@domain.tld; the characters RFC 5322 allows unquoted (and any non-ASCII
#: letter), so `mailto:jane@example.com` or `<jane@example.com>` do not pass.
#: Python's white space (`str.isspace`, what `\s` means to Python's re) as a class of its own characters:
#: RE2, which Arrow runs, reads `\s` as ASCII white space only, so pandas would run `\s` rules in Python.
SPACES = "".join(f"\\x{ord(c):02x}" if ord(c) < 0xA0 else c for c in map(chr, range(0x3001)) if c.isspace())
#: What a typed value loses at its ends: white space, but not the control characters Python counts as
#: white space (U+001C to U+001F, U+0085), which are a row issue like every other control character.
TRIM = "".join(c for c in map(chr, range(0x3001)) if c.isspace() and c not in "\x1c\x1d\x1e\x1f\x85")
EMAIL: str = rf'^[^{SPACES}@"(),:;<>\[\]\\]+@(?:[^{SPACES}@"(),:;<>\[\]\\.]+\.)+[^{SPACES}@"(),:;<>\[\]\\.]+$'
#: Characters that show as nothing (zero-width spaces and joiners, the byte-order mark, soft
#: hyphen, direction marks) or as an ordinary space (no-break and other Unicode spaces).
INVISIBLE = "[\u00a0\u00ad\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\ufeff]"
#: UTF-8 text that was read as Windows-1252 and saved again as UTF-8: `Ã©` for é, `â€™` for ’,
#: `Ã‰` for É, `Â ` for a no-break space, `Ð¶` for ж.
_CONTINUATION = r"\x80-\xbf" + "".join(
    sorted(set(bytes(range(0x80, 0xC0)).decode("cp1252", "ignore")) - set(map(chr, range(0x80, 0xC0))))
)
MOJIBAKE = f"[ÂÃÄÅÎÏÐÑ][{_CONTINUATION}]|[âï][{_CONTINUATION}][{_CONTINUATION}]"
#: C0 and C1 control characters and DEL: never text in an export (C1, U+0080 to U+009F, is what
#: Windows-1252 typography becomes when the file is read as ISO-8859-1).
_CONTROL_CHARS = r"[\x00-\x1f\x7f-\x9f]"
_CONTROL_CHARS_EXCEPT_LINE_BREAKS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"


def rules_of(f: FieldSpec) -> list[Rule]:
    """Every rule of a field, in the order they are checked (the first broken one is reported)."""
    rules: list[Rule] = []
    if f.required == "always":
        rules.append(
            Rule(
                "ExpectColumnValuesToNotBeNull",
                {},
                "required",
                "{header} is missing: every row needs one, e.g. {example}.",
            )
        )
    if f.required != "never":
        rules.append(
            Rule(
                "ExpectColumnValuesToNotBeInSet",
                {"value_set": [CLEAR_MARKER]},
                "required",
                f"{{header}} cannot be cleared with {CLEAR_MARKER}: it is required. Write a value"
                " or leave the cell blank to keep the stored one.",
            )
        )
    rules.append(
        Rule(
            "ExpectColumnValuesToNotMatchRegex",
            {"regex": _CONTROL_CHARS_EXCEPT_LINE_BREAKS if f.multiline else _CONTROL_CHARS},
            "control_character",
            "{header} contains "
            + ("a control character" if f.multiline else "a control character or line break")
            + " ({found}): remove it (it is often an invisible paste from another program, or a file read"
            " in the wrong encoding).",
        )
    )
    if f.identifying:
        rules.append(
            Rule(
                "ExpectColumnValuesToNotMatchRegex",
                {"regex": INVISIBLE},
                "invisible_character",
                "{header} `{value}` contains an invisible character (shown by its code, like \\u200b): delete"
                " it, or the same customer or address would exist twice, once with it and once without.",
            )
        )
    if f.required == "always":
        rules.append(
            Rule(
                "ExpectColumnValuesToNotMatchRegex",
                {"regex": f"^[{SPACES}]|[{SPACES}]$"},
                "surrounding_space",
                "{header} `{value}` starts or ends with a space: remove the spaces, the key is matched exactly.",
            )
        )
    if f.type == "text":
        rules.append(
            Rule(
                "ExpectColumnValuesToNotMatchRegex",
                # \Z, not $: for a $, pandas hands a column with a line break to Python's re, not Arrow's
                {"regex": r'^ *"[^"]*\Z'},
                "stray_quote",
                "{header} `{value}` starts with a double quote that is never closed: remove it, or add the"
                " closing one.",
            )
        )
    if f.type in ("text", "email"):
        rules.append(
            Rule(
                "ExpectColumnValuesToNotMatchRegex",
                {"regex": MOJIBAKE},
                "mojibake",
                "{header} `{value}` looks garbled: UTF-8 text that was once read as Windows-1252 (`Ã©` is"
                " what é becomes, `â€™` what ’ becomes). Retype the accented letters on this line, or"
                " export it again from its source as CSV UTF-8.",
            )
        )
    if f.limit:
        rules.append(
            Rule(
                "ExpectColumnValueLengthsToBeBetween",
                {"min_value": None, "max_value": f.limit},
                "too_long",
                "{header} is {length} characters long; the limit is {max_length}: shorten it.",
            )
        )
    rules.extend(FIELD_TYPES[f.type].rules(f))
    return rules
