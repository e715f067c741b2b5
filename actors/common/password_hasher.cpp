#include "actors/common/password_hasher.hpp"

#include <sodium.h>

#include <stdexcept>

namespace shoutflow {

pwhash_params pwhash_params::interactive() {
  return {crypto_pwhash_OPSLIMIT_INTERACTIVE,
          crypto_pwhash_MEMLIMIT_INTERACTIVE};
}

pwhash_params pwhash_params::minimum() {
  return {crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN};
}

std::optional<std::string> pwhash_params::check() const {
  if (opslimit < crypto_pwhash_OPSLIMIT_MIN
      || opslimit > crypto_pwhash_OPSLIMIT_MAX)
    return "opslimit must be between "
           + std::to_string(crypto_pwhash_OPSLIMIT_MIN) + " and "
           + std::to_string(crypto_pwhash_OPSLIMIT_MAX);
  if (memlimit < crypto_pwhash_MEMLIMIT_MIN
      || memlimit > crypto_pwhash_MEMLIMIT_MAX)
    return "memlimit must be between "
           + std::to_string(crypto_pwhash_MEMLIMIT_MIN) + " and "
           + std::to_string(crypto_pwhash_MEMLIMIT_MAX) + " bytes";
  return std::nullopt;
}

password_hasher::password_hasher(pwhash_params params) : params_(params) {
  if (sodium_init() < 0)
    throw std::runtime_error("libsodium failed to initialize");
}

std::optional<std::string>
password_hasher::hash(const std::string& password) const {
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str(out, password.data(), password.size(), params_.opslimit,
                        params_.memlimit)
      != 0)
    return std::nullopt;
  return std::string{out};
}

bool password_hasher::verify(const std::string& password,
                             const std::string& hash) const {
  if (hash.empty() || hash.size() >= crypto_pwhash_STRBYTES)
    return false;
  return crypto_pwhash_str_verify(hash.c_str(), password.data(),
                                  password.size())
         == 0;
}

} // namespace shoutflow
