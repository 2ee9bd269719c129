-- Administrative actions per tenant: who (as authenticated), when, from where, what.
-- Append-only; retention removes entries past `Retention::audit_ms`.
CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    client_ip TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    detail    TEXT NOT NULL
);
CREATE INDEX audit_log_by_tenant ON audit_log (tenant_id, id);
CREATE INDEX audit_log_by_age ON audit_log (ts);
