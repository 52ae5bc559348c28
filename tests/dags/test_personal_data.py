"""Personal data stays out of what travels beyond the Imports page (issue 34): task logs, DAG run
notes and alerts say the line, the column, the rule and the value's length, never the value, and
never quote a line of the file. The page's reports, behind Airflow's access control, keep them."""

from __future__ import annotations

import json
import logging

import pytest

from tests.dags.test_customer_import_dag import database_url, run_dag  # noqa: F401

pytestmark = pytest.mark.dag

#: A file whose personal cells are all known, with a problem in some of them.
HEADER = "AccountReferenceID,Name,ContactEmail,ContactFirstName,ContactLastName,Phone"
FIRST = [  # stored by the first import
    "P-1,Acme Ltd,quentin.quist@example.org,Quentin,Quist,+44 20 7946 0101",
]
ROWS = [  # rejected by validate_file
    "P-2,Beta Ltd,rosalind.rumsfeld@@example.org,Rosalind,Rumsfeld,+44 20 7946 0102",  # not an email
    "P-3,Gamma Ltd,quintus@example.org,Quintus,Quarles,+44 20 7946 0103",
    "P-4,Delta Ltd,dorotea@example.org,Dorotea,Dahlberg,call Dorotea after 5",  # not a phone
    "P-5,Eps Ltd,eulalia@example.org,EulÃ¡lia,Ekström,+46 8 123 4567",  # garbled
    "P-6,Zeta Ltd,\u200bzoltan@example.org,Zoltan,Zabini,+36 1 234 5678",  # an invisible character
]
CHECKED = [  # rejected by load_staging, against the file and the stored customers
    "P-7,Eta Ltd,quentin.quist@example.org,Quirin,Quade,+44 20 7946 0107",  # P-1's email
    "P-8,Theta Ltd,tamsin@example.org,Tamsin,Thorne,+44 20 7946 0108",
    "P-9,Iota Ltd,tamsin@example.org,Tobias,Thorne,+44 20 7946 0109",  # P-8's email again
]
PERSONAL = [cell for row in FIRST + ROWS + CHECKED for cell in row.split(",")[2:]]


def travelled(tmp_path, capfd, caplog, run: dict) -> str:
    """Everything that left the page for this run: the task logs (under pytest, what the tasks
    print and log is captured rather than written to the run's log file), the DAG run note, the
    alert."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from customer_import.database.runs import ImportRun
    from customer_import.sources.alerts import run_alert

    with create_session() as session:
        note = session.scalars(select(DagRun).where(DagRun.run_id == run["airflow_run_id"])).one().note
    alert = run_alert(ImportRun(**{k: v for k, v in run.items() if k in ImportRun.__dataclass_fields__}))
    sent = json.dumps({"subject": alert.subject, "lines": alert.lines, "payload": alert.payload}, ensure_ascii=False)
    output = capfd.readouterr()
    logs = [(tmp_path / "airflow.log").read_text(encoding="utf-8"), output.out, output.err, caplog.text]
    assert "Import run" in "".join(logs), "the task logs are read"
    return "\n".join([*logs, note or "", sent])


def test_no_personal_value_reaches_a_log_a_note_or_an_alert(run_dag, tmp_path, capfd, caplog):  # noqa: F811
    files = []
    for name, rows in (("first.csv", FIRST), ("personal.csv", ROWS), ("checked.csv", CHECKED)):
        files.append(tmp_path / name)
        files[-1].write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    caplog.set_level(logging.INFO)

    outcomes = [run_dag(str(path)) for path in files]

    assert [(state, run["status"]) for state, run in outcomes] == [
        ("success", "succeeded"),
        ("failed", "rejected"),
        ("failed", "rejected"),
    ]
    seen = travelled(tmp_path, capfd, caplog, outcomes[1][1]) + travelled(tmp_path, capfd, caplog, outcomes[2][1])
    assert [value for value in PERSONAL if value in seen] == []
    # what is said instead: where, which column, which rule, how long
    assert "line 2, ContactEmail: the value (30 characters) is not a valid email address" in seen
    assert "line 4, Phone: the value (20 characters) is not a valid phone number" in seen
    assert "line 5, ContactFirstName: the value (8 characters) looks garbled" in seen
    assert "line 2, ContactEmail: the value (25 characters) already belongs to customer" in seen
    assert "line 4, ContactEmail: the value (18 characters) also appears on line 3" in seen
    run = outcomes[1][1]
    # the report, behind Airflow's access control, keeps the values to fix them by
    summary = (tmp_path / "data" / run["report_dir"] / "summary.json").read_text(encoding="utf-8")
    assert "rosalind.rumsfeld@@example.org" in summary and "call Dorotea after 5" in summary


@pytest.mark.parametrize(
    "fixture",
    [
        "no_header_row.csv",
        "utf8_with_one_windows1252_line.csv",
        "windows1252.csv",
        "closing_quote_lines_later.csv",
    ],
)
def test_a_rejected_files_quotes_of_its_lines_stay_on_its_page(run_dag, tmp_path, capfd, caplog, fixture):  # noqa: F811
    from customer_import.contract.fields import load_contract
    from tests.conftest import DATA

    caplog.set_level(logging.INFO)
    state, run = run_dag(fixture)

    assert (state, run["status"]) == ("failed", "rejected")
    summary = json.loads((tmp_path / "data" / run["report_dir"] / "summary.json").read_text(encoding="utf-8"))
    assert any("`" in issue["message"] for issue in summary["issues"]), "the page's message quotes the file"
    text = (DATA / fixture).read_bytes().decode("utf-8", errors="replace")
    headers = set(load_contract().headers)
    cells = {c.strip('" ') for line in text.splitlines() for c in line.split(",")} - headers
    seen = travelled(tmp_path, capfd, caplog, run)
    assert [c for c in cells if len(c) > 3 and "\ufffd" not in c and c in seen] == []
