#include "loadgen/recover.h"

#include <sys/socket.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "loadgen/histogram.h"
#include "loadgen/message.h"
#include "loadgen/proc_stats.h"
#include "reactor/inet_address.h"
#include "reactor/reactor.h"
#include "reactor/tcp_connection.h"
#include "reactor/tcp_connector.h"

namespace loadgen {

namespace {

using json = nlohmann::json;

std::chrono::nanoseconds secs(double s) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(s));
}

// The text of the k-th missed message (1-based): what a recovering member must be replayed.
std::string missed_text(int k) { return "missed." + std::to_string(k) + "."; }

// The fields of a server line this driver reads, without a JSON parser on the hot path (messages
// and acks: our texts and ids need no escaping).
std::string_view string_field(std::string_view line, std::string_view key) {
  size_t k = line.find(key);
  if (k == std::string_view::npos) return {};
  size_t start = k + key.size();
  size_t close = line.find('"', start);
  return close == std::string_view::npos ? std::string_view{} : line.substr(start, close - start);
}

std::optional<uint64_t> number_field(std::string_view line, std::string_view key) {
  size_t k = line.find(key);
  if (k == std::string_view::npos) return std::nullopt;
  size_t i = k + key.size();
  uint64_t v = 0;
  size_t start = i;
  while (i < line.size() && line[i] >= '0' && line[i] <= '9' && i - start < 20) v = v * 10 + static_cast<uint64_t>(line[i++] - '0');
  if (i == start) return std::nullopt;
  return v;
}

constexpr std::string_view kMessagePrefix = "{\"type\":\"message\"";
constexpr std::string_view kAckPrefix = "{\"type\":\"ack\"";

json latency_json(const Histogram& h) {
  auto us = [](double ns) { return std::round(ns / 10.0) / 100.0; };
  return {{"p50", us(h.quantile(0.5))}, {"p90", us(h.quantile(0.9))}, {"p99", us(h.quantile(0.99))},
          {"max", us(static_cast<double>(h.max()))}, {"samples", h.total()}};
}

class Driver;

// One connection: a member or the publisher.
struct Peer {
  reactor::TcpConnectionPtr conn;
  std::string user;
  bool publisher = false;
  bool alive = false;
  bool joined = false;
  bool failed = false;      // recovered:false, a gap, a duplicate, a wrong text, a close, a timeout
  bool recovered = false;   // the --missed-th missed message arrived
  uint64_t next_seq = 0;    // storm: the next seq expected
  uint64_t joined_seq = 0;  // prepare: joined's seq
  std::string epoch;        // prepare: joined's epoch
};

class Handler final : public reactor::ConnectionHandler {
 public:
  Handler(Driver& d, Peer& p) : d_(d), p_(p) {}
  void on_message(reactor::TcpConnection&, reactor::Buffer& input) override;
  void on_close(reactor::TcpConnection&, const reactor::CloseReason& reason) override;

 private:
  Driver& d_;
  Peer& p_;
};

class Driver {
 public:
  explicit Driver(const Config& cfg)
      : cfg_(cfg),
        loop_("epoll"),
        address_(reactor::InetAddress::resolve(cfg.host, static_cast<uint16_t>(cfg.port))),
        callbacks_(std::make_shared<reactor::ConnectionCallbacks>()),
        storm_(cfg.phase == "storm") {
    members_.resize(static_cast<size_t>(cfg.connections));
    const auto run = std::to_string(::getpid());
    for (size_t i = 0; i < members_.size(); ++i) members_[i].user = "r" + std::to_string(i) + "." + run;
    publisher_.user = "rp." + run;
    publisher_.publisher = true;
    text_.resize(static_cast<size_t>(cfg.payload));
  }

  int run() {
    t_begin_ = monotonic_ns();
    // The whole run's bound: connecting and recovering, the live tail, the drain, and some slack.
    loop_.run_after(secs(cfg_.connect_timeout + cfg_.duration + cfg_.drain + 30), [this] {
      fail_run("watchdog: the run did not finish in time");
    });
    if (storm_) {
      connect(publisher_);  // the live publisher first: it publishes from the storm's first moment
    } else {
      t_connects_ = monotonic_ns();
      for (Peer& m : members_) connect(m);
      arm_deadline("the members did not all join");
    }
    loop_.run();
    for (Peer& m : members_) close(m);
    close(publisher_);
    return report();
  }

  void on_line(Peer& p, std::string_view line, uint64_t now) {
    if (line.substr(0, kMessagePrefix.size()) == kMessagePrefix) {
      if (!p.publisher) member_message(p, line, now);
      return;
    }
    if (line.substr(0, kAckPrefix.size()) == kAckPrefix) {
      if (p.publisher) ack(line);
      return;
    }
    if (line.empty() || line[0] != '{') return;
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return;
    std::string type = j.value("type", "");
    if (type == "joined") {
      joined(p, j, now);
    } else if (type == "error") {
      if (errors_++ == 0) first_error_ = p.user + ": " + j.value("code", "?") + ": " + j.value("message", "");
      if (!p.publisher) member_failed(p, "error from the server");
    }
  }

  void on_closed(Peer& p, const reactor::CloseReason& reason) {
    if (!p.alive || finishing_) return;
    p.alive = false;
    if (p.publisher || (!storm_ && !leaving_)) {
      fail_run(p.user + " closed: " + reason.text);
      return;
    }
    if (storm_ && !(p.recovered && drain_done(p))) {
      ++closed_;
      member_failed(p, "closed: " + reason.text);
    }
  }

 private:
  void connect(Peer& p) {
    connectors_.push_back(reactor::TcpConnector::connect(loop_, address_, [this, &p](reactor::Handle socket, int err) {
      if (finishing_) return;
      if (err != 0) {
        ++connect_errors_;
        if (first_error_.empty()) first_error_ = "connect: " + std::string(std::strerror(err));
        if (p.publisher || !storm_) return fail_run("connect: " + std::string(std::strerror(err)));
        return member_failed(p, "connect failed");
      }
      auto conn = reactor::TcpConnection::create(loop_, std::move(socket), callbacks_);
      conn->set_handler(std::make_shared<Handler>(*this, p));
      conn->start();
      p.conn = std::move(conn);
      p.alive = true;
      json join = {{"type", "join"}, {"room", cfg_.room}};
      if (storm_ && !p.publisher) {
        join["since"] = cfg_.since;
        join["epoch"] = cfg_.epoch;
      }
      p.conn->send(json({{"type", "hello"}, {"user", p.user}}).dump() + "\n" + join.dump() + "\n");
    }));
  }

  void close(Peer& p) {
    if (!p.conn) return;
    if (p.conn->fd() >= 0) {
      linger now{1, 0};  // a reset: no TIME_WAIT holding the ports of a thousand members
      ::setsockopt(p.conn->fd(), SOL_SOCKET, SO_LINGER, &now, sizeof now);
    }
    p.alive = false;
    p.conn->close(reactor::CloseCode::kLocal, "done");
    p.conn.reset();
  }

  void arm_deadline(std::string what) {
    if (deadline_) loop_.cancel(deadline_);
    deadline_ = loop_.run_after(secs(cfg_.connect_timeout), [this, what = std::move(what)] {
      deadline_ = 0;
      if (!storm_) return fail_run(what + " within --connect-timeout");
      // Storm: whoever has not recovered by now has failed; the run goes on with the others.
      for (Peer& m : members_) {
        if (!m.recovered && !m.failed) {
          ++not_in_time_;
          member_failed(m, "not recovered within --connect-timeout");
        }
      }
    });
  }

  void fail_run(const std::string& why) {
    if (finishing_) return;
    if (fatal_.empty()) fatal_ = why;
    finish();
  }

  void finish() {
    if (finishing_) return;
    finishing_ = true;
    for (auto& c : connectors_) {
      if (c) c->cancel();
    }
    loop_.stop();
  }

  // ---- joined ----
  void joined(Peer& p, const json& j, uint64_t now) {
    if (p.joined) return;
    p.joined = true;
    if (p.publisher) {
      if (storm_) start_storm(now);
      else publish_missed();
      return;
    }
    if (!storm_) {
      p.joined_seq = j.value("seq", uint64_t{0});
      p.epoch = j.value("epoch", "");
      if (++joined_count_ == members_.size()) all_joined();
      return;
    }
    const json& rec = j.contains("recovered") ? j["recovered"] : json();
    if (!rec.is_boolean() || !rec.get<bool>()) {
      ++recovered_false_;
      member_failed(p, "joined says recovered:" + (rec.is_null() ? std::string("(absent)") : rec.dump()));
    }
  }

  // ---- prepare ----
  void all_joined() {
    t_joined_ = monotonic_ns();
    std::string epoch = members_[0].epoch;
    uint64_t since = members_[0].joined_seq;
    for (const Peer& m : members_) {
      if (m.epoch != epoch || m.joined_seq != since) {
        return fail_run("the members saw different epochs or seqs (is anybody else publishing in the room?)");
      }
    }
    prepared_epoch_ = epoch;
    prepared_since_ = since;
    leaving_ = true;
    for (Peer& m : members_) close(m);
    connect(publisher_);
  }

  void publish_missed() {
    std::string out;
    for (int k = 1; k <= cfg_.missed; ++k) {
      out += json({{"type", "message"}, {"room", cfg_.room}, {"text", missed_text(k)},
                   {"id", "missed." + std::to_string(k) + "." + publisher_.user}})
                 .dump();
      out += '\n';
    }
    publisher_.conn->send(out);
  }

  // ---- the publisher's acks ----
  void ack(std::string_view line) {
    ++acks_;
    if (auto seq = number_field(line, "\"seq\":")) last_acked_ = std::max(last_acked_, *seq);
    if (!storm_) {
      if (acks_ == static_cast<uint64_t>(cfg_.missed)) finish();
      return;
    }
    if (publishing_over_ && acks_ == live_sent_) {
      final_seq_ = last_acked_;
      final_known_ = true;
      check_drained();
    }
  }

  // ---- storm ----
  void start_storm(uint64_t now) {
    t_connects_ = now;
    if (cfg_.server_pid > 0) server_cpu_start_ = process_cpu_seconds(cfg_.server_pid);
    client_cpu_start_ = self_cpu_seconds();
    for (Peer& m : members_) {
      m.next_seq = cfg_.since + 1;
      connect(m);
    }
    arm_deadline("recovery");
    last_tick_ = now;
    tokens_ = 1;
    tick_timer_ = loop_.run_every(std::chrono::milliseconds(5), [this] { tick(); });
    tick();
  }

  void tick() {
    uint64_t now = monotonic_ns();
    tokens_ = std::min(tokens_ + cfg_.rate * static_cast<double>(now - last_tick_) / 1e9, std::max(2.0, cfg_.rate * 0.25));
    last_tick_ = now;
    std::string out;
    // W: published while some member is still recovering (the storm); M: after the last recovery.
    Kind kind = storm_over_ ? Kind::kMeasured : Kind::kWarm;
    while (tokens_ >= 1 && publisher_.alive) {
      tokens_ -= 1;
      ++live_sent_;
      Stamp s{kind, 0, live_sent_, now};
      format_text(text_.data(), text_.size(), s);
      std::string_view id(text_.data(), header_size(text_));
      out += "{\"type\":\"message\",\"room\":\"" + cfg_.room + "\",\"text\":\"";
      out += text_;
      out += "\",\"id\":\"";
      out += id;
      out += "\"}\n";
      (kind == Kind::kWarm ? storm_sent_ : after_sent_)++;
    }
    if (!out.empty()) publisher_.conn->send(out);
  }

  void member_message(Peer& p, std::string_view line, uint64_t now) {
    if (p.failed || !p.joined) {
      if (!p.joined && !p.failed) member_failed(p, "a message before joined");
      return;
    }
    auto seq = number_field(line, "\"seq\":");
    std::string_view text = string_field(line, "\"text\":\"");
    if (!seq) return member_failed(p, "a message without a seq");
    if (*seq != p.next_seq) {
      if (*seq < p.next_seq) ++duplicates_;
      else ++gaps_;
      return member_failed(p, "seq " + std::to_string(*seq) + " where " + std::to_string(p.next_seq) + " was due");
    }
    ++p.next_seq;
    const uint64_t k = *seq - cfg_.since;
    if (k <= static_cast<uint64_t>(cfg_.missed)) {
      if (text != missed_text(static_cast<int>(k))) {
        ++wrong_text_;
        return member_failed(p, "replayed message " + std::to_string(k) + " has another text");
      }
      ++replayed_;
      if (k == static_cast<uint64_t>(cfg_.missed)) member_recovered(p, now);
      return;
    }
    if (!p.recovered) return member_failed(p, "a live message before the last missed one");
    std::optional<Stamp> s = parse_text(text);
    if (!s) {
      ++foreign_;
      return;
    }
    ++live_received_;
    (s->kind == Kind::kWarm ? storm_latency_ : after_latency_).record(now > s->sent_ns ? now - s->sent_ns : 0);
    if (final_known_ && drain_done(p)) check_drained();
  }

  void member_recovered(Peer& p, uint64_t now) {
    p.recovered = true;
    recovery_.record(now - t_connects_);
    if (first_recovery_ == 0) first_recovery_ = now;
    ++recovered_;
    check_storm_over(now);
  }

  void member_failed(Peer& p, const std::string& why) {
    if (p.failed) return;
    p.failed = true;
    if (failed_++ < 3) std::cerr << "loadgen: " << p.user << ": " << why << "\n";
    if (first_failure_.empty()) first_failure_ = p.user + ": " + why;
    if (storm_) check_storm_over(monotonic_ns());
  }

  void check_storm_over(uint64_t now) {
    if (storm_over_ || recovered_ + failed_ < members_.size()) return;
    storm_over_ = true;
    t_storm_over_ = now;
    if (deadline_) loop_.cancel(deadline_);
    deadline_ = 0;
    if (cfg_.server_pid > 0) server_cpu_storm_ = process_cpu_seconds(cfg_.server_pid);
    client_cpu_storm_ = self_cpu_seconds();
    // The live tail, then the publishing stops and the members catch up with the last ack.
    loop_.run_after(secs(cfg_.duration), [this] {
      if (tick_timer_) loop_.cancel(tick_timer_);
      tick_timer_ = 0;
      publishing_over_ = true;
      if (acks_ == live_sent_) {
        final_seq_ = last_acked_;
        final_known_ = true;
        check_drained();
      }
      loop_.run_after(secs(cfg_.drain), [this] {
        drained_ = false;
        finish();
      });
    });
  }

  bool drain_done(const Peer& p) const { return p.failed || !p.alive || p.next_seq > final_seq_; }

  void check_drained() {
    if (!final_known_) return;
    for (const Peer& m : members_) {
      if (!drain_done(m)) return;
    }
    drained_ = true;
    finish();
  }

  // ---- report ----
  int report() {
    const uint64_t end = monotonic_ns();
    json out;
    out["mode"] = "recover";
    out["phase"] = cfg_.phase;
    out["host"] = cfg_.host;
    out["port"] = cfg_.port;
    out["room"] = cfg_.room;
    out["members"] = cfg_.connections;
    out["missed"] = cfg_.missed;
    out["connect_errors"] = connect_errors_;
    out["server_errors"] = errors_;
    if (!first_error_.empty()) out["first_error"] = first_error_;
    if (!fatal_.empty()) out["failed"] = fatal_;
    bool ok = fatal_.empty() && connect_errors_ == 0 && errors_ == 0;
    if (!storm_) {
      out["epoch"] = prepared_epoch_;
      out["since"] = prepared_since_;
      out["last_seq"] = last_acked_;
      out["acks"] = acks_;
      out["join_s"] = static_cast<double>(t_joined_ - t_connects_) / 1e9;
      ok = ok && acks_ == static_cast<uint64_t>(cfg_.missed) && last_acked_ == prepared_since_ + cfg_.missed;
    } else {
      auto s = [&](uint64_t t) { return t ? static_cast<double>(t - t_connects_) / 1e9 : 0.0; };
      out["since"] = cfg_.since;
      out["epoch"] = cfg_.epoch;
      out["recovered"] = recovered_;
      out["failed_members"] = failed_;
      out["recovered_false"] = recovered_false_;
      out["gaps"] = gaps_;
      out["duplicates"] = duplicates_;
      out["wrong_text"] = wrong_text_;
      out["closed"] = closed_;
      out["not_in_time"] = not_in_time_;
      if (!first_failure_.empty()) out["first_failure"] = first_failure_;
      out["replayed_messages"] = replayed_;
      out["first_recovery_s"] = s(first_recovery_);
      out["last_recovery_s"] = s(t_storm_over_);
      out["recovery_s"] = {{"p50", recovery_.quantile(0.5) / 1e9}, {"p99", recovery_.quantile(0.99) / 1e9},
                           {"max", static_cast<double>(recovery_.max()) / 1e9}};
      out["rate"] = cfg_.rate;
      out["live_sent_storm"] = storm_sent_;
      out["live_sent_after"] = after_sent_;
      out["live_acks"] = acks_;
      out["live_received"] = live_received_;
      out["foreign_messages"] = foreign_;
      out["drained"] = drained_;
      out["live_latency_us_storm"] = latency_json(storm_latency_);
      out["live_latency_us_after"] = latency_json(after_latency_);
      if (client_cpu_storm_ > 0) out["client_cpu_s_storm"] = client_cpu_storm_ - client_cpu_start_;
      if (cfg_.server_pid > 0 && server_cpu_start_ >= 0 && server_cpu_storm_ >= 0) {
        out["server_cpu_s_storm"] = server_cpu_storm_ - server_cpu_start_;
      }
      out["elapsed_s"] = static_cast<double>(end - t_begin_) / 1e9;
      ok = ok && recovered_ == members_.size() && failed_ == 0 && drained_;
    }
    out["ok"] = ok;
    if (cfg_.json) {
      std::cout << out.dump() << std::endl;
    } else {
      std::cout << out.dump(2) << std::endl;
    }
    return ok ? 0 : 1;
  }

  const Config& cfg_;
  reactor::Reactor loop_;
  reactor::InetAddress address_;
  std::shared_ptr<reactor::ConnectionCallbacks> callbacks_;
  const bool storm_;
  std::vector<Peer> members_;
  Peer publisher_;
  std::vector<std::shared_ptr<reactor::TcpConnector>> connectors_;
  std::string text_;
  reactor::TimerId deadline_ = 0, tick_timer_ = 0;
  bool finishing_ = false, leaving_ = false;
  std::string fatal_, first_error_, first_failure_;
  uint64_t connect_errors_ = 0, errors_ = 0;
  uint64_t t_begin_ = 0, t_connects_ = 0, t_joined_ = 0, t_storm_over_ = 0, first_recovery_ = 0;

  // prepare
  size_t joined_count_ = 0;
  std::string prepared_epoch_;
  uint64_t prepared_since_ = 0;

  // the publisher
  uint64_t acks_ = 0, last_acked_ = 0, live_sent_ = 0, storm_sent_ = 0, after_sent_ = 0;
  double tokens_ = 0;
  uint64_t last_tick_ = 0;
  bool storm_over_ = false, publishing_over_ = false, final_known_ = false, drained_ = false;
  uint64_t final_seq_ = 0;

  // the members
  size_t recovered_ = 0, failed_ = 0;
  uint64_t recovered_false_ = 0, gaps_ = 0, duplicates_ = 0, wrong_text_ = 0, closed_ = 0, not_in_time_ = 0;
  uint64_t replayed_ = 0, live_received_ = 0, foreign_ = 0;
  Histogram recovery_, storm_latency_, after_latency_;
  double server_cpu_start_ = -1, server_cpu_storm_ = -1, client_cpu_start_ = 0, client_cpu_storm_ = 0;
};

void Handler::on_message(reactor::TcpConnection&, reactor::Buffer& input) {
  uint64_t now = monotonic_ns();
  std::string_view in = input.view();
  size_t pos = 0;
  while (pos < in.size()) {
    const void* nl = std::memchr(in.data() + pos, '\n', in.size() - pos);
    if (nl == nullptr) break;
    size_t end = static_cast<size_t>(static_cast<const char*>(nl) - in.data());
    d_.on_line(p_, in.substr(pos, end - pos), now);
    pos = end + 1;
    if (!p_.alive) return;  // closed by the driver meanwhile: the rest of its input does not matter
  }
  input.consume(pos);
}

void Handler::on_close(reactor::TcpConnection&, const reactor::CloseReason& reason) { d_.on_closed(p_, reason); }

}  // namespace

int run_recover(const Config& cfg) {
  Driver driver(cfg);
  return driver.run();
}

}  // namespace loadgen
