-- Foundation schema of the embedded store. Every tenant-owned row carries tenant_id.

-- Agents that have pushed at least one batch.
CREATE TABLE agents (
    agent_id      TEXT PRIMARY KEY NOT NULL,
    tenant_id     TEXT NOT NULL,
    host          TEXT NOT NULL,
    labels        TEXT NOT NULL,           -- canonical JSON object
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,
    last_sequence INTEGER NOT NULL,
    batches       INTEGER NOT NULL
);
CREATE INDEX agents_tenant ON agents (tenant_id, host);

-- One row per committed batch: the server's duplicate filter, written in the batch's
-- own transaction so "stored" and "seen" can never disagree.
CREATE TABLE ingested_batches (
    agent_id        TEXT NOT NULL,
    sequence        INTEGER NOT NULL,
    committed_at_ms INTEGER NOT NULL,
    PRIMARY KEY (agent_id, sequence)
) WITHOUT ROWID;

CREATE TABLE series (
    id        INTEGER PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    name      TEXT NOT NULL,
    labels    TEXT NOT NULL,               -- canonical JSON object, keys sorted
    UNIQUE (tenant_id, name, labels)
);

-- Append-only; NULL stands for NaN, which SQLite cannot store as REAL.
CREATE TABLE samples (
    series_id INTEGER NOT NULL,
    ts        INTEGER NOT NULL,
    value     REAL
);
CREATE INDEX samples_series_ts ON samples (series_id, ts);

CREATE TABLE check_results (
    tenant_id   TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    check_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    target      TEXT NOT NULL,
    status      TEXT NOT NULL,
    ts          INTEGER NOT NULL,
    duration_us INTEGER NOT NULL,
    details     TEXT NOT NULL
);
CREATE INDEX check_results_lookup ON check_results (tenant_id, check_id, ts);

CREATE TABLE events (
    tenant_id TEXT NOT NULL,
    host      TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    severity  TEXT NOT NULL,
    labels    TEXT NOT NULL,
    message   TEXT NOT NULL
);
CREATE INDEX events_lookup ON events (tenant_id, ts);

CREATE TABLE logs (
    tenant_id TEXT NOT NULL,
    host      TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    source    TEXT NOT NULL,
    labels    TEXT NOT NULL,
    line      TEXT NOT NULL
);
CREATE INDEX logs_lookup ON logs (tenant_id, host, ts);
