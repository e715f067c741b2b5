#pragma once

// A fresh PostgreSQL database per test fixture, migrated, dropped afterwards.
// The server comes from SHOUTFLOW_DB_URL (scripts/test starts a private one);
// without it the test fails with instructions — it never silently skips.

#include <pqxx/pqxx>

#include <string>

namespace shoutflow::testing {

/// The URL of the server's maintenance database (SHOUTFLOW_DB_URL).
std::string admin_url();

/// `url` with its database name replaced by `db`.
std::string url_with_database(const std::string& url, const std::string& db);

class test_database {
public:
  /// Creates and migrates a uniquely named database.
  test_database();
  ~test_database();

  test_database(const test_database&) = delete;
  test_database& operator=(const test_database&) = delete;

  const std::string& url() const {
    return url_;
  }
  const std::string& name() const {
    return name_;
  }

  /// Runs one query returning one value.
  template <class T>
  T scalar(const std::string& sql) const {
    pqxx::connection conn{url_};
    pqxx::read_transaction tx{conn};
    return tx.exec1(sql)[0].as<T>();
  }

  /// Runs statements (no result).
  void exec(const std::string& sql) const;

private:
  std::string name_;
  std::string url_;
};

} // namespace shoutflow::testing
