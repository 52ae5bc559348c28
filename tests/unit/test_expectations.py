"""The GX suite in expectations/ is generated from the contract and reports issues per cell."""

import pandas as pd
import pytest

from customer_import.contract.fields import load_contract
from customer_import.reading.expectations import LINE, RowValidator, build_suite, read_suite
from customer_import.settings import Settings

pytestmark = pytest.mark.unit


def test_the_committed_suite_matches_the_contract():
    committed = read_suite(Settings.from_env().expectations_dir)
    assert committed == build_suite(load_contract()), "run `make expectations` and commit the result"


def test_row_rules_report_line_column_code_and_value():
    contract = load_contract()
    fields = [contract.field_for(h) for h in ("AccountReferenceID", "ContactEmail", "CustomerSince", "Country")]
    validator = RowValidator(read_suite(Settings.from_env().expectations_dir), fields)
    frame = pd.DataFrame(
        {
            LINE: [2, 3, 5],
            "account_reference_id": ["K-1", " K-2", None],
            "contact_email": ["ok@example.com", "broken@", None],
            "customer_since": ["2024-02-29", "2023-02-29", "31/01/2024"],
            "country": ["de", "DE", "XX"],
        }
    )
    issues = {(i.line, i.column): i for i in validator.validate(frame)}
    assert set(issues) == {
        (3, "AccountReferenceID"),
        (3, "ContactEmail"),
        (3, "CustomerSince"),
        (5, "AccountReferenceID"),
        (5, "CustomerSince"),
        (5, "Country"),
    }
    assert issues[(3, "ContactEmail")].code == "invalid_email"
    assert "`broken@` is not a valid email address" in issues[(3, "ContactEmail")].message
    assert issues[(3, "CustomerSince")].message.startswith("`2023-02-29` is not a real calendar date")
    assert issues[(5, "CustomerSince")].message.startswith("`31/01/2024` is not a date in YYYY-MM-DD form")
    assert issues[(5, "AccountReferenceID")].code == "required"
    assert issues[(3, "AccountReferenceID")].code == "surrounding_space"
