"""How an export writes a field's values (`Format`): dates in its own pattern, yes/no words, country
names, phone numbers with dots; each read into the contract's form, or refused in plain words."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator


class UnreadableValue(ValueError):
    """A value a source's format cannot read; the message says what was expected."""


def as_list(value: Any) -> Any:
    """A single value where a list is expected, as a list of one."""
    return [value] if isinstance(value, str) else value


class Strict(BaseModel):
    """A part of sources.yaml: no key it does not know."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Format(Strict):
    """How one field's values are written in the export; exactly one kind per field."""

    date: Annotated[list[str], BeforeValidator(as_list)] | None = None
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
            return read_country(value, self.aliases)
        return _clean_phone(value)


def _read_date(value: str, patterns: list[str]) -> str:
    for pattern in patterns:
        try:
            return datetime.strptime(value, pattern).date().isoformat()
        except ValueError:
            continue
    shown = " or ".join(f"{p} (like {datetime(2024, 1, 31, 9, 30).strftime(p)})" for p in patterns)
    raise UnreadableValue(f"`{value}` is not a date in {shown}")


def read_country(value: str, aliases: Mapping[str, str]) -> str:
    import pycountry

    by_alias = {alias.casefold(): code for alias, code in aliases.items()}
    if value.casefold() in by_alias:
        return read_country(by_alias[value.casefold()], {})
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
