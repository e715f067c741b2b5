#include "tests/support/prometheus_server.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "tests/support/cluster_harness.hpp"

extern char** environ;

namespace shoutflow::testing {

namespace {

using clock_type = std::chrono::steady_clock;

std::string binary() {
  const char* env = std::getenv("PROMETHEUS");
  return env != nullptr && *env != '\0' ? env : "/usr/bin/prometheus";
}

std::string make_dir() {
  auto templ = ::testing::TempDir() + "/shoutflow-prometheus-XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr)
    return {};
  return buf.data();
}

std::string config(const prometheus_options& o) {
  auto interval = std::to_string(o.scrape_interval.count()) + "ms";
  std::ostringstream out;
  out << "global:\n"
      << "  scrape_interval: " << interval << "\n"
      << "  evaluation_interval: " << interval << "\n";
  if (!o.rule_files.empty()) {
    out << "rule_files:\n";
    for (auto& f : o.rule_files)
      out << "  - '" << f << "'\n";
  }
  out << "scrape_configs:\n"
      << "  - job_name: shoutflow\n"
      << "    scrape_timeout: " << interval << "\n"
      << "    static_configs:\n"
      << "      - targets:\n";
  for (auto& t : o.targets)
    out << "          - '" << t << "'\n";
  return out.str();
}

} // namespace

prometheus_server::prometheus_server(prometheus_options options) {
  dir_ = make_dir();
  if (dir_.empty()) {
    error_ = "cannot create a temporary directory";
    return;
  }
  {
    std::ofstream f{dir_ + "/prometheus.yml"};
    f << config(options);
  }
  port_ = reserve_port();
  std::vector<std::string> args
    = {binary(),
       "--config.file=" + dir_ + "/prometheus.yml",
       "--storage.tsdb.path=" + dir_ + "/data",
       "--web.listen-address=127.0.0.1:" + std::to_string(port_),
       "--storage.tsdb.retention.time=1d",
       "--log.level=info"};
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  auto log_path = dir_ + "/prometheus.log";
  posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    pid_ = -1;
    error_ = "cannot start " + args[0] + ": " + std::strerror(rc);
    return;
  }
  auto deadline = clock_type::now() + std::chrono::seconds(60);
  for (;;) {
    auto r = http_get("127.0.0.1", port_, "/-/ready", std::chrono::seconds(2));
    if (r.status == 200)
      return;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      error_ = "prometheus exited at start: " + log();
      return;
    }
    if (clock_type::now() > deadline) {
      error_ = "prometheus not ready within 60 s: " + log();
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

prometheus_server::~prometheus_server() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    auto deadline = clock_type::now() + std::chrono::seconds(10);
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (clock_type::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  if (!dir_.empty()) {
    std::error_code ignored; // best effort: a leftover temp dir is harmless
    std::filesystem::remove_all(dir_, ignored);
  }
}

http_reply prometheus_server::query(const std::string& expr) const {
  return http_get("127.0.0.1", port_,
                  "/api/v1/query?query=" + url_encode(expr));
}

std::string prometheus_server::log() const {
  std::ifstream f{dir_ + "/prometheus.log"};
  std::stringstream out;
  out << f.rdbuf();
  return out.str();
}

bool query_succeeded(const std::string& json) {
  return json.find("\"status\":\"success\"") != std::string::npos;
}

std::string query_error(const std::string& json) {
  static const std::regex re{"\"error\":\"((?:[^\"\\\\]|\\\\.)*)\""};
  std::smatch m;
  return std::regex_search(json, m, re) ? m[1].str() : std::string{};
}

std::size_t result_count(const std::string& json) {
  if (json.find("\"resultType\":\"scalar\"") != std::string::npos
      || json.find("\"resultType\":\"string\"") != std::string::npos)
    return 1;
  std::size_t n = 0;
  for (auto at = json.find("\"metric\":"); at != std::string::npos;
       at = json.find("\"metric\":", at + 1))
    ++n;
  return n;
}

std::set<std::string> label_values(const std::string& json,
                                   const std::string& name) {
  std::regex re{"\"" + name + "\":\"([^\"]*)\""};
  std::set<std::string> out;
  for (auto it = std::sregex_iterator(json.begin(), json.end(), re);
       it != std::sregex_iterator(); ++it)
    out.insert((*it)[1].str());
  return out;
}

} // namespace shoutflow::testing
