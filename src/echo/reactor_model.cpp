#include "echo/echo.h"
#include "reactor/log.h"
#include "reactor/reactor.h"
#include "reactor/tcp_server.h"

namespace echo {

reactor::ConnectionCallbacks echo_callbacks() {
  reactor::ConnectionCallbacks callbacks;
  callbacks.on_message = [](const reactor::TcpConnectionPtr& conn, reactor::Buffer& input) {
    conn->send(input.view());
    input.clear();
  };
  callbacks.on_high_water = [](const reactor::TcpConnectionPtr& conn, size_t) { conn->pause_reading(); };
  callbacks.on_drain = [](const reactor::TcpConnectionPtr& conn) { conn->resume_reading(); };
  return callbacks;
}

void run_reactor(const Options& options, const ReadyCallback& ready) {
  reactor::Reactor loop(options.backend);
  loop.stop_on_signals();
  reactor::TcpServer server(loop, reactor::InetAddress::resolve(options.host, options.port),
                            echo_callbacks());
  server.start();
  ready(server.local_address(), loop.backend_name());
  loop.run();
  const auto& s = server.stats();
  const auto& l = server.listener_stats();
  LOG_INFO("stopped: %llu connection(s) accepted, %llu refused, %llu shed, %llu open at exit",
           static_cast<unsigned long long>(s.accepted), static_cast<unsigned long long>(s.rejected),
           static_cast<unsigned long long>(l.shed), static_cast<unsigned long long>(s.open));
}

}  // namespace echo
