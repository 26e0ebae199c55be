#include "chat/ops/admission.h"

#include <netinet/in.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace chat {

AddressKey AddressKey::of(const reactor::InetAddress& peer) {
  uint64_t hi = 0;
  uint32_t v4 = 0;
  if (peer.family() == AF_INET6) {
    const uint8_t* b = reinterpret_cast<const sockaddr_in6*>(peer.get())->sin6_addr.s6_addr;
    static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(b, kMapped, 12) != 0) {
      std::memcpy(&hi, b, 8);  // the /64
      return {hi, 2};
    }
    std::memcpy(&v4, b + 12, 4);  // an IPv4 address seen through IPv6
  } else if (peer.family() == AF_INET) {
    v4 = reinterpret_cast<const sockaddr_in*>(peer.get())->sin_addr.s_addr;
  } else {
    return {};
  }
  return {0, (uint64_t{1} << 32) | v4};
}

bool AddressTable::history_in_debt(const AddressKey& key, reactor::Clock::time_point now) {
  if (limits_.history_rate <= 0) return false;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return false;
  it->second.history.refill(now, limits_.history_rate, limits_.history_burst);
  return !it->second.history.at_least(0);
}

void AddressTable::charge_history(const AddressKey& key, reactor::Clock::time_point now, double bytes) {
  if (limits_.history_rate <= 0) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  it->second.history.refill(now, limits_.history_rate, limits_.history_burst);
  it->second.history.spend(bytes);
}

uint32_t AddressTable::borrow_requests(const AddressKey& key, reactor::Clock::time_point now, uint32_t want) {
  if (limits_.request_rate <= 0) return want;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return want;
  Entry& e = it->second;
  e.requests.refill(now, limits_.request_rate, limits_.request_burst);
  auto granted = static_cast<uint32_t>(std::min<double>(want, std::floor(e.requests.available())));
  e.requests.spend(granted);
  return granted;
}

Admission AddressTable::admit(const AddressKey& key, reactor::Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mutex_);
  Entry& e = entries_.try_emplace(key).first->second;  // a new entry's buckets are full
  if (limits_.max_connections > 0 && e.open >= limits_.max_connections) return Admission::kTooMany;
  if (limits_.connect_rate > 0) {
    e.connects.refill(now, limits_.connect_rate, limits_.connect_burst);
    if (!e.connects.take()) return Admission::kTooFast;
  }
  ++e.open;
  return Admission::kAdmitted;
}

void AddressTable::release(const AddressKey& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = entries_.find(key);
  if (it != entries_.end() && it->second.open > 0) --it->second.open;
}

size_t AddressTable::sweep(reactor::Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto it = entries_.begin(); it != entries_.end();) {
    Entry& e = it->second;
    if (limits_.connect_rate > 0) e.connects.refill(now, limits_.connect_rate, limits_.connect_burst);
    if (limits_.history_rate > 0) e.history.refill(now, limits_.history_rate, limits_.history_burst);
    if (limits_.request_rate > 0) e.requests.refill(now, limits_.request_rate, limits_.request_burst);
    // Forgotten once nothing of it would differ from an address never seen.
    if (e.open == 0 && (limits_.connect_rate <= 0 || e.connects.full(limits_.connect_burst)) &&
        (limits_.history_rate <= 0 || e.history.full(limits_.history_burst)) &&
        (limits_.request_rate <= 0 || e.requests.full(limits_.request_burst))) {
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
  return entries_.size();
}

}  // namespace chat
