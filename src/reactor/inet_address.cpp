#include "reactor/inet_address.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <cstring>
#include <stdexcept>

#include "reactor/error.h"

namespace reactor {

InetAddress InetAddress::resolve(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* list = nullptr;
  std::string service = std::to_string(port);
  int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &list);
  if (rc != 0) {
    throw std::invalid_argument("cannot resolve host '" + host + "': " + gai_strerror(rc));
  }
  const addrinfo* pick = list;
  for (const addrinfo* a = list; a != nullptr; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      pick = a;
      break;
    }
  }
  InetAddress addr;
  std::memcpy(&addr.storage_, pick->ai_addr, pick->ai_addrlen);
  addr.length_ = pick->ai_addrlen;
  ::freeaddrinfo(list);
  return addr;
}

InetAddress InetAddress::local_of(int fd) {
  InetAddress addr;
  addr.length_ = sizeof addr.storage_;
  if (::getsockname(fd, addr.get(), &addr.length_) < 0) throw_system_error("getsockname");
  return addr;
}

InetAddress InetAddress::peer_of(int fd) {
  InetAddress addr;
  addr.length_ = sizeof addr.storage_;
  if (::getpeername(fd, addr.get(), &addr.length_) < 0) throw_system_error("getpeername");
  return addr;
}

uint16_t InetAddress::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
  if (family() == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
  return 0;
}

std::string InetAddress::host() const {
  char text[INET6_ADDRSTRLEN] = "?";
  if (family() == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, text, sizeof text);
  } else if (family() == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, text,
                sizeof text);
  }
  return text;
}

std::string InetAddress::to_string() const {
  if (family() == AF_INET6) return "[" + host() + "]:" + std::to_string(port());
  return host() + ":" + std::to_string(port());
}

}  // namespace reactor
