// TcpConnector: an outgoing non-blocking connect on a Reactor. The callback runs on the reactor's
// thread (never from inside connect()) with the connected socket, or an errno.
#pragma once

#include <functional>
#include <memory>
#include <optional>

#include "reactor/handle.h"
#include "reactor/inet_address.h"
#include "reactor/reactor.h"

namespace reactor {

class TcpConnector : public std::enable_shared_from_this<TcpConnector> {
 public:
  // `socket` is valid on success; `error` is 0 then, else the errno of the failure.
  using Callback = std::function<void(Handle socket, int error)>;

  // Starts connecting to `address`, optionally from `source` (an address to bind first, e.g.
  // 127.0.0.2 to use another address's ephemeral ports).
  static std::shared_ptr<TcpConnector> connect(Reactor& reactor, const InetAddress& address,
                                               Callback callback,
                                               std::optional<InetAddress> source = std::nullopt);
  // Abandons a connect in progress; the callback will not run.
  void cancel();

  TcpConnector(Reactor& reactor, Callback callback) : reactor_(reactor), callback_(std::move(callback)) {}

 private:
  void begin(const InetAddress& address, const std::optional<InetAddress>& source);
  void finish(int error);
  int bind_source(const InetAddress& source);

  Reactor& reactor_;
  Callback callback_;
  Handle socket_;
  bool watching_ = false;
  bool done_ = false;
};

}  // namespace reactor
