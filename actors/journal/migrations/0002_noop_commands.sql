-- Commands that were accepted but appended nothing (a repeated follow or
-- like): their first reply, so a retry with the same command id returns it
-- even after the entity's state has moved on (G4). Written by the journal in
-- the same group commit as events.
CREATE TABLE noop_commands (
  persistence_id text        NOT NULL,
  command_id     text        NOT NULL,
  -- serialized shoutflow.v1.EntityReply
  reply          bytea       NOT NULL,
  recorded_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (persistence_id, command_id)
);
