-- The cluster: membership, leases and fencing (docs/cluster.md).
--
-- PostgreSQL is the coordinator (the Orleans membership-table idea): nodes
-- register and heartbeat in cluster_members; shards and projection
-- partitions are owned through rows of `leases`, whose epoch grows on every
-- change of owner. The journal's batch transaction and a partition's offset
-- write check the writer's lease at its epoch (FOR KEY SHARE), so a node
-- frozen past its lease fails every write. Every time below is the
-- database's clock_timestamp(): one clock for the whole cluster.

-- Settings fixed for the cluster's life (the shard count).
CREATE TABLE cluster_settings (
  name  text PRIMARY KEY,
  value text NOT NULL
);

CREATE TABLE cluster_members (
  node_id      integer     PRIMARY KEY CHECK (node_id BETWEEN 0 AND 1023),
  -- A random token per process: a restarted node keeps its id, not this.
  incarnation  text        NOT NULL,
  host         text        NOT NULL,
  caf_port     integer     NOT NULL,
  command_port integer     NOT NULL DEFAULT 0,
  query_port   integer     NOT NULL DEFAULT 0,
  admin_port   integer     NOT NULL DEFAULT 0,
  metrics_port integer     NOT NULL DEFAULT 0,
  roles        text[]      NOT NULL,
  state        text        NOT NULL
               CHECK (state IN ('joining', 'up', 'leaving', 'down')),
  started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
  heartbeat_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  -- Set when another node declared it down; the row goes soon after.
  down_at      timestamptz
);

-- resource: 'shard' (part = shard number) or 'projection/<name>' (part =
-- partition index). A free lease has no owner; an expired one is free to
-- take. Acquiring bumps the epoch (the fencing token).
CREATE TABLE leases (
  resource          text        NOT NULL,
  part              integer     NOT NULL,
  owner_node        integer,
  owner_incarnation text,
  epoch             bigint      NOT NULL DEFAULT 0,
  expires_at        timestamptz NOT NULL DEFAULT '-infinity',
  PRIMARY KEY (resource, part)
);

-- Every epoch ever granted: the invariant checker proves with it that each
-- event was written under a lease its writer held.
CREATE TABLE lease_history (
  resource          text        NOT NULL,
  part              integer     NOT NULL,
  epoch             bigint      NOT NULL,
  owner_node        integer     NOT NULL,
  owner_incarnation text        NOT NULL,
  acquired_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
  released_at       timestamptz,
  PRIMARY KEY (resource, part, epoch)
);

-- The shard lease epoch each event was written under (NULL: written
-- without a lease, before the cluster existed or by a tool).
ALTER TABLE events ADD COLUMN lease_epoch bigint;

-- The node running a rebuild: only it, or a node that finds it gone from
-- the cluster, may abandon the build.
ALTER TABLE projection_generations ADD COLUMN builder integer;
