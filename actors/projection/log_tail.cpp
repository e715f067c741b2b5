#include "actors/projection/log_tail.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <deque>
#include <memory>
#include <vector>

#include "actors/common/log.hpp"
#include "actors/projection/log_reader.hpp"

namespace shoutflow::projection {

namespace {

constexpr auto fetch_timeout = std::chrono::seconds(60);

struct waiter {
  caf::typed_response_promise<fetch_result> promise;
  cursor after;
  int64_t limit = 0;
};

struct tail_state {
  log_tail_config cfg;
  /// The current database fetcher; shared with the exit hook that stops
  /// it when the tail stops (start_db replaces it).
  std::shared_ptr<fetcher_actor> db = std::make_shared<fetcher_actor>();
  /// The window (lo, hi] (log_tail.hpp); empty until the first fetch.
  bool anchored = false;
  cursor lo;
  cursor hi;
  std::deque<raw_event> window;
  /// A fetch after hi is on its way; `parked` wait for it.
  bool in_flight = false;
  std::vector<waiter> parked;
  prometheus::Counter* from_window = nullptr;
  prometheus::Counter* window_fetches = nullptr;
  prometheus::Counter* direct_fetches = nullptr;
  static inline const char* name = "log-tail";
};

using pointer = fetcher_actor::stateful_pointer<tail_state>;

void count(prometheus::Counter* c) {
  if (c != nullptr)
    c->Increment();
}

bool in_window(const tail_state& st, const cursor& after) {
  return st.anchored && st.lo <= after && after < st.hi;
}

/// The window's events after `after`, at most `limit` of them.
fetch_result serve(const tail_state& st, const cursor& after, int64_t limit) {
  auto first = std::upper_bound(st.window.begin(), st.window.end(), after,
                                [](const cursor& c, const raw_event& e) {
                                  return c < e.at;
                                });
  auto n = std::min<std::ptrdiff_t>(std::distance(first, st.window.end()),
                                    std::max<int64_t>(limit, 1));
  fetch_result out;
  out.events.assign(first, first + n);
  return out;
}

/// A database answer for the range after `after`: whatever of it lies past
/// hi extends the window (it covers (after, last], so (hi, last] too when
/// after <= hi; a result starting above hi would leave a hole).
void absorb(tail_state& st, const cursor& after,
            const std::vector<raw_event>& events) {
  if (!st.anchored || events.empty() || st.hi < after
      || !(st.hi < events.back().at))
    return;
  auto first = std::upper_bound(events.begin(), events.end(), st.hi,
                                [](const cursor& c, const raw_event& e) {
                                  return c < e.at;
                                });
  st.window.insert(st.window.end(), first, events.end());
  st.hi = events.back().at;
  while (st.window.size() > st.cfg.capacity) {
    st.lo = st.window.front().at;
    st.window.pop_front();
  }
}

/// A reader outside the window: fetched for it alone.
void fetch_direct(pointer self,
                  caf::typed_response_promise<fetch_result> promise,
                  const cursor& after, int64_t limit) {
  count(self->state.direct_fetches);
  self
    ->request(*self->state.db, fetch_timeout, fetch_atom::value, after, limit,
              int64_t{0}, int64_t{0})
    .then(
      [=](fetch_result& res) mutable {
        absorb(self->state, after, res.events);
        promise.deliver(std::move(res));
      },
      [=](caf::error& err) mutable { promise.deliver(std::move(err)); });
}

void fetch_window(pointer self, int64_t limit);

void handle(pointer self, caf::typed_response_promise<fetch_result> promise,
            const cursor& after, int64_t limit) {
  auto& st = self->state;
  if (in_window(st, after)) {
    count(st.from_window);
    promise.deliver(serve(st, after, limit));
    return;
  }
  if (st.anchored && after == st.hi) {
    st.parked.push_back({std::move(promise), after, limit});
    if (!st.in_flight)
      fetch_window(self, limit);
    return;
  }
  if ((!st.anchored || st.hi < after) && !st.in_flight) {
    // Nothing cached yet, or every cached event is behind this reader.
    st.anchored = true;
    st.lo = st.hi = after;
    st.window.clear();
    st.parked.push_back({std::move(promise), after, limit});
    fetch_window(self, limit);
    return;
  }
  fetch_direct(self, std::move(promise), after, limit);
}

/// Single flight: one fetch after hi answers every reader parked there.
void fetch_window(pointer self, int64_t limit) {
  auto& st = self->state;
  st.in_flight = true;
  count(st.window_fetches);
  auto after = st.hi;
  self
    ->request(*st.db, fetch_timeout, fetch_atom::value, after, limit,
              int64_t{0}, int64_t{0})
    .then(
      [=](fetch_result& res) {
        auto& st = self->state;
        st.in_flight = false;
        absorb(st, after, res.events);
        auto parked = std::move(st.parked);
        st.parked.clear();
        for (auto& w : parked) {
          if (in_window(st, w.after)) {
            count(st.from_window);
            w.promise.deliver(serve(st, w.after, w.limit));
          } else if (w.after == st.hi) {
            // Nothing new: the reader polls again when it is woken or its
            // horizon retry is due.
            fetch_result none;
            none.behind_horizon = res.behind_horizon;
            w.promise.deliver(std::move(none));
          } else {
            handle(self, std::move(w.promise), w.after, w.limit);
          }
        }
      },
      [=](caf::error& err) {
        auto& st = self->state;
        st.in_flight = false;
        auto parked = std::move(st.parked);
        st.parked.clear();
        for (auto& w : parked)
          w.promise.deliver(err);
      });
}

/// Spawns the database fetcher and watches it (see log_tail_config).
void start_db(pointer self) {
  auto& st = self->state;
  *st.db = st.cfg.spawn_db ? st.cfg.spawn_db(self->system())
                           : spawn_fetcher(self->system(), st.cfg.db_url);
  self->monitor(*st.db);
}

fetcher_actor::behavior_type tail(pointer self, log_tail_config cfg) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.cfg.capacity = std::max<std::size_t>(st.cfg.capacity, 1);
  if (st.cfg.metrics != nullptr) {
    auto& reads = st.cfg.metrics->log_reads;
    st.from_window = &reads.Add({{"source", "shared"}});
    st.window_fetches = &reads.Add({{"source", "database"}});
    st.direct_fetches = &reads.Add({{"source", "direct"}});
  }
  start_db(self);
  self->attach_functor([db = st.db] {
    caf::anon_send_exit(*db, caf::exit_reason::user_shutdown);
  });
  // Requests in flight to a stopped fetcher fail; their readers retry
  // (log_reader.cpp) and reach the new one.
  self->set_down_handler([=](caf::down_msg& msg) {
    if (msg.source != self->state.db->address())
      return;
    log_warn("projection", "log tail: its database fetcher stopped ("
                             + self->system().render(msg.reason)
                             + "); starting another");
    start_db(self);
  });
  return {
    [=](fetch_atom, const cursor& after, int64_t limit, int64_t until_pos,
        int64_t until_ms) -> caf::result<fetch_result> {
      auto promise = self->make_response_promise<fetch_result>();
      if (until_pos != 0 || until_ms != 0)
        promise.delegate(*self->state.db, fetch_atom::value, after, limit,
                         until_pos, until_ms);
      else
        handle(self, promise, after, limit);
      return promise;
    },
    [=](head_atom) -> caf::result<int64_t> {
      auto promise = self->make_response_promise<int64_t>();
      promise.delegate(*self->state.db, head_atom::value);
      return promise;
    },
  };
}

} // namespace

fetcher_actor spawn_log_tail(caf::actor_system& sys, log_tail_config cfg) {
  return sys.spawn(tail, std::move(cfg));
}

} // namespace shoutflow::projection
