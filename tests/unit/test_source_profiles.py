"""sources.yaml: what a source declares, how its formats read values, and how a mistake is reported."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest

from customer_import.contract.fields import load_contract
from customer_import.sources.profiles import SOURCES_PATH, Format, SourcesError, UnreadableValue, load_sources

pytestmark = pytest.mark.unit
BUNDLED = SOURCES_PATH.read_text(encoding="utf-8")


def load(tmp_path: Path, text: str):
    path = tmp_path / "sources.yaml"
    path.write_text(text, encoding="utf-8")
    return load_sources(path, load_contract())


def error_of(tmp_path: Path, old: str, new: str) -> str:
    assert old in BUNDLED, old
    with pytest.raises(SourcesError) as raised:
        load(tmp_path, BUNDLED.replace(old, new, 1))
    return str(raised.value)


def line_of(text: str) -> int:
    return 1 + BUNDLED.splitlines().index(next(line for line in BUNDLED.splitlines() if line.startswith(text)))


def test_the_bundled_sources_load_with_the_default_first():
    sources = load_sources(SOURCES_PATH, load_contract())

    assert sources.names == ["default", "salesforce", "hubspot"]
    assert [s.landing_folder for s in sources] == ["", "salesforce", "hubspot"]
    assert sources["hubspot"].run_conf == {"on_error": "skip_invalid_rows", "max_error_rate": 0.05}
    assert sources["default"].run_conf == {}


def test_without_a_file_only_the_default_source_exists(tmp_path):
    assert load_sources(tmp_path / "absent.yaml", load_contract()).names == ["default"]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'CustomerSince: {date: "%m/%d/%Y"}',
            'CustomerSince: {fromat: "%m/%d/%Y"}',
            "(sources.salesforce.formats.CustomerSince.fromat): unknown key `fromat`: the keys here are date,"
            " boolean, country, aliases, phone.",
        ),
        (
            "    ignore: [Account Owner",
            "    ignroe: [Account Owner",
            "(sources.salesforce.ignroe): unknown key `ignroe`: did you mean `ignore`?",
        ),
        (
            "      Licenses: Seats",
            "      Licenses: Seat",
            "(sources.salesforce.columns.Licenses): `Seat` is not a header of the contract: did you mean `Seats`?",
        ),
        (
            "{mode: upsert, on_error: reject_file}",
            "{mode: upsrt, on_error: reject_file}",
            "(sources.salesforce.options.mode): Input should be 'upsert', 'insert_only' or 'update_only'.",
        ),
        (
            '      CustomerSince: {date: "%Y-%m-%d %H:%M"}',
            '      Seats: {date: "%Y-%m-%d %H:%M"}',
            "(sources.hubspot.formats.Seats.date): Seats is a field of type integer, so a date format does not apply",
        ),
        (
            "      Country: {country: names, aliases: {UK: GB}}",
            "      Country: {country: names, aliases: {UK: Atlantis}}",
            "(sources.salesforce.formats.Country.aliases.UK): `Atlantis` is not a country name or ISO code.",
        ),
        (
            '      IsReseller: "false"',
            '      AccountReferenceID: "X"',
            "(sources.salesforce.defaults.AccountReferenceID): AccountReferenceID is the key",
        ),
        ("  hubspot:", "  HubSpot:", "(sources.HubSpot): `HubSpot` is not a source name"),
    ],
)
def test_a_mistake_is_reported_with_its_line_and_key(tmp_path, old, new, message):
    text = error_of(tmp_path, old, new)

    changed = BUNDLED.replace(old, new, 1).splitlines()
    lines = [n for n, line in enumerate(changed, start=1) if new.strip() in line]
    assert text.startswith(f"sources.yaml, line {lines[-1]} (")  # the key that is wrong (the second of two)
    assert message in text


def test_a_key_given_twice_is_reported_at_the_second(tmp_path):
    with pytest.raises(SourcesError) as raised:
        load(tmp_path, "sources:\n  a:\n    folder: x\n    folder: y\n")
    assert (
        str(raised.value)
        == "sources.yaml, line 4 (sources.a.folder): `folder` is given twice (first on line 3): keep one."
    )


def test_broken_yaml_is_reported_with_its_line(tmp_path):
    with pytest.raises(SourcesError, match=r"^sources.yaml, line 4: not valid YAML: expected the node content"):
        load(tmp_path, "sources:\n  a:\n    columns: {A: [\n")


def test_two_sources_cannot_share_a_landing_folder(tmp_path):
    with pytest.raises(SourcesError, match="sources `a` and `b` share the landing folder `x`"):
        load(tmp_path, "sources:\n  a: {folder: x}\n  b: {folder: x}\n")


def test_yes_and_no_are_words_and_durations_have_units(tmp_path):
    sources = load(
        tmp_path,
        "sources:\n  s:\n    formats: {IsReseller: {boolean: {true: [Yes, Y, on], false: [No, N, off]}}}\n"
        "    expected_every: 24h\n    grace: 90m\n",
    )

    fmt = sources["s"].formats["IsReseller"]
    assert fmt.boolean == {True: ["Yes", "Y", "on"], False: ["No", "N", "off"]}
    assert (sources["s"].expected_every, sources["s"].grace) == (timedelta(hours=24), timedelta(minutes=90))


def test_an_unknown_source_names_the_ones_there_are():
    sources = load_sources(SOURCES_PATH, load_contract())

    with pytest.raises(
        KeyError, match=r"There is no source `zoho` in sources\.yaml: the sources are default, salesforce"
    ):
        sources["zoho"]


@pytest.mark.parametrize(
    ("fmt", "value", "read"),
    [
        ({"date": "%m/%d/%Y"}, "1/31/2024", "2024-01-31"),
        ({"date": ["%d.%m.%Y", "%Y-%m-%d %H:%M"]}, "2024-01-31 09:30", "2024-01-31"),
        ({"boolean": {True: ["Yes"], False: ["No"]}}, "YES", "true"),
        ({"boolean": {True: ["Yes"], False: ["No"]}}, "no", "false"),
        ({"country": "names"}, "Germany", "DE"),
        ({"country": "names"}, "united states of america", "US"),
        ({"country": "names"}, "USA", "US"),
        ({"country": "names"}, "fr", "FR"),
        ({"country": "names", "aliases": {"England": "GB"}}, "england", "GB"),
        ({"phone": "clean"}, "tel:+1.555.010.2030", "+1 555 010 2030"),
        ({"phone": "clean"}, "030/1234  567", "030 1234 567"),
    ],
)
def test_formats_read_what_exports_write(fmt, value, read):
    assert Format.model_validate(fmt).read(value) == read


@pytest.mark.parametrize(
    ("fmt", "value", "message"),
    [
        ({"date": "%m/%d/%Y"}, "13/31/2024", "`13/31/2024` is not a date in %m/%d/%Y (like 01/31/2024)"),
        ({"date": "%m/%d/%Y"}, "2024-01-31", "`2024-01-31` is not a date in %m/%d/%Y (like 01/31/2024)"),
        ({"boolean": {True: ["Yes"], False: ["No"]}}, "maybe", "`maybe` is none of the words this export uses"),
        ({"country": "names"}, "Atlantis", "`Atlantis` is not a country name or code"),
    ],
)
def test_formats_say_what_they_cannot_read(fmt, value, message):
    with pytest.raises(UnreadableValue) as raised:
        Format.model_validate(fmt).read(value)
    assert str(raised.value).startswith(message)


def test_settled_files_of_every_source_are_handed_over_in_arrival_order_with_their_source(tmp_path):
    from customer_import.storage.folders import Folders

    sources = load(tmp_path, "sources:\n  crm:\n    options: {on_error: skip_invalid_rows, max_error_rate: 0.1}\n")
    root = tmp_path / "data"
    landings = [Folders(root).create().landing, Folders(root, "crm").create().landing]
    then = time.time() - 100
    for n, (landing, name) in enumerate([(landings[1], "b.csv"), (landings[0], "a.csv"), (landings[1], "c.csv")]):
        (landing / name).write_text("x")
        os.utime(landing / name, (then, then + (n if n < 2 else 1)))  # c.csv arrives at the same moment as a.csv

    handovers = sources.handovers(root, settled_seconds=5)

    assert [(h["trigger_run_id"].split("__")[:2], h["conf"]) for h in handovers] == [
        (["file", "crm"], {"file": "b.csv", "source": "crm", "on_error": "skip_invalid_rows", "max_error_rate": 0.1}),
        (["file", "a.csv"], {"file": "a.csv"}),
        (["file", "crm"], {"file": "c.csv", "source": "crm", "on_error": "skip_invalid_rows", "max_error_rate": 0.1}),
    ]
    moments = [h["logical_date"] for h in handovers]
    assert moments == sorted(set(moments))  # distinct: a DAG run's logical date is unique
    assert (root / "landing" / "crm").is_dir()  # the default source's scan left the source's folder alone
