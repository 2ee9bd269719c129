-- Vulnerability findings, one row per (tenant, asset, finding id); status open or fixed.
CREATE TABLE findings (
    tenant_id     TEXT NOT NULL,
    asset         TEXT NOT NULL,
    finding_id    TEXT NOT NULL,
    source        TEXT NOT NULL,           -- the report format or scanner it came from
    severity      TEXT NOT NULL,
    title         TEXT NOT NULL,
    description   TEXT NOT NULL,
    status        TEXT NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, asset, finding_id)
) WITHOUT ROWID;
CREATE INDEX findings_by_status ON findings (tenant_id, status, severity);
