"""Hostile input cannot hurt anyone: links in landing, odd names, and files built to exhaust the machine.

Each test reproduces a probe of the security review first (what it did before) and then checks
what happens now.
"""

from __future__ import annotations

import json
import os

import pytest

from customer_import.database.runs import ImportOptions
from tests.conftest import DATA

pytestmark = pytest.mark.integration

SECRET = "admin:s3cret-password\n"


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "simple_auth_manager_passwords.json"
    path.write_text(SECRET)
    return path


def summary(importer, run) -> dict:
    return json.loads((importer.folders.reports(run.id) / "summary.json").read_text())


def everything_written(importer) -> str:
    """Every report and kept file the import wrote, as text: where a leaked secret would show (quarantine/
    holds the entries set aside themselves: a hard link there is the secret's own inode, never read)."""
    root = importer.settings.data_dir
    return "".join(
        p.read_text(errors="replace")
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and importer.folders.quarantine not in p.parents
    )


@pytest.mark.parametrize("make", ["symlink", "hard link", "fifo"])
def test_a_link_or_pipe_in_landing_is_set_aside_and_never_read(make, importer, land, conn, secret):
    folders = importer.folders.create()
    entry = folders.landing / "x.csv"
    {
        "symlink": lambda: entry.symlink_to(secret),
        "hard link": lambda: os.link(secret, entry),
        "fifo": lambda: os.mkfifo(entry),
    }[make]()
    good = land("valid_customers.csv")

    assert folders.waiting_files() == [good]  # the watch hands over only the regular file

    assert not os.path.lexists(entry)
    [(name, what, _)] = folders.set_aside_files()
    assert name.endswith("__x.csv") and what.startswith(
        {"symlink": "a symbolic link", "hard link": "a file with 2", "fifo": "a named pipe"}[make]
    )
    assert secret.read_text() == SECRET  # a link's target is never touched
    assert importer.import_file(conn, good).status == "succeeded"
    assert SECRET.strip() not in everything_written(importer)


def test_a_link_swapped_in_before_the_claim_is_refused(importer, conn, secret):
    folders = importer.folders.create()
    (folders.landing / "x.csv").symlink_to(secret)  # named by a run, after the watch looked

    with pytest.raises(ValueError, match=r"x\.csv is a symbolic link, not a regular file: it is not read; it was"):
        importer.claim_file(conn, "x.csv", ImportOptions(), "customer_import", "manual__x")

    assert SECRET.strip() not in everything_written(importer)
    assert [what for _, what, _ in folders.set_aside_files()] == ["a symbolic link"]


def test_fixing_a_rejected_file_in_place_cannot_write_or_read_through_a_link(importer, land, conn, secret):
    run_id = importer.claim_file(conn, land("one_bad_email.csv"), ImportOptions(), "customer_import", "manual__fix")
    for step in (importer.validate_file, importer.load_staging, importer.merge_customers):
        step(conn, run_id)
    kept = importer.settings.data_dir / importer.publish_report(conn, run_id).file_path
    kept.unlink()
    kept.symlink_to(secret)  # "fixed in place" by someone who may write the data folder

    with pytest.raises(ValueError, match="is a symbolic link"):
        importer.claim_file(conn, "one_bad_email.csv", ImportOptions(), "customer_import", "manual__fix")
    assert secret.read_text() == SECRET
    assert SECRET.strip() not in everything_written(importer)


DATA_FOLDERS = [
    "landing",
    "landing/salesforce",
    "processing",
    "archive",
    "rejected",
    "reports",
    "quarantine",
    "processing/1",
    "archive/1",
    "rejected/1",
    "reports/1",
]


@pytest.mark.parametrize("folder", DATA_FOLDERS)
def test_a_data_folder_that_is_a_link_is_set_aside_and_never_followed(folder, importer, land, conn, tmp_path):
    outside = tmp_path / "airflow_home"  # what a link planted in the data folder could point to
    outside.mkdir()
    (outside / "airflow.cfg").write_text(SECRET)
    (outside / "accounts.csv").write_text("AccountReferenceID,Name\nO-1,From outside\n")
    root = importer.settings.data_dir
    (root / folder).parent.mkdir(parents=True, exist_ok=True)
    (root / folder).symlink_to(outside, target_is_directory=True)
    if folder == "quarantine":  # something to set aside, into it
        (root / "landing").mkdir()
        (root / "landing" / "x.csv").symlink_to(outside / "airflow.cfg")

    handed = importer.sources.handovers(importer.store.root, 0)  # what the watch sees
    run = importer.import_file(
        conn, land("one_bad_email.csv" if folder.startswith("rejected") else "valid_customers.csv")
    )

    assert handed == [] and run.status == ("rejected" if folder.startswith("rejected") else "succeeded"), run.outcome
    assert sorted(p.name for p in outside.iterdir()) == ["accounts.csv", "airflow.cfg"]  # nothing moved out, or in
    assert (outside / "airflow.cfg").read_text() == SECRET
    assert not (root / folder).is_symlink() and "O-1" not in {
        k for (k,) in conn.execute("SELECT account_reference_id FROM customers")
    }
    set_aside = importer.folders.set_aside_files()
    if folder == "quarantine":
        assert [what for _, what, _ in set_aside] == ["a symbolic link"]  # x.csv, in a real quarantine/
        assert [p.name.startswith("quarantine.not-a-folder.") for p in root.iterdir() if p.is_symlink()] == [True]
    else:
        assert [(name.split("__")[1], what) for name, what, _ in set_aside] == [
            (folder.split("/")[-1], "a symbolic link")
        ]
    assert SECRET.strip() not in everything_written(importer)


CODECS_THAT_CRASHED = [  # (encoding, file): what the security probe sent, each took the import slot for minutes
    ("utf_7", b"AccountReferenceID,Name\nK-1,+2AA-\n"),  # a lone surrogate
    ("unicode_escape", b"AccountReferenceID,Name\nK-1,\\ud800\n"),  # a lone surrogate
    ("undefined", b"AccountReferenceID,Name\nK-1,x\n"),  # refuses everything, with a plain UnicodeError
    ("idna", b"AccountReferenceID,Name\nK-1,x\n"),  # no errors="replace"
    ("punycode", b"AccountReferenceID,Name\nK-1,x\n"),
    ("utf-16", b"AccountReferenceID,Name\nK-1,x\n"),  # no byte-order mark: "does not start with BOM"
]


@pytest.mark.parametrize(("encoding", "data"), CODECS_THAT_CRASHED, ids=[c for c, _ in CODECS_THAT_CRASHED])
def test_a_codec_that_cannot_read_the_file_rejects_it_and_finishes_the_run(
    encoding, data, importer, land, conn, tmp_path
):
    path = tmp_path / "codec.csv"
    path.write_bytes(data)

    # the options as they were taken before (the form and the params now refuse the codecs no file is saved in)
    run = importer.import_file(conn, land(path), ImportOptions(encoding=encoding))

    assert (run.status, run.file_rejected) == ("rejected", True) and run.finished_at is not None
    issues = summary(importer, run)["issues"]
    assert [i["code"] for i in issues] == ["wrong_encoding"] and f"cannot be read as {encoding}" in issues[0]["message"]
    assert (importer.folders.rejected(run.id) / "codec.csv").read_bytes() == data


@pytest.mark.parametrize("encoding", ["idna", "punycode", "undefined", "unicode_escape", "raw-unicode-escape"])
def test_the_options_refuse_codecs_that_are_no_files_encoding(encoding):
    with pytest.raises(ValueError, match=r"is not the character set of a file .* use one such as utf-8, windows-1252"):
        ImportOptions.from_params({"encoding": encoding})


@pytest.mark.parametrize("name", ["no_header_row.csv", "windows1252.csv", "one_bad_email.csv"])
def test_an_alert_quotes_nothing_of_the_file(name, importer, land, conn, airflow_ready):
    from customer_import.sources.alerts import run_alert  # reads Airflow's configuration: its database set up first

    run = importer.import_file(conn, land(name))
    alert = run_alert(run)

    assert run.status == "rejected"
    sent = json.dumps(alert.payload, ensure_ascii=False) + alert.subject + "".join(alert.lines)
    written = (DATA / name).read_bytes().decode("utf-8", "replace").splitlines()  # every cell, the header's too
    for cell in {c for line in written for c in line.split(",") if len(c) > 2}:
        assert cell not in sent, f"{cell!r} travels in the alert"


def test_names_that_cannot_be_carried_are_renamed_and_stop_nothing(importer, land, conn, tmp_path):
    folders = importer.folders.create()
    data = tmp_path / "c.csv"
    data.write_text("AccountReferenceID,Name\nN-1,Latin-1 name\n")
    latin1 = os.path.join(os.fsencode(folders.landing), b"M\xfcller.csv")  # not UTF-8: a Latin-1 file system
    with open(latin1, "wb") as out:
        out.write(data.read_bytes())
    (folders.landing / "back\\slash.csv").write_text("AccountReferenceID,Name\nN-2,Backslash\n")
    (folders.landing / "new\nline.csv").write_text("AccountReferenceID,Name\nN-3,Line break\n")
    plain = land("valid_customers.csv")

    waiting = folders.waiting_files()

    assert sorted(waiting) == sorted(["M%FCller.csv", "back%5Cslash.csv", "new%0Aline.csv", plain])
    for name in waiting:
        assert importer.import_file(conn, name).status == "succeeded"
    assert conn.execute("SELECT count(*) FROM customers").fetchone()[0] == 6


def wide_header(path, columns: int, name: str = "Extra{}") -> None:
    with path.open("w") as out:
        out.write("AccountReferenceID," + ",".join(name.format(n) for n in range(columns - 1)) + "\nK-1\n")


@pytest.mark.parametrize(
    ("build", "code", "says"),
    [
        (lambda p: wide_header(p, 1_000_000), "line_too_long", "Line 1 is longer than 4,194,304 characters"),
        (
            lambda p: wide_header(p, 1_000_000, ""),
            "too_many_columns",
            "The header has 1,000,000 columns; a customer file has at most 100",
        ),
        (
            lambda p: p.write_text("AccountReferenceID,Name\n" + "," * 2_000_000 + "\n"),
            "too_many_columns",
            "Line 2 has 2,000,001 columns; a customer file has at most 100",
        ),
        (
            lambda p: p.write_text("AccountReferenceID,Name\nK-1," + "x" * 2_000_000 + "\n"),
            "field_too_long",
            "Line 2 holds a value of more than 1,048,576 characters",
        ),
    ],
)
def test_files_built_to_exhaust_the_machine_are_refused_whole(
    build, code, says, importer, land, conn, tmp_path, preloaded_one
):
    hostile = tmp_path / "hostile.csv"
    build(hostile)

    run = importer.import_file(conn, land(hostile))

    assert (run.status, run.file_rejected) == ("rejected", True)
    issues = summary(importer, run)["issues"]
    assert [i["code"] for i in issues] == [code]
    assert says in issues[0]["message"]
    assert conn.execute("SELECT account_reference_id FROM customers").fetchall() == [("P-1",)]
    errors_csv = importer.folders.reports(run.id) / "errors.csv"
    assert errors_csv.stat().st_size <= 2 * hostile.stat().st_size + 4096  # never a multiple of the input


@pytest.fixture
def preloaded_one(importer, land, conn, tmp_path):
    seed = tmp_path / "seed.csv"
    seed.write_text("AccountReferenceID,Name\nP-1,Kept\n")
    assert importer.import_file(conn, land(seed)).status == "succeeded"
