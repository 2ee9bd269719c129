-- Small JSON documents of the server's own: users, tenants, API keys, refresh tokens,
-- provisioning tokens, dashboards, settings. `kind` says which; `id` is unique per kind.
CREATE TABLE records (
    tenant_id  TEXT NOT NULL,
    kind       TEXT NOT NULL,
    id         TEXT NOT NULL,
    body       TEXT NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, kind, id)
) WITHOUT ROWID;
