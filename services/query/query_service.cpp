#include "services/query/query_service.hpp"

#include <caf/all.hpp>
#include <google/protobuf/descriptor.h>

#include <cassert>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>

#include "actors/common/log.hpp"
#include "actors/entity/effect.hpp"
#include "actors/user/user_validation.hpp"
#include "services/common/grpc_status.hpp"
#include "services/common/request_intake.hpp"
#include "services/query/watch_session.hpp"

namespace shoutflow::services {

namespace {

using clock_type = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr auto resolve_retry = milliseconds(10);

grpc::Status rejection_status(const std::string& bytes) {
  v1::Rejection r;
  r.ParseFromString(bytes);
  return to_status(r);
}

/// A read the pool could not run (query_answer::unavailable).
grpc::Status unavailable_status(const std::string& why) {
  return to_status(entity::make_rejection(v1::REJECTION_CODE_UNAVAILABLE, "",
                                          "unavailable: " + why));
}

// -- unary reads --------------------------------------------------------------

/// One read in flight: its inputs and how to answer it.
struct read_call {
  std::string method;
  std::unique_ptr<google::protobuf::Message> request;
  int64_t min_position = 0;
  std::vector<std::string> projections;
  clock_type::time_point deadline;
  /// Outlives every RPC (the node stops the servers first); a pool thread
  /// may drop the last reference to a call, so the call holds no owning one.
  query_pool* pool = nullptr;
  query_actor workers;
  /// Answers read-your-writes waits (watch_hub.hpp).
  projection::hub_actor hub;
  grpc::ServerUnaryReactor* reactor = nullptr;
  grpc::ByteBuffer* response = nullptr;
  /// The method's metrics (null: none) and the request's arrival.
  const rpc_metrics::method_series* series = nullptr;
  query_metrics* metrics = nullptr;
  clock_type::time_point started;
  /// A first page of a home timeline, which may be answered from memory
  /// (page_cache.hpp; null: not one, or no cache).
  projection::page_cache* pages = nullptr;
  std::string page_owner;
  int32_t page_size = 0;

  void finish(const grpc::Status& s) {
    if (series != nullptr)
      series->record(
        s.error_code(),
        std::chrono::duration<double>(clock_type::now() - started).count());
    reactor->Finish(s);
  }
};

using call_ptr = std::shared_ptr<read_call>;

milliseconds remaining(const call_ptr& call) {
  auto left = std::chrono::duration_cast<milliseconds>(call->deadline
                                                       - clock_type::now());
  return std::max(left, milliseconds(1));
}

grpc::Status out_of_time(const read_call& call) {
  if (call.min_position > 0)
    return to_status(entity::make_rejection(
      v1::REJECTION_CODE_DEADLINE_EXCEEDED, "min_position",
      "min_position: the read models have not reached position "
        + std::to_string(call.min_position) + " within the deadline"));
  return to_status(
    entity::make_rejection(v1::REJECTION_CODE_DEADLINE_EXCEEDED, "",
                           "the read did not finish within the deadline"));
}

/// A read that ran out of time says what it was waiting for (the shared
/// mapping speaks of commands).
void fail(caf::event_based_actor* self, const call_ptr& call,
          const caf::error& err) {
  if (err == caf::sec::request_timeout) {
    call->finish(out_of_time(*call));
    return;
  }
  call->finish(to_status(rejection_from(err, self->system())));
}

void answer(const call_ptr& call, const std::string& bytes) {
  grpc::Slice slice(bytes);
  *call->response = grpc::ByteBuffer(&slice, 1);
  call->finish(grpc::Status::OK);
}

/// Offers a page read from the database to the cache: it depends on its
/// owner's timeline and on each shout and author it shows.
void keep_page(const read_call& call, const std::string& bytes,
               uint64_t since) {
  v1::TimelinePage page;
  if (!page.ParseFromString(bytes))
    return;
  using pc = projection::page_cache;
  std::vector<pc::topic> depends_on{{pc::kind::timeline, call.page_owner}};
  for (auto& s : page.shouts()) {
    depends_on.emplace_back(pc::kind::shout, s.shout_id());
    depends_on.emplace_back(pc::kind::user, s.author_id());
  }
  call.pages->fill(call.page_owner, call.page_size, bytes,
                   std::move(depends_on), since);
}

/// Answers from the page cache when it can (`min`: the read's min_position
/// as a cursor, already awaited); otherwise hands the read to the pool,
/// which finishes the RPC on its thread.
void query(const call_ptr& call,
           const std::optional<projection::cursor>& min = std::nullopt) {
  uint64_t since = 0;
  if (call->pages != nullptr) {
    auto page = call->pages->find(call->page_owner, call->page_size, min);
    if (call->metrics != nullptr)
      (page ? call->metrics->page_hits : call->metrics->page_misses)
        .Increment();
    if (page) {
      answer(call, *page);
      return;
    }
    since = call->pages->begin_fill();
  }
  call->pool->read(call->method, std::move(call->request), call->deadline,
                   [call = call, since](query_answer a) {
                     switch (a.kind) {
                       case query_answer::ok:
                         if (call->pages != nullptr)
                           keep_page(*call, a.bytes, since);
                         answer(call, a.bytes);
                         break;
                       case query_answer::rejected:
                         call->finish(rejection_status(a.bytes));
                         break;
                       case query_answer::expired:
                         call->finish(out_of_time(*call));
                         break;
                       case query_answer::unavailable:
                         call->finish(unavailable_status(a.bytes));
                         break;
                     }
                   });
}

void await(caf::event_based_actor* self, const call_ptr& call,
           const projection::cursor& c) {
  self
    ->request(call->hub, remaining(call), await_atom::value, call->projections,
              c)
    .then([=](bool) { query(call, c); },
          [=](caf::error& err) { fail(self, call, err); });
}

/// A read with a min_position, as an actor: min_position -> its log cursor
/// (retrying while it is not visible yet), wait for it, then query.
void resolve(caf::event_based_actor* self, const call_ptr& call) {
  self
    ->request(call->workers, remaining(call), resolve_atom::value,
              call->min_position)
    .then(
      [=](projection::cursor& c) {
        if (c.tx != 0) {
          await(self, call, c);
          return;
        }
        if (remaining(call) <= resolve_retry) {
          call->finish(to_status(entity::make_rejection(
            v1::REJECTION_CODE_DEADLINE_EXCEEDED, "min_position",
            "min_position: " + std::to_string(call->min_position)
              + " is not a committed log position (yet)")));
          return;
        }
        self->delayed_send(self, resolve_retry, tick_atom::value);
        self->become([=](tick_atom) { resolve(self, call); });
      },
      [=](caf::error& err) { fail(self, call, err); });
}

} // namespace

query_service::query_service(caf::actor_system& sys,
                             std::shared_ptr<query_pool> pool,
                             query_actor workers, projection::hub_actor hub,
                             query_service_config cfg)
  : sys_(sys),
    pool_(std::move(pool)),
    workers_(std::move(workers)),
    hub_(std::move(hub)),
    cfg_(cfg) {
}

query_service::raw query_service::dispatch(ctx* c, const char* method,
                                           const buf* request, buf* response) {
  auto call = std::make_shared<read_call>();
  call->reactor = c->DefaultReactor();
  call->started = clock_type::now();
  if (cfg_.metrics != nullptr)
    call->series = &cfg_.metrics->requests.method(method);
  auto* reactor = call->reactor;
  auto* m = query_method(method);
  auto parsed = new_query_message(*m, true);
  if (auto bad = read_request(*request, parsed.get())) {
    call->finish(to_status(*bad));
    return reactor;
  }
  if (auto bad = validate_query(method, *parsed, query_limits{})) {
    call->finish(to_status(*bad));
    return reactor;
  }
  call->method = method;
  call->min_position = min_position_of(*parsed);
  call->metrics = cfg_.metrics;
  if (auto* r = dynamic_cast<const v1::GetTimelineRequest*>(parsed.get());
      r != nullptr && cfg_.pages && r->page_token().empty()) {
    call->pages = cfg_.pages.get();
    call->page_owner = r->user_id();
    call->page_size = r->page_size();
  }
  call->request = std::move(parsed);
  call->projections = projections_read_by(method);
  auto timeout = cfg_.max_wait;
  if (auto late = fit_to_deadline(*c, &timeout)) {
    call->finish(to_status(*late));
    return reactor;
  }
  call->deadline = clock_type::now() + timeout;
  call->pool = pool_.get();
  call->workers = workers_;
  call->hub = hub_;
  call->response = response;
  if (call->min_position == 0) {
    query(call);
    return reactor;
  }
  if (!hub_) {
    call->finish(to_status(
      entity::make_rejection(v1::REJECTION_CODE_UNAVAILABLE, "min_position",
                             "min_position: this node has no watch hub")));
    return reactor;
  }
  sys_.spawn(resolve, call);
  return reactor;
}

query_service::raw query_service::GetUser(ctx* c, const buf* req, buf* resp) {
  return dispatch(c, "GetUser", req, resp);
}

query_service::raw query_service::GetShout(ctx* c, const buf* req, buf* resp) {
  return dispatch(c, "GetShout", req, resp);
}

query_service::raw query_service::GetTimeline(ctx* c, const buf* req,
                                              buf* resp) {
  return dispatch(c, "GetTimeline", req, resp);
}

query_service::raw query_service::GetUserShouts(ctx* c, const buf* req,
                                                buf* resp) {
  return dispatch(c, "GetUserShouts", req, resp);
}

query_service::raw query_service::ListFollowers(ctx* c, const buf* req,
                                                buf* resp) {
  return dispatch(c, "ListFollowers", req, resp);
}

query_service::raw query_service::ListFollowing(ctx* c, const buf* req,
                                                buf* resp) {
  return dispatch(c, "ListFollowing", req, resp);
}

query_service::raw query_service::GetLoginHistory(ctx* c, const buf* req,
                                                  buf* resp) {
  return dispatch(c, "GetLoginHistory", req, resp);
}

query_service::raw query_service::SearchUsers(ctx* c, const buf* req,
                                              buf* resp) {
  return dispatch(c, "SearchUsers", req, resp);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>*
query_service::Watch(ctx*, const buf* request) {
  return start_watch(sys_, workers_, hub_, cfg_.watch_buffer, cfg_.metrics,
                     request);
}

} // namespace shoutflow::services
