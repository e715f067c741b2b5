-- Read-side bookkeeping. Read-model tables are created per projection
-- generation by the node (rm_users_g1, ...) and read through views of
-- stable names (rm_users) that point at the live generation; a rebuild
-- fills a new generation and swaps the views (actors/projection/).

CREATE TABLE projection_generations (
  projection     text        NOT NULL,
  generation     integer     NOT NULL,
  -- 'building' (rebuild in progress), 'live', 'retired', 'stopped' (a
  -- point-in-time build that reached its end)
  state          text        NOT NULL,
  partitions     integer     NOT NULL,
  until_position bigint,
  created_at     timestamptz NOT NULL DEFAULT now(),
  swapped_at     timestamptz,
  PRIMARY KEY (projection, generation)
);

-- Per partition: the last event applied, in the reader's (tx_id, position)
-- order, written in the same transaction as the read-model rows.
CREATE TABLE projection_offsets (
  projection     text        NOT NULL,
  generation     integer     NOT NULL,
  partition      integer     NOT NULL,
  tx_id          xid8        NOT NULL DEFAULT '0',
  position       bigint      NOT NULL DEFAULT 0,
  events         bigint      NOT NULL DEFAULT 0,
  updated_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (projection, generation, partition)
);

-- Events a projection could not apply (error set), and the later events of
-- the same key parked behind them (error empty), in log order.
CREATE TABLE projection_dead_letters (
  id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  projection      text        NOT NULL,
  generation      integer     NOT NULL,
  partition       integer     NOT NULL,
  key             text        NOT NULL,
  tx_id           xid8        NOT NULL,
  global_position bigint      NOT NULL,
  persistence_id  text        NOT NULL,
  seq_nr          bigint      NOT NULL,
  event_type      text        NOT NULL,
  error           text        NOT NULL,
  recorded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX projection_dead_letters_key
  ON projection_dead_letters (projection, generation, key, tx_id,
                              global_position);
