// Fuzz target for TLS as a Filter (reactor/tls.h): what a peer sends a TLS port, cut into reads.
// Properties checked on every input:
//   - the filter never gives the handler bytes before its handshake is over, and a peer cannot make
//     it do so without completing one (a fuzzer cannot: the handler's bytes stay empty);
//   - once receive() says the stream is broken (error, wrong protocol) or ended, the connection
//     would close: nothing more is fed, and no state is left that breaks the next connection;
//   - what the filter writes back (its handshake messages, alerts) stays bounded by a few records
//     per read, whatever the peer sends;
//   - the first byte decides "plain text" exactly when it is not a handshake record (22).
// The first byte seeds the read sizes; the rest is the stream. A real ClientHello is in the corpus.
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "reactor/buffer.h"
#include "reactor/output_queue.h"
#include "reactor/tls.h"
#include "reads.h"

namespace {

// A throw-away EC key and a self-signed certificate in two temporary files.
reactor::TlsFiles make_certificate() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  X509_sign(cert, key, EVP_sha256());
  std::string dir = "/tmp/tls-fuzz-" + std::to_string(::getpid());
  std::string mk = "mkdir -p " + dir;
  if (std::system(mk.c_str()) != 0) std::abort();
  reactor::TlsFiles files{dir + "/cert.pem", dir + "/key.pem"};
  FILE* f = std::fopen(files.cert.c_str(), "w");
  PEM_write_X509(f, cert);
  std::fclose(f);
  f = std::fopen(files.key.c_str(), "w");
  PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
  X509_free(cert);
  EVP_PKEY_free(key);
  return files;
}

// Loaded once; its files are removed at once (no reload here).
reactor::TlsServerContext& context() {
  static reactor::TlsServerContext* ctx = [] {
    reactor::TlsFiles files = make_certificate();
    auto* c = new reactor::TlsServerContext(files);
    std::remove(files.cert.c_str());
    std::remove(files.key.c_str());
    ::rmdir(files.cert.substr(0, files.cert.rfind('/')).c_str());
    return c;
  }();
  return *ctx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto filter = context().make();
  reactor::Buffer plain;
  reactor::OutputQueue out;
  size_t fed = 0;
  for (std::string_view read : fuzzing::split_into_reads(stream, data[0], 2048)) {
    auto status = filter->receive(read.data(), read.size(), plain, out);
    fed += read.size();
    if (fed == read.size() && status == reactor::Filter::Status::kWrongProtocol && read[0] == 0x16) std::abort();
    if (fed == read.size() && read[0] != 0x16 && status != reactor::Filter::Status::kWrongProtocol) std::abort();
    if (!filter->ready() && plain.size() != 0) std::abort();  // bytes for the handler before the handshake
    if (out.bytes() > 64 * 1024 + 8 * fed) std::abort();       // what it answers stays bounded
    if (status != reactor::Filter::Status::kOk) break;         // the connection closes here
  }
  if (filter->ready()) {  // not reached by chance, but if it is: the way out works
    out.clear();
    reactor::OutputQueue queued;
    queued.append(std::string_view("hello"));
    filter->encode(queued, out);
    if (!queued.empty() || out.empty()) std::abort();
  }
  return 0;
}
