#include "services/bench/race.hpp"

#include "services/bench/recorder.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <random>
#include <vector>

#include "services/common/status_code_name.hpp"

namespace shoutflow::bench {

namespace {

using clock_type = std::chrono::steady_clock;

/// One registration in flight.
struct racer {
  grpc::ClientContext ctx;
  v1::RegisterUserRequest req;
  v1::CommandResult resp;
};

} // namespace

race_result run_race(const options& opt, target_pool& pool) {
  race_result out;
  out.calls = opt.race;
  out.one_handle = !opt.race_distinct;
  auto run = opt.run_id.empty()
               ? std::to_string(std::random_device{}() % 1000000)
               : opt.run_id;
  auto tag = opt.prefix + "race-" + run + "-";
  std::vector<std::unique_ptr<racer>> racers;
  for (int i = 0; i < opt.race; ++i) {
    auto r = std::make_unique<racer>();
    auto id = tag + std::to_string(i);
    r->req.set_command_id("reg-" + id);
    r->req.set_user_id(id);
    // Handles allow [A-Za-z0-9_] up to 15 characters.
    auto suffix = run.substr(0, 6);
    r->req.set_handle(opt.race_distinct ? "r" + suffix + "_" + std::to_string(i)
                                        : "hot_" + suffix);
    r->req.set_display_name("Racer " + std::to_string(i));
    r->req.set_email(id + "@bench.example.com");
    r->req.set_password("race password " + std::to_string(i));
    racers.push_back(std::move(r));
  }
  std::mutex mu;
  std::condition_variable cv;
  int left = opt.race;
  std::vector<double> latencies;
  auto t0 = clock_type::now();
  for (auto& r : racers) {
    r->ctx.set_deadline(std::chrono::system_clock::now()
                        + std::chrono::milliseconds(opt.deadline_ms));
    pool.command().async()->RegisterUser(
      &r->ctx, &r->req, &r->resp, [&](grpc::Status s) {
        auto ms
          = std::chrono::duration<double, std::milli>(clock_type::now() - t0)
              .count();
        std::lock_guard<std::mutex> lock{mu};
        latencies.push_back(ms);
        if (s.ok())
          ++out.ok;
        else if (s.error_code() == grpc::StatusCode::ALREADY_EXISTS)
          ++out.already_exists;
        else
          ++out.errors_by_code[services::status_code_name(s.error_code())];
        if (--left == 0)
          cv.notify_one();
      });
  }
  {
    std::unique_lock<std::mutex> lock{mu};
    cv.wait(lock, [&] { return left == 0; });
  }
  out.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  std::sort(latencies.begin(), latencies.end());
  if (!latencies.empty()) {
    out.p50_ms = latencies[(latencies.size() - 1) / 2];
    out.max_ms = latencies.back();
  }
  return out;
}

} // namespace shoutflow::bench
