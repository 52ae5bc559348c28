-- Generated from include/customer_import/contract.yaml and sql/schema.sql by `make expectations`: do not edit.

-- The import bookkeeping tables. Idempotent: run before every import, under an advisory lock.
-- The customers table itself is derived from the field contract (see db.py).

-- The status box: one row per file, from the moment it is claimed.
CREATE TABLE IF NOT EXISTS import_runs (
    id               bigserial PRIMARY KEY,
    file_name        text        NOT NULL,
    file_path        text,                   -- where the file rests now (processing/, archive/, rejected/)
    sha256           char(64),
    size_bytes       bigint,
    received_at      timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    mode             text        NOT NULL CHECK (mode IN ('upsert', 'insert_only', 'update_only')),
    on_error         text        NOT NULL CHECK (on_error IN ('reject_file', 'skip_invalid_rows')),
    max_error_rate   double precision NOT NULL DEFAULT 0,
    dry_run          boolean     NOT NULL DEFAULT false,
    force            boolean     NOT NULL DEFAULT false,
    dag_id           text,
    airflow_run_id   text,
    status           text        NOT NULL DEFAULT 'running' CHECK (status IN (
                         'running', 'succeeded', 'partial', 'rejected', 'failed',
                         'dry_run', 'duplicate', 'rolled_back')),
    message          text,                   -- the one-line outcome, in plain words
    file_rejected    boolean     NOT NULL DEFAULT false,
    rows_total       integer,
    rows_valid       integer,
    rows_rejected    integer,
    inserted         integer,
    updated          integer,
    unchanged        integer,
    merged_at        timestamptz,            -- set in the merge transaction: a rerun never merges twice
    report_dir       text,
    UNIQUE (dag_id, airflow_run_id)
);
CREATE INDEX IF NOT EXISTS import_runs_sha256_idx ON import_runs (sha256);
-- Rows COPYed into the run's staging table. Staging is UNLOGGED, and crash recovery empties
-- unlogged tables: the merge compares this count with the table and stages again if they differ.
ALTER TABLE import_runs ADD COLUMN IF NOT EXISTS rows_staged integer;
-- Where a run in progress stands: its stage, since when, and rows done of about how many.
ALTER TABLE import_runs ADD COLUMN IF NOT EXISTS stage text;
ALTER TABLE import_runs ADD COLUMN IF NOT EXISTS stage_started_at timestamptz;
ALTER TABLE import_runs ADD COLUMN IF NOT EXISTS rows_done integer;
ALTER TABLE import_runs ADD COLUMN IF NOT EXISTS rows_expected integer;
-- When the row last changed: an open Imports page asks for it to know when to update itself.
ALTER TABLE import_runs ADD COLUMN IF NOT EXISTS changed_at timestamptz NOT NULL DEFAULT now();
-- The codec the file was declared in (the run's `encoding` option); UTF-8 unless declared.
ALTER TABLE import_runs ADD COLUMN IF NOT EXISTS encoding text NOT NULL DEFAULT 'utf-8';
-- The source the file came from (sources.yaml): how its columns and values were read.
ALTER TABLE import_runs ADD COLUMN IF NOT EXISTS source text NOT NULL DEFAULT 'default';
CREATE INDEX IF NOT EXISTS import_runs_source_idx ON import_runs (source, received_at);

-- Sources that say how often their file comes (sources.yaml, expected_every): since when the
-- watch has watched each, and each gap in which no file came in time, until one came.
CREATE TABLE IF NOT EXISTS watched_sources (
    source        text        PRIMARY KEY,
    watched_since timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS missing_exports (
    source       text        NOT NULL,
    last_arrival timestamptz NOT NULL,       -- the last file before the gap, or when the watch began
    due_at       timestamptz NOT NULL,       -- last_arrival + expected_every + grace
    noticed_at   timestamptz NOT NULL,
    alerted_at   timestamptz,                -- when the alert went out; null: not yet, or none configured
    arrived_at   timestamptz,                -- when a file came at last: the gap is closed
    PRIMARY KEY (source, last_arrival)
);

-- What each import changed: the before and after image of the columns the file carried (the
-- before image also keeps updated_at and updated_by_run, so that a rollback restores them).
-- A run changes a customer once, from one line: (run_id, line) is the key, and what a run changed
-- reads in line order from it (no sequence, one index fewer to maintain on a million inserts).
CREATE TABLE IF NOT EXISTS customer_history (
    run_id       bigint      NOT NULL,
    line         integer     NOT NULL,        -- the line of the file the change came from
    customer_key text        NOT NULL,
    action       text        NOT NULL CHECK (action IN ('insert', 'update')),
    before       jsonb,
    after        jsonb       NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, line)
);
-- A rollback finds the customers changed again since from `customers.updated_by_run`, so no index
-- by customer is kept up to date on every change (one fewer index on a million-row import).
DROP INDEX IF EXISTS customer_history_key_idx;
-- An insert records no images (its after image is the row itself until a later change records its
-- own before image); an update records the columns it changed only.
ALTER TABLE customer_history ALTER COLUMN after DROP NOT NULL;

-- The customers table, from the contract.
CREATE TABLE IF NOT EXISTS "customers" ( "account_reference_id" varchar(64) PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(), created_by_run bigint, updated_by_run bigint);
ALTER TABLE "customers" ADD COLUMN IF NOT EXISTS "name" varchar(255);
ALTER TABLE "customers" ADD COLUMN IF NOT EXISTS "description" varchar(2000);
ALTER TABLE "customers" ADD COLUMN IF NOT EXISTS "contact_email" varchar(254);
ALTER TABLE "customers" ADD COLUMN IF NOT EXISTS "contact_first_name" varchar(100);
ALTER TABLE "customers" ADD COLUMN IF NOT EXISTS "contact_last_name" varchar(100);
ALTER TABLE "customers" ADD COLUMN IF NOT EXISTS "phone" varchar(32);
ALTER TABLE "customers" ADD COLUMN IF NOT EXISTS "country" char(2);
ALTER TABLE "customers" ADD COLUMN IF NOT EXISTS "customer_since" date;
ALTER TABLE "customers" ADD COLUMN IF NOT EXISTS "seats" integer;
ALTER TABLE "customers" ADD COLUMN IF NOT EXISTS "is_reseller" boolean;
CREATE UNIQUE INDEX IF NOT EXISTS "customers_contact_email_unique" ON "customers" (lower("contact_email"));
