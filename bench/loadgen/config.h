// loadgen's settings (the command line, checked) and one worker process's share of the load.
#pragma once

#include <cstdint>
#include <string>

namespace loadgen {

enum class Mode { kEcho, kChat, kRecover };
enum class Dialect { kNative, kArticle, kRedis, kNats, kWs, kIrc };

const char* mode_name(Mode m);
const char* dialect_name(Dialect d);

struct Config {
  Mode mode = Mode::kEcho;
  Dialect dialect = Dialect::kNative;
  std::string host = "127.0.0.1";
  int port = 0;            // ws: the server's HTTP port (GET /ws)
  int connections = 100;   // echo: connections; chat: members
  int active = -1;         // echo: connections that keep sending (-1: all)
  int depth = 1;           // echo: payloads in flight per active connection
  int payload = 64;        // bytes per echo payload / chat message text
  double duration = 5;     // seconds measured
  double warmup = 1;       // seconds of load before the measurement
  double rate = 1000;      // chat: messages per second, all publishers together
  int publishers = 1;      // chat
  std::string room = "bench";
  double drain = 2;        // chat: seconds to wait for deliveries after publishing stops
  int processes = 0;       // 0: automatic
  int source_addresses = 0;  // 0: automatic; 1: no bind
  bool tls = false;          // speak TLS to the server (its certificate not checked)
  // Most connects in flight, all processes together: below the listen backlog of any server
  // measured (Redis's is 511; past it SYNs are dropped and retried a second later).
  int connect_batch = 256;
  // chat: a connection holds its --connect-batch slot until it is subscribed (or lost), not only
  // until TCP connects. For a server that accepts one connection per loop and has a short listen
  // backlog (ngircd: 10, and a join costs it a pass over the channel): connects the kernel
  // completed but the server has not accepted overflow the backlog, and their SYNs wait seconds to
  // be retried.
  bool batch_until_ready = false;
  double connect_timeout = 60;  // seconds for connecting and the protocol handshake
  double barrier_timeout = 30;  // chat: seconds for every member to receive a warm-up message
  // chat, native and ws: every publish carries an id (its header, see message.h); the server's acks
  // are counted and timed from the publish (publish-to-ack latency).
  bool ids = false;
  // chat: > 0: closed loop instead of --rate: each publisher keeps at most this many published
  // messages unacknowledged (implies ids), sending the next as each ack comes back.
  int window = 0;
  // recover (recover.h): the phase, prepare or storm; storm: the seq and epoch the members saw
  // before they left; both: the messages they missed.
  std::string phase = "prepare";
  uint64_t since = 0;
  std::string epoch;
  int missed = 100;
  int server_pid = 0;
  bool json = false;
  bool progress = false;   // live line on stderr (stderr is a terminal)
  uint64_t run_id = 0;     // makes native user names unique to this run

  int total_connections() const { return mode == Mode::kChat ? connections + publishers : connections; }
};

// What one worker process drives. Connections are numbered globally 0 .. total-1: echo
// connections, or chat members 0 .. N-1 followed by publishers N .. N+P-1. The global number picks
// the source address (round-robin) and the payload/user name.
struct Share {
  int index = 0;            // worker number
  int64_t first = 0;        // first global connection number of this worker's members/connections
  int64_t count = 0;        // members (chat) or connections (echo)
  bool publishers = false;  // chat: this worker also holds the P publishers
};

}  // namespace loadgen
