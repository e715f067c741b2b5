#pragma once

// Salted slow password hashing: libsodium's crypto_pwhash_str (argon2id).
// Each call takes tens of milliseconds at production cost, so callers run it
// on dedicated threads (actors/entity/fact_resolver), never on the CAF
// scheduler.

#include <cstddef>
#include <optional>
#include <string>

namespace shoutflow {

struct pwhash_params {
  unsigned long long opslimit;
  std::size_t memlimit;

  /// libsodium's interactive limits: the production default.
  static pwhash_params interactive();
  /// libsodium's minimum limits: for tests and benchmarks only (say so).
  static pwhash_params minimum();
  /// Empty when the limits are outside libsodium's accepted range.
  std::optional<std::string> check() const;
};

class password_hasher {
public:
  explicit password_hasher(pwhash_params params);

  /// The self-describing hash string (algorithm, limits, salt, digest), or
  /// nothing when libsodium runs out of memory.
  std::optional<std::string> hash(const std::string& password) const;

  /// Constant-time verification against a stored hash string.
  bool verify(const std::string& password, const std::string& hash) const;

  const pwhash_params& params() const {
    return params_;
  }

private:
  pwhash_params params_;
};

} // namespace shoutflow
