// Tokens for --auth-secret (docs/PROTOCOL.md, "Authentication"): a JWT (RFC 7519) in compact form,
// base64url(header) "." base64url(payload) "." base64url(HMAC-SHA256(secret, the first two)),
// signed and checked here with OpenSSL's HMAC (no JWT library: the format is three lines of it, and
// what a verifier must refuse is best kept in sight).
//
// What verify() takes: header {"alg":"HS256"} exactly (no "none", no other algorithm, no "crit";
// "typ", if present, "JWT"); the signature, compared in constant time; a payload object with "sub"
// (the user name, a string) and "exp" (NumericDate: seconds since the Unix epoch), and "nbf" if
// present; both dates with kLeeway of clock skew; exp at most kMaxLifetime ahead. Anything
// malformed, of the wrong type, or longer than kMaxToken is refused, never a crash (fuzzed:
// fuzz/auth_fuzz.cpp). Other claims are ignored.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace chat {

class TokenAuthority {
 public:
  static constexpr size_t kMinSecret = 32;        // bytes of secret, at least
  static constexpr size_t kMaxSecret = 64 * 1024;  // a secret file is not larger
  static constexpr size_t kMaxToken = 4096;       // characters of a token, at most
  static constexpr int64_t kLeeway = 30;          // seconds of clock skew allowed on exp and nbf
  // An exp further ahead than this is refused (kTooLong): a token that never expires (exp 1e300)
  // is a credential nobody can take back short of changing the secret.
  static constexpr int64_t kMaxLifetime = 366LL * 24 * 3600;

  // The secret in the file at `path`: its bytes, without one final newline ("\n" or "\r\n").
  // Throws std::runtime_error with one line naming `path` (missing, unreadable, too short, too long).
  static std::string load(const std::string& path);

  // Throws std::invalid_argument if `secret` is shorter than kMinSecret.
  explicit TokenAuthority(std::string secret);

  // A token for `user`, valid from `now` (seconds since the Unix epoch) for `ttl_s` seconds:
  // {"alg":"HS256","typ":"JWT"} . {"sub":USER,"iat":NOW,"exp":NOW+TTL}.
  std::string mint(std::string_view user, int64_t ttl_s, int64_t now) const;

  enum class Result : uint8_t {
    kOk,
    kMalformed,     // not three base64url segments of JSON objects, too long, claims of the wrong type
    kAlgorithm,     // alg is not HS256 (or crit, or a typ other than JWT)
    kSignature,     // signed with another secret, or altered
    kExpired,       // exp is past (beyond the leeway)
    kTooLong,       // exp is more than kMaxLifetime (and the leeway) ahead
    kNotYetValid,   // nbf is ahead (beyond the leeway)
    kNoSubject,     // no sub, or not a string
  };
  struct Verdict {
    Result result = Result::kMalformed;
    std::string user;  // sub, when kOk
    bool ok() const { return result == Result::kOk; }
  };
  // Checks `token` at `now` (seconds since the Unix epoch).
  Verdict verify(std::string_view token, int64_t now) const;

  // What a refusal says (to the client, and in the log: never the token itself).
  static const char* describe(Result result);
  // Seconds since the Unix epoch, from the system clock.
  static int64_t now();

 private:
  std::string sign(std::string_view signing_input) const;  // the raw 32 bytes

  std::string secret_;
};

// base64url without padding (RFC 7515's "Base64url Encoding"), both ways. decode refuses
// characters outside the alphabet, padding, a length of 1 modulo 4, and bits left over in the last
// character (so each byte string has exactly one encoding).
std::string base64url_encode(std::string_view bytes);
bool base64url_decode(std::string_view text, std::string& out);
// Standard base64 with its '=' padding (SASL's AUTHENTICATE), as strict.
std::string base64_encode(std::string_view bytes);
bool base64_decode(std::string_view text, std::string& out);

}  // namespace chat
