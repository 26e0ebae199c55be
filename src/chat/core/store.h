// Store: where rooms' messages are kept, so that a member who comes back can be given what it
// missed, and so that a message acknowledged to its sender exists. Centrifugo's model: each room is
// a stream of messages numbered 1, 2, 3, ... (`seq`) within an epoch (`epoch`, a string). The
// numbering never goes back within an epoch; the epoch changes only when the history behind it was
// lost (a new database, a memory store after a restart).
//
// The rooms' owners number messages themselves (chat/core/hub.h) and hand each to the store; the store
// only keeps them and reads them back. Three kinds:
//   SqliteStore  a file in WAL mode; every SQLite call on one thread of a BlockingPool beside the
//                reactors; appends are group-committed (one transaction per batch).
//   MemoryStore  the same promises for the life of the process (the epoch is new at every start).
//   no store     (--store off) a MemoryStore that keeps no messages: numbering and the dedupe
//                window only.
// Redis Streams (--redis) keep history in the router's own step instead (chat/core/router.h).
//
// Threads: every call may come from any reactor thread. A completion runs on the reactor passed
// with the call (posted there; a store that needs no thread may run it inside the call). For one
// reactor, completions of appends, reads and fences run in the order the calls were made, and a read
// sees every append made before it from any reactor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "chat/core/event.h"
#include "reactor/reactor.h"

namespace chat {

class Exposition;

// One kept message. `id`: the sender's id for an idempotent publish ("" if none); `front`: the
// sender's front end (Format::front; "" if not known).
struct StoredMessage {
  uint64_t seq = 0;
  int64_t ts_ms = 0;
  std::string user;
  std::string text;
  std::string id;
  std::string front;
  // An automatic message (IRC's NOTICE): one that no client answers automatically, so that two
  // automatons never answer each other forever. Kept by the memory store; the SQLite and Redis
  // stores keep it as a plain message, and Redis carries it as one.
  bool automatic = false;
};

// A kept message as the event its room's members are sent (a live delivery, a recovery's replay).
inline RoomEvent message_event(const std::string& room, const StoredMessage& m) {
  return RoomEvent{.kind = EventKind::kMessage,
                   .room = room,
                   .user = m.user,
                   .text = m.text,
                   .ts_ms = m.ts_ms,
                   .seq = m.seq,
                   .id = m.id,
                   .front = m.front,
                   .member = 0,
                   .quit = false,
                   .target = {},
                   .automatic = m.automatic,
                   .modes = {}};
}

// What tells a retry of a message from another message sent under the same id: a 64-bit FNV-1a
// of its text, never 0 (0: not known, as for an id whose message the store no longer has).
inline uint64_t text_fingerprint(std::string_view text) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  return h == 0 ? 1 : h;
}

// A message id the store remembers for dedupe: (room, user, id) -> seq, and the fingerprint of the
// text it was given with (0 if not known).
struct StoredId {
  std::string user;
  std::string id;
  uint64_t seq = 0;
  int64_t ts_ms = 0;
  uint64_t text_fp = 0;
};

// What a store knows of a room at start-up: its last number and its dedupe window, oldest first.
struct StoredRoom {
  std::string room;
  uint64_t last_seq = 0;
  std::vector<StoredId> ids;
};

// How long messages and ids are kept.
struct Retention {
  size_t max_messages = 10'000;               // per room: the newest ones
  int64_t max_age_ms = 7LL * 24 * 3600 * 1000;  // and none older than this
  // An id is remembered while it is among its room's last `dedupe_ids` ids, or younger than
  // `dedupe_ms` (whichever keeps it longer), but never past its room's last `dedupe_max_ids`: a room
  // that gets more ids than that within `dedupe_ms` keeps its newest ones (memory stays bounded
  // whatever the rate).
  size_t dedupe_ids = 10'000;
  int64_t dedupe_ms = 10LL * 60 * 1000;
  size_t dedupe_max_ids = 50'000;
};

struct ReadResult {
  bool ok = false;  // false: the store could not be read (the messages are then empty)
  std::vector<StoredMessage> messages;  // oldest first
  bool more = false;  // cut short by a byte cap: more messages of the range asked for exist
};

class Store {
 public:
  using AppendDone = std::function<void(bool stored)>;
  using ReadDone = std::function<void(ReadResult)>;

  virtual ~Store() = default;

  // The epoch of this store's numbering (any thread; it may change while the process runs when the
  // store learns its history was lost, e.g. Redis restarted empty).
  virtual std::string epoch() const = 0;
  // Before any traffic, on the starting thread: every room the store knows, with its last number
  // and its dedupe window.
  virtual std::vector<StoredRoom> load() = 0;
  // Keeps `message` (numbered by the room's owner) in `room`. `done(true)` once it is kept (with a
  // durable store: its batch committed), `done(false)` if it could not be (disk full, file gone).
  virtual void append(reactor::Reactor& reactor, const std::string& room, StoredMessage message, AppendDone done) = 0;
  // `room`'s messages with after < seq < before (`before` 0: no upper bound), at most `limit`: the
  // oldest of them, or with `newest` the newest of them; oldest first either way.
  virtual void read(reactor::Reactor& reactor, const std::string& room, uint64_t after, uint64_t before, size_t limit,
                    bool newest, ReadDone done) = 0;
  // Runs `done` on `reactor` once every call made before it (from any reactor) has completed.
  virtual void fence(reactor::Reactor& reactor, std::function<void()> done) = 0;
  // True if completions may arrive after the call returns (then answers from the store are answers
  // from another thread, and a pong waits for them).
  virtual bool asynchronous() const = 0;
  // Read marks: per reader (a folded IRC nick) and room, the last number delivered to the reader
  // before it left the room, so that a client that asks for no history of its own is played back
  // only what it has not seen (IRC playback). By default kept in the process (bounded, not across
  // restarts); the SQLite store keeps them in its file. `get_mark`'s `done` gets 0 for none, on
  // `reactor`; a mark above the room's last number (its history lost since) is no mark.
  virtual void set_mark(reactor::Reactor& reactor, const std::string& reader, const std::string& room, uint64_t seq);
  virtual void get_mark(reactor::Reactor& reactor, const std::string& reader, const std::string& room,
                        std::function<void(uint64_t)> done);
  // Marks kept in the process at most (the default's bound: one more forgets an arbitrary one).
  static constexpr size_t kMaxMarks = 100'000;
  // A log line of the store's state and counters ("" if it has none).
  virtual std::string describe() const { return ""; }
  // The same figures for GET /metrics (none by default). Any thread.
  virtual void metrics(Exposition&) const {}

 private:
  std::mutex marks_mutex_;
  std::unordered_map<std::string, uint64_t> marks_;  // reader NUL room -> seq; guarded by marks_mutex_
};

// The store for --store memory, and with `retention.max_messages` 0 for --store off.
std::unique_ptr<Store> make_memory_store(const Retention& retention);

}  // namespace chat
