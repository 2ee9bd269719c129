-- Administrative actions per tenant: who (as authenticated), when, from where, what.
-- Append-only; retention removes entries past `Retention::audit_ms`.
CREATE TABLE audit_log (
    id        BIGSERIAL PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    ts        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    client_ip TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    detail    TEXT NOT NULL
);
CREATE INDEX audit_log_by_tenant ON audit_log (tenant_id, id);
CREATE INDEX audit_log_by_age ON audit_log (ts);
GRANT SELECT, INSERT, DELETE ON audit_log TO secumon_tenant;
GRANT USAGE, SELECT ON SEQUENCE audit_log_id_seq TO secumon_tenant;
ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_log TO secumon_tenant
    USING (tenant_id = current_setting('secumon.tenant'))
    WITH CHECK (tenant_id = current_setting('secumon.tenant'));
