"""Erasure of one customer on real PostgreSQL (18 and 15), local disk and S3: afterwards no byte of
its values is anywhere under the data folder or in the database, every other row is as it was,
and a later import of the key creates it anew."""

from __future__ import annotations

from pathlib import Path

import pytest

from customer_import.contract.options import ImportOptions
from customer_import.erasure import NothingToForget, forget, key_hash
from customer_import.storage.folders import drop_into_landing
from customer_import.storage.store import object_root
from tests.integration.test_object_storage import worker

pytestmark = pytest.mark.integration

HEADER = "AccountReferenceID,Name,Description,ContactEmail,ContactFirstName,ContactLastName,Phone\n"
GAMMA = (  # the customer to forget: a record over two lines
    'C-3,Gamma GmbH,"Renews in March\nafter the review",gunilla.gamma@gamma.example,Gunilla,Gammelgaard,'
    "+49 30 3333 3333\n"
)
BASE = (
    HEADER
    + "C-1,Acme Ltd,,anna@acme.example,Anna,Berg,+46 8 111 1111\n"
    + GAMMA
    + "C-4,Delta AB,,dora@delta.example,Dora,Dahl,+45 4444 4444\n"
)
UPDATE = "AccountReferenceID,Phone\nC-1,+46 8 111 1111\nC-3,+49 30 3333 9999\n"
REJECTED = (
    "AccountReferenceID,Name,ContactEmail\nC-3,Gamma GmbH,gunilla.gamma@gamma.example\nC-5,Epsilon,not-an-email\n"
)
SEMICOLONS = (
    "AccountReferenceID;Name;ContactEmail\nC-3;Gamma GmbH;gunilla.gamma@gamma.example\nC-6;Zeta;zeta@zeta.example\n"
)
DRY = HEADER + "C-3,Gamma Holding,,gunilla.gamma@gamma.example,Gunilla,Gammelgaard,+49 30 3333 9999\n"
GAMMA_VALUES = [
    "C-3",
    "Gamma GmbH",
    "Gamma Holding",
    "Renews in March",
    "gunilla.gamma@gamma.example",
    "Gunilla",
    "Gammelgaard",
    "+49 30 3333 3333",
    "+49 30 3333 9999",
]


def files_of(tmp_path, **texts: str) -> dict[str, Path]:
    made = {}
    for name, text in texts.items():
        made[name] = tmp_path / "exports" / f"{name}.csv"
        made[name].parent.mkdir(exist_ok=True)
        made[name].write_bytes(text.encode("utf-8"))
    return made


def imports(importer, conn, exports: dict[str, Path]) -> dict[str, object]:
    options = {"dry": ImportOptions(dry_run=True, force=True)}
    return {
        name: importer.import_file(conn, drop_into_landing(path, importer.folders), options.get(name))
        for name, path in exports.items()
    }


def database_text(conn) -> str:
    """Every row of every table of the schema, as text."""
    tables = [
        t
        for (t,) in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            " AND table_type = 'BASE TABLE'"
        )
    ]
    return "\n".join(str(row) for t in tables for row in conn.execute(f'SELECT to_jsonb(t)::text FROM "{t}" t'))


def found_in(texts: dict[str, bytes]) -> list[tuple[str, str]]:
    return [(name, value) for name, data in texts.items() for value in GAMMA_VALUES if value.encode() in data]


def test_a_forgotten_customer_is_nowhere_and_every_other_row_is_as_it_was(importer, conn, tmp_path):
    exports = files_of(tmp_path, base=BASE, update=UPDATE, rejected=REJECTED, semicolons=SEMICOLONS, dry=DRY)
    done = imports(importer, conn, exports)
    assert [r.status for r in done.values()] == ["succeeded", "succeeded", "rejected", "rejected", "dry_run"]
    data = importer.settings.data_dir
    everything = {str(p.relative_to(data)): p.read_bytes() for p in data.rglob("*") if p.is_file()}
    assert {name.split("/")[0] for name, _ in found_in(everything)} == {"archive", "rejected", "reports"}

    erasure = forget(conn, importer.settings, importer.contract, "C-3", "dpo@example.com")

    assert (erasure.customers, erasure.history_rows) == (1, 2)  # its insert and its update
    after = {str(p.relative_to(data)): p.read_bytes() for p in data.rglob("*") if p.is_file()}
    assert found_in(after) == []
    assert found_in({"database": database_text(conn).encode()}) == []
    assert sorted(after) == sorted(everything), "every file is kept, rewritten"
    assert set(erasure.files) == {name for name in after if after[name] != everything[name]}
    base = done["base"]
    assert after[base.file_path] == BASE.replace(GAMMA, "").encode(), "the other rows byte for byte"
    semicolons = done["semicolons"]
    assert (
        after[semicolons.file_path] == SEMICOLONS.replace("C-3;Gamma GmbH;gunilla.gamma@gamma.example\n", "").encode()
    )
    errors = after[f"{done['rejected'].report_dir}/errors.csv"].decode("utf-8-sig")
    assert "C-5,Epsilon,not-an-email" in errors and "C-3" not in errors
    assert conn.execute("SELECT account_reference_id FROM customers ORDER BY 1").fetchall() == [("C-1",), ("C-4",)]
    recorded = conn.execute("SELECT erased_by, key_sha256, customers, files FROM erasures").fetchall()
    assert recorded == [("dpo@example.com", key_hash("C-3"), 1, len(erasure.files))]

    again = importer.import_file(conn, drop_into_landing(exports["base"], importer.folders), ImportOptions(force=True))
    assert (again.status, again.inserted) == ("succeeded", 1)  # C-3, anew


def test_forgetting_a_key_found_nowhere_changes_nothing(importer, conn, tmp_path):
    done = imports(importer, conn, files_of(tmp_path, base=BASE))
    data = importer.settings.data_dir
    before = {str(p): p.read_bytes() for p in data.rglob("*") if p.is_file()}

    with pytest.raises(NothingToForget, match="No customer, history or kept file holds the key 'C-9'"):
        forget(conn, importer.settings, importer.contract, "C-9", "dpo@example.com")

    assert {str(p): p.read_bytes() for p in data.rglob("*") if p.is_file()} == before
    assert conn.execute("SELECT count(*) FROM erasures").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM customers").fetchone() == (3,) and done["base"].inserted == 3


def test_a_forgotten_customer_is_erased_from_object_storage(importer, conn, tmp_path, s3_url):
    one = worker(importer, s3_url, "worker-1")
    exports = files_of(tmp_path, base=BASE, rejected=REJECTED)
    imports(one, conn, exports)
    root = object_root(s3_url)
    stored = {key: root.fs.cat_file(key) for key in root.fs.find(root.path, refresh=True)}
    assert found_in(stored) != []

    forget(conn, one.settings, one.contract, "C-3", "dpo@example.com")

    root.fs.invalidate_cache()
    after = {key: root.fs.cat_file(key) for key in root.fs.find(root.path, refresh=True)}
    assert sorted(after) == sorted(stored) and found_in(after) == []
    assert not any(p.is_file() for p in one.settings.data_dir.rglob("*")), "the worker keeps no copy"
