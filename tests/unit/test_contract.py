"""The contract is the single source: everything about a field derives from it."""

import csv
from pathlib import Path

import pytest

from customer_import.contract.fields import ContractError, load_contract, normalise_header
from customer_import.database.db import customers_ddl

pytestmark = pytest.mark.unit


def test_default_contract_has_the_spec_fields():
    contract = load_contract()
    assert contract.key.header == "AccountReferenceID"
    assert contract.headers == [
        "AccountReferenceID",
        "Name",
        "Description",
        "ContactEmail",
        "ContactFirstName",
        "ContactLastName",
        "Phone",
        "Country",
        "CustomerSince",
        "Seats",
        "IsReseller",
    ]
    assert [f.header for f in contract.unique_fields] == ["ContactEmail"]


@pytest.mark.parametrize("written", ["account reference id", "ACCOUNT_REFERENCE_ID", " AccountReferenceId "])
def test_headers_match_ignoring_case_and_spaces(written):
    assert load_contract().field_for(written).column == "account_reference_id"
    assert normalise_header(written) == "accountreferenceid"


def test_every_field_becomes_a_column_and_unique_fields_an_index():
    contract = load_contract()
    ddl = " ".join(s.as_string() for s in customers_ddl(contract))
    for spec in contract.fields:
        assert f'"{spec.column}" {spec.sql_type}' in ddl
    assert 'CREATE UNIQUE INDEX IF NOT EXISTS "customers_contact_email_unique"' in ddl
    assert '"account_reference_id" varchar(64) PRIMARY KEY' in ddl


def test_rules_follow_the_field_type():
    contract = load_contract()
    codes = {f.header: [r.code for r in f.rules] for f in contract.fields}
    assert codes["AccountReferenceID"] == [
        "required",
        "required",
        "control_character",
        "invisible_character",
        "surrounding_space",
        "stray_quote",
        "mojibake",
        "too_long",
    ]
    assert codes["ContactEmail"][-1] == "invalid_email"
    assert "invisible_character" in codes["ContactEmail"] and "invisible_character" not in codes["Name"]
    assert codes["CustomerSince"][-2:] == ["invalid_date", "invalid_date"]
    assert "too_long" not in codes["Seats"]


def test_a_broken_contract_is_refused(tmp_path: Path):
    broken = tmp_path / "contract.yaml"
    head = "table: customers\nkey: Id\nfields:\n"
    broken.write_text(head + "  - {header: Id, column: id, type: money, required: always}\n")
    with pytest.raises(ContractError, match="unknown type 'money'"):
        load_contract(broken)
    broken.write_text(head + "  - {header: Id, column: Id-1, type: text, required: always}\n")
    with pytest.raises(ContractError, match="not a lower-case SQL identifier"):
        load_contract(broken)
    broken.write_text(head + f"  - {{header: Id, column: {'i' * 57}, type: text, required: always}}\n")
    with pytest.raises(ContractError, match="longer than 56 characters: the history keeps it as before_<column>"):
        load_contract(broken)
    broken.write_text(head + f"  - {{header: Id, column: {'i' * 56}, type: text, required: always}}\n")
    assert load_contract(broken).key.column == "i" * 56


def test_the_calendar_date_rule_agrees_with_the_calendar():
    import datetime
    import re

    from customer_import.contract.rules import CALENDAR_DATE

    rule = re.compile(CALENDAR_DATE)
    for year in [1, 4, 100, 400, 1900, 9999, *range(1996, 2030)]:
        for month in range(1, 14):
            for day in range(0, 33):
                text = f"{year:04d}-{month:02d}-{day:02d}"
                try:
                    real = datetime.date(year, month, day) is not None
                except ValueError:
                    real = False
                assert bool(rule.match(text)) == real, text
    assert not rule.match("0000-01-01")


def test_every_length_the_table_holds_is_a_rule():
    """The database never refuses a value the rules passed: each varchar's length is a too_long rule."""
    import re

    for spec in load_contract().fields:
        declared = re.fullmatch(r"varchar\((\d+)\)", spec.sql_type)
        if declared:
            lengths = [r.kwargs["max_value"] for r in spec.rules if r.code == "too_long"]
            assert lengths == [int(declared.group(1))], spec.header
    phone = load_contract().field_for("Phone")
    assert (phone.sql_type, phone.limit) == ("varchar(32)", 32)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Country", "\u212aR"),  # Kelvin sign K: folds to k under (?i) in Python's re and in RE2
        ("Country", "ＤＥ"),  # full-width letters
        ("IsReseller", "yeſ"),  # long s folds to s
        ("CustomerSince", "٢٠٢٤-٠١-٣١"),  # Arabic-Indic digits are \d to Python's re
        ("Seats", "١٢"),
        ("ContactEmail", "mailto:jane@example.com"),
        ("ContactEmail", "<jane@example.com>"),
    ],
)
def test_look_alike_values_break_a_rule(header, value):
    import re

    spec = load_contract().field_for(header)
    broken = [
        r.code
        for r in spec.rules
        if (r.expectation.endswith("ToMatchRegex") and not re.search(r.kwargs["regex"], value))
        or (r.expectation.endswith("ToNotMatchRegex") and re.search(r.kwargs["regex"], value))
    ]
    assert broken, f"{header} `{value}` passes every rule"


def test_the_generator_writes_by_column_so_a_new_field_gets_its_example(tmp_path: Path):
    from customer_import.contract.fields import CONTRACT_PATH
    from customer_import.contract.generate import write_customers

    extended = tmp_path / "contract.yaml"
    extended.write_text(
        CONTRACT_PATH.read_text(encoding="utf-8")
        + "  - {header: Region, column: region, type: text, max_length: 40, required: on_insert, example: EMEA}\n",
        encoding="utf-8",
    )
    contract = load_contract(extended)
    rows = list(csv.DictReader(write_customers(tmp_path / "c.csv", 3, contract=contract).open(encoding="utf-8")))
    assert list(rows[0]) == [f.header for f in contract.fields]
    assert [r["Region"] for r in rows] == ["EMEA"] * 3
    assert rows[0]["AccountReferenceID"] == "C0000001" and rows[0]["ContactEmail"].endswith(".example.com")
