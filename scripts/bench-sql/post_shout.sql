-- One PostShout's row in the journal: a single-row INSERT into the real
-- `events` table in its own (durable) transaction, with the columns the
-- journal writes (actors/journal/pg_journal.cpp; the defaults fill tx_id and
-- recorded_at). persistence_id spreads over 10,000 users' key range and is
-- made unique per client ('.' is outside the user id alphabet, so it never
-- meets a real stream); seq_nr counts per client from -D seq=FIRST, so
-- (persistence_id, seq_nr) never collides. Needs -D seq=FIRST and
-- -D payload=HEX (the event's bytes).
\set uid random(1, 10000)
\set seq :seq + 1
INSERT INTO events (persistence_id, seq_nr, event_type, event_version, payload, command_id, correlation_id, causation_id, node_id) VALUES ('user|bench-user-' || :uid || '.' || :client_id, :seq, 'ShoutPosted', 1, decode(:payload, 'hex'), 'ps-' || :client_id || '-' || :seq, 'ps-' || :client_id || '-' || :seq, 'ps-' || :client_id || '-' || :seq, 'node-0');
