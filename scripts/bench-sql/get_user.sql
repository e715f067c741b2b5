-- GetUser: the QueryService's q_users (services/query/read_queries.cpp),
-- which answers one request, or all GetUsers that wait together, with one
-- `user_id = ANY($1::text[])` statement in autocommit; here the array of one
-- id, parsed from its text form as the server parses the bound parameter.
-- Needs -D users=N: the users bench-user-0 .. bench-user-(N-1).
\set uid random(0, :users - 1)
SELECT u.user_id, u.handle, u.display_name, u.avatar_hash, u.bio, coalesce((extract(epoch FROM u.created_at) * 1000)::bigint, 0), u.shout_count, u.follower_count, u.following_count, u.likes_given, u.likes_received, coalesce((extract(epoch FROM u.last_login_at) * 1000)::bigint, 0) FROM rm_users u WHERE u.user_id = ANY(('{bench-user-' || :uid || '}')::text[]);
