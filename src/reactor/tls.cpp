#include "reactor/tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <utility>

namespace reactor {
namespace {

// OpenSSL's last error in this thread, after `what`, as one line; the thread's queue is emptied
// (another connection on this reactor must not find it).
std::string openssl_error(const std::string& what) {
  unsigned long e = ERR_peek_last_error();  // 0 when the queue is empty: `what` says it all
  std::string out = what;
  if (e != 0) {
    const char* reason = ERR_reason_error_string(e);
    out += ": ";
    out += reason != nullptr ? reason : "OpenSSL error " + std::to_string(e);
  }
  ERR_clear_error();
  return out;
}

// Where one connection's SSL object reads and writes: the bytes the reactor has just read, and the
// connection's queue of encoded bytes. Set around each call into OpenSSL, empty otherwise.
struct Pipe {
  const char* in = nullptr;
  size_t in_left = 0;
  OutputQueue* out = nullptr;
};

int pipe_write(BIO* bio, const char* data, int len) {
  BIO_clear_retry_flags(bio);
  auto* pipe = static_cast<Pipe*>(BIO_get_data(bio));
  if (pipe->out == nullptr) {
    BIO_set_retry_write(bio);
    return -1;
  }
  pipe->out->append(std::string_view(data, static_cast<size_t>(len)));
  return len;
}

int pipe_read(BIO* bio, char* data, int len) {
  BIO_clear_retry_flags(bio);
  auto* pipe = static_cast<Pipe*>(BIO_get_data(bio));
  if (pipe->in_left == 0) {
    BIO_set_retry_read(bio);
    return -1;
  }
  size_t n = std::min(pipe->in_left, static_cast<size_t>(len));
  std::memcpy(data, pipe->in, n);
  pipe->in += n;
  pipe->in_left -= n;
  return static_cast<int>(n);
}

long pipe_ctrl(BIO*, int cmd, long, void*) { return cmd == BIO_CTRL_FLUSH ? 1 : 0; }

int pipe_create(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

BIO_METHOD* pipe_method() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "reactor connection");
    BIO_meth_set_write(m, pipe_write);
    BIO_meth_set_read(m, pipe_read);
    BIO_meth_set_ctrl(m, pipe_ctrl);
    BIO_meth_set_create(m, pipe_create);
    return m;
  }();
  return method;
}

class TlsFilter final : public Filter {
 public:
  TlsFilter(SSL_CTX* ctx, bool client) : ssl_(SSL_new(ctx)) {
    if (ssl_ == nullptr) throw std::runtime_error(openssl_error("SSL_new"));
    BIO* bio = BIO_new(pipe_method());
    BIO_set_data(bio, &pipe_);
    SSL_set_bio(ssl_, bio, bio);  // one BIO both ways: the SSL object takes its one reference
    if (client) {
      SSL_set_connect_state(ssl_);
    } else {
      SSL_set_accept_state(ssl_);
    }
  }

  void begin(OutputQueue& out) override {
    if (!SSL_is_server(ssl_)) {  // a client speaks first: its hello
      pipe_.out = &out;
      ERR_clear_error();
      SSL_do_handshake(ssl_);
      ERR_clear_error();
      pipe_ = {};
    }
  }
  ~TlsFilter() override { SSL_free(ssl_); }
  TlsFilter(const TlsFilter&) = delete;
  TlsFilter& operator=(const TlsFilter&) = delete;

  Status receive(const char* bytes, size_t n, Buffer& plain, OutputQueue& out) override {
    if (!seen_ && n > 0) {
      seen_ = true;
      // A TLS connection opens with a handshake record (content type 22). Anything else is a
      // client that meant a plain port: say so, rather than "wrong version number".
      if (SSL_is_server(ssl_) && bytes[0] != 0x16) {
        error_ = "not TLS: plain text on a TLS port";
        return Status::kWrongProtocol;
      }
    }
    pipe_ = {bytes, n, &out};
    Status status = Status::kOk;
    if (!ready_) {
      ERR_clear_error();
      int r = SSL_do_handshake(ssl_);
      if (r == 1) {
        ready_ = true;
      } else {
        status = outcome(r, "TLS handshake");
      }
    }
    if (ready_ && status == Status::kOk) status = read_into(plain);
    pipe_ = {};
    return status;
  }

  bool ready() const override { return ready_; }

  void encode(OutputQueue& plain, OutputQueue& out) override {
    char record[16384];  // the largest TLS record's plain text
    size_t n = plain.take(record, sizeof record);
    pipe_.out = &out;
    ERR_clear_error();
    // Our BIO takes every byte: the record is written whole (no WANT_WRITE, no partial write). A
    // failure comes only after a fatal error, when the connection is closing anyway.
    if (SSL_write(ssl_, record, static_cast<int>(n)) <= 0) ERR_clear_error();
    pipe_ = {};
  }

  void finish(OutputQueue& out) override {
    pipe_.out = &out;
    ERR_clear_error();
    SSL_shutdown(ssl_);  // close_notify; the peer's is not waited for (the linger reads and drops)
    ERR_clear_error();
    pipe_ = {};
  }

  const std::string& error() const override { return error_; }

 private:
  Status read_into(Buffer& plain) {
    char chunk[16384];
    for (;;) {
      ERR_clear_error();
      int k = SSL_read(ssl_, chunk, sizeof chunk);
      if (k <= 0) return outcome(k, "TLS");
      plain.append(std::string_view(chunk, static_cast<size_t>(k)));
    }
  }

  Status outcome(int r, const char* what) {
    switch (SSL_get_error(ssl_, r)) {
      case SSL_ERROR_WANT_READ:
      case SSL_ERROR_WANT_WRITE: return Status::kOk;  // more bytes from the peer, later
      case SSL_ERROR_ZERO_RETURN: return Status::kClosed;
      default: error_ = openssl_error(what); return Status::kError;
    }
  }

  SSL* ssl_;
  Pipe pipe_;
  std::string error_;
  bool seen_ = false;
  bool ready_ = false;
};

void readable_or_throw(const std::string& what, const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(what + " " + path + ": " + std::strerror(errno));
}

// A server context from the files, or std::runtime_error with one line.
SSL_CTX* load_context(const TlsFiles& files) {
  readable_or_throw("certificate", files.cert);
  readable_or_throw("private key", files.key);
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) throw std::runtime_error(openssl_error("SSL_CTX_new"));
  auto fail = [ctx](const std::string& what) {
    std::string error = openssl_error(what);
    SSL_CTX_free(ctx);
    throw std::runtime_error(error);
  };
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  // TLS 1.2: forward secrecy and AEAD only (TLS 1.3's suites are all of that kind already).
  if (SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                   "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                   "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305") != 1) {
    fail("cipher list");
  }
  // An idle connection keeps no record buffers (10,000 members: ~34 KiB each otherwise).
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  // Resumption by ticket only (one per handshake: a reconnect after a drain resumes): no session
  // cache in the server, which would hold every connection's session beyond its close.
  SSL_CTX_set_num_tickets(ctx, 1);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  if (SSL_CTX_use_certificate_chain_file(ctx, files.cert.c_str()) != 1) fail("certificate " + files.cert);
  if (SSL_CTX_use_PrivateKey_file(ctx, files.key.c_str(), SSL_FILETYPE_PEM) != 1) {
    if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
      ERR_clear_error();
      fail("private key " + files.key + " does not match certificate " + files.cert);
    }
    fail("private key " + files.key);
  }
  if (SSL_CTX_check_private_key(ctx) != 1) fail("private key " + files.key + " does not match certificate " + files.cert);
  return ctx;
}

}  // namespace

TlsServerContext::TlsServerContext(TlsFiles files) : files_(std::move(files)), ctx_(load_context(files_)) {}

TlsServerContext::~TlsServerContext() { SSL_CTX_free(ctx_); }

std::optional<std::string> TlsServerContext::reload() {
  SSL_CTX* fresh = nullptr;
  try {
    fresh = load_context(files_);
  } catch (const std::exception& e) {
    return e.what();
  }
  std::lock_guard lock(mutex_);
  SSL_CTX_free(std::exchange(ctx_, fresh));  // open connections hold their own reference
  return std::nullopt;
}

std::string TlsServerContext::describe() const {
  std::lock_guard lock(mutex_);
  X509* cert = SSL_CTX_get0_certificate(ctx_);
  if (cert == nullptr) return "no certificate";
  char subject[256];
  X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof subject);
  std::string out = subject;
  BIO* mem = BIO_new(BIO_s_mem());
  if (mem != nullptr && ASN1_TIME_print(mem, X509_get0_notAfter(cert)) == 1) {
    char* text = nullptr;
    long n = BIO_get_mem_data(mem, &text);
    out += ", valid until " + std::string(text, static_cast<size_t>(n));
  }
  BIO_free(mem);
  return out;
}

std::unique_ptr<Filter> TlsServerContext::make() {
  std::lock_guard lock(mutex_);
  return std::make_unique<TlsFilter>(ctx_, /*client=*/false);  // SSL_new takes a reference to the context
}

TlsClientContext::TlsClientContext(const std::string& ca_file) : ctx_(SSL_CTX_new(TLS_client_method())) {
  if (ctx_ == nullptr) throw std::runtime_error(openssl_error("SSL_CTX_new"));
  SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx_, SSL_MODE_RELEASE_BUFFERS);
  if (!ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx_, ca_file.c_str(), nullptr) != 1) {
      std::string error = openssl_error("certificate authority " + ca_file);
      SSL_CTX_free(ctx_);
      throw std::runtime_error(error);
    }
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
  }
}

TlsClientContext::~TlsClientContext() { SSL_CTX_free(ctx_); }

std::unique_ptr<Filter> TlsClientContext::make() { return std::make_unique<TlsFilter>(ctx_, /*client=*/true); }

}  // namespace reactor
