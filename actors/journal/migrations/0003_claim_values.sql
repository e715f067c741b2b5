-- A claim may carry a small value beside its owner: a shout's claim holds
-- the shout it replies to, so deleting a reply can name its parent (the
-- read side lowers the parent's reply count).
ALTER TABLE claims ADD COLUMN value text NOT NULL DEFAULT '';
