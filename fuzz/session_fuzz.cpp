// Fuzz target for a chat session: arbitrary bytes from a client, in arbitrary pieces, through the
// codec and the hub, with a second member in the lobby receiving what is broadcast. Nothing may
// crash, leak or read out of bounds (run under ASan/UBSan); replies are flushed to a real socket.
// The first byte chooses the frame limit: 16 bytes (a stream is given up past 256 bytes, well
// within a fuzzer's input, so the give-up path runs), 256, the server's default of 64 KiB, and
// 1 MiB (a server may run with a large limit: what a large frame can hold must not crash it).
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string_view>

#include "chat/hub.h"
#include "chat/limits.h"
#include "chat/names.h"
#include "chat/stats.h"
#include "chat/session.h"
#include "chat/tcp_session.h"
#include "reactor/log.h"
#include "reactor/reactor.h"
#include "reactor/tcp_connection.h"

namespace {

constexpr size_t kFrameLimits[] = {16, 256, 64 * 1024, 1024 * 1024};

struct Peer {
  reactor::TcpConnectionPtr conn;
  reactor::Handle other_end;
};

Peer make_peer(reactor::Reactor& loop) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) std::abort();
  auto cb = std::make_shared<reactor::ConnectionCallbacks>();
  auto conn = reactor::TcpConnection::create(loop, reactor::Handle(fds[0]), cb);
  conn->start();
  return {conn, reactor::Handle(fds[1])};
}

void drain(int fd) {
  char buf[65536];
  while (::read(fd, buf, sizeof buf) > 0) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  static bool quiet = (reactor::set_log_level(reactor::LogLevel::kOff), true);
  (void)quiet;
  static reactor::Reactor loop("poll");
  if (size < 1) return 0;
  chat::Limits limits;
  limits.max_frame = kFrameLimits[bytes[0] & 3];
  limits.max_rooms = 4;
  chat::Stats stats;
  chat::ShardTable table(1, limits.presence_max_members);
  chat::Hub hub(table, 0);
  table.attach(0, loop, hub);

  chat::SessionContext shard{hub, stats, limits,
                             chat::OutputLimit(limits.output_hard, limits.output_soft, limits.soft_grace)};

  Peer listener = make_peer(loop);
  auto watcher = std::make_shared<chat::TcpSession>(shard, *listener.conn);
  watcher->start();
  reactor::Buffer hello;
  hello.append("{\"user\":\"w\",\"text\":\"in the lobby\"}");
  watcher->input(hello);

  Peer client = make_peer(loop);
  auto session = std::make_shared<chat::TcpSession>(shard, *client.conn);
  session->start();
  std::string_view data(reinterpret_cast<const char*>(bytes + 1), size - 1);
  reactor::Buffer input;
  size_t off = 0, step = 1;
  while (off < data.size()) {
    size_t n = std::min(step, data.size() - off);
    input.append(data.substr(off, n));
    off += n;
    step = step * 3 % 61 + 1;
    session->input(input);
    loop.run_once(0);
    drain(client.other_end.get());
    drain(listener.other_end.get());
  }
  session->closed();
  watcher->closed();
  client.conn->close(reactor::CloseCode::kLocal, "done");
  listener.conn->close(reactor::CloseCode::kLocal, "done");
  loop.run_once(0);
  return 0;
}
