-- The PostgreSQL schema: the same data as the embedded store. Samples are rows in a table
-- partitioned by day (the store creates partitions as data arrives and drops them when raw
-- retention passes); rollups are filled by the store's rollup job. Tenant-owned tables have
-- row-level security, enforced for the `secumon_tenant` role that request paths switch to.

CREATE TABLE agents (
    agent_id      TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    host          TEXT NOT NULL,
    labels        TEXT NOT NULL,
    first_seen_ms BIGINT NOT NULL,
    last_seen_ms  BIGINT NOT NULL,
    last_sequence BIGINT NOT NULL,
    batches       BIGINT NOT NULL
);
CREATE INDEX agents_tenant ON agents (tenant_id, host);

CREATE TABLE ingested_batches (
    agent_id        TEXT NOT NULL,
    sequence        BIGINT NOT NULL,
    committed_at_ms BIGINT NOT NULL,
    PRIMARY KEY (agent_id, sequence)
);
CREATE INDEX ingested_batches_by_age ON ingested_batches (committed_at_ms);

CREATE TABLE series (
    id        BIGSERIAL PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    name      TEXT NOT NULL,
    labels    TEXT NOT NULL,
    UNIQUE (tenant_id, name, labels)
);

-- write_seq orders writes, so the last write of a timestamp wins and the rollup job knows
-- what it has seen. NaN and ±Infinity are stored as such.
CREATE SEQUENCE sample_writes;
CREATE TABLE samples (
    series_id BIGINT NOT NULL,
    ts        BIGINT NOT NULL,
    value     DOUBLE PRECISION NOT NULL,
    write_seq BIGINT NOT NULL
) PARTITION BY RANGE (ts);
CREATE INDEX samples_series_ts ON samples (series_id, ts);
CREATE INDEX samples_write_seq ON samples (write_seq);

CREATE TABLE rollup_state (
    id        INT PRIMARY KEY CHECK (id = 1),
    rolled_up BIGINT NOT NULL           -- every write_seq up to this is in the rollups
);
INSERT INTO rollup_state VALUES (1, 0);

CREATE TABLE rollup_5m (
    series_id BIGINT NOT NULL,
    bucket    BIGINT NOT NULL,
    min       DOUBLE PRECISION,
    max       DOUBLE PRECISION,
    sum       DOUBLE PRECISION NOT NULL,
    count     BIGINT NOT NULL,
    last_ts   BIGINT NOT NULL,
    last      DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (series_id, bucket)
);
CREATE INDEX rollup_5m_by_age ON rollup_5m (bucket);
CREATE TABLE rollup_1h (LIKE rollup_5m INCLUDING ALL);

CREATE TABLE check_results (
    id          BIGSERIAL PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    check_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    target      TEXT NOT NULL,
    status      TEXT NOT NULL,
    ts          BIGINT NOT NULL,
    duration_us BIGINT NOT NULL,
    details     TEXT NOT NULL
);
CREATE INDEX check_results_lookup ON check_results (tenant_id, check_id, agent_id, ts);
CREATE INDEX check_results_by_age ON check_results (ts);

CREATE TABLE events (
    id        BIGSERIAL PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    host      TEXT NOT NULL,
    ts        BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    severity  TEXT NOT NULL,
    labels    TEXT NOT NULL,
    message   TEXT NOT NULL
);
CREATE INDEX events_lookup ON events (tenant_id, ts);
CREATE INDEX events_by_age ON events (ts);

CREATE TABLE logs (
    id        BIGSERIAL PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    host      TEXT NOT NULL,
    ts        BIGINT NOT NULL,
    source    TEXT NOT NULL,
    labels    TEXT NOT NULL,
    line      TEXT NOT NULL
);
CREATE INDEX logs_lookup ON logs (tenant_id, host, ts);
CREATE INDEX logs_by_age ON logs (ts);

CREATE TABLE component_state (
    tenant_id  TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);

CREATE TABLE alert_history (
    id        BIGSERIAL PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    rule      TEXT NOT NULL,
    ts        BIGINT NOT NULL,
    record    TEXT NOT NULL
);
CREATE INDEX alert_history_by_rule ON alert_history (tenant_id, rule, id);
CREATE INDEX alert_history_by_age ON alert_history (ts);

CREATE TABLE findings (
    tenant_id     TEXT NOT NULL,
    asset         TEXT NOT NULL,
    finding_id    TEXT NOT NULL,
    source        TEXT NOT NULL,
    severity      TEXT NOT NULL,
    title         TEXT NOT NULL,
    description   TEXT NOT NULL,
    status        TEXT NOT NULL,
    first_seen_ms BIGINT NOT NULL,
    last_seen_ms  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, asset, finding_id)
);
CREATE INDEX findings_by_status ON findings (tenant_id, status, severity);

-- Row-level security: a session that has switched to secumon_tenant sees and changes only
-- the rows of the tenant named in the `secumon.tenant` setting.
DO $$
BEGIN
    CREATE ROLE secumon_tenant NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
DO $$
DECLARE t TEXT;
BEGIN
    EXECUTE format('GRANT secumon_tenant TO %I', current_user);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO secumon_tenant', current_schema());
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO secumon_tenant', current_schema());
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO secumon_tenant', current_schema());
    FOREACH t IN ARRAY ARRAY['agents', 'series', 'check_results', 'events', 'logs', 'component_state',
                             'alert_history', 'findings'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I TO secumon_tenant '
                       'USING (tenant_id = current_setting(''secumon.tenant'')) '
                       'WITH CHECK (tenant_id = current_setting(''secumon.tenant''))', t);
    END LOOP;
END $$;
