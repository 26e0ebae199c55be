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

void AddressTable::refill(Entry& e, reactor::Clock::time_point now) const {
  double seconds = std::chrono::duration<double>(now - e.refilled).count();
  e.tokens = std::min(limits_.connect_burst, e.tokens + seconds * limits_.connect_rate);
  e.refilled = now;
}

void AddressTable::refill_history(Entry& e, reactor::Clock::time_point now) const {
  double seconds = std::chrono::duration<double>(now - e.history_refilled).count();
  e.history = std::min(limits_.history_burst, e.history + seconds * limits_.history_rate);
  e.history_refilled = now;
}

void AddressTable::refill_requests(Entry& e, reactor::Clock::time_point now) const {
  double seconds = std::chrono::duration<double>(now - e.requests_refilled).count();
  e.requests = std::min(limits_.request_burst, e.requests + seconds * limits_.request_rate);
  e.requests_refilled = now;
}

bool AddressTable::history_in_debt(const AddressKey& key, reactor::Clock::time_point now) {
  if (limits_.history_rate <= 0) return false;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return false;
  refill_history(it->second, now);
  return it->second.history < 0;
}

void AddressTable::charge_history(const AddressKey& key, reactor::Clock::time_point now, double bytes) {
  if (limits_.history_rate <= 0) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  refill_history(it->second, now);
  it->second.history -= bytes;
}

uint32_t AddressTable::borrow_requests(const AddressKey& key, reactor::Clock::time_point now, uint32_t want) {
  if (limits_.request_rate <= 0) return want;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return want;
  Entry& e = it->second;
  refill_requests(e, now);
  auto granted = static_cast<uint32_t>(std::min<double>(want, std::floor(e.requests)));
  e.requests -= granted;
  return granted;
}

Admission AddressTable::admit(const AddressKey& key, reactor::Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto [it, fresh] = entries_.try_emplace(key);
  Entry& e = it->second;
  if (fresh) {
    e.tokens = limits_.connect_burst;
    e.refilled = now;
    e.history = limits_.history_burst;
    e.history_refilled = now;
    e.requests = limits_.request_burst;
    e.requests_refilled = now;
  }
  if (limits_.max_connections > 0 && e.open >= limits_.max_connections) return Admission::kTooMany;
  if (limits_.connect_rate > 0) {
    refill(e, now);
    if (e.tokens < 1) return Admission::kTooFast;
    e.tokens -= 1;
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
    if (limits_.connect_rate > 0) refill(e, now);
    if (limits_.history_rate > 0) refill_history(e, now);
    if (limits_.request_rate > 0) refill_requests(e, now);
    // Forgotten once nothing of it would differ from an address never seen.
    if (e.open == 0 && (limits_.connect_rate <= 0 || e.tokens >= limits_.connect_burst) &&
        (limits_.history_rate <= 0 || e.history >= limits_.history_burst) &&
        (limits_.request_rate <= 0 || e.requests >= limits_.request_burst)) {
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
  return entries_.size();
}

}  // namespace chat
