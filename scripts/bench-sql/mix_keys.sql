-- The key table of get_shout.sql: every shout of the shouts read model,
-- numbered from 0 (run once with psql on the database the node used,
-- before pgbench; prints the number of rows for -D shouts=N).
DROP TABLE IF EXISTS bench_mix_shouts;
CREATE TABLE bench_mix_shouts (k integer PRIMARY KEY, shout_id text NOT NULL);
INSERT INTO bench_mix_shouts
SELECT (row_number() OVER (ORDER BY shout_id) - 1)::integer, shout_id FROM rm_shouts WHERE NOT deleted;
ANALYZE bench_mix_shouts;
SELECT count(*) FROM bench_mix_shouts;
