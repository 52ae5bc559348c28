"""A deterministic generator of realistic customer files (the bundled sample, tests, the benchmark).

The same arguments always give the same bytes. Values exercise what real CRM exports hold:
non-ASCII names, commas and quotes in company names, line breaks in descriptions, keys with
leading zeros. Emails derive from the key, so they are unique across any generated file.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

from customer_import.contract.fields import Contract, load_contract

_FIRST = [
    "Anna",
    "José",
    "Zoë",
    "Øyvind",
    "Łukasz",
    "Chloé",
    "Mateo",
    "Aiko",
    "Sven",
    "Ingrid",
    "Björn",
    "Renée",
    "Noah",
    "Fatima",
    "Dmitri",
    "Siobhán",
    "Kai",
    "Leïla",
    "Jürgen",
    "Maya",
]
_LAST = [
    "Müller",
    "Núñez",
    "O'Brien",
    "Kowalski",
    "Dubois",
    "Tanaka",
    "Andersen",
    "García",
    "Smith",
    "Nováková",
    "Rossi",
    "Şahin",
    "Lefèvre",
    "Kim",
    "Johansson",
    "Papadopoulos",
    "Østergaard",
]
_COMPANY = ["Systems", "Labs", "Software", "Holdings", "Analytics", "Technologies", "Werke", "Studio"]
_SUFFIX = ["Ltd", "GmbH", "Inc.", "S.A.", "AB", "Oy", "K.K.", "s.r.o."]
_COUNTRIES = ["US", "GB", "DE", "FR", "ES", "SE", "NO", "PL", "JP", "CZ", "IT", "TR", "GR", "DK", "NL"]
_NOTES = [
    "Key account",
    "Renews in March",
    'Prefers "email only" contact',
    "Reseller, EMEA region",
    "Upgraded to enterprise\nafter the Q3 review",
    "",
]


def customer_rows(count: int, *, start: int = 1, seed: int = 0) -> Iterator[dict[str, str]]:
    """Rows for keys start .. start+count-1, by contract column."""
    rng = random.Random(seed)
    epoch = date(2015, 1, 1)
    for n in range(start, start + count):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        company = f"{last} {rng.choice(_COMPANY)}"
        if rng.random() < 0.2:
            company += f", {rng.choice(_SUFFIX)}"
        yield {
            "account_reference_id": f"C{n:07d}",
            "name": company,
            "description": rng.choice(_NOTES),
            "contact_email": f"{first.lower()[:3]}.{n}@customer{n % 97}.example.com".encode("ascii", "ignore").decode(),
            "contact_first_name": first,
            "contact_last_name": last,
            "phone": f"+{rng.randint(1, 49)} {rng.randint(100, 999)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}",
            "country": rng.choice(_COUNTRIES),
            "customer_since": (epoch + timedelta(days=rng.randint(0, 3650))).isoformat(),
            "seats": str(rng.randint(1, 500)),
            "is_reseller": rng.choice(["true", "false"]),
        }


def write_customers(
    path: Path, count: int, *, start: int = 1, seed: int = 0, contract: Contract | None = None, gone_every: int = 0
) -> Path:
    """Write a valid customer file of `count` rows (UTF-8, comma separated, LF line ends), in the
    contract's column order; a contract field the generator does not know gets its example value.
    With `gone_every` n, every n-th customer is left out and the others are as without it: a full
    export after deletions."""
    fields = (contract or load_contract()).fields
    with Path(path).open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([f.header for f in fields])
        for n, row in enumerate(customer_rows(count, start=start, seed=seed), 1):
            if not gone_every or n % gone_every:
                writer.writerow([row.get(f.column, f.example) for f in fields])
    return Path(path)
