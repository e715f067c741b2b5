-- The read side's outbox (docs/cluster.md, "What a Watch can miss"): every
-- partition transaction that changed a read model also stores what it
-- changed, as the serialized v1::ChangeBatch it publishes, in the same
-- transaction. A watch hub that missed a batch (its publisher died between
-- COMMIT and the broadcast, was frozen, or was not connected) reads the
-- missing ones from here, so Watch streams stay complete across fail-over.
-- Rows are pruned after a retention period.

CREATE TABLE projection_change_log (
  projection     text        NOT NULL,
  generation     integer     NOT NULL,
  partition      integer     NOT NULL,
  -- The partition's offset before and after the batch.
  after_tx       xid8        NOT NULL,
  after_position bigint      NOT NULL,
  to_tx          xid8        NOT NULL,
  to_position    bigint      NOT NULL,
  batch          bytea       NOT NULL,
  recorded_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (projection, generation, partition, to_tx, to_position)
);

CREATE INDEX projection_change_log_age ON projection_change_log (recorded_at);
