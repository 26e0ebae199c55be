#include "loadgen/worker.h"

#include <sys/socket.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iostream>
#include <random>
#include <unordered_set>

#include "loadgen/dialect.h"
#include "loadgen/histogram.h"
#include "loadgen/message.h"
#include "loadgen/proc_stats.h"
#include "loadgen/websocket.h"
#include "reactor/tls.h"

namespace loadgen {

namespace {

// Close with a reset: no TIME_WAIT left behind to hold an ephemeral port.
void hard_close(reactor::TcpConnectionPtr& conn, const char* why) {
  if (!conn) return;
  if (conn->fd() >= 0) {
    linger now{1, 0};
    ::setsockopt(conn->fd(), SOL_SOCKET, SO_LINGER, &now, sizeof now);
  }
  conn->close(reactor::CloseCode::kLocal, why);
  conn.reset();
}

}  // namespace

// ================================================================================================
// MeasurementWindow

void MeasurementWindow::open(uint64_t ops) {
  latency_.reset();
  open_ = true;
  ops_start_ = ops;
  t_start_ = monotonic_ns();
  cpu_start_ = self_cpu_seconds();
}

void MeasurementWindow::close(uint64_t ops) {
  open_ = false;
  ops_end_ = ops;
  t_end_ = monotonic_ns();
  cpu_end_ = self_cpu_seconds();
}

void MeasurementWindow::add_to(json& result, uint64_t ops_total) const {
  result["window_ops"] = ops_end_ - ops_start_;
  result["window_s"] = static_cast<double>(t_end_ - t_start_) / 1e9;
  result["ops_total"] = ops_total;
  result["client_cpu_s"] = cpu_end_ - cpu_start_;
  result["latency"] = histogram_to_json(latency_);
}

// ================================================================================================
// WorkerBase

WorkerBase::WorkerBase(const Config& cfg, const Share& share, int cmd_fd, int event_fd)
    : cfg_(cfg),
      share_(share),
      loop_("epoll"),
      address_(reactor::InetAddress::resolve(cfg.host, static_cast<uint16_t>(cfg.port))),
      callbacks_(std::make_shared<reactor::ConnectionCallbacks>()),
      cmd_fd_(cmd_fd),
      event_fd_(event_fd) {
  if (cfg_.tls) connection_options_.filter = std::make_shared<reactor::TlsClientContext>();
  if (cfg_.source_addresses > 1) {
    for (int k = 0; k < cfg_.source_addresses; ++k) {
      sources_.push_back(reactor::InetAddress::resolve("127.0.0." + std::to_string(2 + k), 0));
    }
  }
}

std::chrono::nanoseconds WorkerBase::seconds(double s) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(s));
}

int WorkerBase::run() {
  reactor::set_nonblocking(cmd_fd_);
  loop_.add(cmd_fd_, reactor::Interest::kRead, [this](reactor::Events) { on_command_readable(); });
  connect_start_ns_ = monotonic_ns();
  connect_timer_ = loop_.run_after(seconds(cfg_.connect_timeout), [this] {
    connect_timer_ = 0;
    connect_timed_out();
  });
  // Whatever happens, this process ends: the parent's own watchdog is shorter than this one.
  double budget = cfg_.connect_timeout + cfg_.barrier_timeout + cfg_.warmup + cfg_.duration + cfg_.drain + 120;
  loop_.run_after(seconds(budget), [this] { fatal("watchdog: the run did not finish in time"); });
  loop_.run_every(std::chrono::seconds(1), [this] { send_event(progress()); });
  if (connection_count() == 0) {
    loop_.defer([this] {
      connects_over_ = true;
      on_connects_over();
    });
  } else {
    launch_connects();
  }
  loop_.run();
  return status_;
}

void WorkerBase::send_event(const json& j) {
  if (!write_message(event_fd_, j)) finish(1);  // the parent is gone
}

void WorkerBase::fatal(const std::string& message) {
  send_event({{"ev", "fatal"}, {"message", message}});
  finish(1);
}

void WorkerBase::finish(int status) {
  if (finishing_) return;
  finishing_ = true;
  status_ = status;
  for (auto& c : connectors_) {
    if (c) c->cancel();
  }
  connectors_.clear();
  close_connections();
  loop_.stop();
}

void WorkerBase::on_command_readable() {
  ssize_t n = commands_.read_from(cmd_fd_);
  if (n == 0) {  // the parent closed its end: it is gone or gave up
    loop_.remove(cmd_fd_);
    finish(1);
    return;
  }
  if (n < 0) return;
  std::string line;
  while (!finishing_ && commands_.next(line)) {
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;
    std::string cmd = j.value("cmd", "");
    if (cmd == "report") {
      send_event(result());
      finish(0);
      return;
    }
    if (cmd == "start") {
      window_.open(ops());
      on_window_opened();
    } else if (cmd == "stop") {
      window_.close(ops());
      on_window_closed();
    } else {
      on_command(cmd, j);
    }
  }
}

json WorkerBase::progress() const {
  json p = {{"ev", "progress"},
            {"t", monotonic_ns()},
            {"connected", connected_},
            {"ops", ops()},
            {"errors", connect_errors_ + closed_errors_ + mode_errors()}};
  add_progress(p);
  return p;
}

json WorkerBase::result() const {
  json r = {{"ev", "result"},
            {"connected", connected_},
            {"connect_errors", connect_errors_},
            {"closed_errors", closed_errors_},
            {"first_error", first_connect_error_}};
  window_.add_to(r, ops());
  add_result(r);
  return r;
}

void WorkerBase::launch_connects() {
  const int batch = std::max(1, cfg_.connect_batch / std::max(1, cfg_.processes));
  while (in_flight_ < batch && next_connect_ < connection_count() && !connects_over_) {
    size_t i = next_connect_++;
    ++in_flight_;
    std::optional<reactor::InetAddress> source;
    if (!sources_.empty()) source = sources_[global_number(i) % sources_.size()];
    connectors_.push_back(reactor::TcpConnector::connect(
        loop_, address_,
        [this, i](reactor::Handle socket, int err) { on_connected(i, std::move(socket), err); }, source));
  }
}

void WorkerBase::on_connected(size_t i, reactor::Handle socket, int err) {
  bool slot_held = false;
  if (err != 0) {
    if (connect_errors_++ == 0) {
      first_connect_error_ = "connect to " + address_.to_string() + ": " + std::strerror(err);
    }
  } else {
    try {
      slot_held = cfg_.batch_until_ready;  // before on_up: a handshake may be over within it
      on_up(i, std::move(socket));
      ++connected_;
    } catch (const std::exception& e) {
      slot_held = false;
      if (connect_errors_++ == 0) first_connect_error_ = e.what();
    }
  }
  if (!slot_held) --in_flight_;
  if (connected_ + connect_errors_ == connection_count()) {
    connects_over_ = true;
    connectors_.clear();
    connectors_.shrink_to_fit();
    on_connects_over();
  } else {
    launch_connects();
  }
}

void WorkerBase::handshake_over() {
  if (!cfg_.batch_until_ready) return;
  --in_flight_;
  if (!connects_over_) launch_connects();
}

void WorkerBase::connect_timed_out() {
  if (ready_sent_ || finishing_) return;
  if (!connects_over_) {
    for (auto& c : connectors_) {
      if (c) c->cancel();
    }
    connectors_.clear();
    size_t missing = connection_count() - connected_ - connect_errors_;
    if (connect_errors_ == 0) first_connect_error_ = "connect: timed out";
    connect_errors_ += missing;
    connects_over_ = true;
  }
  give_up_pending();
  ready();
}

void WorkerBase::ready() {
  if (ready_sent_ || finishing_) return;
  ready_sent_ = true;
  if (connect_timer_) loop_.cancel(connect_timer_);
  connect_timer_ = 0;
  connect_seconds_ = static_cast<double>(monotonic_ns() - connect_start_ns_) / 1e9;
  send_event({{"ev", "ready"},
              {"connected", connected_},
              {"connect_errors", connect_errors_},
              {"closed_errors", closed_errors_},
              {"connect_s", connect_seconds_},
              {"first_error", first_connect_error_}});
}

// ================================================================================================
// Echo: N connections; A of them keep D payloads in flight, the others make one round trip and idle.

namespace {

// One connection's handler: hands its events to the worker with the connection's own record.
template <class Worker, class Record>
class RecordHandler final : public reactor::ConnectionHandler {
 public:
  RecordHandler(Worker& worker, Record& record) : worker_(worker), record_(record) {}
  void on_message(reactor::TcpConnection&, reactor::Buffer& input) override { worker_.on_message(record_, input); }
  void on_close(reactor::TcpConnection&, const reactor::CloseReason& reason) override {
    worker_.on_closed(record_, reason);
  }

 private:
  Worker& worker_;
  Record& record_;
};

class EchoWorker final : public WorkerBase {
 public:
  EchoWorker(const Config& cfg, const Share& share, int cmd_fd, int event_fd)
      : WorkerBase(cfg, share, cmd_fd, event_fd), depth_(static_cast<uint64_t>(cfg.depth)) {
    // Payload for (connection g, sequence s) starts at offset (g * 31 + s) % kWindow of the pattern:
    // every payload differs from its neighbours, so a byte lost, duplicated or reordered shows.
    pattern_.resize(static_cast<size_t>(cfg_.payload) + kWindow);
    std::mt19937 rng(12345);
    for (char& c : pattern_) c = static_cast<char>(rng());
    clients_.resize(static_cast<size_t>(share.count));
    send_times_.resize(clients_.size() * depth_);
    const int64_t n = cfg_.connections, a = cfg_.active;
    for (size_t i = 0; i < clients_.size(); ++i) {
      Client& c = clients_[i];
      c.global = static_cast<uint64_t>(share.first) + i;
      // Exactly `a` active connections, spread evenly over the N (over every process).
      int64_t g = static_cast<int64_t>(c.global);
      c.active = ((g + 1) * a) / n > (g * a) / n;
      c.sent_at = &send_times_[i * depth_];
    }
  }


 private:
  template <class, class>
  friend class RecordHandler;
  static constexpr size_t kWindow = 251;

  struct Client {
    reactor::TcpConnectionPtr conn;
    uint64_t global = 0;
    bool active = false;
    bool alive = false;
    bool pinged = false;    // its first round trip (made while connecting) is back
    uint64_t sent = 0;      // payloads queued
    uint64_t received = 0;  // payloads back whole
    size_t partial = 0;     // bytes of payload `received` already checked
    uint64_t* sent_at = nullptr;  // ring of `depth` send times (ns)
  };

  size_t connection_count() const override { return clients_.size(); }
  uint64_t global_number(size_t i) const override { return clients_[i].global; }

  const char* expected(const Client& c, uint64_t seq) const {
    return pattern_.data() + (c.global * 31 + seq) % kWindow;
  }

  void on_up(size_t i, reactor::Handle socket) override {
    Client& c = clients_[i];
    auto conn = reactor::TcpConnection::create(loop_, std::move(socket), callbacks_, connection_options_);
    conn->set_handler(std::make_shared<RecordHandler<EchoWorker, Client>>(*this, c));
    conn->start();
    c.conn = std::move(conn);
    c.alive = true;
    ++pings_pending_;
    send_one(c, monotonic_ns());
  }

  void on_connects_over() override { check_ready(); }

  void give_up_pending() override {
    for (Client& c : clients_) {
      if (c.alive && !c.pinged) {
        c.alive = false;
        if (closed_errors_++ < 3) std::cerr << "loadgen: connection " << c.global << ": no echo in time\n";
        if (first_connect_error_.empty()) first_connect_error_ = "no echo within --connect-timeout";
        hard_close(c.conn, "no echo in time");
      }
    }
    pings_pending_ = 0;
  }

  void check_ready() {
    if (connects_over() && pings_pending_ == 0) ready();
  }

  void send_one(Client& c, uint64_t now) {
    c.sent_at[c.sent % depth_] = now;
    c.conn->send(std::string_view(expected(c, c.sent), static_cast<size_t>(cfg_.payload)));
    ++c.sent;
  }

  void fill(Client& c, uint64_t now) {
    while (c.alive && c.sent - c.received < depth_) send_one(c, now);
  }

  void on_closed(Client& c, const reactor::CloseReason& reason) {
    if (!c.alive || finishing_) return;
    c.alive = false;
    if (closed_errors_++ < 3) std::cerr << "loadgen: connection " << c.global << " closed: " << reason.text << "\n";
    if (!c.pinged) {
      --pings_pending_;
      check_ready();
    }
  }

  void on_message(Client& c, reactor::Buffer& input) {
    const char* p = input.data();
    size_t n = input.size();
    uint64_t now = monotonic_ns();
    const size_t payload = static_cast<size_t>(cfg_.payload);
    while (n > 0 && c.alive) {
      if (c.received == c.sent) {
        fail(c, "bytes arrived that were never sent");
        break;
      }
      size_t take = std::min(payload - c.partial, n);
      if (std::memcmp(p, expected(c, c.received) + c.partial, take) != 0) {
        fail(c, "echoed bytes differ from the bytes sent");
        break;
      }
      p += take;
      n -= take;
      c.partial += take;
      if (c.partial < payload) break;
      c.partial = 0;
      uint64_t sent_at = c.sent_at[c.received % depth_];
      ++c.received;
      if (!c.pinged) {
        c.pinged = true;
        --pings_pending_;
        check_ready();
        if (running_ && c.active) fill(c, now);
        continue;
      }
      ++round_trips_;
      // Timed only inside the window, like the round trips it counts: the warm-up's are not the
      // steady state being measured.
      if (window_.is_open()) window_.latency().record(now - sent_at);
      if (running_) send_one(c, now);
    }
    input.clear();
  }

  void fail(Client& c, const char* what) {
    if (mismatch_errors_++ < 3) std::cerr << "loadgen: connection " << c.global << ": " << what << "\n";
    c.alive = false;
    if (!c.pinged) {
      --pings_pending_;
      check_ready();
    }
    c.conn->close(reactor::CloseCode::kLocal, what);
  }

  uint64_t ops() const override { return round_trips_; }
  uint64_t mode_errors() const override { return mismatch_errors_; }

  void on_command(const std::string& cmd, const json&) override {
    if (cmd == "go") {
      running_ = true;
      uint64_t now = monotonic_ns();
      for (Client& c : clients_) {
        if (c.alive && c.active && c.pinged) fill(c, now);
      }
    }
  }

  // The load stops with the window: payloads in flight come back, none follow.
  void on_window_closed() override { running_ = false; }

  void close_connections() override {
    for (Client& c : clients_) hard_close(c.conn, "run over");
  }

  void add_result(json& r) const override { r["mismatch_errors"] = mismatch_errors_; }

  const uint64_t depth_;
  std::string pattern_;
  std::vector<Client> clients_;
  std::vector<uint64_t> send_times_;
  size_t pings_pending_ = 0;
  bool running_ = false;
  uint64_t round_trips_ = 0;
  uint64_t mismatch_errors_ = 0;
};

// ================================================================================================
// Chat: members subscribe to the room; publishers (in the process that holds them) publish at
// --rate; members check and time every delivery.

class ChatWorker final : public WorkerBase {
 public:
  ChatWorker(const Config& cfg, const Share& share, int cmd_fd, int event_fd)
      : WorkerBase(cfg, share, cmd_fd, event_fd),
        codec_(cfg_),
        members_(static_cast<size_t>(share.count)),
        publishers_(static_cast<uint32_t>(cfg.publishers)) {
    size_t total = members_ + (share.publishers ? publishers_ : 0);
    peers_.resize(total);
    // irc: a nick holds no '.' (at most 14 characters here: a server's nick length must allow that).
    const std::string run = (cfg_.dialect == Dialect::kIrc ? "_" : ".") + std::to_string(cfg_.run_id);
    for (size_t i = 0; i < total; ++i) {
      Peer& p = peers_[i];
      if (i < members_) {
        p.global = static_cast<uint64_t>(share.first) + i;
        p.user = "m" + std::to_string(p.global) + run;
      } else {
        p.publisher = true;
        p.pub = static_cast<uint32_t>(i - members_);
        p.global = static_cast<uint64_t>(cfg_.connections) + p.pub;
        p.user = "p" + std::to_string(p.pub) + run;
      }
    }
    next_seq_.assign(members_ * publishers_, 1);
    if (share.publishers) {
      pub_out_.resize(publishers_);
      measured_seq_.assign(publishers_, 0);
      inflight_.assign(publishers_, 0);
      warm_seq_.assign(publishers_, 0);
    }
    text_.resize(static_cast<size_t>(cfg_.payload));
  }


 private:
  template <class, class>
  friend class RecordHandler;
  static constexpr size_t kMissingBudget = 4'000'000;  // sequence gaps remembered per process
  static constexpr size_t kPublisherQueueLimit = 4 << 20;
  static constexpr size_t kMaxWsMessage = 1 << 20;  // ws: a server message past this is an error

  struct Peer {
    reactor::TcpConnectionPtr conn;
    std::string user;
    uint64_t global = 0;
    uint32_t pub = 0;
    bool publisher = false;
    bool alive = false;
    bool ready = false;   // subscribed (member) or greeted (publisher)
    bool warmed = false;  // a warm-up message arrived (member)
    bool info_seen = false;  // nats: the server's INFO arrived (CONNECT sent)
    bool done = false;    // every measured message arrived, or gone (member, once expected is known)
    bool ws_open = false;   // ws: the 101 arrived and checked
    std::string ws_accept;  // ws: the Sec-WebSocket-Accept expected (until the 101)
    ws::FrameReader ws_frames;
    uint64_t unique = 0;  // measured messages received once
    std::unique_ptr<std::unordered_set<uint64_t>> missing;  // (publisher, seq) skipped, maybe late
  };

  // Parser callbacks for one peer.
  struct PeerSink final : Sink {
    ChatWorker& w;
    Peer& p;
    uint64_t now;
    PeerSink(ChatWorker& w, Peer& p, uint64_t now) : w(w), p(p), now(now) {}
    void on_text(std::string_view text) override {
      if (!p.publisher) w.member_text(p, text, now);
    }
    void on_ready() override { w.peer_ready(p); }
    void on_info() override {
      if (p.info_seen) return;  // a later INFO is an update: nothing to do
      p.info_seen = true;
      w.send(p, w.codec_.after_info(p.publisher));
    }
    void on_ping(std::string_view token) override { w.send(p, w.codec_.pong(token)); }
    void on_error(std::string_view what) override { w.server_error(p, what); }
    void on_ack(std::string_view id) override { w.publisher_answer(p, id, true, now); }
    void on_not_stored(std::string_view id) override { w.publisher_answer(p, id, false, now); }
  };

  // ws: the frames of one peer's input; the messages in them go to the native parser.
  struct WsFrameSink final : ws::FrameSink {
    ChatWorker& w;
    Peer& p;
    PeerSink& messages;
    WsFrameSink(ChatWorker& w, Peer& p, PeerSink& messages) : w(w), p(p), messages(messages) {}
    void on_text_message(std::string_view message) override { w.codec_.parse_native_message(message, messages); }
    void on_ping(std::string_view payload) override { w.send(p, w.codec_.ws_pong(payload)); }
    void on_close(uint16_t code, std::string_view reason) override { w.ws_closed_by_server(p, code, reason); }
  };

  size_t connection_count() const override { return peers_.size(); }
  uint64_t global_number(size_t i) const override { return peers_[i].global; }

  void send(Peer& p, std::string_view bytes) {
    if (p.alive && !bytes.empty()) p.conn->send(bytes);
  }

  void on_up(size_t i, reactor::Handle socket) override {
    Peer& p = peers_[i];
    auto conn = reactor::TcpConnection::create(loop_, std::move(socket), callbacks_, connection_options_);
    conn->set_handler(std::make_shared<RecordHandler<ChatWorker, Peer>>(*this, p));
    conn->start();
    p.conn = std::move(conn);
    p.alive = true;
    if (cfg_.dialect == Dialect::kWs) return send(p, codec_.ws_upgrade(p.ws_accept));  // greeting after the 101
    send(p, codec_.greeting(p.publisher, p.user));
    if (codec_.ready_at_connect(p.publisher)) peer_ready(p);
  }

  void on_connects_over() override { check_ready(); }

  void give_up_pending() override {
    for (Peer& p : peers_) {
      if (p.alive && !p.ready) {
        if (closed_errors_++ < 3) std::cerr << "loadgen: " << p.user << ": no subscription confirmed in time\n";
        if (first_connect_error_.empty()) first_connect_error_ = "no subscription confirmed within --connect-timeout";
        lost(p);
        hard_close(p.conn, "handshake timed out");
      }
    }
  }

  void peer_ready(Peer& p) {
    if (p.ready || !p.alive) return;
    p.ready = true;
    ++ready_count_;
    if (!p.publisher) ++members_ready_;
    handshake_over();
    check_ready();
  }

  void check_ready() {
    if (connects_over() && ready_count_ + failed_before_ready_ + connect_errors_ >= peers_.size()) ready();
  }

  // A peer is gone (closed by the server, a protocol error, a handshake timeout).
  void lost(Peer& p) {
    if (!p.alive) return;
    p.alive = false;
    if (p.warmed) --warmed_alive_;
    if (!p.ready) {
      ++failed_before_ready_;
      handshake_over();
      check_ready();
      return;
    }
    if (p.publisher) return;
    --members_ready_;
    check_barrier();
    if (expect_known_ && !p.done) {
      p.done = true;
      ++done_;
      check_drained();
    }
  }

  void server_error(Peer& p, std::string_view what) {
    if (server_errors_++ < 3) std::cerr << "loadgen: " << p.user << ": server error: " << what << "\n";
  }

  void on_closed(Peer& p, const reactor::CloseReason& reason) {
    if (!p.alive || finishing_) return;
    if (closed_errors_++ < 3) {
      std::cerr << "loadgen: " << (p.publisher ? "publisher " : "member ") << p.user << " closed: " << reason.text << "\n";
    }
    lost(p);
  }

  void on_message(Peer& p, reactor::Buffer& input) {
    PeerSink sink(*this, p, monotonic_ns());
    if (cfg_.dialect == Dialect::kWs) return on_ws_input(p, input, sink);
    ParseResult r = codec_.parse(input.view(), sink);
    if (r.fatal) return protocol_failure(p, r.problem);
    input.consume(r.consumed);
    if (p.publisher) flush_publishers();  // --window: what the acks just read let out, in one write
  }

  void protocol_failure(Peer& p, const std::string& problem) {
    if (protocol_errors_++ < 3) std::cerr << "loadgen: " << p.user << ": " << problem << "\n";
    lost(p);
    p.conn->close(reactor::CloseCode::kLocal, problem);
  }

  // ws: the 101 first (then the greeting goes out), then frames.
  void on_ws_input(Peer& p, reactor::Buffer& input, PeerSink& sink) {
    if (!p.ws_open) {
      ws::HandshakeResult h = ws::check_upgrade_response(input.view(), p.ws_accept);
      if (h.status == ws::HandshakeResult::kNeedMore) return;
      if (h.status == ws::HandshakeResult::kFailed) return protocol_failure(p, h.problem);
      input.consume(h.consumed);
      p.ws_open = true;
      std::string().swap(p.ws_accept);
      send(p, codec_.greeting(p.publisher, p.user));
    }
    WsFrameSink frames(*this, p, sink);
    ws::FrameReader::Result r = p.ws_frames.parse(input.view(), frames, kMaxWsMessage);
    if (!p.alive || !p.conn) return;  // closed by the server's close frame
    if (r.fatal) return protocol_failure(p, r.problem);
    input.consume(r.consumed);
    if (p.publisher) flush_publishers();
  }

  // ws: the server closed the WebSocket (a close frame): answer it, as RFC 6455 asks, and count it
  // as a lost connection unless the run is over.
  void ws_closed_by_server(Peer& p, uint16_t code, std::string_view reason) {
    if (!p.alive) return;
    if (!finishing_ && closed_errors_++ < 3) {
      std::cerr << "loadgen: " << (p.publisher ? "publisher " : "member ") << p.user
                << ": WebSocket closed by the server (" << code << (reason.empty() ? "" : ": ") << reason << ")\n";
    }
    send(p, codec_.ws_close(code));
    lost(p);
    p.conn->close_after_flush(reactor::CloseCode::kPeerClosed, "WebSocket closed by the server");
  }

  // ---- A member receives a text ----
  void member_text(Peer& p, std::string_view text, uint64_t now) {
    std::optional<Stamp> s;
    if (text.size() == static_cast<size_t>(cfg_.payload)) s = parse_text(text);
    if (!s || s->publisher >= publishers_) {
      ++foreign_;
      return;
    }
    if (!p.warmed) {
      p.warmed = true;
      ++warmed_alive_;
      check_barrier();
    }
    if (s->kind == Kind::kBarrier) return;
    ++deliveries_;
    if (s->kind != Kind::kMeasured || s->seq == 0) return;
    size_t member = static_cast<size_t>(&p - peers_.data());
    uint32_t& next = next_seq_[member * publishers_ + s->publisher];
    const uint64_t key_base = static_cast<uint64_t>(s->publisher) << 40;
    bool fresh = false;
    if (s->seq == next) {
      ++next;
      fresh = true;
    } else if (s->seq > next) {
      uint64_t gap = s->seq - next;
      if (order_exact_ && missing_total_ + gap <= kMissingBudget) {
        if (!p.missing) p.missing = std::make_unique<std::unordered_set<uint64_t>>();
        for (uint64_t q = next; q < s->seq; ++q) p.missing->insert(key_base | q);
        missing_total_ += gap;
      } else {
        order_exact_ = false;
      }
      next = static_cast<uint32_t>(s->seq + 1);
      fresh = true;
    } else if (p.missing && p.missing->erase(key_base | s->seq)) {
      --missing_total_;
      ++out_of_order_;
      fresh = true;
    } else {
      ++duplicates_;  // (approximate once the gap budget is spent: order_exact false)
    }
    if (!fresh) return;
    ++p.unique;
    ++unique_;
    // Timed whenever it arrives, the window open or not: every measured message was published in
    // the window, and the ones still on their way when it closed are the slowest; leaving them out
    // would flatter the tail.
    window_.latency().record(now > s->sent_ns ? now - s->sent_ns : 0);
    if (expect_known_ && !p.done && p.unique >= expected_) {
      p.done = true;
      ++done_;
      check_drained();
    }
  }

  void check_barrier() {
    if (barrier_requested_ && !warmed_sent_ && warmed_alive_ >= members_ready_) {
      warmed_sent_ = true;
      send_event({{"ev", "warmed"}, {"members", warmed_alive_}});
    }
  }

  // --ids: an ack (stored) or a not_stored error for a publisher's message with id `id`.
  void publisher_answer(Peer& p, std::string_view id, bool stored, uint64_t now) {
    if (!p.publisher) {  // a member publishes nothing: the server answers what was never asked
      if (!stored) server_error(p, "not_stored for a message never published");
      ++foreign_acks_;
      return;
    }
    std::optional<Stamp> s = parse_text(id);
    if (!s || s->publisher != p.pub) {
      ++foreign_acks_;
      return;
    }
    if (stored) {
      ++acks_;
    } else if (not_stored_++ < 3) {
      std::cerr << "loadgen: " << p.user << ": not_stored for " << id << "\n";
    }
    if (s->kind == Kind::kBarrier) return;
    if (inflight_[p.pub] > 0) --inflight_[p.pub];
    if (s->kind == Kind::kMeasured) {
      ++measured_answered_;
      if (stored) ack_latency_.record(now > s->sent_ns ? now - s->sent_ns : 0);
      check_drained();
    }
    if (cfg_.window > 0 && publishing_) fill_window(p, now);
  }

  // --window: publishes until `window` messages of this publisher are unacknowledged (the caller
  // flushes).
  void fill_window(Peer& p, uint64_t now) {
    if (!p.alive || !p.ready) return;
    Kind kind = window_.is_open() ? Kind::kMeasured : Kind::kWarm;
    while (inflight_[p.pub] < static_cast<uint32_t>(cfg_.window)) {
      uint64_t seq = kind == Kind::kMeasured ? ++measured_seq_[p.pub] : ++warm_seq_[p.pub];
      if (!publish(p, kind, seq, now)) return;
    }
  }

  void check_drained() {
    // --ids: the publishers' process also waits for an answer to every measured message.
    bool answered = !cfg_.ids || !share_.publishers || measured_answered_ >= measured_sent();
    if (expect_known_ && !drained_sent_ && done_ >= members_ && answered) {
      drained_sent_ = true;
      send_event({{"ev", "drained"}});
    }
  }

  // ---- Publishing ----
  Peer* next_publisher() {
    for (uint32_t k = 0; k < publishers_; ++k) {
      uint32_t pub = rr_;
      rr_ = (rr_ + 1) % publishers_;
      Peer& p = peers_[members_ + pub];
      if (p.alive && p.ready && p.conn->queued_bytes() + pub_out_[pub].size() < kPublisherQueueLimit) return &p;
    }
    return nullptr;
  }

  bool publish(Peer& p, Kind kind, uint64_t seq, uint64_t now) {
    Stamp s{kind, p.pub, seq, now};
    if (!format_text(text_.data(), text_.size(), s)) {
      fatal("--payload " + std::to_string(cfg_.payload) + " is too small for the message header");
      return false;
    }
    if (cfg_.ids) {
      codec_.append_publish(pub_out_[p.pub], p.user, text_, std::string_view(text_.data(), header_size(text_)));
      if (kind != Kind::kBarrier) ++inflight_[p.pub];
    } else {
      codec_.append_publish(pub_out_[p.pub], p.user, text_);
    }
    return true;
  }

  void flush_publishers() {
    for (uint32_t pub = 0; pub < publishers_; ++pub) {
      std::string& out = pub_out_[pub];
      if (out.empty()) continue;
      send(peers_[members_ + pub], out);
      out.clear();
    }
  }

  void send_barrier_message() {
    for (uint32_t pub = 0; pub < publishers_; ++pub) {
      Peer& p = peers_[members_ + pub];
      if (!p.alive || !p.ready) continue;
      if (publish(p, Kind::kBarrier, ++barrier_seq_, monotonic_ns())) flush_publishers();
      return;
    }
  }

  // The token bucket: `rate` tokens a second. When the loop falls behind (a tick late because a
  // fan-out of thousands of deliveries kept it busy), the next tick catches up; at most 250 ms worth
  // of tokens are kept, so a long stall does not end in an unbounded burst.
  void tick() {
    uint64_t now = monotonic_ns();
    double elapsed = static_cast<double>(now - last_tick_ns_) / 1e9;
    last_tick_ns_ = now;
    double cap = std::max(2.0, cfg_.rate * 0.25);
    tokens_ = std::min(tokens_ + cfg_.rate * elapsed, cap);
    auto n = static_cast<uint64_t>(tokens_);
    uint64_t sent = 0;
    Kind kind = window_.is_open() ? Kind::kMeasured : Kind::kWarm;
    for (; sent < n; ++sent) {
      Peer* p = next_publisher();
      if (p == nullptr) {
        ++stalls_;
        break;
      }
      uint64_t seq = kind == Kind::kMeasured ? ++measured_seq_[p->pub] : ++warm_seq_[p->pub];
      if (!publish(*p, kind, seq, now)) return;
    }
    tokens_ -= static_cast<double>(sent);
    flush_publishers();
  }

  uint64_t measured_sent() const {
    uint64_t sum = 0;
    for (uint64_t s : measured_seq_) sum += s;
    return sum;
  }

  void on_command(const std::string& cmd, const json& j) override {
    uint64_t now = monotonic_ns();
    if (cmd == "barrier") {
      barrier_requested_ = true;
      if (share_.publishers) {
        send_barrier_message();
        barrier_timer_ = loop_.run_every(std::chrono::milliseconds(50), [this] { send_barrier_message(); });
      }
      check_barrier();
    } else if (cmd == "go") {
      if (barrier_timer_) loop_.cancel(barrier_timer_);
      barrier_timer_ = 0;
      if (share_.publishers && cfg_.window > 0) {
        publishing_ = true;
        for (uint32_t pub = 0; pub < publishers_; ++pub) fill_window(peers_[members_ + pub], now);
        flush_publishers();
      } else if (share_.publishers) {
        last_tick_ns_ = now;
        tokens_ = 1;  // the first message at once
        double interval = std::clamp(1.0 / cfg_.rate, 0.001, 0.05);
        publish_timer_ = loop_.run_every(seconds(interval), [this] { tick(); });
        tick();
      }
    } else if (cmd == "expect") {
      expected_ = j.value("messages", uint64_t{0});
      expect_known_ = true;
      for (size_t i = 0; i < members_; ++i) {
        Peer& p = peers_[i];
        if (!p.alive || !p.ready || p.unique >= expected_) {
          p.done = true;
          ++done_;
        }
      }
      check_drained();
    }
  }

  // Publishing stops with the window; the parent then waits for what the members still expect.
  void on_window_opened() override { acks_at_open_ = acks_; }

  void on_window_closed() override {
    acks_at_close_ = acks_;
    publishing_ = false;
    if (!share_.publishers) return;
    if (publish_timer_) loop_.cancel(publish_timer_);
    publish_timer_ = 0;
    send_event({{"ev", "sent"}, {"messages", measured_sent()}});
  }

  void close_connections() override {
    for (Peer& p : peers_) hard_close(p.conn, "run over");
  }

  uint64_t ops() const override { return deliveries_; }
  uint64_t mode_errors() const override { return protocol_errors_ + server_errors_; }

  void add_progress(json& p) const override {
    p["ready"] = ready_count_;
    p["members_ready"] = members_ready_;
    p["warmed"] = warmed_alive_;
    p["sent"] = measured_sent();
  }

  void add_result(json& r) const override {
    uint64_t warm_sent = 0;
    for (uint64_t s : warm_seq_) warm_sent += s;
    r["protocol_errors"] = protocol_errors_;
    r["server_errors"] = server_errors_;
    r["members"] = members_;
    r["received"] = unique_;
    r["duplicates"] = duplicates_;
    r["out_of_order"] = out_of_order_;
    r["order_exact"] = order_exact_;
    r["foreign"] = foreign_;
    r["sent"] = measured_sent();
    r["sent_warmup"] = warm_sent;
    r["barrier_messages"] = barrier_seq_;
    r["publisher_stalls"] = stalls_;
    if (cfg_.ids) {
      r["acks"] = acks_;
      r["acks_in_window"] = acks_at_close_ - acks_at_open_;
      r["measured_answered"] = measured_answered_;
      r["not_stored"] = not_stored_;
      r["foreign_acks"] = foreign_acks_;
      r["ack_latency"] = histogram_to_json(ack_latency_);
    }
  }

  Codec codec_;
  const size_t members_;
  const uint32_t publishers_;
  std::vector<Peer> peers_;  // members 0 .. members_-1, then the publishers (if held here)
  std::vector<uint32_t> next_seq_;  // per member and publisher: the next measured seq expected
  std::vector<std::string> pub_out_;
  std::vector<uint64_t> measured_seq_, warm_seq_;
  std::vector<uint32_t> inflight_;  // --ids: per publisher, warm-up and measured messages not yet answered
  std::string text_;

  size_t ready_count_ = 0;
  size_t failed_before_ready_ = 0;
  size_t members_ready_ = 0;
  size_t warmed_alive_ = 0;
  bool barrier_requested_ = false;
  bool warmed_sent_ = false;
  reactor::TimerId barrier_timer_ = 0;
  reactor::TimerId publish_timer_ = 0;
  uint64_t barrier_seq_ = 0;
  uint32_t rr_ = 0;
  double tokens_ = 0;
  uint64_t last_tick_ns_ = 0;
  uint64_t stalls_ = 0;

  uint64_t deliveries_ = 0;  // warm-load and measured messages arrived (duplicates included)
  uint64_t unique_ = 0;
  uint64_t duplicates_ = 0;
  uint64_t out_of_order_ = 0;
  uint64_t foreign_ = 0;
  uint64_t server_errors_ = 0;
  uint64_t protocol_errors_ = 0;
  size_t missing_total_ = 0;
  bool order_exact_ = true;
  uint64_t expected_ = 0;
  bool expect_known_ = false;
  size_t done_ = 0;
  bool drained_sent_ = false;

  // --ids / --window
  bool publishing_ = false;          // --window: between go and the window's end
  uint64_t acks_ = 0;                // acks of this process's publishers (every kind)
  uint64_t acks_at_open_ = 0, acks_at_close_ = 0;
  uint64_t measured_answered_ = 0;   // measured messages acked or refused (not_stored)
  uint64_t not_stored_ = 0;
  uint64_t foreign_acks_ = 0;        // acks for ids this process never sent (or to a member)
  Histogram ack_latency_;            // measured messages: publish to ack
};

}  // namespace

std::unique_ptr<WorkerBase> make_worker(const Config& cfg, const Share& share, int cmd_fd, int event_fd) {
  if (cfg.mode == Mode::kEcho) return std::make_unique<EchoWorker>(cfg, share, cmd_fd, event_fd);
  return std::make_unique<ChatWorker>(cfg, share, cmd_fd, event_fd);
}

}  // namespace loadgen
