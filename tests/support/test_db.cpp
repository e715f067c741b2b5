#include "tests/support/test_db.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <random>
#include <stdexcept>

#include "actors/journal/migrations.hpp"

namespace shoutflow::testing {

std::string admin_url() {
  auto* url = std::getenv("SHOUTFLOW_DB_URL");
  if (url == nullptr || *url == '\0')
    throw std::runtime_error(
      "SHOUTFLOW_DB_URL is not set: run the suite with scripts/test (it "
      "starts a private PostgreSQL), or point SHOUTFLOW_DB_URL at a server "
      "where the user may CREATE DATABASE");
  return url;
}

std::string url_with_database(const std::string& url, const std::string& db) {
  auto query = url.find('?');
  auto base = url.substr(0, query);
  auto rest = query == std::string::npos ? "" : url.substr(query);
  auto scheme = base.find("://");
  auto slash = base.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  if (slash == std::string::npos)
    return base + "/" + db + rest;
  return base.substr(0, slash + 1) + db + rest;
}

test_database::test_database() {
  static std::atomic<int> counter{0};
  std::random_device rd;
  name_ = "sf_test_" + std::to_string(::getpid()) + "_"
          + std::to_string(counter++) + "_" + std::to_string(rd() % 100000);
  auto admin = admin_url();
  {
    pqxx::connection conn{admin};
    pqxx::nontransaction tx{conn};
    tx.exec("CREATE DATABASE " + name_);
  }
  url_ = url_with_database(admin, name_);
  journal::migrate(url_);
}

test_database::~test_database() {
  try {
    pqxx::connection conn{admin_url()};
    pqxx::nontransaction tx{conn};
    tx.exec("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
  } catch (...) {
    // A leftover test database is harmless; never throw from a destructor.
  }
}

void test_database::exec(const std::string& sql) const {
  pqxx::connection conn{url_};
  pqxx::work tx{conn};
  tx.exec(sql);
  tx.commit();
}

} // namespace shoutflow::testing
