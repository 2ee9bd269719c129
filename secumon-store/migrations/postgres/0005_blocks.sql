-- Samples as compressed blocks (issue #19), what TimescaleDB's compression would give on
-- stock PostgreSQL. `samples` stays, as the write-ahead head: batches land there, and the
-- store's compaction moves what is a few minutes old into pco blocks per series per two-hour
-- window (`blocks`, partitioned by day like the head), and the window's 5-minute and hourly
-- rollups into one block per tier. Rows of a database from before stay in the head and are compacted like new
-- ones; the old rollup rows are turned into blocks by the store when it opens (it needs the
-- codec), which then drops `rollup_5m` and `rollup_1h`. No watermark: what compaction
-- moves is what its snapshot holds, so `rollup_state` and the write-sequence index go.
DROP TABLE rollup_state;
DROP INDEX samples_write_seq;

-- A window's samples come in level-0 blocks (one per compaction pass that found new samples
-- of the series, written fast), merged into one level-1 block (best compression) once the
-- window has closed. A window's blocks never share a timestamp.
CREATE TABLE blocks (
    series_id    BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    min_ts       BIGINT NOT NULL,
    max_ts       BIGINT NOT NULL,
    samples      INT NOT NULL,
    level        SMALLINT NOT NULL,
    data         BYTEA NOT NULL,          -- pco timestamps and values (codec.rs)
    PRIMARY KEY (series_id, window_start, min_ts)
) PARTITION BY RANGE (window_start);
CREATE INDEX blocks_to_merge ON blocks (window_start) WHERE level = 0;

CREATE TABLE rollup_5m_blocks (
    series_id    BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    data         BYTEA NOT NULL,          -- pco summaries of the window's buckets (codec.rs)
    PRIMARY KEY (series_id, window_start)
);
CREATE INDEX rollup_5m_blocks_by_age ON rollup_5m_blocks (window_start);
CREATE TABLE rollup_1h_blocks (LIKE rollup_5m_blocks INCLUDING ALL);

-- Range queries name a host far more often than anything else: a host's series of a metric
-- are found without reading every host's. Filled for existing series when the store opens.
ALTER TABLE series ADD COLUMN host TEXT;
CREATE INDEX series_host ON series (tenant_id, name, host);

GRANT SELECT, INSERT, UPDATE, DELETE ON blocks, rollup_5m_blocks, rollup_1h_blocks TO secumon_tenant;
