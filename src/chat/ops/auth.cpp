#include "chat/ops/auth.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "chat/ops/json.h"

namespace chat {
namespace {

constexpr std::string_view kUrlAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr std::string_view kStdAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr size_t kSignatureSize = 32;  // SHA-256

// The value of each character in `alphabet`, -1 for the others.
std::array<int8_t, 256> reverse(std::string_view alphabet) {
  std::array<int8_t, 256> r;
  r.fill(-1);
  for (size_t i = 0; i < alphabet.size(); ++i) r[static_cast<unsigned char>(alphabet[i])] = static_cast<int8_t>(i);
  return r;
}

std::string encode(std::string_view bytes, std::string_view alphabet, bool pad) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])) << 16 |
                 static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8 |
                 static_cast<unsigned char>(bytes[i + 2]);
    for (int shift = 18; shift >= 0; shift -= 6) out += alphabet[(v >> shift) & 63];
  }
  size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t v = static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    if (rest == 2) v |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    if (rest == 2) out += alphabet[(v >> 6) & 63];
    if (pad) out.append(rest == 1 ? "==" : "=");
  }
  return out;
}

// Strict: the alphabet only, no bits left over in the last character; `padded`: the length a
// multiple of 4 with '=' as base64 has it (else no '=' at all, and a length of 1 modulo 4 refused).
bool decode(std::string_view text, const std::array<int8_t, 256>& values, bool padded, std::string& out) {
  if (padded) {
    if (text.size() % 4 != 0) return false;
    if (text.ends_with("==")) {
      text.remove_suffix(2);
    } else if (text.ends_with("=")) {
      text.remove_suffix(1);
    }
  }
  if (text.size() % 4 == 1) return false;
  out.clear();
  out.reserve(text.size() / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = values[static_cast<unsigned char>(c)];
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return (acc & ((1u << bits) - 1)) == 0;  // what is left over must be zero bits
}

// A JSON object from a base64url segment, or false.
bool decode_object(std::string_view segment, Json& out) {
  static const auto values = reverse(kUrlAlphabet);
  std::string text;
  if (!decode(segment, values, /*padded=*/false, text)) return false;
  return parse_json(text, out) == JsonStatus::kOk && out.is_object();
}

// A NumericDate claim: absent (true, `present` false), a number (true), or anything else (false).
bool date_claim(const Json& payload, const char* name, double& value, bool& present) {
  auto it = payload.find(name);
  present = it != payload.end();
  if (!present) return true;
  if (!it->is_number()) return false;
  value = it->get<double>();
  return true;
}

}  // namespace

std::string base64url_encode(std::string_view bytes) { return encode(bytes, kUrlAlphabet, false); }

bool base64url_decode(std::string_view text, std::string& out) {
  static const auto values = reverse(kUrlAlphabet);
  return decode(text, values, false, out);
}

std::string base64_encode(std::string_view bytes) { return encode(bytes, kStdAlphabet, true); }

bool base64_decode(std::string_view text, std::string& out) {
  static const auto values = reverse(kStdAlphabet);
  return decode(text, values, true, out);
}

std::string TokenAuthority::load(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(path + ": cannot be opened: " + std::strerror(errno));
  std::string secret;
  char buf[4096];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      throw std::runtime_error(path + ": cannot be read: " + std::strerror(e));
    }
    if (n == 0) break;
    secret.append(buf, static_cast<size_t>(n));
    if (secret.size() > kMaxSecret) {  // /dev/urandom, or the wrong file
      ::close(fd);
      throw std::runtime_error(path + ": longer than " + std::to_string(kMaxSecret) + " bytes: not a secret file");
    }
  }
  ::close(fd);
  if (secret.ends_with("\r\n")) {
    secret.resize(secret.size() - 2);
  } else if (secret.ends_with("\n")) {
    secret.pop_back();
  }
  if (secret.size() < kMinSecret) {
    throw std::runtime_error(path + ": the secret is " + std::to_string(secret.size()) + " bytes; at least " +
                             std::to_string(kMinSecret) + " are needed (e.g. openssl rand -hex 32 > FILE)");
  }
  return secret;
}

TokenAuthority::TokenAuthority(std::string secret) : secret_(std::move(secret)) {
  if (secret_.size() < kMinSecret) {
    throw std::invalid_argument("an auth secret must be at least " + std::to_string(kMinSecret) + " bytes");
  }
}

std::string TokenAuthority::sign(std::string_view signing_input) const {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  // One call, its own context: safe from every reactor thread at once.
  if (HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
           reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(), md, &n) == nullptr) {
    return {};
  }
  return std::string(reinterpret_cast<const char*>(md), n);
}

std::string TokenAuthority::mint(std::string_view user, int64_t ttl_s, int64_t now) const {
  Json header = {{"alg", "HS256"}, {"typ", "JWT"}};
  Json payload = {{"sub", std::string(user)}, {"iat", now}, {"exp", now + ttl_s}};
  std::string input = base64url_encode(dump_json(header)) + "." + base64url_encode(dump_json(payload));
  return input + "." + base64url_encode(sign(input));
}

TokenAuthority::Verdict TokenAuthority::verify(std::string_view token, int64_t now) const {
  Verdict v;
  if (token.size() > kMaxToken) return v;
  size_t dot1 = token.find('.');
  if (dot1 == std::string_view::npos) return v;
  size_t dot2 = token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) return v;
  std::string_view signing_input = token.substr(0, dot2);
  Json header, payload;
  if (!decode_object(token.substr(0, dot1), header)) return v;
  // The algorithm is ours to fix, not the token's to choose: HS256 or nothing ("none", RS256 with
  // the secret read as a public key, ... are the classic ways round a verifier that asks the token).
  auto alg = header.find("alg");
  auto typ = header.find("typ");
  if (alg == header.end() || !alg->is_string() || alg->get_ref<const std::string&>() != "HS256" ||
      header.contains("crit") ||
      (typ != header.end() && (!typ->is_string() || typ->get_ref<const std::string&>() != "JWT"))) {
    v.result = Result::kAlgorithm;
    return v;
  }
  std::string signature;
  if (!base64url_decode(token.substr(dot2 + 1), signature)) return v;
  std::string expected = sign(signing_input);
  if (signature.size() != kSignatureSize || expected.size() != kSignatureSize ||
      CRYPTO_memcmp(signature.data(), expected.data(), kSignatureSize) != 0) {
    v.result = Result::kSignature;
    return v;
  }
  // Signed by us: what the payload says is what our side (or a site's backend) wrote.
  if (!decode_object(token.substr(dot1 + 1, dot2 - dot1 - 1), payload)) return v;
  double exp = 0, nbf = 0;
  bool has_exp = false, has_nbf = false;
  if (!date_claim(payload, "exp", exp, has_exp) || !has_exp || !date_claim(payload, "nbf", nbf, has_nbf)) return v;
  auto t = static_cast<double>(now);
  if (!(t < exp + static_cast<double>(kLeeway))) {
    v.result = Result::kExpired;
    return v;
  }
  if (!(exp <= t + static_cast<double>(kMaxLifetime + kLeeway))) {
    v.result = Result::kTooLong;
    return v;
  }
  if (has_nbf && !(t + static_cast<double>(kLeeway) >= nbf)) {
    v.result = Result::kNotYetValid;
    return v;
  }
  auto sub = payload.find("sub");
  if (sub == payload.end() || !sub->is_string() || sub->get_ref<const std::string&>().empty()) {
    v.result = Result::kNoSubject;
    return v;
  }
  v.result = Result::kOk;
  v.user = sub->get<std::string>();
  return v;
}

const char* TokenAuthority::describe(Result result) {
  switch (result) {
    case Result::kOk: return "token accepted";
    case Result::kMalformed: return "malformed token";
    case Result::kAlgorithm: return "token not signed with HS256";
    case Result::kSignature: return "bad token signature";
    case Result::kExpired: return "token expired";
    case Result::kTooLong:
      static_assert(kMaxLifetime == 366LL * 24 * 3600, "the text below says it");
      return "token expires more than 366 days ahead";
    case Result::kNotYetValid: return "token not yet valid";
    case Result::kNoSubject: return "token names no user (sub)";
  }
  return "token refused";
}

int64_t TokenAuthority::now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace chat
