"""The landing protocol: what counts as a file ready to import, and names that cannot escape."""

import os
import re
import time
from pathlib import Path

import pytest

from customer_import.storage.folders import Folders, UploadTooLarge, drop_into_landing
from customer_import.storage.names import UploadRefused, safe_upload_name

pytestmark = pytest.mark.unit


def drop(folders: Folders, name: str, age_seconds: float) -> None:
    path = folders.landing / name
    path.write_text("AccountReferenceID\nK-1\n")
    then = time.time() - age_seconds
    os.utime(path, (then, then))


def test_settled_files_are_listed_oldest_first(tmp_path):
    folders = Folders(tmp_path).create()
    drop(folders, "b.csv", 300)
    drop(folders, "a.csv", 200)
    drop(folders, "c.csv", 400)
    drop(folders, "still-writing.csv", 1)
    drop(folders, "upload.csv.part", 500)
    drop(folders, ".hidden.csv", 500)

    assert folders.waiting_files(settled_seconds=10) == ["c.csv", "b.csv", "a.csv"]
    assert folders.waiting_files() == ["c.csv", "b.csv", "a.csv", "still-writing.csv"]


def test_a_file_dropped_again_gets_a_new_arrival_id(tmp_path):
    folders = Folders(tmp_path).create()
    drop(folders, "my file (1).csv", 100)
    first = folders.arrival_id("my file (1).csv")
    drop(folders, "my file (1).csv", 50)

    assert first.startswith("my_file__1_.csv__")
    assert folders.arrival_id("my file (1).csv") != first


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b.csv", "..", ".hidden", "x\x00.csv", ""])
def test_names_that_would_leave_the_landing_folder_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match="is not a plain file name"):
        Folders(tmp_path).landing_file(name)


def test_arrival_times_are_distinct_and_in_arrival_order(tmp_path):
    folders = Folders(tmp_path).create()
    for name in ("x.csv", "y.csv", "z.csv"):
        drop(folders, name, 100)  # the same mtime, to the second
    os.utime(folders.landing / "z.csv", ns=(0, 200 * 10**9))
    names = folders.waiting_files()

    times = folders.arrival_times(names)

    assert names[0] == "z.csv"
    assert times == sorted(times) and len(set(times)) == 3


@pytest.mark.parametrize(
    ("sent", "landed"),
    [
        ("customers.csv", "customers.csv"),
        ("../../etc/passwd.csv", "passwd.csv"),
        ("C:\\Users\\me\\Desktop\\export.CSV", "export.csv"),
        (".hidden.csv", "hidden.csv"),
        ("my customers (v2).csv", "my_customers_v2.csv"),
        ("Kunden-Müller.csv", "Kunden-Müller.csv"),
        ("..csv", "upload.csv"),
        ("x" * 300 + ".csv", "x" * 116 + ".csv"),
    ],
)
def test_an_uploaded_file_gets_a_plain_name_in_landing(sent, landed):
    assert safe_upload_name(sent) == landed


@pytest.mark.parametrize("sent", ["customers.xlsx", "customers", "", "customers.csv/"])
def test_only_csv_files_are_taken(sent):
    with pytest.raises(UploadRefused, match=r"not a \.csv file"):
        safe_upload_name(sent)


def test_an_upload_never_replaces_a_waiting_file(tmp_path):
    folders = Folders(tmp_path).create()
    names = [folders.receive_upload(iter([b"AccountReferenceID\n", b"K-%d\n" % n]), "c.csv", 100)[0] for n in range(3)]

    assert names == ["c.csv", "c-2.csv", "c-3.csv"]
    assert sorted(p.name for p in folders.landing.iterdir()) == ["c-2.csv", "c-3.csv", "c.csv"]
    assert (folders.landing / "c-3.csv").read_bytes() == b"AccountReferenceID\nK-2\n"


def test_an_upload_over_the_limit_leaves_nothing_behind(tmp_path):
    folders = Folders(tmp_path).create()

    with pytest.raises(UploadTooLarge, match="larger than the upload limit"):
        folders.receive_upload(iter([b"x" * 60, b"x" * 60]), "big.csv", 100)
    assert list(folders.landing.iterdir()) == []


@pytest.mark.parametrize(
    ("url", "data_dir", "data_url"),
    [
        ("", "default", ""),  # the data folder (CUSTOMER_IMPORT_DATA_DIR)
        ("file:///srv/crm-data", "/srv/crm-data", ""),
        ("/srv/crm-data", "/srv/crm-data", ""),  # a plain path is the data folder too
        ("s3://customer_data@bucket/prefix", "default", "s3://customer_data@bucket/prefix"),
    ],
)
def test_the_data_url_names_the_store_or_the_data_folder(monkeypatch, tmp_path, url, data_dir, data_url):
    from customer_import.settings import Settings

    monkeypatch.setenv("CUSTOMER_IMPORT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CUSTOMER_IMPORT_DATA_URL", url)
    settings = Settings.from_env()

    assert settings.data_dir == (tmp_path if data_dir == "default" else Path(data_dir))
    assert (settings.data_url, settings.store.remote) == (data_url, bool(data_url))
    assert settings.store.location("reports/1/errors.csv") == (
        f"{data_url}/reports/1/errors.csv" if data_url else str(settings.data_dir / "reports/1/errors.csv")
    )


HOSTILE_NAMES = [
    "x..y.csv",
    "a_2f.._2fb.csv",
    "x...csv",
    "M%FCller.csv",
    "back%5Cslash.csv",
    "new%0Aline.csv",
    "é (1).csv",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_run_id_made_from_any_file_name_is_one_airflow_takes(name, tmp_path):
    folders = Folders(tmp_path).create()
    (folders.landing / name).write_text("AccountReferenceID\nK-1\n")

    [handover] = folders.handovers([name])

    run_id = handover["trigger_run_id"]
    assert re.fullmatch(r"[A-Za-z0-9_.~:+-]+", run_id) and ".." not in run_id  # Airflow's default rule
    assert handover["conf"]["file"] == name


def test_a_name_taken_meanwhile_is_never_replaced(tmp_path):
    folders = Folders(tmp_path).create()
    (folders.landing / "taken.csv").write_text("written meanwhile")
    source = tmp_path / "taken.csv"
    source.write_text("ours")

    with pytest.raises(FileExistsError):
        folders.claim_name(folders.landing / "taken.csv")
    with pytest.raises(FileExistsError, match="already waiting"):
        drop_into_landing(source, folders)

    assert (folders.landing / "taken.csv").read_text() == "written meanwhile"
    assert sorted(p.name for p in folders.landing.iterdir()) == ["taken.csv"]  # no partial left behind
