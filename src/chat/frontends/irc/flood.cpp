// Flood control and timeouts: the token bucket that paces a client's lines, the registration
// timeout, and the PING a silent client is sent.
#include "chat/frontends/irc/irc.h"

#include "chat/session/session.h"

namespace chat {

bool IrcCodec::hold_input(Session& session, size_t buffered) {
  if (options_.flood_rate <= 0) return false;
  auto now = reactor::Clock::now();
  flood_.refill(now, options_.flood_rate, options_.flood_burst);  // a new bucket fills
  if (flood_.take()) return false;
  // Over the rate: the lines wait (read no faster than the rate), unless too many pile up.
  if (buffered > options_.flood_backlog) {
    ++session.stats().irc_flood_closes;
    close_with_error(session, "Excess Flood", reactor::CloseCode::kProtocol);
    return true;
  }
  if (now >= retry_at_) {
    auto wait = std::chrono::duration_cast<reactor::Clock::duration>(
        std::chrono::duration<double>(flood_.seconds_until(1, options_.flood_rate)));
    retry_at_ = now + wait;
    session.redeliver_after(wait);
  }
  return true;
}

void IrcCodec::tick(Session& session, reactor::Clock::time_point now) {
  if (!session.open()) return;
  if (!registered_) {
    if (now - since_ > options_.registration_timeout) {
      ++session.stats().irc_timeouts;
      close_with_error(session, "Registration timed out", reactor::CloseCode::kProtocol);
    }
    return;
  }
  if (ping_sent_ != reactor::Clock::time_point{}) {
    if (now - ping_sent_ > options_.ping_timeout) {
      ++session.stats().irc_timeouts;
      auto secs = std::chrono::duration_cast<std::chrono::seconds>(now - since_).count();
      close_with_error(session, "Ping timeout: " + std::to_string(secs) + " seconds", reactor::CloseCode::kProtocol);
    }
  } else if (now - since_ > options_.ping_interval) {
    ping_sent_ = now;
    send_line(session, "PING :" + options_.server_name + "\r\n");
  }
}

}  // namespace chat
