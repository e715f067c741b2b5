#include "services/query/query_workers.hpp"

#include <caf/all.hpp>
#include <google/protobuf/descriptor.h>

#include <functional>

#include "actors/journal/journal_actors.hpp"
#include "shoutflow/v1/queries.pb.h"

namespace shoutflow::services {

/// Work a pool thread hands back to the front, to run in the actor (a
/// response promise is delivered only from its own actor).
struct front_task {
  std::function<void()> run;
};

} // namespace shoutflow::services

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(shoutflow::services::front_task)

namespace shoutflow::services {

namespace {

using front_actor = query_actor::extend<caf::reacts_to<front_task>>;

/// Reads from actors answer within this, like any CAF request here.
constexpr auto front_deadline = std::chrono::seconds(10);

std::unique_ptr<google::protobuf::Message>
parse_request(const std::string& method, const std::string& bytes) {
  auto* m = query_method(method);
  if (m == nullptr)
    return nullptr;
  auto request = new_query_message(*m, true);
  // The caller built (or parsed and validated) these bytes.
  request->ParsePartialFromString(bytes);
  return request;
}

caf::error db_error(const journal::db_result& r) {
  return journal::make_error(journal::db_errc::unavailable, r.detail);
}

front_actor::behavior_type front(front_actor::pointer self,
                                 std::shared_ptr<query_pool> pool) {
  // Something that runs `deliver` in this actor, for a pool thread to call
  // once the job is done. It holds a handle only while the job is out.
  auto back = [self] {
    return
      [me = caf::actor_cast<front_actor>(self)](std::function<void()> deliver) {
        caf::anon_send(me, front_task{std::move(deliver)});
      };
  };
  return {
    [=](query_atom, const std::string& method,
        const std::string& bytes) -> caf::result<query_answer> {
      auto request = parse_request(method, bytes);
      if (request == nullptr)
        return caf::make_error(caf::sec::invalid_argument,
                               "unknown method " + method);
      auto rp = self->make_response_promise<query_answer>();
      pool->read(method, std::move(request),
                 query_pool::clock_type::now() + front_deadline,
                 [back = back(), rp](query_answer a) mutable {
                   back([rp, a = std::move(a)]() mutable {
                     if (a.kind == query_answer::expired)
                       rp.deliver(caf::make_error(caf::sec::request_timeout));
                     else if (a.kind == query_answer::unavailable)
                       rp.deliver(journal::make_error(
                         journal::db_errc::unavailable, a.bytes));
                     else
                       rp.deliver(std::move(a));
                   });
                 });
      return rp;
    },
    [=](following_atom,
        const std::string& user) -> caf::result<std::vector<std::string>> {
      auto rp = self->make_response_promise<std::vector<std::string>>();
      auto authors = std::make_shared<std::vector<std::string>>();
      pool->call(
        [authors, user](pqxx::connection& conn) {
          authors->clear();
          pqxx::read_transaction tx{conn};
          for (const auto& row :
               tx.exec_params("SELECT author_id FROM rm_followers"
                              " WHERE follower_id = $1",
                              user))
            authors->push_back(row[0].as<std::string>());
        },
        [back = back(), rp, authors](const journal::db_result& r) mutable {
          back([rp, authors, r]() mutable {
            if (r)
              rp.deliver(std::move(*authors));
            else
              rp.deliver(db_error(r));
          });
        });
      return rp;
    },
    [=](resolve_atom, int64_t position) -> caf::result<projection::cursor> {
      auto rp = self->make_response_promise<projection::cursor>();
      auto c = std::make_shared<projection::cursor>();
      pool->call(
        [c, position](pqxx::connection& conn) {
          pqxx::read_transaction tx{conn};
          auto rows = tx.exec_params("SELECT tx_id::text FROM events"
                                     " WHERE global_position = $1",
                                     position);
          *c = rows.empty()
                 ? projection::cursor{}
                 : projection::cursor{std::stoull(rows[0][0].as<std::string>()),
                                      position};
        },
        [back = back(), rp, c](const journal::db_result& r) mutable {
          back([rp, c, r]() mutable {
            if (r)
              rp.deliver(*c);
            else
              rp.deliver(db_error(r));
          });
        });
      return rp;
    },
    [](front_task& t) { t.run(); },
  };
}

} // namespace

query_actor spawn_query_front(caf::actor_system& sys,
                              std::shared_ptr<query_pool> pool) {
  return caf::actor_cast<query_actor>(sys.spawn(front, std::move(pool)));
}

} // namespace shoutflow::services
