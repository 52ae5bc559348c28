"""customer-import's core: load customer CSV files into PostgreSQL, one validated MERGE per file.

The package is in parts, each a layer that may use only the ones below it (`make lint` holds it to
that with import-linter, see pyproject.toml):

    page | local      the Imports page inside Airflow | the developer commands behind `make`
    pipeline         the steps of one import (claim, validate, stage, merge, publish)
    run_files        where a run's files are, the copy a step works on, the claim of a file
    report           errors.csv, summary.json, report.html of a run
    reading          bytes, encodings, the precise and columnar readers, the GX run
    sources          the CRM sources: profiles, freshness, alerts
    database         connection, schema, runs, staging, checks, MERGE, history, rollback
    settings         the CUSTOMER_IMPORT_* settings
    storage          the data folders, on local disk or object storage
    contract         the field contract, run options, issues, sample files

The DAGs (`dags/`) and the plugin (`plugins/`) only orchestrate and import from here.
"""
