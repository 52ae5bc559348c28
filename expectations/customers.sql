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
-- Full snapshots: the file is the source's complete export, and customers of the source it lacks are
-- deactivated; more than max_deactivate_share of them only when a person allowed it.
ALTER TABLE import_runs ADD COLUMN IF NOT EXISTS snapshot text NOT NULL DEFAULT 'delta'
    CHECK (snapshot IN ('delta', 'full'));
ALTER TABLE import_runs ADD COLUMN IF NOT EXISTS max_deactivate_share double precision NOT NULL DEFAULT 0.05;
ALTER TABLE import_runs ADD COLUMN IF NOT EXISTS allow_mass_deactivation boolean NOT NULL DEFAULT false;
ALTER TABLE import_runs ADD COLUMN IF NOT EXISTS deactivated integer;  -- customers it deactivated (or would)
ALTER TABLE import_runs ADD COLUMN IF NOT EXISTS reactivated integer;  -- deactivated customers it brought back
-- A full snapshot refused for deactivating too many: how many it would have deactivated.
ALTER TABLE import_runs ADD COLUMN IF NOT EXISTS deactivation_refused integer;
-- Retention (customer_import_housekeeping): when the run's files and reports were deleted, after how
-- many days, and when its history was (it can no longer be rolled back then).
ALTER TABLE import_runs ADD COLUMN IF NOT EXISTS files_removed_at timestamptz;
ALTER TABLE import_runs ADD COLUMN IF NOT EXISTS files_kept_days integer;
ALTER TABLE import_runs ADD COLUMN IF NOT EXISTS history_removed_at timestamptz;
ALTER TABLE import_runs ADD COLUMN IF NOT EXISTS files_removed integer;         -- how many files, and
ALTER TABLE import_runs ADD COLUMN IF NOT EXISTS files_removed_bytes bigint;    -- their bytes

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

-- What each import changed: `customer_history_rows` (typed) and the `customer_history` view over
-- it (JSON images) derive from the field contract, like customers: see history.py.

-- Customers forgotten on request (make forget, customer_import_forget): when, by whom, and the key's
-- SHA-256 (never the key), with how much was erased.
CREATE TABLE IF NOT EXISTS erasures (
    id           bigserial   PRIMARY KEY,
    erased_at    timestamptz NOT NULL DEFAULT now(),
    erased_by    text        NOT NULL,
    key_sha256   char(64)    NOT NULL,
    customers    integer     NOT NULL,
    history_rows integer     NOT NULL,
    files        integer     NOT NULL
);

-- Fix in the browser (customer_import.fixing): the draft of corrections to a rejected or partial run's
-- file, kept on the server until its fixed file is imported or the draft is discarded.
CREATE TABLE IF NOT EXISTS fix_drafts (
    run_id     bigint      PRIMARY KEY REFERENCES import_runs (id) ON DELETE CASCADE,
    header     text[]      NOT NULL,        -- the file's header, cell by cell
    header_text text       NOT NULL,        -- its lines as written (with a `sep=` line before it)
    fields     jsonb       NOT NULL,        -- each contract field's column: index, name, label, limit
    opened_by  text        NOT NULL,
    opened_at  timestamptz NOT NULL DEFAULT now(),
    -- loading: its rows with issues are there, the others being added and the whole file checked
    status     text        NOT NULL DEFAULT 'loading' CHECK (status IN ('loading', 'open', 'importing', 'imported')),
    fixed_file text,                        -- the corrected file written into landing
    imported_by text,                       -- who imported it
    fixed_run  bigint,                      -- the import run of that file
    closed_at  timestamptz
);
-- Every record of the file, with its cells as they stand now in the draft and its issues. `raw` is
-- the record as written, while its structure is broken and no cell was edited. Deleted when the
-- draft closes (the rows hold personal data); the edits stay, for the fixed run's page.
CREATE TABLE IF NOT EXISTS fix_rows (
    run_id     bigint  NOT NULL REFERENCES fix_drafts (run_id) ON DELETE CASCADE,
    line       integer NOT NULL,
    last_line  integer NOT NULL,
    cells      jsonb   NOT NULL,          -- a JSON array of text, in the header's order
    raw        text,
    issues     jsonb   NOT NULL DEFAULT '[]',
    skipped_by text,
    PRIMARY KEY (run_id, line)
);
CREATE INDEX IF NOT EXISTS fix_rows_flagged_idx ON fix_rows (run_id, line) WHERE issues <> '[]';
CREATE TABLE IF NOT EXISTS fix_edits (
    run_id       bigint      NOT NULL REFERENCES fix_drafts (run_id) ON DELETE CASCADE,
    line         integer     NOT NULL,
    column_index integer     NOT NULL,
    header       text        NOT NULL,
    before       text        NOT NULL,      -- the value in the file
    after        text        NOT NULL,
    edited_by    text        NOT NULL,
    edited_at    timestamptz NOT NULL DEFAULT now(),
    fixed_line   integer,                   -- where the row is in the fixed file, once written
    PRIMARY KEY (run_id, line, column_index)
);
-- A run of a file fixed in the browser: the rejected run it fixes, and who fixed it.
ALTER TABLE import_runs ADD COLUMN IF NOT EXISTS fixed_from bigint;
ALTER TABLE import_runs ADD COLUMN IF NOT EXISTS fixed_by text;

-- The customers table, from the contract.
CREATE TABLE IF NOT EXISTS "customers" ( "account_reference_id" varchar(64) PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(), created_by_run bigint, updated_by_run bigint);
ALTER TABLE "customers" ADD COLUMN IF NOT EXISTS "source" text NOT NULL DEFAULT 'default';
ALTER TABLE "customers" ADD COLUMN IF NOT EXISTS "active" boolean NOT NULL DEFAULT true;
ALTER TABLE "customers" ADD COLUMN IF NOT EXISTS "deactivated_at" timestamptz;
ALTER TABLE "customers" ADD COLUMN IF NOT EXISTS "deactivated_by_run" bigint;
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

-- The history: typed rows, and the view with their JSON images (history.py), from the contract.
CREATE TABLE IF NOT EXISTS "customer_history_rows" ( run_id bigint NOT NULL, line integer, customer_key text NOT NULL, action text NOT NULL, changed text[], before_updated_at timestamptz, before_updated_by_run bigint, recorded_at timestamptz NOT NULL DEFAULT now());
ALTER TABLE "customer_history_rows" ALTER COLUMN line DROP NOT NULL;
ALTER TABLE "customer_history_rows" DROP CONSTRAINT IF EXISTS "customer_history_rows_action_check", ADD CONSTRAINT "customer_history_rows_action_check" CHECK (action IN ('insert', 'update', 'reactivate', 'deactivate')) NOT VALID;
ALTER TABLE "customer_history_rows" ADD COLUMN IF NOT EXISTS "before_deactivated_at" timestamptz;
ALTER TABLE "customer_history_rows" ADD COLUMN IF NOT EXISTS "before_deactivated_by_run" bigint;
CREATE INDEX IF NOT EXISTS "customer_history_rows_run_idx" ON "customer_history_rows" USING brin (run_id);
ALTER TABLE "customer_history_rows" ADD COLUMN IF NOT EXISTS "before_name" varchar(255);
ALTER TABLE "customer_history_rows" ADD COLUMN IF NOT EXISTS "after_name" varchar(255);
ALTER TABLE "customer_history_rows" ADD COLUMN IF NOT EXISTS "before_description" varchar(2000);
ALTER TABLE "customer_history_rows" ADD COLUMN IF NOT EXISTS "after_description" varchar(2000);
ALTER TABLE "customer_history_rows" ADD COLUMN IF NOT EXISTS "before_contact_email" varchar(254);
ALTER TABLE "customer_history_rows" ADD COLUMN IF NOT EXISTS "after_contact_email" varchar(254);
ALTER TABLE "customer_history_rows" ADD COLUMN IF NOT EXISTS "before_contact_first_name" varchar(100);
ALTER TABLE "customer_history_rows" ADD COLUMN IF NOT EXISTS "after_contact_first_name" varchar(100);
ALTER TABLE "customer_history_rows" ADD COLUMN IF NOT EXISTS "before_contact_last_name" varchar(100);
ALTER TABLE "customer_history_rows" ADD COLUMN IF NOT EXISTS "after_contact_last_name" varchar(100);
ALTER TABLE "customer_history_rows" ADD COLUMN IF NOT EXISTS "before_phone" varchar(32);
ALTER TABLE "customer_history_rows" ADD COLUMN IF NOT EXISTS "after_phone" varchar(32);
ALTER TABLE "customer_history_rows" ADD COLUMN IF NOT EXISTS "before_country" char(2);
ALTER TABLE "customer_history_rows" ADD COLUMN IF NOT EXISTS "after_country" char(2);
ALTER TABLE "customer_history_rows" ADD COLUMN IF NOT EXISTS "before_customer_since" date;
ALTER TABLE "customer_history_rows" ADD COLUMN IF NOT EXISTS "after_customer_since" date;
ALTER TABLE "customer_history_rows" ADD COLUMN IF NOT EXISTS "before_seats" integer;
ALTER TABLE "customer_history_rows" ADD COLUMN IF NOT EXISTS "after_seats" integer;
ALTER TABLE "customer_history_rows" ADD COLUMN IF NOT EXISTS "before_is_reseller" boolean;
ALTER TABLE "customer_history_rows" ADD COLUMN IF NOT EXISTS "after_is_reseller" boolean;
CREATE OR REPLACE VIEW "customer_history" AS SELECT h.run_id, h.line, h.customer_key, h.action, CASE WHEN "h".action <> 'insert' THEN (jsonb_build_object('name', "h"."before_name", 'description', "h"."before_description", 'contact_email', "h"."before_contact_email", 'contact_first_name', "h"."before_contact_first_name", 'contact_last_name', "h"."before_contact_last_name", 'phone', "h"."before_phone", 'country', "h"."before_country", 'customer_since', "h"."before_customer_since", 'seats', "h"."before_seats", 'is_reseller', "h"."before_is_reseller", 'updated_at', "h"."before_updated_at", 'updated_by_run', "h"."before_updated_by_run") - ARRAY[CASE WHEN 'name' = ANY("h"."changed") THEN NULL ELSE 'name' END, CASE WHEN 'description' = ANY("h"."changed") THEN NULL ELSE 'description' END, CASE WHEN 'contact_email' = ANY("h"."changed") THEN NULL ELSE 'contact_email' END, CASE WHEN 'contact_first_name' = ANY("h"."changed") THEN NULL ELSE 'contact_first_name' END, CASE WHEN 'contact_last_name' = ANY("h"."changed") THEN NULL ELSE 'contact_last_name' END, CASE WHEN 'phone' = ANY("h"."changed") THEN NULL ELSE 'phone' END, CASE WHEN 'country' = ANY("h"."changed") THEN NULL ELSE 'country' END, CASE WHEN 'customer_since' = ANY("h"."changed") THEN NULL ELSE 'customer_since' END, CASE WHEN 'seats' = ANY("h"."changed") THEN NULL ELSE 'seats' END, CASE WHEN 'is_reseller' = ANY("h"."changed") THEN NULL ELSE 'is_reseller' END]::text[]) || CASE "h".action WHEN 'deactivate' THEN jsonb_build_object('active', true) WHEN 'reactivate' THEN jsonb_build_object('active', false, 'deactivated_at', "h"."before_deactivated_at", 'deactivated_by_run', "h"."before_deactivated_by_run") ELSE '{}'::jsonb END END AS before, CASE WHEN "h".action <> 'insert' THEN (jsonb_build_object('name', "h"."after_name", 'description', "h"."after_description", 'contact_email', "h"."after_contact_email", 'contact_first_name', "h"."after_contact_first_name", 'contact_last_name', "h"."after_contact_last_name", 'phone', "h"."after_phone", 'country', "h"."after_country", 'customer_since', "h"."after_customer_since", 'seats', "h"."after_seats", 'is_reseller', "h"."after_is_reseller") - ARRAY[CASE WHEN 'name' = ANY("h"."changed") THEN NULL ELSE 'name' END, CASE WHEN 'description' = ANY("h"."changed") THEN NULL ELSE 'description' END, CASE WHEN 'contact_email' = ANY("h"."changed") THEN NULL ELSE 'contact_email' END, CASE WHEN 'contact_first_name' = ANY("h"."changed") THEN NULL ELSE 'contact_first_name' END, CASE WHEN 'contact_last_name' = ANY("h"."changed") THEN NULL ELSE 'contact_last_name' END, CASE WHEN 'phone' = ANY("h"."changed") THEN NULL ELSE 'phone' END, CASE WHEN 'country' = ANY("h"."changed") THEN NULL ELSE 'country' END, CASE WHEN 'customer_since' = ANY("h"."changed") THEN NULL ELSE 'customer_since' END, CASE WHEN 'seats' = ANY("h"."changed") THEN NULL ELSE 'seats' END, CASE WHEN 'is_reseller' = ANY("h"."changed") THEN NULL ELSE 'is_reseller' END]::text[]) || CASE "h".action WHEN 'deactivate' THEN jsonb_build_object('active', false) WHEN 'reactivate' THEN jsonb_build_object('active', true) ELSE '{}'::jsonb END END AS after, h.recorded_at FROM "customer_history_rows" h;
