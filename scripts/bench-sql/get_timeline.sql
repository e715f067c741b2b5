-- GetTimeline, first page of 20: the page the QueryService's q_timelines
-- (services/query/read_queries.cpp) computes for each request, here for one
-- request a statement (the ceiling of a read run alone). pgbench
-- binds only the user id (-M prepared turns :uid into a parameter); the
-- page token (''), page size (20) and timeline cap (800, the node's
-- default) are literals, since pgbench cannot bind an empty string.
-- Needs -D users=N: the users bench-user-0 .. bench-user-(N-1).
\set uid random(0, :users - 1)
WITH capped AS (SELECT shout_id FROM ((SELECT shout_id FROM rm_home WHERE owner_id = 'bench-user-' || :uid ORDER BY shout_id DESC LIMIT 800) UNION ALL (SELECT m.shout_id FROM rm_followers f CROSS JOIN LATERAL (SELECT s.shout_id FROM rm_author_shouts s WHERE s.author_id = f.author_id AND NOT s.fanned_out AND NOT s.deleted ORDER BY s.shout_id DESC LIMIT 800) m WHERE f.follower_id = 'bench-user-' || :uid ORDER BY m.shout_id DESC LIMIT 800)) e ORDER BY shout_id DESC LIMIT 800) SELECT s.shout_id, s.author_id, coalesce(u.handle, ''), coalesce(u.display_name, ''), coalesce(u.avatar_hash, ''), s.text, (extract(epoch FROM s.created_at) * 1000)::bigint, s.like_count, s.reply_count, s.reply_to_shout_id, s.deleted FROM capped c JOIN rm_shouts s ON s.shout_id = c.shout_id LEFT JOIN rm_users u ON u.user_id = s.author_id WHERE NOT s.deleted AND ('' = '' OR s.shout_id < '') ORDER BY s.shout_id DESC LIMIT 20;
