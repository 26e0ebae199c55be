// SqliteStore: chat::Store in one SQLite file, in WAL mode. Every SQLite call after opening runs on
// the store's own BlockingPool thread ("chat-store"), never on a reactor thread; appends are
// group-committed (every append waiting when a write starts goes into its one transaction), and an
// append's completion is posted only after its transaction committed.
//
// Schema (PRAGMA application_id kApplicationId, PRAGMA user_version the schema version):
//   1  messages(room, seq, ts, user, text) WITHOUT ROWID; meta(key, value) holding the epoch
//   2  messages gains msg_id; ids(room, user, msg_id, seq, ts): the dedupe window; rooms(room,
//      last_seq): the numbering, kept when retention has deleted every message of a room
//   3  messages gains front: the sender's front end (NULL in rows kept before: not known)
//   4  marks(reader, room, seq, ts): read marks (Store::set_mark), kept as long as messages are
// An older version is migrated at open, in one transaction.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "chat/core/store.h"

namespace chat {

// Opening or load() failed: the message is one line naming the file and the reason.
class StoreError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct SqliteOptions {
  std::string path;
  Retention retention;
  // PRAGMA synchronous=FULL: a commit survives a power loss. The default, NORMAL, survives a crash
  // of the process (kill -9), but a power loss may take the last commits.
  bool sync_full = false;
  // How long a write waits for a lock someone else holds on the file before its batch fails.
  int busy_timeout_ms = 1000;
  // How often, at most, the write thread applies retention to every room after a batch (a batch
  // trims the rooms it touched in any case).
  int64_t sweep_interval_ms = 60'000;
  // The time in ms since the Unix epoch, for retention by age (empty: the system clock). Tests set
  // their own.
  std::function<int64_t()> now_ms;
};

// The store's figures, all taken at the moment of the call.
struct SqliteStats {
  uint64_t pending = 0;         // appends waiting for their batch to start
  uint64_t jobs_queued = 0;     // batches, reads and fences queued for the store's thread
  uint64_t batches = 0;         // transactions committed
  uint64_t failed_batches = 0;  // transactions that failed (rolled back)
  uint64_t appended = 0;        // messages committed
  uint64_t failed = 0;          // messages of failed batches
  uint64_t reads = 0;
  uint64_t failed_reads = 0;
  uint64_t failure_lines = 0;  // log lines written about failures (at most one per 10 s)
  // The time a batch's transaction took, over the last 1024 committed batches.
  uint64_t commit_us_p50 = 0;
  uint64_t commit_us_p99 = 0;
  uint64_t commit_us_max = 0;
};

class SqliteStore : public Store {
 public:
  // "RCHT" (Reactor CHaT) as a big-endian 32-bit number, in the header of every file of ours.
  static constexpr int32_t kApplicationId = 0x52434854;
  static constexpr int kSchemaVersion = 4;

  virtual SqliteStats stats() const = 0;
  const std::string& path() const { return path_; }

 protected:
  explicit SqliteStore(std::string path) : path_(std::move(path)) {}

 private:
  std::string path_;
};

// Opens (or creates) the store at `options.path` on the calling thread. Throws StoreError if the
// file cannot be opened or created, is not an SQLite database, is one but not this program's, or
// has a schema version newer than this program knows.
std::unique_ptr<SqliteStore> open_sqlite_store(const SqliteOptions& options);

}  // namespace chat
