-- A dead letter whose event could not be decoded when it was read has no
-- known keys: the reader parked it under its stream's owner. `unrouted`
-- marks it, so a retry after the fix re-routes it to the keys it really
-- affects (actors/projection/partition.cpp).
ALTER TABLE projection_dead_letters
  ADD COLUMN unrouted boolean NOT NULL DEFAULT false;
