-- Small JSON documents of the server's own: users, tenants, API keys, refresh tokens,
-- provisioning tokens, dashboards, settings. `kind` says which; `id` is unique per kind.
CREATE TABLE records (
    tenant_id  TEXT NOT NULL,
    kind       TEXT NOT NULL,
    id         TEXT COLLATE "C" NOT NULL,  -- byte order, as SQLite pages by
    body       TEXT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, kind, id)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON records TO secumon_tenant;
ALTER TABLE records ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON records TO secumon_tenant
    USING (tenant_id = current_setting('secumon.tenant'))
    WITH CHECK (tenant_id = current_setting('secumon.tenant'));
