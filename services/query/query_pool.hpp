#pragma once

// The query pool: threads, each with its own connection, that run the
// QueryService's reads (read_queries.hpp) off the CAF scheduler and off
// gRPC's threads.
//
// A gRPC handler hands a parsed request to `read`; a pool thread runs it and
// calls `done`, which may finish the RPC right there: a plain read crosses one
// thread boundary each way, no actor in between. Reads of one batched method
// (GetUser, GetShout, GetTimeline; read_queries.hpp) that wait in the queue
// together are coalesced: one statement answers up to `max_batch` of them,
// as the journal group-commits writes. Requests of other methods keep their
// place in the queue.
//
// Contract: `done` is called exactly once per job, on a pool thread or, once
// the pool has stopped, on the caller's: with the answer, with `expired` when
// the deadline passed while the job was queued, or with `unavailable` when
// the database is unreachable or the pool stops.

#include <google/protobuf/message.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "actors/journal/pg_session.hpp"
#include "services/query/read_queries.hpp"

namespace shoutflow::services {

/// The outcome of one read.
struct query_answer {
  enum outcome : uint8_t {
    /// `bytes`: the serialized response message.
    ok,
    /// `bytes`: a serialized v1::Rejection.
    rejected,
    /// `bytes`: why (the database is unreachable, or the node is stopping).
    unavailable,
    /// The deadline passed before a thread was free.
    expired,
  };
  outcome kind = unavailable;
  std::string bytes;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, query_answer& x) {
  // uint8_t is a character type: viewing the enum through it is allowed.
  return f(reinterpret_cast<uint8_t&>(x.kind), x.bytes);
}

class query_pool {
public:
  using clock_type = std::chrono::steady_clock;
  using done_fn = std::function<void(query_answer)>;
  using call_fn = std::function<void(pqxx::connection&)>;
  using call_done_fn = std::function<void(const journal::db_result&)>;

  /// Starts `threads` threads (at least one); connections open lazily.
  query_pool(std::string db_url, std::size_t threads, query_limits limits,
             std::size_t max_batch = 64);

  /// Stops: answers what is queued `unavailable`, then joins the threads.
  ~query_pool();

  query_pool(const query_pool&) = delete;
  query_pool& operator=(const query_pool&) = delete;

  /// Runs `method` on `request` (already validated) unless `deadline`
  /// passes first.
  void read(std::string method,
            std::unique_ptr<google::protobuf::Message> request,
            clock_type::time_point deadline, done_fn done);

  /// Runs any other read-only call on a pool connection; `done` gets the
  /// outcome of `session.run(fn)`.
  void call(call_fn fn, call_done_fn done);

  /// Jobs waiting for a thread.
  std::size_t queued() const;

  /// Reads answered from the database, and the statements that answered
  /// them (fewer when reads were coalesced).
  uint64_t reads_run() const {
    return reads_run_.load();
  }
  uint64_t statements_run() const {
    return statements_run_.load();
  }

private:
  struct job {
    std::string method; // empty: a call
    std::unique_ptr<google::protobuf::Message> request;
    clock_type::time_point deadline;
    done_fn done;
    call_fn fn;
    call_done_fn call_done;
  };

  void enqueue(job j);
  void loop(std::size_t index);
  /// The next jobs to run together: the oldest, plus the batched reads of the
  /// same method queued behind it. Requires the lock.
  std::vector<job> take_locked();
  void run(journal::pg_session& session, std::vector<job>& jobs);

  std::string db_url_;
  query_limits limits_;
  std::size_t max_batch_;
  mutable std::mutex mtx_;
  std::condition_variable cv_;
  std::deque<job> queue_;
  bool stopping_ = false;
  std::atomic<uint64_t> reads_run_{0};
  std::atomic<uint64_t> statements_run_{0};
  std::vector<std::thread> threads_;
};

} // namespace shoutflow::services
