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
