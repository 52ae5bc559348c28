"""The Imports page under the security review's probes (issue 13), through Airflow's own API server app.

The browser half of the CSRF probe (an auto-submitting form on another origin) is in test_browser.py.
"""

from __future__ import annotations

import os
import re

import pytest

from tests.conftest import DATA
from tests.ui.test_imports_page import PASSWORDS, admin, client, page_env, token, two_imports  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.ui]
CSV = (DATA / "valid_customers.csv").read_bytes()


@pytest.fixture
def session_cookie(client):  # noqa: F811
    """The browser's way in: Airflow's `_token` session cookie instead of a bearer header."""
    response = client.post("/auth/token", json={"username": "admin", "password": PASSWORDS["admin"]})
    client.cookies.set("_token", response.json()["access_token"])
    yield
    client.cookies.clear()


def form_token(client) -> str:  # noqa: F811
    return re.search(r'name="csrf_token" value="([0-9a-f]+)"', client.get("/customer-import/").text).group(1)


def landed(page_env) -> list[str]:  # noqa: F811
    landing = page_env.data_dir / "landing"
    return sorted(p.name for p in landing.iterdir() if not p.name.startswith(".")) if landing.exists() else []


def test_a_cross_site_upload_with_the_session_cookie_is_refused(client, page_env, session_cookie):  # noqa: F811
    evil = client.post(
        "/customer-import/upload",
        headers={"Origin": "http://evil.example"},
        files={"file": ("x.csv", CSV, "text/csv")},
        follow_redirects=False,
    )
    assert evil.status_code == 403 and "sent from another site (http://evil.example)" in evil.text

    no_token = client.post(
        "/customer-import/upload",
        headers={"Origin": "http://testserver"},
        files={"file": ("x.csv", CSV, "text/csv")},
        follow_redirects=False,
    )
    assert no_token.status_code == 403 and "missing its token" in no_token.text
    assert landed(page_env) == []

    same_site = client.post(
        "/customer-import/upload",
        headers={"Origin": "http://testserver"},
        data={"csrf_token": form_token(client)},
        files={"file": ("x.csv", CSV, "text/csv")},
        follow_redirects=False,
    )
    assert same_site.status_code == 303
    assert landed(page_env) == ["x.csv"]


@pytest.mark.parametrize(
    "authorization",
    ["Basic YWRtaW46YWRtaW4=", "Negotiate YIIGhgYGKwYBBQUCoIIGejCCBnag", "NTLM TlRMTVNTUAABAAAA", "Bearer", "Bearer  "],
)
@pytest.mark.usefixtures("session_cookie")
def test_a_proxys_authorization_header_leaves_the_guard_on(authorization, client, page_env):  # noqa: F811
    """A proxy adds `Authorization: Basic/Negotiate/NTLM` to every request, cross-site ones too; Airflow then
    still takes the identity from the cookie (only a non-empty Bearer credential replaces it), so must the guard."""
    for origin, refused in (
        ("http://evil.example", "sent from another site"),
        ("http://testserver", "missing its token"),
    ):
        sent = client.post(
            "/customer-import/upload",
            headers={"Origin": origin, "Authorization": authorization},
            files={"file": ("x.csv", CSV, "text/csv")},
            follow_redirects=False,
        )
        assert sent.status_code == 403 and refused in sent.text, origin
    assert landed(page_env) == []


def test_an_api_client_with_a_bearer_token_needs_no_form_token(client, admin, page_env):  # noqa: F811
    sent = client.post(
        "/customer-import/upload", headers=admin, files={"file": ("y.csv", CSV, "text/csv")}, follow_redirects=False
    )
    assert sent.status_code == 303 and landed(page_env) == ["y.csv"]


def test_a_chunked_upload_over_the_limit_is_refused_while_it_streams(page_env, monkeypatch):  # noqa: F811
    """Driven at the ASGI level (the test client reads a whole body before the app sees it), so that
    what counts is how much of the body the page itself reads before it answers 413."""
    import asyncio

    import psycopg

    from customer_import.page.app import create_app

    monkeypatch.setenv("CUSTOMER_IMPORT_UPLOAD_MAX_MB", "1")
    app = create_app(
        read=[],
        upload=[],
        start_import=lambda handover, request: None,
        secret=b"k",
        connect=lambda: psycopg.connect(os.environ["AIRFLOW_CONN_CUSTOMER_DB"], autocommit=True),
    )
    boundary, chunks_read, sent = "xyzzy", 0, []
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()

    async def receive() -> dict:  # 50 MiB, chunked: no Content-Length
        nonlocal chunks_read
        chunks_read += 1
        return {"type": "http.request", "body": head if chunks_read == 1 else b"x" * (1 << 20), "more_body": True}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/upload",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"content-type", f"multipart/form-data; boundary={boundary}".encode()),
            (b"transfer-encoding", b"chunked"),
            (b"host", b"testserver"),
        ],
        "scheme": "http",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1),
        "http_version": "1.1",
    }
    asyncio.run(app(scope, receive, send))

    assert sent[0]["status"] == 413
    assert b"larger than the upload limit of 1 MiB" in b"".join(m.get("body", b"") for m in sent[1:])
    assert chunks_read <= 3, f"read {chunks_read} MiB of a body that could not fit in 1 MiB"
    assert landed(page_env) == []


def test_an_upload_name_is_limited_in_bytes(client, admin, page_env):  # noqa: F811
    sent = client.post(
        "/customer-import/upload",
        headers=admin,
        files={"file": ("客" * 80 + ".csv", CSV, "text/csv")},
        follow_redirects=False,
    )
    assert sent.status_code == 303
    [name] = landed(page_env)
    assert name.endswith(".csv") and len(name.encode()) <= 120


def test_bad_query_parameters_are_a_400_class_answer_and_the_notice_is_only_the_servers(client, admin, two_imports):  # noqa: F811
    assert client.get("/customer-import/?page=99999999999999999999999", headers=admin).status_code == 422
    assert client.get("/customer-import/?page=abc", headers=admin).status_code == 422
    spoofed = client.get("/customer-import/?uploaded=Your+password+expired:+call+555-0100", headers=admin).text
    assert "call 555-0100" not in spoofed

    sent = client.post(
        "/customer-import/upload", headers=admin, files={"file": ("z.csv", CSV, "text/csv")}, follow_redirects=False
    )
    assert "Uploaded z.csv" in client.get(sent.headers["location"], headers=admin).text
    tampered = re.sub(r"uploaded=[^&]+", "uploaded=other.csv", sent.headers["location"])
    assert "Uploaded" not in client.get(tampered, headers=admin).text


def test_every_response_carries_the_security_headers_and_report_html_is_sandboxed(client, admin, two_imports):  # noqa: F811
    _, bad = two_imports
    for path in [
        "/customer-import/",
        f"/customer-import/runs/{bad.id}",
        f"/customer-import/runs/{bad.id}/errors.csv",
        "/customer-import/page.css",
    ]:
        headers = client.get(path, headers=admin).headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert "frame-ancestors 'self'" in headers["content-security-policy"], path
        assert "'unsafe-inline'" not in headers["content-security-policy"], path
        assert headers["cache-control"] == "no-store", path
    report = client.get(f"/customer-import/runs/{bad.id}/report.html", headers=admin).headers
    assert report["content-security-policy"].startswith("sandbox;")


def test_odd_landing_entries_neither_break_the_page_nor_are_read(client, admin, page_env, tmp_path):  # noqa: F811
    landing = page_env.data_dir / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("password\n")
    (landing / "x.csv").symlink_to(secret)
    (landing / "back\\slash.csv").write_bytes(CSV)
    with open(os.path.join(os.fsencode(landing), b"M\xfcller.csv"), "wb") as out:
        out.write(CSV)

    page = client.get("/customer-import/", headers=admin)

    assert page.status_code == 200
    assert "<code>back%5Cslash.csv</code>" in page.text and "<code>M%FCller.csv</code>" in page.text
    assert re.search(r"<code>\d+T\d+__x.csv</code> · not imported: a symbolic link", page.text)


def test_the_login_redirect_never_takes_its_host_from_the_request(client, page_env):  # noqa: F811
    sent = client.get(
        "/customer-import/runs/1?x=1",
        headers={"Accept": "text/html", "Host": "evil.example"},
        follow_redirects=False,
    )

    assert sent.status_code == 303
    location = sent.headers["location"]
    assert location.startswith("/auth/login?next=") and "evil.example" not in location
    assert "%2Fcustomer-import%2Fruns%2F1%3Fx%3D1" in location or "/customer-import/runs/1?x=1" in location


def test_a_huge_source_name_is_not_echoed_whole(client, admin, page_env):  # noqa: F811
    sent = client.post(
        "/customer-import/upload",
        headers=admin,
        data={"source": "s" * 100_000},
        files={"file": ("z.csv", CSV, "text/csv")},
        follow_redirects=False,
    )

    assert sent.status_code == 400 and "There is no source `sssss" in sent.text
    assert "s" * 100 not in sent.text and len(sent.text) < 50_000
    assert landed(page_env) == []
