"""`make bench`'s figures of the fix grid: a rejected file of 100,000 rows, 5,000 of them flagged.

Measured in this process, as the Imports page's API server runs it (`Fixer`, on a connection of
its own): how long until the grid's first page can be shown the first time the draft is opened
(the rows with issues stored: the rest loads behind it), a page of flagged rows, and the check of
one changed cell (the row by the import's rules, and the rows sharing its key or email against the
database). The floor is reading the same file with Python's csv module, in the same run.
"""

from __future__ import annotations

import csv
import shutil
import time
from pathlib import Path

import psycopg

from customer_import.database import db, drafts
from customer_import.storage.folders import drop_into_landing

HEADER = "AccountReferenceID,Name,ContactEmail,Country,Seats,CustomerSince\n"


def write_flagged(path: Path, rows: int, flagged_every: int, prefix: str = "GRID") -> Path:
    """`rows` customers, every `flagged_every`-th with an email that is not one (each its own)."""
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER)
        for i in range(rows):
            email = f"bad-email-{i}" if i % flagged_every == 0 else f"u{i}@example.com"
            out.write(f"{prefix}-{i},Customer {i},{email},DE,5,2024-01-31\n")
    return path


def measure(url: str, bench_dir: Path, rows: int = 100_000, flagged_every: int = 20, repeat: int = 3) -> None:
    from customer_import.fixing import Fixer
    from customer_import.local.bench import bench_importer, fresh_schema

    schema = "bench_grid"
    importer = bench_importer(schema)
    shutil.rmtree(importer.settings.data_dir, ignore_errors=True)
    path = write_flagged(bench_dir / f"grid-{rows}.csv", rows, flagged_every)
    started = time.perf_counter()
    with path.open(encoding="utf-8", newline="") as text:
        sum(1 for _ in csv.reader(text))
    floor = time.perf_counter() - started

    def connect() -> psycopg.Connection:  # (the page's own connections: one for the draft's loader)
        return db.use_schema(db.connect(url), schema)

    fixer = Fixer(importer.settings, importer.contract)
    fixer.warm_up()  # a page that has shown a grid before: GX imported
    opened, page, checks = [], [], []
    with fresh_schema(url, schema) as conn:
        db.use_schema(conn, schema)
        for attempt in range(repeat):
            own = write_flagged(bench_dir / f"grid-{rows}-{attempt}.csv", rows, flagged_every, f"GRID{attempt}")
            run = importer.import_file(conn, drop_into_landing(own, importer.folders))
            started = time.perf_counter()
            fixer.open(conn, run, "bench", connect=connect)
            first, flagged = drafts.page(conn, run.id, flagged_only=True, offset=0, limit=50)
            opened.append(time.perf_counter() - started)
            started = time.perf_counter()
            drafts.page(conn, run.id, flagged_only=True, offset=2500, limit=50)
            page.append(time.perf_counter() - started)
            fixer.edit(conn, run, [(first[0].line, 2, "loaded@example.com")], "bench")  # waits for the load
            for value in ("still not an email", f"fixed-{attempt}@example.com"):
                started = time.perf_counter()
                fixer.edit(conn, run, [(first[1].line, 2, value)], "bench")
                checks.append(time.perf_counter() - started)
    print(
        f"\nFix grid: {rows:,} rows, {flagged:,} flagged (each the fastest of {repeat}; floor: reading the file"
        f" with the csv module, {floor:.2f} s)\n"
        f"  first page, the first time the draft is opened:  {min(opened):6.2f} s"
        f"  ({min(opened) / floor:5.1f} × the floor)\n"
        f"  a page of flagged rows, draft open:             {min(page):6.3f} s\n"
        f"  a changed cell checked again (row and database): {min(checks):6.3f} s  (slowest {max(checks):.3f} s)"
    )
