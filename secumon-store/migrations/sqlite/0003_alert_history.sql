-- Every alert transition, acknowledgement, rule change and failed delivery, as JSON.
CREATE TABLE alert_history (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    rule      TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    record    TEXT NOT NULL
);
CREATE INDEX alert_history_by_rule ON alert_history (tenant_id, rule, id);
