-- Log lines are paged in (ts, id) order per host: an index that ends in id walks it
-- without a sort.
CREATE INDEX logs_page ON logs (tenant_id, host, ts, id);
DROP INDEX logs_lookup;
