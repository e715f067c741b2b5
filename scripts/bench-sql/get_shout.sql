-- GetShout: the QueryService's q_shouts (services/query/read_queries.cpp),
-- `shout_id = ANY($1::text[])` in autocommit. Shout ids are drawn by the
-- service, so the id comes from the key table bench_mix_shouts (written
-- once by mix_keys.sql) inside the same statement: one round trip, as the
-- server's, plus one primary-key probe of that small table.
-- Needs -D shouts=N: the rows of bench_mix_shouts.
\set k random(0, :shouts - 1)
SELECT s.shout_id, s.author_id, coalesce(u.handle, ''), coalesce(u.display_name, ''), coalesce(u.avatar_hash, ''), s.text, (extract(epoch FROM s.created_at) * 1000)::bigint, s.like_count, s.reply_count, s.reply_to_shout_id, s.deleted FROM rm_shouts s LEFT JOIN rm_users u ON u.user_id = s.author_id WHERE s.shout_id = ANY(ARRAY(SELECT b.shout_id FROM bench_mix_shouts b WHERE b.k = :k));
