// What the chat unit tests share: a member is a Session over a FakeTransport that keeps every chunk
// it is given; shards (one on the test's thread, or two with the second on a pool thread) without
// sockets or processes. The rules tested are those of docs/PROTOCOL.md (the integration tests hold
// the same rules over TCP).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "chat/core/event.h"
#include "chat/core/hub.h"
#include "chat/core/store.h"
#include "chat/frontends/tcp/article.h"
#include "chat/frontends/tcp/native.h"
#include "chat/ops/json.h"
#include "chat/session/session.h"
#include "reactor/reactor.h"
#include "reactor/reactor_pool.h"

namespace chattest {

using chat::Json;
using namespace std::chrono_literals;

// A transport that keeps what it is given. What it has queued stays queued until drain(), as if
// the peer never read; close_* record the reason.
class FakeTransport final : public chat::Transport {
 public:
  bool open() const override { return !closed; }
  reactor::SendResult send(const reactor::SharedBytes& bytes) override {
    if (closed) return reactor::SendResult::kClosed;
    sent.push_back(bytes);
    queued_.bytes += bytes->size();
    ++queued_.chunks;
    return reactor::SendResult::kQueued;
  }
  chat::QueuedOutput queued() const override { return queued_; }
  void pause_reading() override { paused = true; }
  void resume_reading() override { paused = false; }
  void redeliver_input() override { ++redelivered; }
  void close_soon(reactor::CloseCode code, std::string_view text) override { close(code, text); }
  void close_after_flush(reactor::CloseCode code, std::string_view text) override { close(code, text); }

  void drain() { queued_ = {}; }  // the peer read everything

  std::vector<reactor::SharedBytes> sent;
  std::optional<reactor::CloseReason> closed;
  bool paused = false;
  int redelivered = 0;

 private:
  void close(reactor::CloseCode code, std::string_view text) {
    if (!closed) closed = reactor::CloseReason{code, std::string(text)};
  }
  chat::QueuedOutput queued_;
};

inline uint64_t next_id() {
  static uint64_t id = 1000;
  return ++id;
}

// One connection: a session over a fake transport, and the bytes it has been sent.
struct Client {
  FakeTransport transport;
  std::shared_ptr<chat::Session> session;
  reactor::Buffer input;

  Client(chat::SessionContext& shard, std::unique_ptr<chat::Codec> codec) {
    session = std::make_shared<chat::Session>(shard, transport, next_id(), std::move(codec));
    session->start();
  }
  ~Client() { leave(); }
  void leave() {
    if (session) session->closed();
    session.reset();
  }

  void say(std::string_view bytes) {
    input.append(bytes);
    session->input(input);
  }
  std::string text(size_t i) const { return *transport.sent.at(i); }
  std::string last() const { return transport.sent.empty() ? "" : *transport.sent.back(); }
  // Every chunk sent, parsed (each is one JSON line in the native dialect).
  std::vector<Json> json() const {
    std::vector<Json> out;
    for (const auto& b : transport.sent) out.push_back(Json::parse(*b));
    return out;
  }
  // The chunks whose "type" is `type`.
  std::vector<Json> of_type(const std::string& type) const {
    std::vector<Json> out;
    for (auto& j : json()) {
      if (j["type"] == type) out.push_back(j);
    }
    return out;
  }
};

// A connection of the TCP port that greets as `name`: the article's codec hands it to the native
// one, as over TCP.
inline std::unique_ptr<Client> native(chat::SessionContext& shard, const std::string& name) {
  auto c = std::make_unique<Client>(shard, std::make_unique<chat::ArticleCodec>(shard.limits.max_frame));
  c->say(R"({"type":"hello","user":")" + name + "\"}\n");
  EXPECT_EQ(c->json().at(0)["type"], "welcome") << c->last();
  EXPECT_EQ(c->session->format(), chat::native_format().id());
  return c;
}

inline std::unique_ptr<Client> article(chat::SessionContext& shard) {
  return std::make_unique<Client>(shard, std::make_unique<chat::ArticleCodec>(shard.limits.max_frame));
}

inline std::string request(const Json& j) { return j.dump() + "\n"; }

// One shard on the test's thread.
struct OneShard {
  explicit OneShard(chat::Limits l = {}, size_t presence_max = 100) : limits(l), table(1, presence_max) {
    limits.presence_max_members = presence_max;
    table.attach(0, loop, hub);
  }
  reactor::Reactor loop;
  chat::Limits limits;
  chat::ShardTable table;
  chat::Stats stats;
  chat::Hub hub{table, 0};
  chat::SessionContext shard{hub, stats, limits,
                             chat::OutputLimit(limits.output_hard, limits.output_soft, limits.soft_grace)};
};

// Two shards: shard 0 on the test's thread, shard 1 on a pool thread. Rooms owned by shard 1 are
// answered from there.
struct TwoShards {
  TwoShards()
      : table(2, 100),
        pool(1, "", [this](reactor::Reactor& r, size_t) {
          remote_hub = std::make_unique<chat::Hub>(table, 1);
          table.attach(1, r, *remote_hub);
        }, [this](reactor::Reactor&, size_t) { remote_hub.reset(); }) {
    table.attach(0, loop, hub);
  }
  ~TwoShards() {
    pool.stop();
    pool.join();
  }
  // A room whose owner is shard 1.
  std::string remote_room() const {
    for (int i = 0;; ++i) {
      std::string r = "room" + std::to_string(i);
      if (table.owner_of(r) == 1) return r;
    }
  }
  // Runs shard 0's loop until `done` or 5 s.
  bool run_until(const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      loop.run_once(10);
    }
    return true;
  }

  reactor::Reactor loop;
  chat::Limits limits;
  chat::ShardTable table;
  chat::Stats stats;
  chat::Hub hub{table, 0};
  std::unique_ptr<chat::Hub> remote_hub;
  reactor::ReactorPool pool;
  chat::SessionContext shard{hub, stats, limits,
                             chat::OutputLimit(limits.output_hard, limits.output_soft, limits.soft_grace)};
};

// One shard keeping history in `store`.
struct HistoryShard : OneShard {
  explicit HistoryShard(chat::Store& store, chat::Limits l = {}) : OneShard(l) { table.set_store(&store, {}, {}); }
};

inline std::vector<uint64_t> seqs_of(const Client& c, const std::string& room) {
  std::vector<uint64_t> out;
  for (auto& m : c.of_type("message")) {
    if (m["room"] == room) out.push_back(m["seq"]);
  }
  return out;
}

inline std::vector<uint64_t> range(uint64_t from, uint64_t to) {
  std::vector<uint64_t> out;
  for (uint64_t i = from; i <= to; ++i) out.push_back(i);
  return out;
}

inline Json message(const std::string& room, const std::string& text, const std::string& id = "") {
  Json j = {{"type", "message"}, {"room", room}, {"text", text}};
  if (!id.empty()) j["id"] = id;
  return j;
}

}  // namespace chattest
