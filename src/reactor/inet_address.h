// InetAddress: an IPv4 or IPv6 socket address, resolved from "host" + port.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>

namespace reactor {

class InetAddress {
 public:
  InetAddress() = default;
  // Resolves `host` (a literal address or a name such as "localhost"; IPv4 preferred).
  // Throws std::invalid_argument with a clear message when it does not resolve.
  static InetAddress resolve(const std::string& host, uint16_t port);
  // The local or peer address of a socket.
  static InetAddress local_of(int fd);
  static InetAddress peer_of(int fd);

  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage_); }
  sockaddr* get() { return reinterpret_cast<sockaddr*>(&storage_); }
  socklen_t length() const { return length_; }
  void set_length(socklen_t length) { length_ = length; }
  int family() const { return storage_.ss_family; }
  uint16_t port() const;
  std::string host() const;
  std::string to_string() const;  // "127.0.0.1:1234", "[::1]:1234"

 private:
  sockaddr_storage storage_{};
  socklen_t length_ = 0;
};

}  // namespace reactor
