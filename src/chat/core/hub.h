// Hub: rooms and their members, sharded over reactors. It never sees a socket or a wire format: a
// member is anything that can take a Delivery, and a Delivery carries a room event together with
// its bytes, rendered once per wire format present among the room's members (chat/core/format.h),
// immutable and shared, so every recipient's output queue holds a reference, never a copy.
//
// Each reactor (shard) has one Hub. A Hub keeps the members of each room that live on its shard,
// for fan-out. Each room also has one owner shard (a hash of its name), whose Hub holds the room's
// global state: its sequence number, member counts per shard and per format, member names. Every
// join, leave and message of a room goes through its owner, which has the message numbered by the
// Router (chat/core/router.h: itself, or Redis across nodes) and sends each event once to every shard
// with members there (one posted task per shard per event; the shared bytes are not copied). Posts
// between two reactors are FIFO, so every member of a room sees the room's events in the owner's
// order, and a sender's messages in the order sent.
//
// With one shard every call is direct and synchronous: the single-threaded server.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "chat/core/event.h"
#include "chat/core/format.h"
#include "chat/core/policy.h"
#include "chat/core/router.h"
#include "chat/core/store.h"
#include "reactor/reactor.h"

namespace chat {

// The owner's answer to a join (Member::joined).
class AddressTable;
class TokenAuthority;

struct JoinReply {
  size_t count = 0;                                // members now in the room
  const std::vector<std::string>* names = nullptr;  // the named members, if the room is small enough
  std::string epoch;                               // the store's epoch
  uint64_t seq = 0;                                // the room's last message number (0: none)
  const std::vector<MemberModes>* modes = nullptr;  // with names: each one's modes in the room, in order
  const std::string* topic = nullptr;     // the room's topic (null or empty: none) ...
  const std::string* topic_by = nullptr;  // ... who set it ...
  int64_t topic_at = 0;                   // ... and when (ms since the epoch)
};

// A message to one member, not to a room (IRC's PRIVMSG and NOTICE to a nick).
struct DirectMessage {
  std::string from;   // the sender's name
  std::string front;  // the sender's front end (Format::front)
  std::string to;     // the name it was sent to, as the sender wrote it
  std::string text;  // an invitation: the room
  bool automatic = false;  // an automatic message (StoredMessage::automatic)
  bool invite = false;  // an invitation to the room `text`
  int64_t ts_ms = 0;
  // A server operator's: `kill` closes the member's connection (`text`: why); `bulletin` is a
  // message to every member that takes them (Hub::everyone; IRC's WALLOPS).
  bool kill = false;
  bool bulletin = false;
};

// What became of a DirectMessage.
struct DirectResult {
  enum Status : uint8_t {
    kNoSuchName,  // nobody holds the name
    kDelivered,
    kNotTaken,    // the member's front end has no messages to one member (native, WebSocket)
  };
  Status status = kNoSuchName;
  std::string name;   // the recipient's name, in its own case
  std::string front;  // the recipient's front end
  std::string away;   // the recipient's away message ("" if not away)
};

// A member as others may see it (IRC's WHOIS).
struct MemberInfo {
  std::string name;
  std::string front;
  std::vector<std::string> rooms;
  std::string away;
};

class Member {
 public:
  virtual ~Member() = default;
  virtual uint64_t id() const = 0;  // unique in the process, never reused
  // The wire format its room events are rendered in. Fixed while it is in any room.
  virtual FormatId format() const = 0;
  // The name others see in presence events and member lists. Empty: an anonymous member, one
  // whose messages each carry their own name (the article's dialect); nobody is told it came or went.
  virtual const std::string& name() const = 0;
  virtual void deliver(const Delivery& delivery) = 0;
  // The answer to a join that asked for one (JoinReply).
  virtual void joined(const std::string& room, const JoinReply& reply) = 0;
  // The answer to a publish with an id: stored (numbered `seq`), or not (the store failed).
  virtual void acked(const std::string& /*room*/, const std::string& /*id*/, uint64_t /*seq*/, bool /*stored*/) {}
  // A message to this member alone (Hub::direct).
  virtual DirectResult direct(const DirectMessage& /*message*/) {
    return {DirectResult::kNotTaken, name(), Format::by_id(format()).front(), {}};
  }
  virtual MemberInfo describe() const { return {name(), Format::by_id(format()).front(), {}, {}}; }
  // The room's owner refused its join (it is not in the room), or a message of it.
  virtual void join_refused(const std::string& /*room*/, Refusal /*why*/) {}
  // `id`: the message's id, if it had one.
  virtual void publish_refused(const std::string& /*room*/, Refusal /*why*/, const std::string& /*id*/) {}
  // An operator removed it from the room (the room has been told, the member too).
  virtual void removed(const std::string& /*room*/) {}
};

// A message on its way to its room's owner.
struct Publish {
  std::string user;
  std::string text;
  std::string id;         // the sender's id for an idempotent publish ("" if none)
  std::string front;      // the sender's front end (Format::front)
  size_t shard = 0;       // the sender's shard and member id: where its ack goes
  uint64_t member_id = 0;
  bool external = false;  // from outside the room: sent only if the room allows it (RoomPolicy::no_external)
  bool automatic = false;  // an automatic message (StoredMessage::automatic): never answered with a refusal
};

// The ids a room's owner remembers for dedupe: (user, id) -> seq, within the store's retention rule
// for ids (Retention::dedupe_ids, dedupe_ms). An id is pending from its numbering until its store
// answers; one the store refused is forgotten (a retry may be stored).
class IdWindow {
 public:
  struct Entry {
    uint64_t seq = 0;
    int64_t ts_ms = 0;
    bool stored = false;
    uint64_t text_fp = 0;  // text_fingerprint of its message (0: not known: any text is a retry)
    // True if `text` could be the message this id was given first (a retry), false if it is
    // another message under the same id.
    bool same_message(std::string_view text) const { return text_fp == 0 || text_fp == text_fingerprint(text); }
  };
  Entry* find(const std::string& user, const std::string& id);
  void add(const std::string& user, const std::string& id, Entry entry, const Retention& retention);
  void forget(const std::string& user, const std::string& id);
  size_t size() const { return entries_.size(); }

 private:
  static std::string key(const std::string& user, const std::string& id) { return user + '\0' + id; }
  std::unordered_map<std::string, Entry> entries_;
  std::deque<std::pair<std::string, uint64_t>> order_;  // (key, seq), oldest first; stale ones skipped
};

// What a room's owner keeps of a room while the process lives, members or not: its numbering and
// its dedupe window (loaded from the store at start-up).
struct RoomLog {
  uint64_t last_seq = 0;       // the last number given
  // The last number delivered to the members: below last_seq while messages are on their way into
  // the store. A join is answered with it, so every number above a member's `joined` reaches it
  // live, and none at or below it comes after.
  uint64_t delivered_seq = 0;
  std::unique_ptr<IdWindow> ids;  // only for rooms that have seen ids
  // The topic, kept while the process lives (RoomPolicy::topic_locked says who may set it).
  std::string topic, topic_by;
  int64_t topic_at = 0;
};

// kRateLimited: over --message-rate (Session::publish), not sent.
enum class HubError { kNone, kNotMember, kAlreadyMember, kRateLimited };

// A named member of a room as its owner knows it (RoomSnapshot).
struct RoomMemberInfo {
  std::string name;
  std::string front;  // Format::front of its connection
  MemberModes modes;
};

// A room as its owner sees it now (Hub::inspect).
struct RoomSnapshot {
  size_t count = 0;                     // members (0: the room has none, or does not exist)
  bool listed = false;                  // `members` lists every named member (small rooms only)
  std::vector<RoomMemberInfo> members;  // the named members, by name
  RoomPolicy policy;                    // its modes (the defaults when it has none)
  std::string topic, topic_by;
  int64_t topic_at = 0;
  int64_t created_ms = 0;  // when its first member came (0: it has none)
};

// A room and how many members it has (Hub::list_rooms).
struct RoomCount {
  std::string room;
  size_t count = 0;
  bool secret = false;  // +s: listed only to its members
};

class Hub;

// What the shards share: the list of hubs and their reactors, the router, the registry of member
// names, and the accounting of work posted between them.
//
// Backpressure between reactors: every task posted to a shard is counted in that shard's inbox
// (an estimate of the bytes it holds) until it has run. A shard whose inbox passes kInboxHigh makes
// the process congested: sessions stop reading their connections before the next request (the
// peer's TCP window then pushes back, as it would on one reactor) and wait. When the inbox that
// was high drains below kInboxLow and no other is high, every waiting shard is told to resume.
// So what one flooding sender can pile up between reactors is bounded, and a calm room's message
// waits behind at most one inbox's worth of work, not behind everything the flood sent.
class ShardTable {
 public:
  static constexpr size_t kMaxShards = 64;
  static constexpr size_t kInboxHigh = 256 << 10;
  static constexpr size_t kInboxLow = kInboxHigh / 4;
  static constexpr size_t kTaskCost = 128;  // what a posted task costs besides the bytes it carries
  // The inbox cost of a chat message on its way between shards.
  static size_t message_cost(std::string_view room, std::string_view user, std::string_view text) {
    return kTaskCost + room.size() + user.size() + text.size();
  }

  ShardTable(size_t shards, size_t presence_max_members);
  size_t shards() const { return hubs_.size(); }
  size_t presence_max_members() const { return presence_max_members_; }
  size_t owner_of(const std::string& room) const;
  // Registers shard `index`; call on that shard's thread before any traffic.
  void attach(size_t index, reactor::Reactor& reactor, Hub& hub);
  // Runs `task` on shard `to`: at once if `to` is the calling shard `from`, else posted, counting
  // `cost` bytes in `to`'s inbox until it has run.
  void run_on(size_t to, size_t from, reactor::Reactor::Task task, size_t cost = kTaskCost);
  Hub& hub(size_t index) { return *hubs_[index]; }
  // Asks shard `owner` and comes back: `on_owner(Hub&)` runs on `owner` (posted from `home` with
  // `cost`), and `done(answer)` with what it returned runs on `home`, posted back from `owner`, so
  // after every task `owner` posted to `home` before it (at once where the shard is the caller's).
  template <typename OnOwner, typename Done>
  void ask(size_t owner, size_t home, OnOwner on_owner, Done done, size_t cost = kTaskCost) {
    run_on(
        owner, home,
        [this, owner, home, on_owner = std::move(on_owner), done = std::move(done)]() mutable {
          auto answer = on_owner(hub(owner));
          run_on(home, owner, [answer = std::move(answer), done = std::move(done)]() mutable { done(answer); });
        },
        cost);
  }
  // Asks `n` questions at once and gathers the answers on `home`: question i is asked of shard
  // `owner_of(i)`, where `on_owner(i, owner, reply)` runs (posted from `home`) and answers it by calling
  // `reply(answer)` on that shard, at once or later (after asynchronous work of its own); each
  // answer is posted back to `home` (after what that shard posted there before) and added there,
  // `add(result, i, answer)`, in no order between shards; `done(result)` runs on `home` after the
  // last (at once, inside this call, when `n` is 0). `on_owner` is shared by the shards answering
  // at once: it may only read what it captured.
  template <typename Result, typename OwnerOf, typename OnOwner, typename Add, typename Done>
  void gather_async(size_t home, size_t n, OwnerOf owner_of, OnOwner on_owner, Result initial, Add add, Done done) {
    if (n == 0) return done(std::move(initial));
    struct Gathered {
      Result result;
      size_t remaining;
      Add add;
      Done done;
    };
    auto g = std::make_shared<Gathered>(Gathered{std::move(initial), n, std::move(add), std::move(done)});
    auto question = std::make_shared<const OnOwner>(std::move(on_owner));
    for (size_t i = 0; i < n; ++i) {
      size_t owner = owner_of(i);
      run_on(owner, home, [this, question, g, i, owner, home] {
        (*question)(i, owner, [this, g, i, owner, home](auto answer) {
          run_on(home, owner, [g, i, answer = std::move(answer)]() mutable {
            g->add(g->result, i, answer);
            if (--g->remaining == 0) g->done(std::move(g->result));
          });
        });
      });
    }
  }
  // gather_async() where `on_owner(i, Hub&)` answers at once, returning the answer: as ask() for
  // each question.
  template <typename Result, typename OwnerOf, typename OnOwner, typename Add, typename Done>
  void gather(size_t home, size_t n, OwnerOf owner_of, OnOwner on_owner, Result initial, Add add, Done done) {
    gather_async(
        home, n, owner_of,
        [this, on_owner = std::move(on_owner)](size_t i, size_t owner, auto reply) { reply(on_owner(i, hub(owner))); },
        std::move(initial), std::move(add), std::move(done));
  }
  // Runs `task(Hub&)` on every shard, posted from `from` with `cost` (at once on `from` itself).
  template <typename Task>
  void each_shard(size_t from, const Task& task, size_t cost = kTaskCost) {
    for (size_t k = 0; k < shards(); ++k) {
      run_on(k, from, [this, k, task] { task(hub(k)); }, cost);
    }
  }
  // gather() with one question for each shard (shard i answers question i).
  template <typename Result, typename OnShard, typename Add, typename Done>
  void gather_shards(size_t home, OnShard on_shard, Result initial, Add add, Done done) {
    gather(home, shards(), [](size_t k) { return k; }, std::move(on_shard), std::move(initial), std::move(add),
           std::move(done));
  }

  // True while some shard's inbox is over kInboxHigh: read no more requests.
  bool congested() const;
  // Shard `shard` has paused connections: marks it waiting. False if the congestion is already
  // over (the caller resumes them itself); true if Hub::resume_paused will be run on it.
  bool wait_for_room(size_t shard);

  // How rooms' messages are ordered: in-process unless another router (Redis) is set before any
  // traffic. The table does not own it.
  void set_router(Router* router) { router_ = router; }
  Router& router() const { return *router_; }
  // Where rooms' messages are kept: a store that keeps none unless another is set before any
  // traffic (not owned), with the rooms it knows (their numbering and dedupe ids), which each
  // room's owner takes when it is built.
  void set_store(Store* store, const Retention& retention, std::vector<StoredRoom> rooms);
  Store& store() const { return *store_; }
  const Retention& retention() const { return retention_; }
  // The rooms owned by `shard` that the store knew at start-up (for its Hub's constructor).
  std::unordered_map<std::string, RoomLog> take_logs(size_t shard);
  reactor::Reactor& reactor(size_t shard) const { return *reactors_[shard]; }

  // --max-connections counts the process's connections, whatever the reactor: true (and counted)
  // if one more fits under `max`.
  bool admit(size_t max);
  void release_admission() { admitted_.fetch_sub(1, std::memory_order_relaxed); }
  // --max-room-members and --max-server-rooms (0: no limit), and the rooms with members now.
  void set_room_limits(size_t max_members, size_t max_rooms) {
    max_room_members_ = max_members;
    max_server_rooms_ = max_rooms;
  }
  size_t max_room_members() const { return max_room_members_; }
  // A room is opened (its first member): true if it may be (and counted); closed: uncounted.
  bool open_room(bool forced);
  void close_room() { rooms_open_.fetch_sub(1, std::memory_order_relaxed); }
  // Connections per client address (null: not limited); not owned.
  void set_addresses(AddressTable* addresses) { addresses_ = addresses; }
  AddressTable* addresses() const { return addresses_; }
  // --auth-secret: who checks the tokens of hellos, IRC's PASS and SASL (null: no authentication);
  // not owned. Set before the shards start; read-only after, from every reactor.
  void set_authority(const TokenAuthority* authority) { authority_ = authority; }
  const TokenAuthority* authority() const { return authority_; }

  // Member names are unique across the process, compared without regard to ASCII case (IRC's
  // CASEMAPPING=ascii): nobody can pass for "Bob" as "bob", whatever the front end.
  static std::string fold_name(std::string_view name);
  // Who holds a name: its member, the member's shard, and its front end (Format::front).
  struct NameHolder {
    uint64_t member_id = 0;
    size_t shard = 0;
    std::string front;
    // What IRC shows of the member (WHO, WHOIS, USERHOST, WHOWAS): the user name and real name its
    // USER gave ("" for other front ends: the name stands for both), whether it is away, and
    // whether it is a server operator.
    std::string user, realname;
    bool away = false;
    bool oper = false;
  };
  bool claim_name(const std::string& name, NameHolder holder);
  void release_name(const std::string& name, uint64_t member_id);
  // Changes what is kept with a name its member holds (NameHolder's away and oper).
  void set_name_flags(const std::string& name, uint64_t member_id, bool away, bool oper);
  // The most names held at once since the start (IRC's LUSERS).
  size_t name_peak();
  // Names given back lately, newest first (IRC's WHOWAS): at most kPastNames in the process.
  struct PastName {
    std::string name, user, realname, front;
    int64_t gone_ms = 0;
  };
  static constexpr size_t kPastNames = 1000;
  std::vector<PastName> past_names(const std::string& name, size_t max);
  bool name_held(const std::string& name);
  std::optional<NameHolder> find_name(const std::string& name);
  size_t name_count();

 private:
  void wake_waiting(size_t from);

  size_t presence_max_members_;
  AddressTable* addresses_ = nullptr;
  const TokenAuthority* authority_ = nullptr;
  size_t max_room_members_ = 0, max_server_rooms_ = 0;
  std::atomic<size_t> rooms_open_{0};
  LocalRouter local_router_;
  Router* router_ = &local_router_;
  Retention retention_;
  std::unique_ptr<Store> no_store_;
  Store* store_;
  std::vector<std::unordered_map<std::string, RoomLog>> preloaded_;  // per owner shard, until taken
  std::unique_ptr<std::atomic<size_t>[]> inbox_;  // per shard: bytes posted to it, not yet run
  std::atomic<uint64_t> waiting_{0};              // bit k: shard k has connections paused for room
  std::atomic<size_t> admitted_{0};               // connections open under --max-connections
  std::vector<Hub*> hubs_;
  std::vector<reactor::Reactor*> reactors_;
  std::mutex names_mutex_;
  std::unordered_map<std::string, NameHolder> names_;  // folded name -> holder; guarded by names_mutex_
  size_t names_peak_ = 0;                               // guarded by names_mutex_
  std::deque<PastName> past_names_;                     // newest first; guarded by names_mutex_
};

class Hub {
 public:
  Hub(ShardTable& table, size_t shard);

  // ---- Called by the sessions of this shard ----
  // Joins at once on this shard; the owner then counts the member, tells the room (presence), and,
  // if `want_reply`, answers through Member::joined. kAlreadyMember if already in the room.
  // `key`: the room's key, if it has one (RoomPolicy::key); the owner may refuse the join
  // (Member::join_refused).
  HubError join(const std::string& room, Member* member, bool want_reply, const std::string& key = {});
  // Leaves `room`. `quit`: because the member's connection is closing (`reason`: what it said).
  HubError leave(const std::string& room, Member* member, bool quit = false, const std::string& reason = {});
  void leave_all(Member* member, const std::vector<std::string>& rooms, bool quit = false,
                 const std::string& reason = {});
  // The member, a member of `rooms`, was called `old_name` and is now called member->name(): each
  // room's owner renames it and tells the other members (EventKind::kRename).
  void rename(Member* member, const std::string& old_name, const std::vector<std::string>& rooms);
  // Sends `text` from `user` to every member of `room`, the sender included. With an `id`, the
  // sender gets Member::acked once the message is stored (or could not be), and a repeated
  // (room, user, id) is not sent again.
  // With `external`, a sender outside the room may publish too: the owner sends the message if
  // the room allows it (-n) and refuses it otherwise (Member::publish_refused).
  HubError publish(const std::string& room, Member* from, std::string_view user, std::string_view text,
                   std::string_view id = {}, bool external = false, bool automatic = false);
  // A member of this shard that may receive acks (registered from its start to its close).
  void add_member(Member* member) { members_.emplace(member->id(), member); }
  void remove_member(const Member* member) { members_.erase(member->id()); }
  bool is_member(const std::string& room, const Member* member) const;
  // Asks `room`'s owner what it is now; `done` runs on this shard with the answer, after every
  // event the owner sent this shard before it.
  void inspect(const std::string& room, std::function<void(const RoomSnapshot&)> done);
  // Every room with members in the process and how many, at most `limit` (from every owner);
  // `done` runs on this shard.
  void list_rooms(size_t limit, std::function<void(std::vector<RoomCount>)> done);
  // Gives `message` to the member named `message.to` (names compared as ShardTable does), on its
  // shard; `done` runs on this shard with what became of it. Returns the shard that answers (null:
  // nobody holds the name, `done` has run).
  std::optional<size_t> direct(DirectMessage message, std::function<void(const DirectResult&)> done);
  // The member named `name` as it describes itself (null: nobody holds the name); `done` runs on
  // this shard. Returns the shard that answers, as direct() does.
  std::optional<size_t> describe_member(const std::string& name,
                                        std::function<void(const std::optional<MemberInfo>&)> done);
  // The named members whose names match `pattern` (glob_match: `*`, `?`, without regard to case), as
  // each describes itself, at most `limit` (from every shard, in no order); `done` runs on this shard.
  void find_members(const std::string& pattern, size_t limit, std::function<void(std::vector<MemberInfo>)> done);
  // Gives `message` to every member of every shard (their Member::direct), as IRC's WALLOPS.
  void everyone(const DirectMessage& message);
  // The modes of the member named `name` in each of `rooms`, in order (none where it is not a
  // member), from each room's owner; `done` runs on this shard.
  void member_modes(const std::string& name, const std::vector<std::string>& rooms,
                    std::function<void(std::vector<MemberModes>)> done);
  // A request about `room`'s policy (topic, modes, kick, invitation) from `member`, done or refused by
  // the room's owner; `done` runs on this shard with the answer.
  void policy(const std::string& room, const Member* member, PolicyRequest request,
              std::function<void(const PolicyAnswer&)> done);
  size_t local_member_count(const std::string& room) const;
  // For the figures: the rooms with members this shard owns, and this shard's memberships.
  size_t owned_room_count() const { return owned_.size(); }
  // Joins and leaves held back by presence coalescing (PresenceChurn) in the rooms this shard owns.
  uint64_t presence_held() const { return presence_held_; }
  size_t local_membership_count() const;
  // Runs `done` on this shard once each shard in `shards` has run everything this shard posted to
  // it before (and what those tasks posted back here): a request's answers from a room's owner
  // come back before `done` runs.
  void barrier(const std::vector<size_t>& shards, std::function<void()> done);
  // A session of this shard stopped reading because the process is congested (ShardTable): `resume`
  // runs on this shard once there is room again, at once (inside this call) if there already is.
  void wait_for_room(std::function<void()> resume);
  // Runs every waiting `resume` of this shard (posted by the shard whose inbox drained).
  void resume_paused();
  // Forgets the waiting sessions: they stay paused (the server is stopping).
  void drop_paused() { paused_.clear(); }
  ShardTable& table() { return table_; }
  size_t shard() const { return shard_; }

  // ---- Called by the Router, on this shard as the room's owner ----
  // Delivers a message to the room's members, numbered (`seq` 0: numbered here, next in the room).
  void deliver_message(const std::string& room, StoredMessage message);
  // Answers a publish that had an id, on its sender's shard.
  void ack(const Publish& publish, const std::string& room, uint64_t seq, bool stored);
  // Refuses a publish whose id its sender gave another message before (Refusal::kIdReused), on its
  // sender's shard: nothing is numbered, stored or delivered.
  void id_reused(const Publish& publish, const std::string& room);
  // The room's numbering and dedupe window (created empty if the room is new).
  RoomLog& log(const std::string& room) { return logs_[room]; }

 private:
  struct LocalRoom {
    std::vector<Member*> members;
    std::unordered_map<uint64_t, size_t> index;  // member id -> position in members
  };
  struct NamedMember {
    FormatId format = 0;
    size_t shard = 0;
    uint64_t id = 0;
    MemberModes modes;
  };
  // What a room heard of one member's comings and goings in the current window (presence
  // coalescing: past kPresenceBurst joins and leaves of one name in kPresenceWindow, the room hears
  // no more of them until the window ends, and then only where the member is now, if that is not
  // what it heard last).
  struct PresenceChurn {
    reactor::Clock::time_point window_start{};
    uint32_t events = 0;        // joins and leaves the room heard in this window
    bool announced_in = false;  // the last the room heard: joined (true) or left
    bool held = false;          // more came and were held: a flush is due at the window's end
    FormatId format{};          // of its last connection (for a leave announced at the flush)
    uint64_t member_id = 0;
  };
  static constexpr uint32_t kPresenceBurst = 10;
  static constexpr reactor::Clock::duration kPresenceWindow = std::chrono::seconds(10);
  struct OwnedRoom {
    size_t count = 0;
    std::array<uint32_t, kMaxFormats> format_count{};  // members per wire format
    std::vector<size_t> shard_count;                     // members per shard
    std::map<std::string, NamedMember> names;            // named members, by name
    std::unique_ptr<RoomPolicy> policy;                  // null: the defaults
    // By name: exists once the room has announced a join or a leave.
    std::unique_ptr<std::unordered_map<std::string, PresenceChurn>> churn;
    int64_t created_ms = 0;                              // when its first member came
  };
  // What the owner answers a join with (shared by reference until the member's shard has used it).
  struct JoinAnswer {
    size_t count = 0;
    bool listed = false;
    std::vector<std::string> names;
    std::vector<MemberModes> modes;
    std::string topic, topic_by;
    int64_t topic_at = 0;
  };

  // What the owner tells a room about its member `user` (`member_id`, of `format`): `kind` with `text`.
  static RoomEvent member_event(EventKind kind, const std::string& room, const std::string& user,
                                const std::string& text, FormatId format, uint64_t member_id);
  // On the owner's thread (hub_owner.cpp; a room's policy: hub_policy.cpp).
  void owner_join(const std::string& room, size_t shard, uint64_t member_id, const std::string& name,
                  FormatId format, bool want_reply, const std::string& key);
  Refusal join_refusal(const OwnedRoom& r, const std::string& name, FormatId format, const std::string& key) const;
  PolicyAnswer owner_policy(const std::string& room, const std::string& name, uint64_t member_id,
                            const PolicyRequest& request);
  void owner_modes(const std::string& room, OwnedRoom& r, const std::string& setter, FormatId format,
                   const std::vector<ModeChange>& changes, PolicyAnswer& answer);
  // The named member of `r` called `name` (ASCII case aside), or null.
  std::pair<const std::string, NamedMember>* find_named(OwnedRoom& r, const std::string& name);
  // Tells every member of the room (whatever its size: these are rare and matter) what an operator
  // did: set the topic (kTopic), changed modes or roles (kMode), removed a member (kKick).
  void owner_announce(const std::string& room, const OwnedRoom& r, RoomEvent event);
  void owner_leave(const std::string& room, size_t shard, uint64_t member_id, const std::string& name,
                   FormatId format, bool quit, const std::string& reason);
  // A member of `it`'s room (of shard `shard`, format `format`) is no longer counted there: true if
  // that was the last (the room is closed and erased; `it` is no longer valid).
  bool owner_uncount(std::unordered_map<std::string, OwnedRoom>::iterator it, size_t shard, FormatId format);
  void owner_rename(const std::string& room, uint64_t member_id, const std::string& old_name,
                    const std::string& new_name, FormatId format);
  void owner_publish(const std::string& room, Publish publish);
  // Tells the room (but `except_id`) that `user` (of `format`, member `member_id`) came, went or
  // was renamed to `text` (or left saying `text`).
  void owner_presence(const std::string& room, OwnedRoom& r, EventKind kind, const std::string& user, FormatId format,
                      uint64_t member_id, uint64_t except_id, const std::string& text = {}, bool quit = false);
  // Presence coalescing (PresenceChurn): true if the room hears this join (`in`) or leave of `user`
  // now; false if it is held for the window's end (flush_presence).
  bool presence_passes(const std::string& room, OwnedRoom& r, bool in, const std::string& user, FormatId format,
                       uint64_t member_id);
  // At the end of `user`'s window in `room`: the room hears where it is now, if not what it heard last.
  void flush_presence(const std::string& room, const std::string& user);
  // Renders `event` in every format the room's members speak; null if no format carries it.
  DeliveryPtr render(const OwnedRoom& r, RoomEvent event) const;
  void owner_broadcast(const std::string& room, const OwnedRoom& r, const DeliveryPtr& delivery, uint64_t except_id);
  // On a member's thread.
  void deliver_local(const std::string& room, const Delivery& delivery, uint64_t except_id);
  void reply_joined(const std::string& room, uint64_t member_id, const std::shared_ptr<const JoinAnswer>& answer,
                    uint64_t seq);
  // Takes the member out of the room on this shard only (the owner knows already); null if it was
  // not in it.
  Member* drop_local(const std::string& room, uint64_t member_id);

  ShardTable& table_;
  size_t shard_;
  std::unordered_map<std::string, LocalRoom> local_;
  uint64_t presence_held_ = 0;
  std::unordered_map<std::string, OwnedRoom> owned_;
  std::unordered_map<std::string, RoomLog> logs_;      // owner: every room numbered here, kept when empty
  std::unordered_map<uint64_t, Member*> members_;      // this shard's members, by id (for acks)
  std::vector<std::function<void()>> paused_;  // sessions waiting for room (wait_for_room)
};

}  // namespace chat
