#include "chat/core/format.h"

#include <array>
#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>

#include "chat/core/event.h"

namespace chat {
namespace {

std::mutex g_register_mutex;
std::array<std::atomic<const Format*>, kMaxFormats> g_formats{};
std::atomic<size_t> g_count{0};

}  // namespace

Format::Format(std::string name, std::string front) : name_(std::move(name)), front_(std::move(front)) {
  std::lock_guard<std::mutex> lock(g_register_mutex);
  size_t n = g_count.load();
  if (n == kMaxFormats) throw std::length_error("too many wire formats (at most " + std::to_string(kMaxFormats) + ")");
  id_ = static_cast<FormatId>(n);
  g_formats[n].store(this);
  g_count.store(n + 1);  // published after the slot: a reader that sees the count sees the format
}

size_t Format::count() { return g_count.load(std::memory_order_acquire); }

const Format& Format::by_id(FormatId id) { return *g_formats[id].load(std::memory_order_acquire); }

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

size_t Delivery::bytes_size() const {
  size_t n = 0;
  for (const auto& b : bytes) n += b ? b->size() : 0;
  return n;
}

}  // namespace chat
