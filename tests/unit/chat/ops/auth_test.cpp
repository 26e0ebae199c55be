// Tokens for --auth-secret (chat/ops/auth.h): what is minted verifies, and everything a verifier must
// refuse is refused: expired, not yet valid, forged, signed with another secret, alg none or
// another algorithm, garbled segments, claims of the wrong type, too long. Tokens are also made
// here by hand, signed with OpenSSL directly, and checked against RFC 7515's HS256 example.
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "../../../temp_file.h"
#include "chat/ops/auth.h"

using chat::TokenAuthority;
using Result = TokenAuthority::Result;
using testfiles::TempFile;

namespace {

const std::string kSecret = "0123456789abcdef0123456789abcdef-secret";
constexpr int64_t kNow = 1'700'000'000;

std::string hmac_sha256(const std::string& key, const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), md, &n);
  return std::string(reinterpret_cast<const char*>(md), n);
}

// A token with this header and payload (JSON texts), signed with `key`, made without the code
// under test but its base64url encoder.
std::string craft(const std::string& header, const std::string& payload, const std::string& key = kSecret) {
  std::string input = chat::base64url_encode(header) + "." + chat::base64url_encode(payload);
  return input + "." + chat::base64url_encode(hmac_sha256(key, input));
}

const std::string kHs256 = R"({"alg":"HS256","typ":"JWT"})";

std::string claims(const std::string& sub, int64_t exp) {
  return R"({"sub":")" + sub + R"(","exp":)" + std::to_string(exp) + "}";
}

Result verdict(const std::string& token, int64_t now = kNow) { return TokenAuthority(kSecret).verify(token, now).result; }

}  // namespace

TEST(Auth, AMintedTokenVerifiesForItsUserUntilItExpires) {
  TokenAuthority authority(kSecret);
  std::string token = authority.mint("bob", 3600, kNow);
  EXPECT_EQ(std::count(token.begin(), token.end(), '.'), 2) << token;
  TokenAuthority::Verdict v = authority.verify(token, kNow);
  ASSERT_TRUE(v.ok()) << TokenAuthority::describe(v.result);
  EXPECT_EQ(v.user, "bob");
  // Its parts are what the documentation says a site's backend writes.
  std::string header, payload;
  ASSERT_TRUE(chat::base64url_decode(token.substr(0, token.find('.')), header));
  ASSERT_TRUE(chat::base64url_decode(token.substr(token.find('.') + 1, token.rfind('.') - token.find('.') - 1), payload));
  EXPECT_EQ(header, kHs256);
  EXPECT_EQ(payload, R"({"sub":"bob","iat":1700000000,"exp":1700003600})");
  EXPECT_EQ(token, craft(header, payload));
  // Valid to the end of its life and through the leeway, not after.
  EXPECT_TRUE(authority.verify(token, kNow + 3600 - 1).ok());
  EXPECT_TRUE(authority.verify(token, kNow + 3600 + TokenAuthority::kLeeway - 1).ok());
  EXPECT_EQ(authority.verify(token, kNow + 3600 + TokenAuthority::kLeeway).result, Result::kExpired);
  EXPECT_EQ(authority.verify(token, kNow + 86400).result, Result::kExpired);
}

TEST(Auth, ExpIsRequiredAndNbfHonouredWithTheLeeway) {
  EXPECT_EQ(verdict(craft(kHs256, R"({"sub":"bob"})")), Result::kMalformed);
  EXPECT_EQ(verdict(craft(kHs256, claims("bob", kNow - 1))), Result::kOk);  // within the leeway
  EXPECT_EQ(verdict(craft(kHs256, claims("bob", kNow - TokenAuthority::kLeeway))), Result::kExpired);
  // A NumericDate may have a fraction.
  EXPECT_EQ(verdict(craft(kHs256, R"({"sub":"bob","exp":1700000100.5})")), Result::kOk);
  std::string later = R"({"sub":"bob","exp":1700009999,"nbf":)" + std::to_string(kNow + 600) + "}";
  EXPECT_EQ(verdict(craft(kHs256, later)), Result::kNotYetValid);
  EXPECT_EQ(verdict(craft(kHs256, later), kNow + 600 - TokenAuthority::kLeeway), Result::kOk);
  EXPECT_EQ(verdict(craft(kHs256, later), kNow + 600 - TokenAuthority::kLeeway - 1), Result::kNotYetValid);
  // Claims it does not know are no concern of it.
  EXPECT_EQ(verdict(craft(kHs256, R"({"sub":"bob","exp":1700000100,"iss":"site","aud":["x"],"iat":1})")), Result::kOk);
}

TEST(Auth, ExpFurtherThanTheMaximumLifetimeIsRefused) {
  // A token that never expires is no bearer credential one can take back: exp at most
  // kMaxLifetime (366 days) ahead, with the leeway.
  int64_t last = kNow + TokenAuthority::kMaxLifetime + TokenAuthority::kLeeway;
  EXPECT_EQ(verdict(craft(kHs256, claims("bob", last))), Result::kOk);
  EXPECT_EQ(verdict(craft(kHs256, claims("bob", last + 1))), Result::kTooLong);
  EXPECT_EQ(verdict(craft(kHs256, R"({"sub":"bob","exp":1e300})")), Result::kTooLong);
  EXPECT_EQ(verdict(craft(kHs256, R"({"sub":"bob","exp":9007199254740993})")), Result::kTooLong);
  EXPECT_STREQ(TokenAuthority::describe(Result::kTooLong), "token expires more than 366 days ahead");
  // The longest --mint-token gives is accepted.
  TokenAuthority authority(kSecret);
  EXPECT_TRUE(authority.verify(authority.mint("bob", TokenAuthority::kMaxLifetime, kNow), kNow).ok());
}

TEST(Auth, ForgedOrOtherSecretsTokensAreRefused) {
  TokenAuthority authority(kSecret);
  std::string token = authority.mint("bob", 3600, kNow);
  // Signed with another secret.
  EXPECT_EQ(TokenAuthority(kSecret + "x").verify(token, kNow).result, Result::kSignature);
  EXPECT_EQ(verdict(craft(kHs256, claims("bob", kNow + 60), "another secret of at least 32 bytes!")), Result::kSignature);
  // The payload changed (another user, a later expiry), the signature kept.
  size_t dot1 = token.find('.'), dot2 = token.rfind('.');
  std::string other = token.substr(0, dot1 + 1) + chat::base64url_encode(claims("eve", kNow + 3600)) + token.substr(dot2);
  EXPECT_EQ(verdict(other), Result::kSignature);
  std::string longer =
      token.substr(0, dot1 + 1) + chat::base64url_encode(claims("bob", kNow + 999999)) + token.substr(dot2);
  EXPECT_EQ(verdict(longer), Result::kSignature);
  // Every single character of the signature matters.
  std::string sig = token.substr(dot2 + 1);
  for (size_t i = 0; i + 1 < sig.size(); ++i) {  // the last one carries bits that must be zero
    std::string t = token;
    t[dot2 + 1 + i] = t[dot2 + 1 + i] == 'A' ? 'B' : 'A';
    EXPECT_EQ(verdict(t), Result::kSignature) << i;
  }
  // A signature cut short, or made longer, or empty.
  EXPECT_NE(verdict(token.substr(0, token.size() - 4)), Result::kOk);
  EXPECT_NE(verdict(token + "AAAA"), Result::kOk);
  EXPECT_NE(verdict(token.substr(0, dot2 + 1)), Result::kOk);
}

TEST(Auth, OnlyHs256IsTaken) {
  std::string payload = claims("bob", kNow + 60);
  // alg none with an empty signature: the classic way past a verifier that asks the token.
  std::string none = chat::base64url_encode(R"({"alg":"none","typ":"JWT"})") + "." + chat::base64url_encode(payload) + ".";
  EXPECT_EQ(verdict(none), Result::kAlgorithm);
  EXPECT_EQ(verdict(craft(R"({"alg":"none"})", payload)), Result::kAlgorithm);
  EXPECT_EQ(verdict(craft(R"({"alg":"HS512"})", payload)), Result::kAlgorithm);
  EXPECT_EQ(verdict(craft(R"({"alg":"RS256"})", payload)), Result::kAlgorithm);
  EXPECT_EQ(verdict(craft(R"({"alg":"hs256"})", payload)), Result::kAlgorithm);
  EXPECT_EQ(verdict(craft(R"({"typ":"JWT"})", payload)), Result::kAlgorithm);
  EXPECT_EQ(verdict(craft(R"({"alg":["HS256"]})", payload)), Result::kAlgorithm);
  EXPECT_EQ(verdict(craft(R"({"alg":"HS256","crit":["exp"]})", payload)), Result::kAlgorithm);
  EXPECT_EQ(verdict(craft(R"({"alg":"HS256","typ":"JWE"})", payload)), Result::kAlgorithm);
  EXPECT_EQ(verdict(craft(R"({"alg":"HS256"})", payload)), Result::kOk);  // typ is optional
}

TEST(Auth, GarbledTokensAndWrongTypesAreRefusedNeverACrash) {
  std::string good = TokenAuthority(kSecret).mint("bob", 60, kNow);
  for (const std::string& t :
       {std::string(), std::string("."), std::string(".."), std::string("..."), std::string("a.b.c"),
        std::string("not a token"), good + ".", "." + good, good.substr(0, good.find('.')),
        good.substr(0, good.rfind('.')), "!!!!" + good.substr(good.find('.')), good.substr(0, good.rfind('.')) + ".=",
        std::string("eyJhbGciOiJIUzI1NiJ9.e30."), std::string(5000, 'A') + good}) {
    EXPECT_NE(verdict(t), Result::kOk) << t;
  }
  // Not JSON objects, under a good signature.
  EXPECT_EQ(verdict(craft("[]", claims("bob", kNow + 60))), Result::kMalformed);
  EXPECT_EQ(verdict(craft("{", claims("bob", kNow + 60))), Result::kMalformed);
  EXPECT_EQ(verdict(craft(kHs256, "\"bob\"")), Result::kMalformed);
  EXPECT_EQ(verdict(craft(kHs256, "{\"sub\":\"b\xff\",\"exp\":1700000100}")), Result::kMalformed);  // not UTF-8
  EXPECT_EQ(verdict(craft(kHs256, std::string(40, '[') + std::string(40, ']'))), Result::kMalformed);
  // Claims of the wrong type.
  EXPECT_EQ(verdict(craft(kHs256, R"({"sub":"bob","exp":"1700000100"})")), Result::kMalformed);
  EXPECT_EQ(verdict(craft(kHs256, R"({"sub":"bob","exp":null})")), Result::kMalformed);
  EXPECT_EQ(verdict(craft(kHs256, R"({"sub":"bob","exp":1700000100,"nbf":"now"})")), Result::kMalformed);
  EXPECT_EQ(verdict(craft(kHs256, R"({"sub":42,"exp":1700000100})")), Result::kNoSubject);
  EXPECT_EQ(verdict(craft(kHs256, R"({"sub":"","exp":1700000100})")), Result::kNoSubject);
  EXPECT_EQ(verdict(craft(kHs256, R"({"exp":1700000100})")), Result::kNoSubject);
  // Longer than the cap, however well made.
  std::string padded = R"({"sub":"bob","exp":1700000100,"pad":")" + std::string(4000, 'x') + "\"}";
  EXPECT_EQ(verdict(craft(kHs256, padded)), Result::kMalformed);
}

TEST(Auth, Base64urlIsStrict) {
  std::string out;
  EXPECT_TRUE(chat::base64url_decode("", out));
  EXPECT_TRUE(chat::base64url_decode("YQ", out));
  EXPECT_EQ(out, "a");
  EXPECT_TRUE(chat::base64url_decode("_-8", out));
  EXPECT_EQ(out, "\xff\xef");
  EXPECT_FALSE(chat::base64url_decode("YQ==", out));  // no padding in JWTs
  EXPECT_FALSE(chat::base64url_decode("YR", out));    // bits left over: another encoding of "a"
  EXPECT_FALSE(chat::base64url_decode("Y", out));
  EXPECT_FALSE(chat::base64url_decode("Y+8", out));
  EXPECT_FALSE(chat::base64url_decode("YQ\n", out));
  EXPECT_TRUE(chat::base64_decode("YQ==", out));
  EXPECT_EQ(out, "a");
  EXPECT_FALSE(chat::base64_decode("YQ", out));
  EXPECT_FALSE(chat::base64_decode("Y===", out));
  EXPECT_FALSE(chat::base64_decode("YQ=a", out));
  for (std::string s : {std::string(""), std::string("a"), std::string("ab"), std::string("abc"), std::string("\0\xff\x10", 3)}) {
    ASSERT_TRUE(chat::base64url_decode(chat::base64url_encode(s), out));
    EXPECT_EQ(out, s);
    ASSERT_TRUE(chat::base64_decode(chat::base64_encode(s), out));
    EXPECT_EQ(out, s);
  }
}

// RFC 7515, appendix A.1: the HS256 example, made by someone else. Its payload has no sub, so the
// best it can be here is kNoSubject, which says the signature and the dates passed.
TEST(Auth, TheRfc7515ExampleVerifies) {
  std::string key;
  ASSERT_TRUE(chat::base64url_decode(
      "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow", key));
  TokenAuthority authority(key);
  std::string token =
      "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9."
      "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ."
      "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
  EXPECT_EQ(authority.verify(token, 1300819380 - 100).result, Result::kNoSubject);
  EXPECT_EQ(authority.verify(token, 1300819380 + 100).result, Result::kExpired);
  token[token.rfind('.') + 1] = 'e';  // dBjf... -> eBjf...
  EXPECT_EQ(authority.verify(token, 1300819380 - 100).result, Result::kSignature);
}

TEST(Auth, TheSecretFileIsReadWithoutItsFinalNewlineAndMustBeLongEnough) {
  TempFile hex(std::string(64, 'a') + "\n");
  EXPECT_EQ(TokenAuthority::load(hex.path), std::string(64, 'a'));
  TempFile crlf(std::string(32, 'b') + "\r\n");
  EXPECT_EQ(TokenAuthority::load(crlf.path), std::string(32, 'b'));
  TempFile exact(std::string(32, 'c'));
  EXPECT_EQ(TokenAuthority::load(exact.path), std::string(32, 'c'));
  TempFile short_one(std::string(31, 'd') + "\n");
  try {
    TokenAuthority::load(short_one.path);
    ADD_FAILURE() << "a 31-byte secret was taken";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(short_one.path + ": the secret is 31 bytes; at least 32"), std::string::npos)
        << e.what();
  }
  try {
    TokenAuthority::load("/nonexistent/secret");
    ADD_FAILURE() << "a missing file was taken";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "/nonexistent/secret: cannot be opened: No such file or directory");
  }
  EXPECT_THROW(TokenAuthority::load("/tmp"), std::runtime_error);  // a directory: cannot be read
  TempFile huge(std::string(TokenAuthority::kMaxSecret + 1, 'e'));
  EXPECT_THROW(TokenAuthority::load(huge.path), std::runtime_error);
  EXPECT_THROW(TokenAuthority(std::string(31, 'x')), std::invalid_argument);
}
