#include "services/query/query_pool.hpp"

#include <google/protobuf/arena.h>
#include <google/protobuf/descriptor.h>

#include "actors/common/log.hpp"

namespace shoutflow::services {

namespace {

const char* component = "query-pool";

/// How often an idle pool thread yields before it sleeps (see loop).
constexpr int idle_yields = 20;

query_answer unavailable(std::string why) {
  return {query_answer::unavailable, std::move(why)};
}

/// Answers a job that will not run.
template <class Job>
void refuse(Job& j, const std::string& why) {
  if (j.method.empty())
    j.call_done({journal::db_failure::unavailable, why});
  else
    j.done(unavailable(why));
}

} // namespace

query_pool::query_pool(std::string db_url, std::size_t threads,
                       query_limits limits, std::size_t max_batch)
  : db_url_(std::move(db_url)),
    limits_(limits),
    max_batch_(std::max<std::size_t>(max_batch, 1)) {
  for (std::size_t i = 0; i < std::max<std::size_t>(threads, 1); ++i)
    threads_.emplace_back([this, i] { loop(i); });
}

query_pool::~query_pool() {
  std::deque<job> left;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stopping_ = true;
    left.swap(queue_);
  }
  cv_.notify_all();
  for (auto& j : left)
    refuse(j, "the node is stopping");
  for (auto& t : threads_)
    t.join();
}

void query_pool::read(std::string method,
                      std::unique_ptr<google::protobuf::Message> request,
                      clock_type::time_point deadline, done_fn done) {
  job j;
  j.method = std::move(method);
  j.request = std::move(request);
  j.deadline = deadline;
  j.done = std::move(done);
  enqueue(std::move(j));
}

void query_pool::call(call_fn fn, call_done_fn done) {
  job j;
  j.deadline = clock_type::time_point::max();
  j.fn = std::move(fn);
  j.call_done = std::move(done);
  enqueue(std::move(j));
}

std::size_t query_pool::queued() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return queue_.size();
}

void query_pool::enqueue(job j) {
  {
    std::unique_lock<std::mutex> lock{mtx_};
    if (!stopping_) {
      queue_.push_back(std::move(j));
      lock.unlock();
      cv_.notify_one();
      return;
    }
  }
  refuse(j, "the node is stopping");
}

std::vector<query_pool::job> query_pool::take_locked() {
  std::vector<job> jobs;
  jobs.push_back(std::move(queue_.front()));
  queue_.pop_front();
  // A copy: `jobs` grows below.
  const std::string method = jobs.front().method;
  if (!is_batched_read(method))
    return jobs;
  for (auto it = queue_.begin();
       it != queue_.end() && jobs.size() < max_batch_;) {
    if (it->method == method) {
      jobs.push_back(std::move(*it));
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
  return jobs;
}

void query_pool::loop(std::size_t index) {
  journal::pg_session session{db_url_, "query-" + std::to_string(index),
                              [](pqxx::connection& c) { prepare_queries(c); }};
  // Connect now, not on the first read: a database that is down shows at
  // start, and no client waits for a connection to open.
  if (auto r = session.run([](pqxx::connection&) {}); !r)
    log_warn(component, "no connection yet (will retry on use): " + r.detail);
  for (;;) {
    std::vector<job> jobs;
    {
      std::unique_lock<std::mutex> lock{mtx_};
      // Before sleeping, yield a few times for the next read: under load it
      // usually arrives within microseconds, and a sleeping thread's wake-up
      // costs far more on this kind of VM (perf: a third of the node's CPU
      // in the hypervisor's irq-enable on context switches). Yielding, not
      // spinning: a thread that has work to do (gRPC's, the database's)
      // gets the core first.
      for (int i = 0; i < idle_yields && !stopping_ && queue_.empty(); ++i) {
        lock.unlock();
        std::this_thread::yield();
        lock.lock();
      }
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_)
        return;
      jobs = take_locked();
    }
    run(session, jobs);
  }
}

void query_pool::run(journal::pg_session& session, std::vector<job>& jobs) {
  if (jobs.front().method.empty()) {
    auto& j = jobs.front();
    j.call_done(session.run(j.fn));
    return;
  }
  // Past their deadline: nobody waits for these any more.
  auto now = clock_type::now();
  std::vector<job> live;
  live.reserve(jobs.size());
  for (auto& j : jobs) {
    if (j.deadline <= now)
      j.done({query_answer::expired, {}});
    else
      live.push_back(std::move(j));
  }
  if (live.empty())
    return;
  const auto& method = live.front().method;
  auto* m = query_method(method);
  if (m == nullptr) {
    log_error(component, "no QueryService method " + method);
    for (auto& k : live)
      k.done(unavailable("no QueryService method " + method));
    return;
  }
  // The responses live on an arena, freed at once when the batch is
  // answered: a timeline page is ~200 strings, each its own allocation
  // otherwise.
  google::protobuf::Arena arena;
  const auto* prototype
    = google::protobuf::MessageFactory::generated_factory()->GetPrototype(
      m->output_type());
  std::vector<const google::protobuf::Message*> requests;
  std::vector<google::protobuf::Message*> outs;
  for (auto& j : live) {
    requests.push_back(j.request.get());
    outs.push_back(prototype->New(&arena));
  }
  std::vector<query_rejection> rejections;
  auto r = session.run([&](pqxx::connection& conn) {
    for (auto* out : outs)
      out->Clear();
    // Every read is one statement: autocommit gives it one snapshot.
    pqxx::nontransaction tx{conn};
    if (live.size() > 1)
      rejections = run_batched_reads(tx, method, requests, outs, limits_);
    else
      rejections = {run_query(tx, method, *requests[0], *outs[0], limits_)};
  });
  if (r) {
    reads_run_ += live.size();
    ++statements_run_;
  }
  for (std::size_t i = 0; i < live.size(); ++i) {
    if (!r)
      live[i].done(unavailable(r.detail));
    else if (rejections[i])
      live[i].done(
        {query_answer::rejected, rejections[i]->SerializeAsString()});
    else
      live[i].done({query_answer::ok, outs[i]->SerializeAsString()});
  }
}

} // namespace shoutflow::services
