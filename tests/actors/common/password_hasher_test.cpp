// actors/common/password_hasher.hpp at libsodium's minimum cost (tests only;
// production uses the interactive limits): salted argon2id strings that
// verify the right password and nothing else.

#include <gtest/gtest.h>

#include <sodium.h>

#include <string>

#include "actors/common/password_hasher.hpp"

namespace shoutflow {
namespace {

class password_hasher_test : public ::testing::Test {
protected:
  password_hasher hasher{pwhash_params::minimum()};
};

TEST_F(password_hasher_test, hash_then_verify) {
  auto h = hasher.hash("correct horse battery staple");
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->rfind("$argon2id$", 0), 0u) << *h;
  EXPECT_EQ(h->find("correct horse"), std::string::npos)
    << "the hash must not contain the password";
  EXPECT_TRUE(hasher.verify("correct horse battery staple", *h));
}

TEST_F(password_hasher_test, a_wrong_password_does_not_verify) {
  auto h = hasher.hash("correct horse");
  ASSERT_TRUE(h.has_value());
  EXPECT_FALSE(hasher.verify("correct horsE", *h));
  EXPECT_FALSE(hasher.verify("correct horse ", *h));
  EXPECT_FALSE(hasher.verify("", *h));
}

TEST_F(password_hasher_test, the_salt_makes_every_hash_different) {
  auto a = hasher.hash("same password");
  auto b = hasher.hash("same password");
  ASSERT_TRUE(a && b);
  EXPECT_NE(*a, *b);
  EXPECT_TRUE(hasher.verify("same password", *a));
  EXPECT_TRUE(hasher.verify("same password", *b));
}

TEST_F(password_hasher_test, the_hash_records_its_limits) {
  // Self-describing: a hasher with other limits still verifies it.
  auto h = hasher.hash("pw");
  ASSERT_TRUE(h.has_value());
  auto p = pwhash_params::minimum();
  EXPECT_NE(h->find("t=" + std::to_string(p.opslimit)), std::string::npos)
    << *h;
  EXPECT_NE(h->find("m=" + std::to_string(p.memlimit / 1024)),
            std::string::npos)
    << *h;
  password_hasher other{{p.opslimit + 1, p.memlimit * 2}};
  EXPECT_TRUE(other.verify("pw", *h));
}

TEST_F(password_hasher_test, binary_and_empty_passwords) {
  std::string binary("a\0b\xFF", 4);
  auto h = hasher.hash(binary);
  ASSERT_TRUE(h.has_value());
  EXPECT_TRUE(hasher.verify(binary, *h));
  EXPECT_FALSE(hasher.verify("a", *h)) << "NUL does not end the password";
  auto e = hasher.hash("");
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(hasher.verify("", *e));
}

TEST_F(password_hasher_test, garbage_hashes_do_not_verify) {
  EXPECT_FALSE(hasher.verify("pw", ""));
  EXPECT_FALSE(hasher.verify("pw", "$argon2id$"));
  EXPECT_FALSE(hasher.verify("pw", "not a hash"));
  EXPECT_FALSE(hasher.verify("pw", std::string(crypto_pwhash_STRBYTES, 'x')))
    << "too long for a hash string";
  auto h = hasher.hash("pw");
  ASSERT_TRUE(h.has_value());
  auto tampered = *h;
  // A digest character well before the end (the last one has padding bits).
  auto& c = tampered[tampered.size() - 10];
  c = c == 'A' ? 'B' : 'A';
  EXPECT_FALSE(hasher.verify("pw", tampered));
}

TEST(pwhash_params, the_presets_are_in_range) {
  EXPECT_FALSE(pwhash_params::minimum().check().has_value());
  EXPECT_FALSE(pwhash_params::interactive().check().has_value());
  EXPECT_EQ(pwhash_params::interactive().opslimit,
            crypto_pwhash_OPSLIMIT_INTERACTIVE);
  EXPECT_EQ(pwhash_params::interactive().memlimit,
            crypto_pwhash_MEMLIMIT_INTERACTIVE);
  EXPECT_LT(pwhash_params::minimum().memlimit,
            pwhash_params::interactive().memlimit);
}

TEST(pwhash_params, check_rejects_out_of_range_limits) {
  auto p = pwhash_params::minimum();
  auto low_ops = pwhash_params{p.opslimit - 1, p.memlimit}.check();
  ASSERT_TRUE(low_ops.has_value());
  EXPECT_NE(low_ops->find("opslimit"), std::string::npos) << *low_ops;
  auto high_ops
    = pwhash_params{static_cast<unsigned long long>(crypto_pwhash_OPSLIMIT_MAX)
                      + 1,
                    p.memlimit}
        .check();
  ASSERT_TRUE(high_ops.has_value());
  EXPECT_NE(high_ops->find("opslimit"), std::string::npos) << *high_ops;
  auto low_mem = pwhash_params{p.opslimit, p.memlimit - 1}.check();
  ASSERT_TRUE(low_mem.has_value());
  EXPECT_NE(low_mem->find("memlimit"), std::string::npos) << *low_mem;
  auto no_mem = pwhash_params{p.opslimit, 0}.check();
  ASSERT_TRUE(no_mem.has_value());
  EXPECT_NE(no_mem->find("memlimit"), std::string::npos) << *no_mem;
  EXPECT_FALSE((
    pwhash_params{p.opslimit, crypto_pwhash_MEMLIMIT_MAX}.check().has_value()));
}

} // namespace
} // namespace shoutflow
