-- A findings report on its way in, staged in short write transactions so other tenants'
-- batches interleave, then applied in one. Rows are deleted once applied or refused, and
-- whatever a stopped process left is deleted at open.
CREATE TABLE findings_import (
    import_id   INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    asset       TEXT NOT NULL,
    finding_id  TEXT NOT NULL,
    severity    TEXT NOT NULL,
    title       TEXT NOT NULL,
    description TEXT NOT NULL,
    PRIMARY KEY (import_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX findings_import_by_key ON findings_import (import_id, asset, finding_id);
