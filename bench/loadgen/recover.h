// loadgen --mode recover: many members reconnecting at once after a restart, each recovering what it
// missed (join with since/epoch, docs/PROTOCOL.md). Two phases, which the caller runs around a server
// restart (bench/history_suite.py: SIGTERM, then the server again on the same data directory):
//
//   prepare  --connections members join --room and read `joined`'s epoch and seq, then all leave;
//            one publisher then publishes --missed messages with ids and waits for every ack (stored).
//            Reports {"epoch", "since": the seq the members saw, "last_seq"}.
//   storm    a live publisher joins and publishes at --rate with ids; at the same moment the members
//            all connect (every connect at once) and join with --since/--epoch. Each member checks
//            that `joined` says recovered:true and that messages follow numbered since+1, since+2, ...
//            with no gap and no duplicate, the first --missed of them the missed ones (their texts);
//            it has recovered with the --missed-th. The publisher marks what it sends before the last
//            member recovered (the storm) apart from what it sends after; after the last recovery it
//            goes on for --duration s, then every member must reach the last acknowledged message
//            (at most --drain s). Reports the recovery times from the first connect (first, median,
//            p99, last), the live messages' latency during the storm and after, and every failure.
//
// One process, one Reactor: the members are all on one thread, as a client machine's would be.
#pragma once

#include "loadgen/config.h"

namespace loadgen {

// The process's exit status: 0 when every member recovered exactly what it missed and nothing failed.
int run_recover(const Config& cfg);

}  // namespace loadgen
