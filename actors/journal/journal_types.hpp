#pragma once

// Value types exchanged with the journal and the store. Plain structs with an
// inspect() each so CAF can carry (and, across nodes, serialize) them; no
// CAF header is needed here.
//
// Claims: a row (namespace, key) -> owner in the `claims` table, unique per
// (namespace, key). A write may
//   * claim   — insert (ns, key, owner); fails the write if taken,
//   * release — delete (ns, key) owned by owner; fails the write if absent,
//   * guard   — require (ns, key) to exist with that owner, locking it
//               FOR SHARE until COMMIT so a concurrent release waits;
// all in the write's transaction. This is how cross-entity facts (unique
// handles, "that user exists", "that shout is live and whose it is") are
// enforced atomically with the events, never by an eventually consistent
// read model.

#include <cstdint>
#include <string>
#include <vector>

namespace shoutflow::journal {

struct event_record {
  int64_t seq_nr = 0;
  std::string type;
  int32_t version = 1;
  std::string payload;
  std::string command_id;
  /// Assigned by the database; 0 before the write.
  int64_t position = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, event_record& x) {
  return f(x.seq_nr, x.type, x.version, x.payload, x.command_id, x.position);
}

struct claim_op {
  std::string ns;
  std::string key;
  std::string owner;
  /// Stored with a claim (claims only; ignored by releases and guards).
  std::string value = {};
};

inline bool operator==(const claim_op& a, const claim_op& b) {
  return a.ns == b.ns && a.key == b.key && a.owner == b.owner
         && a.value == b.value;
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, claim_op& x) {
  return f(x.ns, x.key, x.owner, x.value);
}

/// One entity's atomic append: all of it commits or none of it does.
struct journal_write {
  std::string persistence_id;
  /// Contiguous seq_nrs, the first one being the entity's last + 1.
  std::vector<event_record> events;
  std::string command_id;
  std::string correlation_id;
  std::string causation_id;
  std::vector<claim_op> claims;
  std::vector<claim_op> releases;
  std::vector<claim_op> guards;
  /// For a command that appends nothing (`events` empty): its reply, kept
  /// so that a retry returns it.
  std::string noop_reply;
  /// The fence (docs/cluster.md): the write commits only while this node
  /// still holds the lease of `shard` at `lease_epoch`, checked in the
  /// batch's transaction. -1: no fence (tools and journal tests only).
  int32_t shard = -1;
  int64_t lease_epoch = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, journal_write& x) {
  return f(x.persistence_id, x.events, x.command_id, x.correlation_id,
           x.causation_id, x.claims, x.releases, x.guards, x.noop_reply,
           x.shard, x.lease_epoch);
}

enum class write_status : uint8_t {
  /// Committed; `positions` holds each event's global position.
  ok,
  /// The command id was applied before: nothing written; `original` holds
  /// the events that first execution appended, or `original_reply` its
  /// reply if it appended none.
  duplicate,
  /// A claim was taken, a release or guard found no matching claim:
  /// nothing written; the entity re-reads its facts and decides again.
  precondition_failed,
  /// (persistence_id, seq_nr) already exists: another writer appended to
  /// this entity. Nothing written; the entity must recover.
  conflict,
  /// The database is unreachable or the outcome is unknown (connection lost
  /// during COMMIT). The entity must recover before trusting its state.
  unavailable,
  /// This node no longer holds the shard's lease at the write's epoch:
  /// nothing written; the shard is another node's now.
  fenced,
};

struct write_outcome {
  write_status status = write_status::unavailable;
  std::vector<int64_t> positions;
  std::vector<event_record> original;
  std::string original_reply;
  std::string detail;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, write_outcome& x) {
  return f(x.status, x.positions, x.original, x.original_reply, x.detail);
}

/// What a command id did to a stream: the events it appended, or the reply
/// of a command that appended nothing; both empty if it was never applied.
struct command_lookup {
  std::vector<event_record> events;
  std::string noop_reply;

  bool found() const {
    return !events.empty() || !noop_reply.empty();
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, command_lookup& x) {
  return f(x.events, x.noop_reply);
}

struct snapshot_record {
  std::string persistence_id;
  int64_t seq_nr = 0;
  int32_t version = 1;
  std::string payload;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, snapshot_record& x) {
  return f(x.persistence_id, x.seq_nr, x.version, x.payload);
}

/// What an entity needs to recover: its latest snapshot (seq_nr 0 when
/// there is none) and every event after it, in seq_nr order.
struct recovery_data {
  snapshot_record snapshot;
  std::vector<event_record> events;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, recovery_data& x) {
  return f(x.snapshot, x.events);
}

struct claim_lookup {
  bool found = false;
  std::string owner;
  std::string value;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, claim_lookup& x) {
  return f(x.found, x.owner, x.value);
}

struct journal_stats {
  uint64_t batches = 0;
  uint64_t writes = 0;
  uint64_t events = 0;
  uint64_t largest_batch = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, journal_stats& x) {
  return f(x.batches, x.writes, x.events, x.largest_batch);
}

} // namespace shoutflow::journal
