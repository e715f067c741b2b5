// memory_bench: process memory per registered-but-passivated user.
//
//   memory_bench [--users=N] [--inflight=K] [--cap=C] [--progress=P]
//                [--settle=S]
//
// Needs SHOUTFLOW_DB_URL (scripts/bench provides it). Starts an in-process
// node (test_node: real actors, real PostgreSQL in a fresh test_database,
// password hashing at libsodium's minimum cost — benchmarks only) with at
// most C entities in memory (default 1,000), then registers N users
// (default 1,000,000) through the router — the real write path without the
// gRPC hop: router -> shard region -> entity -> fact resolver (handle claim,
// password hash) -> journal group commit — from one driver actor that keeps
// K requests in flight (default 256). Every registration spawns an entity;
// the region passivates the least recently used ones beyond the cap.
//
// Once all are registered and the region holds at most C entities with none
// still passivating, it waits S seconds (--settle, default 15: stopped
// entities stay reachable from the entity runtime's pending request
// timeouts, whose bound is the entities' io_timeout of 10 s — measured: the
// live heap falls back to the active set's within 10 s), then reads VmRSS
// from /proc/self/status and reports
//   (RSS after - RSS before registration) / N
// as the headline, plus diagnostics: the same after malloc_trim(0) (memory
// the allocator holds but no object uses); the marginal cost from the moment
// the first C users filled the active set (excluding per-connection and
// per-thread start-up allocations); and the allocator's bytes in use
// (mallinfo2: live objects, no fragmentation) right after registration and
// after settling. Output ends with one line:
//   RESULT users=N cap=C seconds=.. rss_before_kib=.. rss_warm_kib=..
//          rss_after_kib=.. rss_trimmed_kib=.. bytes_per_user=..
//          bytes_per_user_trimmed=.. marginal_bytes_per_user=..
//          heap_before_kib=.. heap_unsettled_kib=.. heap_after_kib=..
//          heap_bytes_per_user=.. marginal_heap_bytes_per_user=..
//          actors_running=..

#include <caf/all.hpp>
#include <malloc.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include "actors/user/user_validation.hpp"
#include "tests/bench/bench_support.hpp"
#include "tests/support/test_db.hpp"
#include "tests/support/test_node.hpp"

namespace {

using namespace shoutflow;
using namespace shoutflow::testing;
using clock_type = std::chrono::steady_clock;

struct options {
  long users = 1000000;
  int inflight = 256;
  long cap = 1000;
  long progress = 100000;
  /// Seconds to wait after registration before measuring (see top).
  long settle = 15;
};

constexpr bench::program cli{
  "memory_bench",
  "usage: memory_bench [--users=N] [--inflight=K] [--cap=C] [--progress=P] "
  "[--settle=S]\n"};

options parse(int argc, char** argv) {
  options o;
  bench::flags flag{cli, argc, argv};
  while (flag.next()) {
    const auto& name = flag.name();
    if (name == "users")
      o.users = flag.integer<long>(1, 1e9);
    else if (name == "inflight")
      o.inflight = flag.integer<int>(1, 1e6);
    else if (name == "cap")
      o.cap = flag.integer<long>(1, 1e9);
    else if (name == "progress")
      o.progress = flag.integer<long>(1, 1e12);
    else if (name == "settle")
      o.settle = flag.integer<long>(0, 86400);
    else
      flag.unknown();
  }
  if (o.cap >= o.users)
    cli.usage_error("--users must exceed --cap");
  return o;
}

/// Bytes the allocator has handed out and not yet had back (all arenas,
/// including mmapped blocks): live objects, without fragmentation.
long heap_in_use_kib() {
  auto mi = mallinfo2();
  return static_cast<long>((mi.uordblks + mi.hblkhd) / 1024);
}

/// VmRSS of this process in KiB.
long rss_kib() {
  std::ifstream in{"/proc/self/status"};
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0)
      return std::strtol(line.c_str() + 6, nullptr, 10);
  throw std::runtime_error("no VmRSS in /proc/self/status");
}

struct outcome {
  long ok = 0;
  long failed = 0;
  std::string first_error;
};

std::string user_id(long i) {
  return "mem-user-" + std::to_string(i);
}

/// Registers users [first, last) through the router with `inflight`
/// requests outstanding; a retryable rejection (UNAVAILABLE) is retried
/// with the same command id, which is idempotent.
outcome register_users(test_node& node, long first, long last, int inflight,
                       long progress, clock_type::time_point started) {
  // Shared with the driver: set_value may still be returning when the
  // caller wakes up and leaves this function.
  auto done = std::make_shared<std::promise<outcome>>();
  auto result = done->get_future();
  auto router = node.get().router();
  node.get().system().spawn([=](caf::event_based_actor* self) {
    struct driver {
      long next = 0;
      long completed = 0;
      outcome out;
    };
    auto st = std::make_shared<driver>();
    st->next = first;
    auto total = last - first;
    auto send = std::make_shared<std::function<void(long, int)>>();
    auto issue = [=] {
      if (st->next < last)
        (*send)(st->next++, 0);
    };
    *send = [=](long i, int attempt) {
      auto id = user_id(i);
      v1::EntityCommand envelope;
      *envelope.mutable_user() = register_user(
        "reg-" + id, id, "m" + std::to_string(i), "password " + id);
      envelope.set_entity_id(id);
      auto complete = [=](bool ok, const std::string& error) {
        if (ok) {
          ++st->out.ok;
        } else {
          if (st->out.failed++ == 0)
            st->out.first_error = id + ": " + error;
        }
        auto n = ++st->completed;
        if ((first + n) % progress == 0) {
          std::printf(
            "  %ld users registered (%.0f s)\n", first + n,
            std::chrono::duration<double>(clock_type::now() - started).count());
          std::fflush(stdout);
        }
        if (n == total) {
          done->set_value(st->out);
          self->quit();
          return;
        }
        issue();
      };
      self
        ->request(router, std::chrono::seconds(60), cmd_atom::value, id,
                  envelope.SerializeAsString())
        .then(
          [=](std::string& bytes) {
            v1::EntityReply reply;
            if (!reply.ParseFromString(bytes)) {
              complete(false, "malformed reply");
            } else if (reply.has_result()
                       || (reply.has_rejection()
                           && reply.rejection().code()
                                == v1::REJECTION_CODE_ALREADY_EXISTS)) {
              complete(true, {});
            } else if (reply.rejection().code()
                         == v1::REJECTION_CODE_UNAVAILABLE
                       && attempt < 5) {
              (*send)(i, attempt + 1);
            } else {
              complete(false, reply.DebugString());
            }
          },
          [=](caf::error& err) {
            if (attempt < 5)
              (*send)(i, attempt + 1);
            else
              complete(false, self->system().render(err));
          });
    };
    for (int k = 0; k < inflight; ++k)
      issue();
  });
  return result.get();
}

entity::region_stats region_stats(test_node& node) {
  caf::scoped_actor self{node.get().system()};
  entity::region_stats out;
  self
    ->request(node.get().region(), std::chrono::seconds(10), stats_atom::value)
    .receive([&](entity::region_stats& s) { out = s; },
             [&](caf::error& err) {
               throw std::runtime_error("region stats: "
                                        + node.get().system().render(err));
             });
  return out;
}

/// Waits until the region holds at most `cap` entities, none passivating.
entity::region_stats wait_for_cap(test_node& node, long cap) {
  auto deadline = clock_type::now() + std::chrono::minutes(2);
  for (;;) {
    auto s = region_stats(node);
    if (static_cast<long>(s.active) <= cap && s.passivating == 0)
      return s;
    if (clock_type::now() > deadline)
      throw std::runtime_error("region still holds " + std::to_string(s.active)
                               + " entities (" + std::to_string(s.passivating)
                               + " passivating) after 2 minutes");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

} // namespace

int main(int argc, char** argv) {
  auto opt = parse(argc, argv);
  try {
    test_database db;
    test_node node{db.url(), [&](node::node_config& cfg) {
                     cfg.max_active_entities
                       = static_cast<std::size_t>(opt.cap);
                   }};
    auto rss_before = rss_kib();
    auto heap_before = heap_in_use_kib();
    auto started = clock_type::now();
    std::printf("memory_bench: %ld users, active cap %ld, %d in flight; "
                "RSS before registration %ld KiB\n",
                opt.users, opt.cap, opt.inflight, rss_before);
    std::fflush(stdout);
    // First the users that fill the active set, then everyone else.
    auto warm = register_users(node, 0, opt.cap, opt.inflight, opt.progress,
                               started);
    wait_for_cap(node, opt.cap);
    auto rss_warm = rss_kib();
    auto heap_warm = heap_in_use_kib();
    auto rest = register_users(node, opt.cap, opt.users, opt.inflight,
                               opt.progress, started);
    double secs
      = std::chrono::duration<double>(clock_type::now() - started).count();
    auto failed = warm.failed + rest.failed;
    if (failed > 0) {
      std::fprintf(
        stderr, "memory_bench: %ld registrations failed; first: %s\n", failed,
        (warm.failed > 0 ? warm.first_error : rest.first_error).c_str());
      return 1;
    }
    auto stats = wait_for_cap(node, opt.cap);
    auto heap_unsettled = heap_in_use_kib();
    auto registered = db.scalar<int64_t>(
      "SELECT count(*) FROM claims WHERE namespace = 'user'");
    std::printf("all registered and passivated; heap in use %ld KiB; "
                "settling %ld s\n",
                heap_unsettled, opt.settle);
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::seconds(opt.settle));
    auto rss_after = rss_kib();
    auto heap_after = heap_in_use_kib();
    auto actors = node.get().system().registry().running();
    malloc_trim(0);
    auto rss_trimmed = rss_kib();
    auto per_user = [&](long from, long to, long users) {
      return static_cast<double>(to - from) * 1024.0
             / static_cast<double>(users);
    };
    std::printf("registered %ld users in %.0f s (%.0f/s); %lld in the "
                "database; region: %llu active, %llu spawned, %llu "
                "passivated; %zu actors running\n",
                opt.users, secs, static_cast<double>(opt.users) / secs,
                static_cast<long long>(registered),
                static_cast<unsigned long long>(stats.active),
                static_cast<unsigned long long>(stats.spawned),
                static_cast<unsigned long long>(stats.passivated), actors);
    std::printf("RSS KiB: before %ld, with the active set full %ld, after "
                "%ld, after malloc_trim %ld\n",
                rss_before, rss_warm, rss_after, rss_trimmed);
    std::printf("heap in use KiB (malloc): before %ld, with the active set "
                "full %ld, right after registration %ld, after settling %ld\n",
                heap_before, heap_warm, heap_unsettled, heap_after);
    std::printf("bytes per registered user: %.1f (after malloc_trim %.1f; "
                "marginal beyond the active set %.1f)\n",
                per_user(rss_before, rss_after, opt.users),
                per_user(rss_before, rss_trimmed, opt.users),
                per_user(rss_warm, rss_after, opt.users - opt.cap));
    std::printf("RESULT users=%ld cap=%ld seconds=%.1f rss_before_kib=%ld "
                "rss_warm_kib=%ld rss_after_kib=%ld rss_trimmed_kib=%ld "
                "bytes_per_user=%.1f bytes_per_user_trimmed=%.1f "
                "marginal_bytes_per_user=%.1f heap_before_kib=%ld "
                "heap_unsettled_kib=%ld heap_after_kib=%ld "
                "heap_bytes_per_user=%.1f "
                "marginal_heap_bytes_per_user=%.1f actors_running=%zu\n",
                opt.users, opt.cap, secs, rss_before, rss_warm, rss_after,
                rss_trimmed, per_user(rss_before, rss_after, opt.users),
                per_user(rss_before, rss_trimmed, opt.users),
                per_user(rss_warm, rss_after, opt.users - opt.cap), heap_before,
                heap_unsettled, heap_after,
                per_user(heap_before, heap_after, opt.users),
                per_user(heap_warm, heap_after, opt.users - opt.cap), actors);
    std::fflush(stdout);
    if (registered != opt.users) {
      std::fprintf(stderr,
                   "memory_bench: expected %ld users in the "
                   "database, found %lld\n",
                   opt.users, static_cast<long long>(registered));
      return 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "memory_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
