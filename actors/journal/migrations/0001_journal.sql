-- The event journal, snapshots and claims (see actors/journal/journal_types.hpp).

CREATE TABLE events (
  global_position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  persistence_id  text        NOT NULL,
  seq_nr          bigint      NOT NULL CHECK (seq_nr > 0),
  event_type      text        NOT NULL,
  event_version   integer     NOT NULL,
  payload         bytea       NOT NULL,
  command_id      text,
  correlation_id  text,
  causation_id    text,
  node_id         text,
  -- The writer's transaction id: positions are handed out at INSERT but
  -- become visible at COMMIT, so readers of the global log read only below
  -- pg_snapshot_xmin(pg_current_snapshot()) ordered by (tx_id, position).
  tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
  recorded_at     timestamptz NOT NULL DEFAULT now(),
  -- The optimistic-concurrency guard: a stale writer gets a conflict, never
  -- a fork of a user's history.
  CONSTRAINT events_stream_seq UNIQUE (persistence_id, seq_nr)
);

-- The gap-safe tail of the global log (projections).
CREATE INDEX events_tx_position ON events (tx_id, global_position);

-- Idempotency: the events a command id appended to a stream.
CREATE INDEX events_stream_command ON events (persistence_id, command_id)
  WHERE command_id IS NOT NULL;

-- The latest snapshot per stream.
CREATE TABLE snapshots (
  persistence_id text        PRIMARY KEY,
  seq_nr         bigint      NOT NULL,
  version        integer     NOT NULL,
  payload        bytea       NOT NULL,
  recorded_at    timestamptz NOT NULL DEFAULT now()
);

-- Cross-entity uniqueness and existence, written in the same transaction as
-- the events that claim or release them: ("handle", lower(handle)),
-- ("user", user_id), ("shout", shout_id) -> owner.
CREATE TABLE claims (
  namespace  text        NOT NULL,
  key        text        NOT NULL,
  owner_id   text        NOT NULL,
  claimed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (namespace, key)
);
