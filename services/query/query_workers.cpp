#include "services/query/query_workers.hpp"

#include <caf/all.hpp>
#include <google/protobuf/descriptor.h>

#include <memory>

#include "actors/journal/journal_actors.hpp"
#include "actors/journal/pg_session.hpp"
#include "shoutflow/v1/queries.pb.h"

namespace shoutflow::services {

namespace {

struct worker_state {
  std::unique_ptr<journal::pg_session> session;
  query_limits limits;
  static inline const char* name = "query-worker";
};

const google::protobuf::MethodDescriptor* method_of(const std::string& name) {
  return v1::UserView::descriptor()
    ->file()
    ->FindServiceByName("QueryService")
    ->FindMethodByName(name);
}

query_actor::behavior_type worker(query_actor::stateful_pointer<worker_state> self,
                                  std::string db_url, std::size_t index,
                                  query_limits limits) {
  self->state.session = std::make_unique<journal::pg_session>(
    db_url, "query-worker-" + std::to_string(index), nullptr);
  self->state.limits = limits;
  return {
    [=](query_atom, const std::string& method,
        const std::string& bytes) -> caf::result<query_answer> {
      auto* m = method_of(method);
      if (m == nullptr)
        return caf::make_error(caf::sec::invalid_argument,
                               "unknown method " + method);
      auto* factory = google::protobuf::MessageFactory::generated_factory();
      std::unique_ptr<google::protobuf::Message> request(
        factory->GetPrototype(m->input_type())->New());
      std::unique_ptr<google::protobuf::Message> response(
        factory->GetPrototype(m->output_type())->New());
      // The edge already parsed and validated these bytes.
      request->ParsePartialFromString(bytes);
      query_rejection rejected;
      auto r = self->state.session->run([&](pqxx::connection& conn) {
        response->Clear();
        // One snapshot for the whole query: a page never mixes two states.
        pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx{conn};
        rejected = run_query(tx, method, *request, *response,
                             self->state.limits);
      });
      if (!r)
        return journal::make_error(journal::db_errc::unavailable, r.detail);
      if (rejected)
        return query_answer{false, rejected->SerializeAsString()};
      return query_answer{true, response->SerializeAsString()};
    },
    [=](following_atom,
        const std::string& user) -> caf::result<std::vector<std::string>> {
      std::vector<std::string> authors;
      auto r = self->state.session->run([&](pqxx::connection& conn) {
        authors.clear();
        pqxx::read_transaction tx{conn};
        for (const auto& row :
             tx.exec_params("SELECT author_id FROM rm_followers"
                            " WHERE follower_id = $1",
                            user))
          authors.push_back(row[0].as<std::string>());
      });
      if (!r)
        return journal::make_error(journal::db_errc::unavailable, r.detail);
      return authors;
    },
    [=](resolve_atom, int64_t position) -> caf::result<projection::cursor> {
      projection::cursor c;
      auto r = self->state.session->run([&](pqxx::connection& conn) {
        pqxx::read_transaction tx{conn};
        auto rows = tx.exec_params("SELECT tx_id::text FROM events"
                                   " WHERE global_position = $1",
                                   position);
        c = rows.empty() ? projection::cursor{}
                         : projection::cursor{
                           std::stoull(rows[0][0].as<std::string>()),
                           position};
      });
      if (!r)
        return journal::make_error(journal::db_errc::unavailable, r.detail);
      return c;
    },
  };
}

struct front_state {
  std::vector<query_actor> workers;
  std::size_t next = 0;
  static inline const char* name = "query-front";
};

query_actor::behavior_type front(query_actor::stateful_pointer<front_state> self,
                                 std::string db_url, std::size_t count,
                                 query_limits limits) {
  for (std::size_t i = 0; i < std::max<std::size_t>(count, 1); ++i)
    self->state.workers.push_back(
      self->spawn<caf::detached + caf::linked>(worker, db_url, i, limits));
  auto pick = [self] {
    auto& st = self->state;
    return st.workers[st.next++ % st.workers.size()];
  };
  return {
    [=](query_atom a, std::string& method, std::string& bytes) {
      return self->delegate(pick(), a, std::move(method), std::move(bytes));
    },
    [=](resolve_atom a, int64_t position) {
      return self->delegate(pick(), a, position);
    },
    [=](following_atom a, std::string& user) {
      return self->delegate(pick(), a, std::move(user));
    },
  };
}

} // namespace

query_actor spawn_query_workers(caf::actor_system& sys,
                                const std::string& db_url, std::size_t count,
                                query_limits limits) {
  return sys.spawn(front, db_url, count, limits);
}

} // namespace shoutflow::services
