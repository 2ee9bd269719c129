-- Range queries name a host far more often than anything else: find a host's series of a
-- metric without reading every host's.
CREATE INDEX series_host ON series (tenant_id, name, labels ->> '$.host');
