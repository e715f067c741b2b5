#include "services/admin/admin_service.hpp"

#include <caf/all.hpp>
#include <google/protobuf/util/time_util.h>
#include <pqxx/pqxx>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <thread>

#include "actors/cluster/membership.hpp"
#include "actors/entity/effect.hpp"
#include "actors/projection/generations.hpp"
#include "actors/projection/projection_actors.hpp"
#include "actors/user/user_codec.hpp"
#include "actors/user/user_validation.hpp"
#include "services/common/grpc_status.hpp"
#include "services/common/lenient_proto.hpp"
#include "services/common/request_intake.hpp"

namespace shoutflow::services {

namespace {

using google::protobuf::util::TimeUtil;
using reactor = grpc::ServerUnaryReactor;

constexpr auto manager_timeout = std::chrono::seconds(30);

grpc::Status database_unavailable(const std::string& why) {
  return to_status(entity::make_rejection(v1::REJECTION_CODE_UNAVAILABLE, "",
                                          "database unavailable: " + why));
}

/// Runs `work` on a thread of its own and finishes the call with its status;
/// database errors become UNAVAILABLE.
reactor* on_thread(grpc::CallbackServerContext* c,
                   std::function<grpc::Status()> work) {
  auto* r = c->DefaultReactor();
  std::thread([r, work = std::move(work)] {
    grpc::Status status;
    try {
      status = work();
    } catch (const std::exception& e) {
      status = database_unavailable(e.what());
    }
    r->Finish(status);
  }).detach();
  return r;
}

/// `on_thread` for a raw method: parses the request leniently, refuses
/// invalid UTF-8 by field, runs `work(request, response)` and serializes
/// the response.
template <class Request, class Response, class Work>
reactor* on_thread_raw(grpc::CallbackServerContext* c,
                       const grpc::ByteBuffer* request,
                       grpc::ByteBuffer* response, Work work) {
  auto req = std::make_shared<Request>();
  if (auto bad = read_request(*request, req.get())) {
    auto* r = c->DefaultReactor();
    r->Finish(to_status(*bad));
    return r;
  }
  return on_thread(c, [req, response, work]() -> grpc::Status {
    Response resp;
    auto status = work(req.get(), &resp);
    if (status.ok())
      *response = to_buffer(resp);
    return status;
  });
}

grpc::Status invalid(const std::string& field, const std::string& why) {
  return to_status(entity::make_rejection(v1::REJECTION_CODE_INVALID_ARGUMENT,
                                          field, field + ": " + why));
}

grpc::Status no_projections() {
  return to_status(entity::make_rejection(
    v1::REJECTION_CODE_UNAVAILABLE, "",
    "this node runs no projections (role 'projections')"));
}

/// Asks the projection manager and waits (on this admin thread).
template <class Result, class... Ts>
grpc::Status ask_manager(caf::actor_system& sys,
                         const projection::manager_actor& manager, Result& out,
                         Ts&&... xs) {
  caf::scoped_actor self{sys};
  grpc::Status status;
  self->request(manager, manager_timeout, std::forward<Ts>(xs)...)
    .receive([&](Result& r) { out = std::move(r); },
             [&](caf::error& err) {
               status = to_status(rejection_from(err, sys));
             });
  return status;
}

} // namespace

admin_service::admin_service(caf::actor_system& sys, std::string db_url,
                             admin_node_info node,
                             projection::manager_actor manager)
  : sys_(sys),
    db_url_(std::move(db_url)),
    node_(std::move(node)),
    manager_(std::move(manager)) {
}

reactor* admin_service::GetClusterStatus(ctx* c,
                                         const v1::GetClusterStatusRequest*,
                                         v1::ClusterStatus* resp) {
  return on_thread(c, [this, resp]() -> grpc::Status {
    pqxx::connection conn{db_url_};
    cluster::cluster_view view;
    if (auto r = cluster::read_view(conn, view); !r)
      return database_unavailable(r.detail);
    auto name = [](int32_t node) {
      return node < 0 ? std::string{} : "node-" + std::to_string(node);
    };
    auto address = [](const cluster::member& m, int32_t port) {
      return port > 0 ? m.host + ":" + std::to_string(port) : std::string{};
    };
    std::map<int32_t, std::pair<int32_t, int32_t>> owned;
    for (auto& l : view.leases)
      if (l.valid && l.owner_node >= 0)
        (l.resource == cluster::shard_resource ? owned[l.owner_node].first
                                               : owned[l.owner_node].second)++;
    for (auto& m : view.members) {
      auto* out = resp->add_members();
      out->set_node_id(name(m.node_id));
      out->set_address(address(m, m.caf_port));
      for (auto& role : m.roles)
        out->add_roles(role);
      out->set_heartbeat_age_seconds(static_cast<double>(m.heartbeat_age_ms)
                                     / 1000.0);
      out->set_state(cluster::to_string(m.state));
      out->set_incarnation(m.incarnation);
      out->set_command_address(address(m, m.command_port));
      out->set_query_address(address(m, m.query_port));
      out->set_admin_address(address(m, m.admin_port));
      if (m.metrics_port > 0)
        out->set_metrics_url("http://" + address(m, m.metrics_port)
                             + "/metrics");
      out->set_shards_owned(owned[m.node_id].first);
      out->set_partitions_owned(owned[m.node_id].second);
    }
    resp->set_shards(node_.shards);
    std::vector<std::string> shard_owners(node_.shards);
    for (auto& l : view.leases) {
      auto* lease = l.resource == cluster::shard_resource
                      ? resp->add_shard_leases()
                      : resp->add_partition_leases();
      lease->set_resource(l.resource);
      lease->set_part(l.part);
      lease->set_owner(l.valid ? name(l.owner_node) : std::string{});
      lease->set_epoch(l.epoch);
      if (l.resource == cluster::shard_resource && l.part >= 0
          && static_cast<uint32_t>(l.part) < node_.shards)
        shard_owners[static_cast<std::size_t>(l.part)] = lease->owner();
    }
    for (auto& o : shard_owners)
      resp->add_shard_owners(o);
    return grpc::Status::OK;
  });
}

reactor* admin_service::GetProjectionStatus(
  ctx* c, const v1::GetProjectionStatusRequest*, v1::ProjectionStatus* resp) {
  return on_thread(c, [this, resp]() -> grpc::Status {
    // The generations running here say whether a build is a point-in-time
    // one; everything else comes from the database, whichever nodes run
    // the partitions.
    std::vector<projection::reader_status> local;
    if (manager_)
      if (auto s = ask_manager(sys_, manager_, local, status_atom::value);
          !s.ok())
        return s;
    pqxx::connection conn{db_url_};
    pqxx::read_transaction tx{conn};
    auto head = tx.exec1("SELECT coalesce(max(global_position), 0)"
                         "  FROM events")[0]
                  .as<int64_t>();
    resp->set_head_position(head);
    auto total = tx.exec1("SELECT count(*) FROM events")[0].as<int64_t>();
    auto generations = tx.exec(
      "SELECT projection, generation, state, partitions,"
      "       until_position IS NOT NULL"
      "  FROM projection_generations"
      " WHERE state IN ('live', 'building')"
      " ORDER BY projection, generation");
    for (const auto& gen : generations) {
      auto name = gen[0].as<std::string>();
      auto generation = gen[1].as<int32_t>();
      auto partitions = gen[3].as<int32_t>();
      auto state = gen[2].as<std::string>();
      if (state == "building" && gen[4].as<bool>())
        state = "point-in-time";
      for (auto& r : local)
        if (r.projection == name && r.generation == generation)
          state = r.state;
      auto offsets = projection::offsets_of(tx, name, generation, partitions);
      projection::cursor watermark;
      if (!offsets.empty())
        watermark = *std::min_element(offsets.begin(), offsets.end());
      auto* g = resp->add_projections();
      g->set_projection(name);
      g->set_generation(generation);
      g->set_state(state);
      g->set_position(watermark.position);
      // Events after the watermark in log order (tx_id, position): the
      // last one applied need not be the highest position.
      auto lag = tx.exec_params1("SELECT count(*) FROM events"
                                 " WHERE (tx_id, global_position)"
                                 "       > ($1::text::xid8, $2::bigint)",
                                 std::to_string(watermark.tx),
                                 watermark.position)[0]
                   .as<int64_t>();
      g->set_lag_events(lag);
      // Every event of the log up to the watermark has been through it.
      g->set_events_applied(total - lag);
      auto oldest = tx.exec_params(
        "SELECT extract(epoch FROM now() - recorded_at)::float8 FROM events"
        " WHERE (tx_id, global_position) > ($1::text::xid8, $2::bigint)"
        " ORDER BY tx_id, global_position LIMIT 1",
        std::to_string(watermark.tx), watermark.position);
      g->set_lag_seconds(oldest.empty() ? 0.0 : oldest[0][0].as<double>());
      g->set_dead_letters(
        tx.exec_params1("SELECT count(*) FROM projection_dead_letters"
                        " WHERE projection = $1 AND generation = $2",
                        name, generation)[0]
          .as<int64_t>());
      for (const auto& row : tx.exec_params(
             "SELECT partition, position, events FROM projection_offsets"
             " WHERE projection = $1 AND generation = $2 ORDER BY partition",
             name, generation)) {
        auto* p = g->add_partitions();
        p->set_partition(row[0].as<int32_t>());
        p->set_position(row[1].as<int64_t>());
        p->set_events(row[2].as<int64_t>());
      }
    }
    return grpc::Status::OK;
  });
}

reactor* admin_service::RebuildProjection(ctx* c, const buf* request,
                                          buf* response) {
  return on_thread_raw<v1::RebuildProjectionRequest,
                       v1::RebuildProjectionResponse>(
    c, request, response,
    [this](const v1::RebuildProjectionRequest* req,
           v1::RebuildProjectionResponse* resp) -> grpc::Status {
      if (req->projection().empty())
        return invalid("projection", "name one (users, shouts, timelines)");
      if (req->until_position() < 0)
        return invalid("until_position", "must not be negative");
      if (!manager_)
        return no_projections();
      int64_t until_ms
        = req->has_until_time()
            ? TimeUtil::TimestampToMilliseconds(req->until_time())
            : 0;
      int32_t generation = 0;
      auto s = ask_manager(sys_, manager_, generation, rebuild_atom::value,
                           req->projection(), req->until_position(), until_ms);
      if (s.ok())
        resp->set_generation(generation);
      return s;
    });
}

reactor* admin_service::ReadStream(ctx* c, const buf* request, buf* response) {
  return on_thread_raw<v1::ReadStreamRequest, v1::StreamEvents>(
    c, request, response,
    [this](const v1::ReadStreamRequest* req,
           v1::StreamEvents* resp) -> grpc::Status {
      if (auto bad = user::check_user_id("user_id", req->user_id()))
        return to_status(*bad);
      if (req->from_seq() < 0)
        return invalid("from_seq", "must not be negative");
      if (req->limit() < 0 || req->limit() > 10000)
        return invalid("limit", "must be between 1 and 10000 (0: 100)");
      auto limit = req->limit() == 0 ? 100 : req->limit();
      pqxx::connection conn{db_url_};
      pqxx::read_transaction tx{conn};
      resp->set_last_seq_nr(
        tx.exec_params1("SELECT coalesce(max(seq_nr), 0) FROM events"
                        " WHERE persistence_id = $1",
                        "user|" + req->user_id())[0]
          .as<int64_t>());
      for (const auto& row : tx.exec_params(
             "SELECT global_position, seq_nr, event_type, event_version,"
             "       payload, coalesce(command_id, ''),"
             "       coalesce(correlation_id, ''),"
             "       (extract(epoch FROM recorded_at) * 1000)::bigint"
             "  FROM events WHERE persistence_id = $1 AND seq_nr >= $2"
             " ORDER BY seq_nr LIMIT $3",
             "user|" + req->user_id(), req->from_seq(), limit)) {
        auto* e = resp->add_events();
        e->set_global_position(row[0].as<int64_t>());
        e->set_seq_nr(row[1].as<int64_t>());
        e->set_event_type(row[2].as<std::string>());
        e->set_event_version(row[3].as<int32_t>());
        auto decoded = user::decode_event(e->event_type(), e->event_version(),
                                          pqxx::binarystring{row[4]}.str());
        if (decoded) {
          // Operators see what happened, not credentials.
          if (decoded->has_user_registered())
            decoded->mutable_user_registered()->set_password_hash("(redacted)");
          *e->mutable_event() = std::move(*decoded);
        }
        e->set_command_id(row[5].as<std::string>());
        e->set_correlation_id(row[6].as<std::string>());
        *e->mutable_recorded_at()
          = TimeUtil::MillisecondsToTimestamp(row[7].as<int64_t>());
      }
      return grpc::Status::OK;
    });
}

reactor* admin_service::ListDeadLetters(ctx* c, const buf* request,
                                        buf* response) {
  return on_thread_raw<v1::ListDeadLettersRequest, v1::DeadLetters>(
    c, request, response,
    [this](const v1::ListDeadLettersRequest* req,
           v1::DeadLetters* resp) -> grpc::Status {
      if (req->limit() < 0 || req->limit() > 10000)
        return invalid("limit", "must be between 1 and 10000 (0: 100)");
      auto limit = req->limit() == 0 ? 100 : req->limit();
      pqxx::connection conn{db_url_};
      pqxx::read_transaction tx{conn};
      for (const auto& row : tx.exec_params(
             "SELECT id, projection, generation, key, global_position,"
             "       persistence_id, seq_nr, event_type, error,"
             "       (extract(epoch FROM recorded_at) * 1000)::bigint"
             "  FROM projection_dead_letters"
             " WHERE $1 = '' OR projection = $1"
             " ORDER BY projection, generation, key, tx_id, global_position"
             " LIMIT $2",
             req->projection(), limit)) {
        auto* d = resp->add_dead_letters();
        d->set_id(row[0].as<int64_t>());
        d->set_projection(row[1].as<std::string>());
        d->set_generation(row[2].as<int32_t>());
        d->set_key(row[3].as<std::string>());
        d->set_global_position(row[4].as<int64_t>());
        d->set_persistence_id(row[5].as<std::string>());
        d->set_seq_nr(row[6].as<int64_t>());
        d->set_event_type(row[7].as<std::string>());
        d->set_error(row[8].as<std::string>());
        *d->mutable_recorded_at()
          = TimeUtil::MillisecondsToTimestamp(row[9].as<int64_t>());
      }
      return grpc::Status::OK;
    });
}

reactor* admin_service::RetryDeadLetter(ctx* c,
                                        const v1::RetryDeadLetterRequest* req,
                                        v1::RetryDeadLetterResponse* resp) {
  return on_thread(c, [this, req, resp]() -> grpc::Status {
    if (req->id() <= 0)
      return invalid("id", "must be a dead letter's id");
    if (!manager_)
      return no_projections();
    uint64_t applied = 0;
    auto s = ask_manager(sys_, manager_, applied, retry_atom::value, req->id());
    if (s.ok())
      resp->set_applied(applied);
    return s;
  });
}

} // namespace shoutflow::services
