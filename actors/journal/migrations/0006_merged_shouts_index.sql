-- GetTimeline merges the shouts of followed authors above the celebrity
-- threshold (not fanned out) at read time. Without an index on exactly
-- those rows, every request read all shouts of every author the user
-- follows to find none (85 ms of a 95 ms timeline on the benchmark's
-- 1,000,000 events). New generations get the index from the timelines
-- projection's DDL; this adds it to the generations that exist.
DO $$
DECLARE
  t text;
BEGIN
  FOR t IN SELECT tablename FROM pg_tables
            WHERE schemaname = current_schema()
              AND tablename ~ '^rm_author_shouts_g[0-9]+$'
  LOOP
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I (author_id, shout_id)'
                   ' WHERE NOT fanned_out AND NOT deleted',
                   t || '_merged', t);
  END LOOP;
END
$$;
