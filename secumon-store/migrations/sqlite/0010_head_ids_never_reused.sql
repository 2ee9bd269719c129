-- Write-ahead record ids must never be reused. Compaction deletes the records it wrote into
-- chunks, and chunks remember the newest record they hold (`max_wal_id`); with a plain
-- INTEGER PRIMARY KEY an emptied table hands out id 1 again, and after a restart the replay
-- took such a record for one already compacted and skipped its samples. AUTOINCREMENT
-- never hands out an id below one used before; the counter starts past every id a chunk
-- or a pending record names.
CREATE TABLE head_batches_next (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    record BLOB NOT NULL
);
INSERT INTO head_batches_next (id, record) SELECT id, record FROM head_batches;
DROP TABLE head_batches;
ALTER TABLE head_batches_next RENAME TO head_batches;
DELETE FROM sqlite_sequence WHERE name IN ('head_batches', 'head_batches_next');
INSERT INTO sqlite_sequence (name, seq)
SELECT 'head_batches', max(coalesce((SELECT max(max_wal_id) FROM chunks), 0),
                           coalesce((SELECT max(id) FROM head_batches), 0));
