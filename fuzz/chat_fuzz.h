// What the chat fuzz targets share: a connection over a socketpair, draining its other end, one
// shard with a member in the lobby that receives what is broadcast, and feeding input in pieces.
#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "chat/core/hub.h"
#include "chat/frontends/tcp/article.h"
#include "chat/frontends/tcp/tcp_session.h"
#include "chat/ops/limits.h"
#include "chat/ops/stats.h"
#include "chat/session/session.h"
#include "reactor/buffer.h"
#include "reactor/reactor.h"
#include "reactor/tcp_connection.h"

namespace fuzzing {

struct Peer {
  reactor::TcpConnectionPtr conn;
  reactor::Handle other_end;
};

inline Peer make_peer(reactor::Reactor& loop) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) std::abort();
  auto cb = std::make_shared<reactor::ConnectionCallbacks>();
  auto conn = reactor::TcpConnection::create(loop, reactor::Handle(fds[0]), cb);
  conn->start();
  return {conn, reactor::Handle(fds[1])};
}

// What is waiting at `fd`, read to the end.
inline std::string drain(int fd) {
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

// One shard on `loop` with a frame limit chosen by the input, and a member of the lobby (the
// article's dialect) that receives what is broadcast there.
struct Shard {
  Shard(reactor::Reactor& reactor, size_t max_frame)
      : loop(reactor),
        limits([max_frame] {
          chat::Limits l;
          l.max_frame = max_frame;
          l.max_rooms = 4;
          return l;
        }()),
        table(1, limits.presence_max_members),
        hub(table, 0),
        context{hub, stats, limits, chat::OutputLimit(limits.output_hard, limits.output_soft, limits.soft_grace)},
        listener(make_peer(loop)) {
    table.attach(0, loop, hub);
    // A small history, so joins with since, history requests and ids run their whole course.
    chat::Retention retention;
    retention.max_messages = 16;
    retention.dedupe_ids = 8;
    store = chat::make_memory_store(retention);
    table.set_store(store.get(), retention, {});
    watcher = std::make_shared<chat::TcpSession>(context, *listener.conn,
                                                 std::make_unique<chat::ArticleCodec>(limits.max_frame));
    watcher->start();
    reactor::Buffer hello;
    hello.append("{\"user\":\"w\",\"text\":\"in the lobby\"}");
    watcher->input(hello);
  }
  ~Shard() {
    watcher->closed();
    listener.conn->close(reactor::CloseCode::kLocal, "done");
    loop.run_once(0);
  }

  // Feeds `data` in pieces of 1 to 61 bytes (sizes that vary from piece to piece), calling
  // `take(input)` with the bytes so far, then running the loop and draining `client` and the
  // lobby member.
  template <class Take>
  void in_pieces(std::string_view data, int client, Take take) {
    reactor::Buffer input;
    size_t off = 0, step = 1;
    while (off < data.size()) {
      size_t n = std::min(step, data.size() - off);
      input.append(data.substr(off, n));
      off += n;
      step = step * 3 % 61 + 1;
      take(input);
      loop.run_once(0);
      drain(client);
      drain(listener.other_end.get());
    }
  }

  reactor::Reactor& loop;
  chat::Limits limits;
  chat::Stats stats;
  chat::ShardTable table;
  std::unique_ptr<chat::Store> store;
  chat::Hub hub;
  chat::SessionContext context;
  Peer listener;
  std::shared_ptr<chat::TcpSession> watcher;
};

}  // namespace fuzzing
