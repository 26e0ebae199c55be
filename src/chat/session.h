// Session: one chat connection. It frames the bytes (codec per dialect), turns them into hub
// operations, and takes the hub's events back to its connection. A connection starts in the
// article's dialect, a member of the lobby (the article's server broadcasts to every connection,
// including ones that never speak). If its first object is {"type":"hello","user":NAME} it leaves
// the lobby and becomes native (JSON lines both ways); anything else confirms the article's dialect
// (JSON objects in, "[user] text" lines out).
#pragma once

#include <memory>
#include <string>
#include <vector>


#include "chat/framing.h"
#include "chat/hub.h"
#include "chat/json.h"
#include "chat/limits.h"
#include "chat/names.h"
#include "chat/stats.h"
#include "reactor/reactor.h"
#include "reactor/tcp_connection.h"

namespace chat {

class Session final : public Member, public std::enable_shared_from_this<Session> {
 public:
  Session(Hub& hub, Stats& stats, const Limits& limits, reactor::TcpConnection& conn);

  // Joins the lobby in the article's dialect, the default on connect.
  void start();
  // Bytes arrived: handle every complete frame, keep the rest.
  void on_input(reactor::Buffer& input);
  // The peer half-closed: close once every request before has been answered.
  void on_peer_closed();
  // The connection closed: leave every room, give the name back.
  void on_close();

  uint64_t id() const override { return conn_.id(); }
  Dialect dialect() const override { return state_ == State::kNative ? Dialect::kNative : Dialect::kArticle; }
  const std::string& name() const override { return name_; }
  void deliver(const EventPtr& event) override;
  void joined(const std::string& room, size_t count, const std::vector<std::string>* names) override;

 private:
  enum class State : uint8_t { kUndecided, kArticle, kNative };

  void frame_input(reactor::Buffer& input);
  void handle_frame(std::string_view frame);
  void handle_first(const Json& j, std::string_view frame);
  void handle_article(const Json& j, std::string_view frame);
  void handle_native(const Json& j);
  void native_join(const std::string& room);
  void native_leave(const std::string& room);
  // The answer to a request, in request order: held back while an earlier pong waits (ping()).
  void reply(const Json& j);
  void queue_reply(reactor::SharedBytes bytes);
  void ping(const Json& j);
  // Sends `bytes` (null: closes the connection after its flush) once every earlier request has
  // been answered, including answers from other shards; replies after it wait behind it.
  void after_earlier_answers(reactor::SharedBytes bytes);
  void emit(const reactor::SharedBytes& bytes);
  // Notes that a request about `room` went to its owner shard, if that is another shard.
  void touched(const std::string& room);
  void release_held();
  void error(const char* code, const std::string& message);
  void article_problem(const char* what, std::string_view frame);
  void send_bytes(const reactor::SharedBytes& bytes);
  // Backpressure between reactors: stop reading until the table has room (ShardTable::congested).
  void wait_for_room();
  void resume_input();

  Hub& hub_;
  Stats& stats_;
  const Limits& limits_;
  reactor::TcpConnection& conn_;
  State state_ = State::kUndecided;
  bool lost_ = false;
  bool waiting_room_ = false;
  bool resumed_ = false;  // the first request after a wait for room is not held back again
  uint32_t left_in_ = 0;  // bytes left in the input buffer by the last on_input (counted in already)
  ObjectFramer object_framer_;
  LineFramer line_framer_;
  std::string name_;
  std::vector<std::string> rooms_;
  reactor::Clock::time_point over_soft_since_{};
  // A pong is sent once every request before its ping has been answered, including the answers that
  // come from other shards (a join's "joined", a message's own copy): remote_ has a bit for each
  // shard sent requests since the last ping, and the pong waits for a Hub::barrier over them. Direct
  // replies after a waiting pong wait behind it; a join's "joined" is an answer from the room's
  // owner and comes when it comes (before the pong for a join sent before the ping). The queue of
  // held replies exists only while something is held: every byte here is paid per connection.
  struct Held {
    uint64_t id;
    reactor::SharedBytes bytes;  // null: the close that follows a half-close
    bool ready;
  };
  struct HeldReplies {
    std::vector<Held> replies;
    uint64_t next_id = 0;
  };
  // Replies that may wait behind the first waiting pong; a client that pipelines more is closed.
  static constexpr size_t kMaxHeld = 4096;
  uint64_t remote_ = 0;  // bit k: shard k (at most 64 shards, see ShardTable)
  std::unique_ptr<HeldReplies> held_;

};

}  // namespace chat
