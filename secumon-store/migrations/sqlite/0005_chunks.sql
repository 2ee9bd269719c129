-- Samples move from one row each to one write-ahead record per batch (head_batches) and
-- per-series pco chunks; 5-minute and 1-hour rollups; indexes for retention by age.
-- Rows of the old table are converted by the store when it opens, then the table is dropped.
DROP INDEX samples_series_ts;
ALTER TABLE samples RENAME TO legacy_samples;

-- A batch's samples (series id, timestamp, value bits), until compaction puts them in chunks.
CREATE TABLE head_batches (
    id     INTEGER PRIMARY KEY,
    record BLOB NOT NULL
);

CREATE TABLE chunks (
    id         INTEGER PRIMARY KEY,
    series_id  INTEGER NOT NULL,
    min_ts     INTEGER NOT NULL,
    max_ts     INTEGER NOT NULL,
    samples    INTEGER NOT NULL,
    level      INTEGER NOT NULL,           -- 0: written from the head, 1: merged
    max_wal_id INTEGER NOT NULL,           -- the newest head record it holds samples of
    data       BLOB NOT NULL
);
CREATE INDEX chunks_by_series ON chunks (series_id, max_ts);
CREATE INDEX chunks_by_age ON chunks (max_ts);
CREATE INDEX chunks_to_merge ON chunks (series_id) WHERE level = 0;

-- NULL min/max: no finite value in the bucket; NULL last: NaN.
CREATE TABLE rollup_5m (
    series_id INTEGER NOT NULL,
    bucket    INTEGER NOT NULL,
    min       REAL,
    max       REAL,
    sum       REAL,
    count     INTEGER NOT NULL,
    last_ts   INTEGER NOT NULL,
    last      REAL,
    PRIMARY KEY (series_id, bucket)
) WITHOUT ROWID;
CREATE TABLE rollup_1h (
    series_id INTEGER NOT NULL,
    bucket    INTEGER NOT NULL,
    min       REAL,
    max       REAL,
    sum       REAL,
    count     INTEGER NOT NULL,
    last_ts   INTEGER NOT NULL,
    last      REAL,
    PRIMARY KEY (series_id, bucket)
) WITHOUT ROWID;

CREATE INDEX check_results_by_age ON check_results (ts);
CREATE INDEX events_by_age ON events (ts);
CREATE INDEX logs_by_age ON logs (ts);
CREATE INDEX alert_history_by_age ON alert_history (ts);
CREATE INDEX ingested_batches_by_age ON ingested_batches (committed_at_ms);
