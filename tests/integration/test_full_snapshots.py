"""Full snapshots on real PostgreSQL (18 and 15): customers a source's complete export lacks are
deactivated, reactivated when they come back, restored by a rollback, and never more than the
source allows without a person's confirmation."""

from __future__ import annotations

import csv
import re
from dataclasses import replace
from pathlib import Path

import pytest

from customer_import.contract.generate import write_customers
from customer_import.contract.options import ImportOptions
from customer_import.storage.folders import drop_into_landing

pytestmark = pytest.mark.integration

SOURCES_YAML = """
sources:
  crm:
    description: a complete export every day
    options: {snapshot: full, max_deactivate_share: 0.25}
  other:
    description: another CRM's deltas
"""
STATE = "account_reference_id, name, active, deactivated_at, deactivated_by_run, updated_at, updated_by_run, source"


@pytest.fixture
def crm(importer, tmp_path):
    """The importer with two sources: `crm` (full snapshots, 25 % at most) and `other` (deltas)."""
    sources = tmp_path / "sources.yaml"
    sources.write_text(SOURCES_YAML)
    return replace(importer, settings=replace(importer.settings, sources_file=sources))


@pytest.fixture
def export(tmp_path):
    """A file of the ten customers C0000001..C0000010 without those numbered in `without`."""
    full = write_customers(tmp_path / "ten.csv", 10)
    with full.open(encoding="utf-8", newline="") as f:
        header, *rows = list(csv.reader(f))

    def _export(name: str, without: tuple[int, ...] = (), rows_of: list[list[str]] | None = None) -> Path:
        path = tmp_path / "exports" / name
        path.parent.mkdir(exist_ok=True)
        with path.open("w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(header)
            writer.writerows(rows_of if rows_of is not None else [r for n, r in enumerate(rows, 1) if n not in without])
        return path

    _export.rows = rows
    return _export


def short(export, name: str, row: str) -> Path:
    """A file of key and name only."""
    path = export(name, rows_of=[])
    path.write_text(f"AccountReferenceID,Name\n{row}\n")
    return path


def run_import(importer, conn, path: Path, source: str = "crm", **options):
    name = drop_into_landing(path, importer.sources.folders(importer.settings.data_dir, source))
    given = replace(importer.sources[source].import_options, **options)
    return importer.import_file(conn, name, given, source=source)


def state(conn, key: str | None = None):
    where = "WHERE account_reference_id = %s" if key else ""
    return conn.execute(
        f"SELECT {STATE} FROM customers {where} ORDER BY account_reference_id", [key] if key else []
    ).fetchall()


def inactive(conn) -> list[str]:
    return [k for (k,) in conn.execute("SELECT account_reference_id FROM customers WHERE NOT active ORDER BY 1")]


def history(conn, run_id: int):
    return conn.execute(
        "SELECT line, customer_key, action, before, after FROM customer_history WHERE run_id = %s"
        " ORDER BY line, customer_key",
        [run_id],
    ).fetchall()


def test_customers_missing_from_a_full_export_are_deactivated_and_come_back(crm, conn, export):
    first = run_import(crm, conn, export("day1.csv"))
    other = run_import(crm, conn, short(export, "other.csv", "O-1,Other Ltd"), source="other")
    assert (first.status, first.inserted, first.deactivated, other.inserted) == ("succeeded", 10, 0, 1)
    assert {s for *_, s in state(conn)} == {"crm", "other"}

    day2 = run_import(crm, conn, export("day2.csv", without=(3, 7)))
    assert (day2.status, day2.inserted, day2.updated, day2.unchanged, day2.deactivated) == ("succeeded", 0, 0, 8, 2)
    assert "2 deactivated" in day2.outcome
    assert day2.message == (
        "2 customers of source crm not in this full export were deactivated (deactivations.csv lists them)."
    )
    assert inactive(conn) == ["C0000003", "C0000007"]
    (_, _, active, deactivated_at, by_run, updated_at, updated_by, _) = state(conn, "C0000003")[0]
    assert (active, by_run, updated_by) == (False, day2.id, day2.id)
    assert deactivated_at == updated_at
    assert [(line, key, action, after) for line, key, action, _, after in history(conn, day2.id)] == [
        (None, "C0000003", "deactivate", {"active": False}),
        (None, "C0000007", "deactivate", {"active": False}),
    ]
    assert history(conn, day2.id)[0][3]["active"] is True
    assert state(conn, "O-1")[0][2] is True  # another source's customer is not in crm's export: untouched

    again = run_import(crm, conn, export("day2.csv", without=(3, 7)))
    assert again.status == "duplicate"
    forced = run_import(crm, conn, export("day2b.csv", without=(3, 7)), force=True)
    assert (forced.status, forced.updated, forced.deactivated, forced.reactivated) == ("succeeded", 0, 0, 0)
    assert history(conn, forced.id) == []
    assert "none was deactivated" in forced.message and "0 deactivated" in forced.outcome

    day3 = run_import(crm, conn, export("day3.csv", without=(7,)))
    assert (day3.status, day3.reactivated, day3.updated, day3.unchanged, day3.deactivated) == ("succeeded", 1, 0, 8, 0)
    assert "1 reactivated" in day3.outcome
    assert inactive(conn) == ["C0000007"]
    assert state(conn, "C0000003")[0][2:5] == (True, None, None)
    ((line, key, action, before, after),) = history(conn, day3.id)
    assert (key, action, after) == ("C0000003", "reactivate", {"active": True}) and line > 1
    assert (before["active"], before["deactivated_by_run"]) == (False, day2.id)

    # a delta of the other source names a customer crm deactivated: it is back, still crm's
    run_import(crm, conn, short(export, "o2.csv", "C0000007,Renamed"), source="other")
    assert inactive(conn) == [] and state(conn, "C0000007")[0][-1] == "crm"


def test_a_rollback_restores_the_customers_a_snapshot_deactivated_exactly(crm, conn, export):
    run_import(crm, conn, export("day1.csv"))
    before = state(conn)
    day2 = run_import(crm, conn, export("day2.csv", without=(3, 7)))
    assert day2.deactivated == 2

    result = crm.roll_back(conn, day2.id)

    assert (result.restored, result.reactivated, result.conflicts) == (2, 2, [])
    assert "2 of them deactivated by it, active again" in result.message
    assert state(conn) == before


def test_a_rollback_of_a_reactivation_deactivates_the_customer_again(crm, conn, export):
    run_import(crm, conn, export("day1.csv"))
    run_import(crm, conn, export("day2.csv", without=(3,)))
    deactivated = state(conn, "C0000003")
    day3 = run_import(crm, conn, export("day3.csv"))  # day 1's content: not a duplicate after day 2
    assert (day3.status, day3.reactivated) == ("succeeded", 1)

    crm.roll_back(conn, day3.id)

    assert state(conn, "C0000003") == deactivated


def test_a_truncated_export_over_the_limit_is_refused_until_confirmed(crm, conn, export):
    run_import(crm, conn, export("day1.csv"))
    before = state(conn)
    truncated = export("capped.csv", without=(6, 7, 8, 9, 10))

    refused = run_import(crm, conn, truncated)

    assert (refused.status, refused.deactivation_refused, refused.merged_at) == ("rejected", 5, None)
    assert refused.message == (
        "This full export would deactivate 5 of 10 customers (50 %); the limit is 25 %. If the export is"
        " complete, import it again with allow_mass_deactivation."
    )
    assert state(conn) == before and history(conn, refused.id) == []
    summary = (crm.settings.data_dir / refused.report_dir / "summary.json").read_text()
    assert "mass_deactivation" in summary

    confirmed = run_import(crm, conn, truncated, allow_mass_deactivation=True)
    assert (confirmed.status, confirmed.deactivated) == ("succeeded", 5)
    assert inactive(conn) == [f"C00000{n:02d}" for n in (6, 7, 8, 9, 10)]


def test_the_default_limit_is_five_percent(importer, conn, export):
    run_import(importer, conn, export("day1.csv"), source="default")
    refused = run_import(importer, conn, export("day2.csv", without=(1,)), source="default", snapshot="full")
    assert refused.status == "rejected"
    assert "would deactivate 1 of 10 customers (10 %); the limit is 5 %" in refused.message


def test_a_header_only_snapshot_deactivates_nothing(crm, conn, export):
    run_import(crm, conn, export("day1.csv"))
    empty = run_import(crm, conn, export("empty.csv", rows_of=[]))
    assert (empty.status, empty.rows_total, empty.deactivated) == ("succeeded", 0, 0)
    assert "As a full snapshot it was skipped" in empty.message
    assert inactive(conn) == []


def test_a_rejected_row_keeps_its_customer_and_an_invalid_key_stops_deactivation(crm, conn, export):
    run_import(crm, conn, export("day1.csv"))
    rows = [list(r) for r in export.rows]
    rows[1][3] = "not an email"  # C0000002's row is rejected, its key is valid: the customer is present
    skip = {"on_error": "skip_invalid_rows", "max_error_rate": 0.5}

    partial = run_import(crm, conn, export("bad_row.csv", rows_of=rows[:9]), **skip)  # C0000010 is gone

    assert (partial.status, partial.rows_rejected, partial.deactivated) == ("partial", 1, 1)
    assert inactive(conn) == ["C0000010"]

    rows[4][0] = "C" + "5" * 80  # C0000005's key is too long: which customer is it?
    doubtful = run_import(crm, conn, export("bad_key.csv", rows_of=rows[:8]), **skip)  # C0000009 is gone

    assert (doubtful.status, doubtful.deactivated) == ("partial", 0)
    assert re.search(r"No customer was deactivated: the AccountReferenceID on line \d+ is invalid", doubtful.message)
    assert inactive(conn) == ["C0000010"]


def test_a_dry_run_lists_exactly_the_customers_it_would_deactivate(crm, conn, export):
    run_import(crm, conn, export("day1.csv"))
    before = state(conn)

    dry = run_import(crm, conn, export("day2.csv", without=(2, 9)), dry_run=True)

    assert (dry.status, dry.deactivated) == ("dry_run", 2)
    assert "would insert 0, update 0, deactivate 2 and leave 8 unchanged" in dry.message
    assert state(conn) == before
    changes = crm.settings.data_dir / dry.report_dir / "changes.csv"
    with changes.open(encoding="utf-8-sig", newline="") as f:
        listed = [(r["AccountReferenceID"], r["Action"]) for r in csv.DictReader(f)]
    assert listed == [("C0000002", "deactivate"), ("C0000009", "deactivate")]


def test_a_delta_never_deactivates(crm, conn, export):
    run_import(crm, conn, export("day1.csv"))
    delta = run_import(crm, conn, export("day2.csv", without=(1, 2, 3, 4, 5, 6)), snapshot="delta")
    assert (delta.status, delta.deactivated) == ("succeeded", 0)
    assert inactive(conn) == []


def test_the_option_reaches_the_run(crm):
    assert crm.sources["crm"].import_options == ImportOptions(snapshot="full", max_deactivate_share=0.25)
    assert ImportOptions.from_params({"snapshot": "full", "allow_mass_deactivation": "true"}).allow_mass_deactivation
    with pytest.raises(ValueError, match="snapshot must be one of delta, full"):
        ImportOptions.from_params({"snapshot": "complete"})


def test_a_database_from_before_full_snapshots_is_migrated(importer, conn, export):
    from customer_import.database import db

    first = run_import(importer, conn, export("day1.csv"), source="default")
    # the tables as the release before full snapshots left them
    conn.execute("DROP VIEW customer_history")
    conn.execute(
        "ALTER TABLE customers DROP COLUMN source, DROP COLUMN active, DROP COLUMN deactivated_at,"
        " DROP COLUMN deactivated_by_run"
    )
    conn.execute(
        "ALTER TABLE customer_history_rows DROP COLUMN before_deactivated_at, DROP COLUMN before_deactivated_by_run,"
        " ALTER COLUMN line SET NOT NULL, DROP CONSTRAINT customer_history_rows_action_check,"
        " ADD CONSTRAINT customer_history_rows_action_check CHECK (action IN ('insert', 'update'))"
    )
    conn.execute("DELETE FROM customer_import_schema")

    db.migrate(conn, importer.contract, importer.settings.schema)

    assert conn.execute("SELECT DISTINCT source, active FROM customers").fetchall() == [("default", True)]
    day2 = run_import(importer, conn, export("day2.csv", without=(4,)), source="default", snapshot="full")
    assert (day2.status, day2.deactivated) == ("rejected", None)  # 10 % is more than the default 5 %
    day2 = run_import(
        importer,
        conn,
        export("day2.csv", without=(4,)),
        source="default",
        snapshot="full",
        allow_mass_deactivation=True,
    )
    assert (day2.status, day2.deactivated) == ("succeeded", 1)
    assert [a for _, _, a, *_ in history(conn, day2.id)] == ["deactivate"]
    assert importer.roll_back(conn, day2.id).reactivated == 1
    assert len(history(conn, first.id)) == 10
