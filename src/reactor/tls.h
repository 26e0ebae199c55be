// TLS for TcpConnection (OpenSSL): a FilterFactory for a server's connections.
//
// No blocking handshake and no socket of OpenSSL's own: each connection's SSL object talks to a
// BIO of ours whose reads take the bytes the reactor has just read, and whose writes append to the
// connection's queue of encoded bytes (no memory BIO holding a copy, no buffer kept per idle
// connection: SSL_MODE_RELEASE_BUFFERS). The reactor's readiness drives the handshake as it drives
// everything else; what the handler sends is encoded at flush time, the whole queue in records of
// up to 16 KiB.
//
// TLS 1.2 and 1.3 only; for 1.2, ECDHE with AES-GCM or ChaCha20-Poly1305 (Mozilla's "intermediate"
// profile); no renegotiation, no compression.
//
// Certificates: reload() reads the files again. Connections accepted after it use the new
// certificate; open ones keep the one they were made with (their SSL object holds its context).
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "reactor/tcp_connection.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace reactor {

struct TlsFiles {
  std::string cert;  // PEM: the certificate, then its chain
  std::string key;   // PEM: the private key
};

class TlsServerContext final : public FilterFactory {
 public:
  // Reads the certificate and key. Throws std::runtime_error with one line naming the file and
  // what is wrong with it (missing, not PEM, the key does not match the certificate).
  explicit TlsServerContext(TlsFiles files);
  ~TlsServerContext() override;

  // Reads the files again. nullopt: new connections use them. Otherwise why not (the certificate
  // in use stays).
  std::optional<std::string> reload();
  // The certificate in use: its subject and its end of validity, for a log line.
  std::string describe() const;

  std::unique_ptr<Filter> make() override;

 private:
  TlsFiles files_;
  mutable std::mutex mutex_;  // make() on every reactor, reload() on the main thread
  SSL_CTX* ctx_ = nullptr;
};

// The client side (the load generator, tests): TLS 1.2 and later; the server's certificate is
// checked against `ca_file`, or not at all when it is empty (a benchmark's own certificate).
class TlsClientContext final : public FilterFactory {
 public:
  // Throws std::runtime_error with one line (an unreadable authority file).
  explicit TlsClientContext(const std::string& ca_file = {});
  ~TlsClientContext() override;
  TlsClientContext(const TlsClientContext&) = delete;
  TlsClientContext& operator=(const TlsClientContext&) = delete;

  std::unique_ptr<Filter> make() override;

 private:
  SSL_CTX* ctx_;
};

}  // namespace reactor
