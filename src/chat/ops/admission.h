// Connections per client address, and how fast one address may connect: one table for the process
// (every reactor's accepts go through it), under a mutex: an accept is rare next to the messages.
// IPv4 addresses count one by one; IPv6 ones by their /64 (one subscriber's whole prefix).
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "chat/ops/token_bucket.h"
#include "reactor/inet_address.h"
#include "reactor/timer_queue.h"

namespace chat {

struct AddressLimits {
  size_t max_connections = 500;  // open at once from one address (0: no limit)
  double connect_rate = 50;      // new connections a second from one address, after ...
  double connect_burst = 500;    // ... this many at once (rate 0: no limit)
  // Bytes of history one address's connections may be answered with a second, after a burst
  // (rate 0: no limit): a reconnect does not start a budget afresh (Limits::history_rate, per
  // connection, sets these to four times its own).
  double history_rate = 4.0 * 1024 * 1024;
  double history_burst = 16.0 * 1024 * 1024;
  // Requests one address's connections may make a second, after a burst (rate 0: no limit; set
  // from Limits::message_rate, four times it): reconnecting does not refill a connection's budget.
  double request_rate = 400;
  double request_burst = 2000;
};

enum class Admission : uint8_t { kAdmitted, kTooMany, kTooFast };

// What an address is counted under: an IPv4 address, or an IPv6 /64. Zero: not counted.
struct AddressKey {
  uint64_t hi = 0, lo = 0;
  bool counted() const { return hi != 0 || lo != 0; }
  bool operator==(const AddressKey&) const = default;
  static AddressKey of(const reactor::InetAddress& peer);
};
struct AddressKeyHash {
  size_t operator()(const AddressKey& k) const { return std::hash<uint64_t>()(k.hi * 0x9e3779b97f4a7c15ULL ^ k.lo); }
};

class AddressTable {
 public:
  explicit AddressTable(const AddressLimits& limits) : limits_(limits) {}

  // A connection from `key` at `now`: admitted (and counted until release()), or refused.
  Admission admit(const AddressKey& key, reactor::Clock::time_point now);
  void release(const AddressKey& key);
  // History answered to `key`'s connections: true while its budget is spent (an answer's cost is
  // known once it is read, so a budget may go into debt by one answer); charge() spends `bytes`.
  // An address with no connection counted here has no budget (false; nothing charged).
  bool history_in_debt(const AddressKey& key, reactor::Clock::time_point now);
  void charge_history(const AddressKey& key, reactor::Clock::time_point now, double bytes);
  // Up to `want` requests from `key`'s budget (connections borrow a few at a time, so that a
  // request seldom takes the lock): how many it got. An address with no connection counted here
  // has no budget (all granted).
  uint32_t borrow_requests(const AddressKey& key, reactor::Clock::time_point now, uint32_t want);
  // Forgets the addresses with no connection whose connect bucket is full again (they are as if
  // never seen); returns how many are left. Called now and then (ChatService, once a second).
  size_t sweep(reactor::Clock::time_point now);
  bool enabled() const {
    return limits_.max_connections > 0 || limits_.connect_rate > 0 || limits_.history_rate > 0 || limits_.request_rate > 0;
  }

 private:
  using Bucket = TokenBucket<double, reactor::Clock::time_point>;
  struct Entry {
    size_t open = 0;
    Bucket connects;
    Bucket history;  // bytes of history left (in debt: negative)
    Bucket requests;
  };

  const AddressLimits limits_;
  std::mutex mutex_;
  std::unordered_map<AddressKey, Entry, AddressKeyHash> entries_;  // guarded by mutex_
};

}  // namespace chat
