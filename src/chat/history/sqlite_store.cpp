#include "chat/history/sqlite_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <limits>
#include <mutex>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "chat/core/random_id.h"
#include "chat/ops/metrics.h"
#include "reactor/blocking_pool.h"
#include "reactor/log.h"

namespace chat {
namespace {

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
constexpr size_t kLatencySamples = 1024;

// An SQLite call failed; the message is SQLite's own ("database is locked", "file is not a
// database"). Opening turns it into a StoreError; a job turns it into a failed batch or read.
class SqliteFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail(sqlite3* db) { throw SqliteFailure(sqlite3_errmsg(db)); }

int64_t to_int64(uint64_t value) {
  return value > uint64_t(kInt64Max) ? kInt64Max : int64_t(value);
}

// `now - age`, without overflowing for an age of years.
int64_t cutoff(int64_t now, int64_t age) {
  if (age > 0 && now < std::numeric_limits<int64_t>::min() + age)
    return std::numeric_limits<int64_t>::min();
  return now - age;
}

int64_t system_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The connection. sqlite3_close_v2 waits for statements still open to be finalized, so the order in
// which a Database and its Statements go does not matter.
class Database {
 public:
  Database() = default;
  explicit Database(sqlite3* db) : db_(db) {}
  ~Database() { sqlite3_close_v2(db_); }
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;
  Database(Database&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}

  sqlite3* get() const { return db_; }
  void exec(const char* sql) {
    if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) fail(db_);
  }
  // Ends a transaction that an error interrupted (SQLite may have ended it already).
  void rollback() {
    if (!sqlite3_get_autocommit(db_)) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }

 private:
  sqlite3* db_ = nullptr;
};

// A prepared statement. run() starts one execution; the Run resets the statement when it goes, so
// that no statement is left holding a read transaction open (which would keep the WAL from being
// checkpointed).
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) {
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr) != SQLITE_OK)
      fail(db);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  class Run {
   public:
    explicit Run(sqlite3_stmt* stmt) : stmt_(stmt) {}
    ~Run() {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
    Run(const Run&) = delete;
    Run& operator=(const Run&) = delete;

    Run& bind(int index, int64_t value) {
      check(sqlite3_bind_int64(stmt_, index, value));
      return *this;
    }
    // The text is not copied: it must live until the Run goes.
    Run& bind(int index, std::string_view value) {
      check(sqlite3_bind_text(stmt_, index, value.data(), int(value.size()), SQLITE_STATIC));
      return *this;
    }
    Run& bind_or_null(int index, std::string_view value) {
      if (value.empty()) {
        check(sqlite3_bind_null(stmt_, index));
        return *this;
      }
      return bind(index, value);
    }
    // True while there is a row to read.
    bool step() {
      int rc = sqlite3_step(stmt_);
      if (rc == SQLITE_ROW) return true;
      if (rc == SQLITE_DONE) return false;
      fail(sqlite3_db_handle(stmt_));
    }
    int64_t integer(int column) const { return sqlite3_column_int64(stmt_, column); }
    bool is_null(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }
    std::string text(int column) const {
      auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
      return p ? std::string(p, size_t(sqlite3_column_bytes(stmt_, column))) : std::string();
    }
    // Rows changed by this execution (after its step).
    int64_t changes() const { return sqlite3_changes64(sqlite3_db_handle(stmt_)); }

   private:
    void check(int rc) {
      if (rc != SQLITE_OK) fail(sqlite3_db_handle(stmt_));
    }
    sqlite3_stmt* stmt_;
  };

  Run run() { return Run(stmt_); }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

int64_t query_int(Database& db, const char* sql) {
  Statement statement(db.get(), sql);
  auto run = statement.run();
  return run.step() ? run.integer(0) : 0;
}

// ---- Schema -----------------------------------------------------------------------------------
// A new database is made as version 1 and migrated like an old one: one way to reach the current
// schema, so a migrated file and a new one are the same.

void create_version_1(Database& db) {
  db.exec(
      "CREATE TABLE messages(room TEXT, seq INTEGER, ts INTEGER, user TEXT, text TEXT,"
      "                      PRIMARY KEY(room, seq)) WITHOUT ROWID;"
      "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);"
      "PRAGMA user_version=1;");
  db.exec(("PRAGMA application_id=" + std::to_string(SqliteStore::kApplicationId)).c_str());
  Statement put_epoch(db.get(), "INSERT INTO meta(key, value) VALUES('epoch', ?1)");
  std::string epoch = random_hex(16);
  put_epoch.run().bind(1, epoch).step();
}

// Message ids, the dedupe window, and the numbering kept apart from the messages (which retention
// may delete to the last one).
void migrate_1_to_2(Database& db) {
  db.exec(
      "ALTER TABLE messages ADD COLUMN msg_id TEXT;"
      // Retention by age, per room: a range of this index, not a scan of the room.
      "CREATE INDEX messages_by_ts ON messages(room, ts);"
      "CREATE TABLE ids(room TEXT, user TEXT, msg_id TEXT, seq INTEGER, ts INTEGER,"
      "                 PRIMARY KEY(room, user, msg_id)) WITHOUT ROWID;"
      // The window is trimmed from a room's oldest id on: a range of this index.
      "CREATE INDEX ids_by_seq ON ids(room, seq);"
      "CREATE TABLE rooms(room TEXT PRIMARY KEY, last_seq INTEGER) WITHOUT ROWID;"
      "INSERT INTO rooms(room, last_seq) SELECT room, max(seq) FROM messages GROUP BY room;"
      "PRAGMA user_version=2;");
}

// The sender's front end ("native", "irc", ...), which IRC shows as the sender's host. Rows kept
// before it was recorded have none (NULL, read as "": not known). ADD COLUMN rewrites no row, so a
// store of any size migrates at once.
void migrate_2_to_3(Database& db) {
  db.exec(
      "ALTER TABLE messages ADD COLUMN front TEXT;"
      "PRAGMA user_version=3;");
}

// Read marks (Store::set_mark): per reader and room, the last number it was sent.
void migrate_3_to_4(Database& db) {
  db.exec(
      "CREATE TABLE marks(reader TEXT, room TEXT, seq INTEGER, ts INTEGER,"
      "                   PRIMARY KEY(reader, room)) WITHOUT ROWID;"
      "PRAGMA user_version=4;");
}

// Checks that the file is ours, creates or migrates its schema, sets the connection up, and returns
// the epoch. Throws SqliteFailure for SQLite's errors, StoreError for the rest.
std::string set_up(Database& db, const SqliteOptions& options, const std::string& where) {
  // One write transaction for the check and what follows from it: two programs opening one new
  // file at once cannot both create it.
  db.exec("BEGIN IMMEDIATE");
  try {
    int64_t application_id = query_int(db, "PRAGMA application_id");
    int64_t version = query_int(db, "PRAGMA user_version");
    if (application_id == 0 && query_int(db, "SELECT count(*) FROM sqlite_master") == 0) {
      create_version_1(db);
      version = 1;
    } else if (application_id != SqliteStore::kApplicationId) {
      char id[16];
      std::snprintf(id, sizeof id, "0x%08llx",
                    static_cast<unsigned long long>(uint32_t(application_id)));
      throw StoreError(where + "not a chat-server store (an SQLite database with application_id " +
                       id + (application_id == 0 ? " and tables of its own)" : ")"));
    }
    if (version > SqliteStore::kSchemaVersion) {
      throw StoreError(where + "schema version " + std::to_string(version) +
                       " is newer than this program knows (" +
                       std::to_string(SqliteStore::kSchemaVersion) + "): use a newer chat-server");
    }
    if (version < 1)
      throw StoreError(where + "no schema version (user_version 0): not a complete store");
    if (version < 2) migrate_1_to_2(db);
    if (version < 3) migrate_2_to_3(db);
    if (version < 4) migrate_3_to_4(db);
    db.exec("COMMIT");
  } catch (...) {
    db.rollback();
    throw;
  }

  // WAL: readers never wait for the writer, and a commit is one append to the log.
  Statement wal(db.get(), "PRAGMA journal_mode=WAL");
  {
    auto run = wal.run();
    std::string mode = run.step() ? run.text(0) : "";
    if (mode != "wal")
      throw StoreError(where + "cannot use WAL mode (journal_mode is " + mode + ")");
  }
  db.exec(options.sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");

  Statement get_epoch(db.get(), "SELECT value FROM meta WHERE key='epoch'");
  auto run = get_epoch.run();
  std::string epoch = run.step() ? run.text(0) : "";
  if (epoch.empty()) throw StoreError(where + "no epoch in table meta: not a complete store");
  return epoch;
}

// ---- The store --------------------------------------------------------------------------------

class SqliteStoreImpl final : public SqliteStore {
 public:
  SqliteStoreImpl(const SqliteOptions& options, Database db, std::string epoch)
      : SqliteStore(options.path),
        options_(options),
        db_(std::move(db)),
        epoch_(std::move(epoch)),
        insert_message_(db_.get(),
                        "INSERT OR REPLACE INTO messages(room, seq, ts, user, text, msg_id, front)"
                        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
        insert_id_(
            db_.get(),
            "INSERT OR IGNORE INTO ids(room, user, msg_id, seq, ts) VALUES(?1, ?2, ?3, ?4, ?5)"),
        update_id_(db_.get(),
                   "UPDATE ids SET seq=?4, ts=?5 WHERE room=?1 AND user=?2 AND msg_id=?3"),
        upsert_room_(db_.get(),
                     "INSERT INTO rooms(room, last_seq) VALUES(?1, ?2)"
                     " ON CONFLICT(room) DO UPDATE SET last_seq=max(last_seq, excluded.last_seq)"),
        trim_by_count_(db_.get(),
                       "DELETE FROM messages WHERE room=?1"
                       " AND seq <= (SELECT last_seq FROM rooms WHERE room=?1) - ?2"),
        trim_by_age_(db_.get(), "DELETE FROM messages WHERE room=?1 AND ts < ?2"),
        count_ids_(db_.get(), "SELECT count(*) FROM ids WHERE room=?1"),
        oldest_ids_(db_.get(), "SELECT seq, ts FROM ids WHERE room=?1 ORDER BY seq LIMIT ?2"),
        delete_ids_(db_.get(), "DELETE FROM ids WHERE room=?1 AND seq <= ?2"),
        all_rooms_(db_.get(), "SELECT room FROM rooms"),
        // `+ts`: the age condition must not steer SQLite to the (room, ts) index; the primary key
        // range serves both the bounds and the order.
        read_oldest_(
            db_.get(),
            "SELECT seq, ts, user, text, msg_id, front FROM messages"
            " WHERE room=?1 AND seq > ?2 AND seq < ?3 AND +ts >= ?4 ORDER BY seq LIMIT ?5"),
        read_newest_(
            db_.get(),
            "SELECT seq, ts, user, text, msg_id, front FROM messages"
            " WHERE room=?1 AND seq > ?2 AND seq < ?3 AND +ts >= ?4 ORDER BY seq DESC LIMIT ?5"),
        upsert_mark_(db_.get(),
                     "INSERT INTO marks(reader, room, seq, ts) VALUES(?1, ?2, ?3, ?4)"
                     " ON CONFLICT(reader, room) DO UPDATE SET seq=excluded.seq, ts=excluded.ts"),
        read_mark_(db_.get(), "SELECT seq FROM marks WHERE reader=?1 AND room=?2"),
        trim_marks_(db_.get(), "DELETE FROM marks WHERE ts < ?1"),
        pool_(1, "chat-store") {}

  // The pool goes first (it is the last member): the work queued runs to its end, with everything
  // it uses still there.
  ~SqliteStoreImpl() override = default;

  std::string epoch() const override { return epoch_; }
  bool asynchronous() const override { return true; }

  std::vector<StoredRoom> load() override;

  void append(reactor::Reactor& reactor, const std::string& room, StoredMessage message,
              AppendDone done) override {
    std::lock_guard<std::mutex> lock(mutex_);
    pending_.fetch_add(1, std::memory_order_relaxed);
    if (!open_batch_) {
      open_batch_ = std::make_shared<Batch>();
      pool_.submit([this, batch = open_batch_] { write(batch); });
    }
    open_batch_->appends.push_back(Append{&reactor, room, std::move(message), std::move(done)});
  }

  void read(reactor::Reactor& reactor, const std::string& room, uint64_t after, uint64_t before,
            size_t limit, bool newest, ReadDone done) override {
    submit_in_order([this, &reactor, room, after, before, limit, newest, done = std::move(done)] {
      ReadResult result = read_now(room, after, before, limit, newest);
      reactor.post([done, result = std::move(result)]() mutable { done(std::move(result)); });
    });
  }

  void set_mark(reactor::Reactor&, const std::string& reader, const std::string& room, uint64_t seq) override {
    submit_in_order([this, reader, room, seq] {
      try {
        upsert_mark_.run().bind(1, reader).bind(2, room).bind(3, to_int64(seq)).bind(4, now_ms()).step();
      } catch (const std::exception& e) {
        note_failure(std::string("a read mark was not kept: ") + e.what());
      }
    });
  }

  void get_mark(reactor::Reactor& reactor, const std::string& reader, const std::string& room,
                std::function<void(uint64_t)> done) override {
    submit_in_order([this, &reactor, reader, room, done = std::move(done)] {
      uint64_t seq = 0;
      try {
        auto run = read_mark_.run();
        run.bind(1, reader).bind(2, room);
        if (run.step()) seq = uint64_t(run.integer(0));
      } catch (const std::exception& e) {
        note_failure(std::string("a read mark could not be read: ") + e.what());
      }
      reactor.post([done, seq] { done(seq); });
    });
  }

  void fence(reactor::Reactor& reactor, std::function<void()> done) override {
    submit_in_order([&reactor, done = std::move(done)] { reactor.post(done); });
  }

  std::string describe() const override {
    SqliteStats s = stats();
    return "store=sqlite pending=" + std::to_string(s.pending) +
           " jobs=" + std::to_string(s.jobs_queued) + " batches=" + std::to_string(s.batches) +
           " appended=" + std::to_string(s.appended) + " failed=" + std::to_string(s.failed) +
           " failed_batches=" + std::to_string(s.failed_batches) +
           " reads=" + std::to_string(s.reads) + " failed_reads=" + std::to_string(s.failed_reads) +
           " commit_us_p50=" + std::to_string(s.commit_us_p50) +
           " commit_us_p99=" + std::to_string(s.commit_us_p99);
  }

  SqliteStats stats() const override;
  void metrics(Exposition& out) const override;

 private:
  struct Append {
    reactor::Reactor* reactor;
    std::string room;
    StoredMessage message;
    AppendDone done;
  };
  // The appends of one write job. Appends join it until the job starts or a read or fence is
  // queued behind it (a later append must then complete after that read or fence: a new batch).
  struct Batch {
    std::vector<Append> appends;
  };

  int64_t now_ms() const { return options_.now_ms ? options_.now_ms() : system_now_ms(); }

  // Queues a read or fence behind everything queued so far, and closes the open batch: an append
  // made after this call must not complete before it.
  void submit_in_order(reactor::BlockingPool::Work work) {
    std::lock_guard<std::mutex> lock(mutex_);
    open_batch_.reset();
    pool_.submit(std::move(work));
  }

  // ---- On the store's thread ----
  void write(const std::shared_ptr<Batch>& batch);
  void write_transaction(const Batch& batch, int64_t now);
  void trim_room(const std::string& room, int64_t now);
  void trim_ids(const std::string& room, int64_t now);
  void sweep(int64_t now);
  ReadResult read_now(const std::string& room, uint64_t after, uint64_t before, size_t limit,
                      bool newest);
  void note_failure(const std::string& what);
  void record_commit_us(uint64_t us);

  const SqliteOptions options_;
  Database db_;
  const std::string epoch_;

  // Used on the store's thread only.
  Statement insert_message_, insert_id_, update_id_, upsert_room_, trim_by_count_, trim_by_age_,
      count_ids_, oldest_ids_, delete_ids_, all_rooms_, read_oldest_, read_newest_, upsert_mark_,
      read_mark_, trim_marks_;
  std::unordered_map<std::string, int64_t> id_counts_;  // rows in ids per room, once counted
  bool swept_ = false;
  int64_t last_sweep_ms_ = 0;
  reactor::LogLimiter failure_log_{1, std::chrono::seconds(10)};

  mutable std::mutex mutex_;
  std::shared_ptr<Batch> open_batch_;  // guarded by mutex_: the queued batch appends may join

  std::atomic<uint64_t> pending_{0}, batches_{0}, failed_batches_{0}, appended_{0}, failed_{0},
      reads_{0}, failed_reads_{0}, failure_lines_{0};
  mutable std::mutex latency_mutex_;
  std::vector<uint32_t>
      commit_us_;              // guarded by latency_mutex_: a ring of the last kLatencySamples
  size_t commit_us_next_ = 0;  // guarded by latency_mutex_
  reactor::LatencyHistogram commit_histogram_;  // guarded by latency_mutex_: every commit

  reactor::BlockingPool pool_;  // last: see the destructor
};

void SqliteStoreImpl::write(const std::shared_ptr<Batch>& batch) {
  {
    // From here on no append joins this batch.
    std::lock_guard<std::mutex> lock(mutex_);
    if (open_batch_ == batch) open_batch_.reset();
  }
  const size_t count = batch->appends.size();
  pending_.fetch_sub(count, std::memory_order_relaxed);

  int64_t now = now_ms();
  auto start = std::chrono::steady_clock::now();
  bool stored = true;
  try {
    write_transaction(*batch, now);
  } catch (const std::exception& e) {
    stored = false;
    db_.rollback();
    id_counts_.clear();  // the counts may include rows the rollback took back
    note_failure("a batch of " + std::to_string(count) + " messages was not stored: " + e.what());
  }
  if (stored) {
    record_commit_us(uint64_t(std::chrono::duration_cast<std::chrono::microseconds>(
                                  std::chrono::steady_clock::now() - start)
                                  .count()));
    batches_.fetch_add(1, std::memory_order_relaxed);
    appended_.fetch_add(count, std::memory_order_relaxed);
  } else {
    failed_batches_.fetch_add(1, std::memory_order_relaxed);
    failed_.fetch_add(count, std::memory_order_relaxed);
  }

  // One task per reactor, running its completions in the order of its appends.
  std::vector<std::pair<reactor::Reactor*, std::vector<AppendDone>>> by_reactor;
  for (Append& a : batch->appends) {
    auto it = std::find_if(by_reactor.begin(), by_reactor.end(),
                           [&](auto& p) { return p.first == a.reactor; });
    if (it == by_reactor.end()) it = by_reactor.insert(by_reactor.end(), {a.reactor, {}});
    it->second.push_back(std::move(a.done));
  }
  for (auto& [reactor, dones] : by_reactor) {
    reactor->post([dones = std::move(dones), stored] {
      for (const AppendDone& done : dones) {
        if (done) done(stored);
      }
    });
  }

  if (!swept_ || now - last_sweep_ms_ >= options_.sweep_interval_ms) {
    swept_ = true;
    last_sweep_ms_ = now;
    sweep(now);
  }
}

void SqliteStoreImpl::write_transaction(const Batch& batch, int64_t now) {
  // A file deleted or replaced under us would take every later commit into a file nobody will
  // open again: those messages are not stored, whatever SQLite says.
  int moved = 0;
  if (sqlite3_file_control(db_.get(), "main", SQLITE_FCNTL_HAS_MOVED, &moved) == SQLITE_OK &&
      moved) {
    throw SqliteFailure("the database file was deleted or replaced since it was opened");
  }
  db_.exec("BEGIN IMMEDIATE");
  std::unordered_map<std::string_view, uint64_t> rooms;  // touched rooms and their last seq
  for (const Append& a : batch.appends) {
    const StoredMessage& m = a.message;
    insert_message_.run()
        .bind(1, a.room)
        .bind(2, to_int64(m.seq))
        .bind(3, m.ts_ms)
        .bind(4, m.user)
        .bind(5, m.text)
        .bind_or_null(6, m.id)
        .bind_or_null(7, m.front)
        .step();
    if (!m.id.empty()) {
      auto insert = insert_id_.run();
      insert.bind(1, a.room)
          .bind(2, m.user)
          .bind(3, m.id)
          .bind(4, to_int64(m.seq))
          .bind(5, m.ts_ms)
          .step();
      if (insert.changes() == 0) {
        // Seen before, and forgotten by the room's owner since: it names this message now.
        update_id_.run()
            .bind(1, a.room)
            .bind(2, m.user)
            .bind(3, m.id)
            .bind(4, to_int64(m.seq))
            .bind(5, m.ts_ms)
            .step();
      } else if (auto it = id_counts_.find(a.room); it != id_counts_.end()) {
        ++it->second;
      }
    }
    uint64_t& last = rooms[a.room];
    last = std::max(last, m.seq);
  }
  for (auto& [room, last_seq] : rooms) {
    std::string name(room);
    upsert_room_.run().bind(1, name).bind(2, to_int64(last_seq)).step();
    // Trimmed in the same transaction: one commit (one fsync with sync_full) per batch.
    trim_room(name, now);
  }
  db_.exec("COMMIT");
}

// Retention for one room: messages outside the room's last max_messages numbers (numbers are given
// one after another, so these are the newest max_messages, fewer if some could not be stored),
// messages older than max_age_ms, and ids outside the dedupe window. Each is a range of an index.
void SqliteStoreImpl::trim_room(const std::string& room, int64_t now) {
  const Retention& r = options_.retention;
  trim_by_count_.run().bind(1, room).bind(2, to_int64(r.max_messages)).step();
  trim_by_age_.run().bind(1, room).bind(2, cutoff(now, r.max_age_ms)).step();
  trim_ids(room, now);
}

// An id stays while it is among the room's last dedupe_ids ids or younger than dedupe_ms. The ones
// that may go are the oldest (count - dedupe_ids); of those, the run of old ones from the oldest on
// goes. A young id stops the run, and the ids past it wait for a later trim: never more kept than
// the rule allows for long, never fewer than it promises, and no rows read that stay.
void SqliteStoreImpl::trim_ids(const std::string& room, int64_t now) {
  auto it = id_counts_.find(room);
  if (it == id_counts_.end()) {
    auto count = count_ids_.run();
    count.bind(1, room).step();
    it = id_counts_.emplace(room, count.integer(0)).first;
  }
  int64_t& count = it->second;
  int64_t keep = to_int64(options_.retention.dedupe_ids);
  if (count <= keep) return;
  int64_t young = cutoff(now, options_.retention.dedupe_ms);
  // Past dedupe_max_ids the oldest go whatever their age.
  int64_t over_max = count - to_int64(std::max(options_.retention.dedupe_max_ids, options_.retention.dedupe_ids));
  int64_t last_old = -1;
  {
    auto oldest = oldest_ids_.run();
    oldest.bind(1, room).bind(2, count - keep);
    for (int64_t i = 0; oldest.step() && (i < over_max || oldest.integer(1) < young); ++i) {
      last_old = oldest.integer(0);
    }
  }
  if (last_old < 0) return;
  auto erase = delete_ids_.run();
  erase.bind(1, room).bind(2, last_old).step();
  count -= erase.changes();
}

// Retention for every room, not only those written lately: a room nobody writes to any more still
// loses its old messages and ids. In its own transaction, after the batch's completions are posted.
void SqliteStoreImpl::sweep(int64_t now) {
  try {
    std::vector<std::string> rooms;
    {
      auto all = all_rooms_.run();
      while (all.step()) rooms.push_back(all.text(0));
    }
    db_.exec("BEGIN IMMEDIATE");
    for (const std::string& room : rooms) trim_room(room, now);
    // Marks older than the oldest message kept mark nothing left.
    trim_marks_.run().bind(1, cutoff(now, options_.retention.max_age_ms)).step();
    db_.exec("COMMIT");
  } catch (const std::exception& e) {
    db_.rollback();
    id_counts_.clear();
    note_failure(std::string("retention could not trim: ") + e.what());
  }
}

ReadResult SqliteStoreImpl::read_now(const std::string& room, uint64_t after, uint64_t before,
                                     size_t limit, bool newest) {
  reads_.fetch_add(1, std::memory_order_relaxed);
  ReadResult result;
  result.ok = true;
  if (limit == 0 || after >= uint64_t(kInt64Max)) return result;
  try {
    auto run = (newest ? read_newest_ : read_oldest_).run();
    run.bind(1, room)
        .bind(2, int64_t(after))
        .bind(3, before == 0 ? kInt64Max : to_int64(before))
        .bind(4, cutoff(now_ms(), options_.retention.max_age_ms))
        .bind(5, to_int64(limit));
    while (run.step()) {
      StoredMessage m;
      m.seq = uint64_t(run.integer(0));
      m.ts_ms = run.integer(1);
      m.user = run.text(2);
      m.text = run.text(3);
      m.id = run.text(4);
      m.front = run.text(5);
      result.messages.push_back(std::move(m));
    }
    if (newest) std::reverse(result.messages.begin(), result.messages.end());
  } catch (const std::exception& e) {
    failed_reads_.fetch_add(1, std::memory_order_relaxed);
    note_failure(std::string("a read failed: ") + e.what());
    result.ok = false;
    result.messages.clear();
  }
  return result;
}

// Failures are an expected state (a full disk, a lock held too long), and may repeat at every
// batch: at most one line per 10 s, saying how many were left out since the last.
void SqliteStoreImpl::note_failure(const std::string& what) {
  uint64_t left_out = 0;
  if (!failure_log_.allow(&left_out)) return;
  failure_lines_.fetch_add(1, std::memory_order_relaxed);
  LOG_WARN("store %s: %s%s", path().c_str(), what.c_str(), reactor::more_like_it(left_out).c_str());
}

void SqliteStoreImpl::record_commit_us(uint64_t us) {
  std::lock_guard<std::mutex> lock(latency_mutex_);
  commit_histogram_.record(std::chrono::microseconds(us));
  uint32_t sample = uint32_t(std::min<uint64_t>(us, std::numeric_limits<uint32_t>::max()));
  if (commit_us_.size() < kLatencySamples) {
    commit_us_.push_back(sample);
  } else {
    commit_us_[commit_us_next_] = sample;
    commit_us_next_ = (commit_us_next_ + 1) % kLatencySamples;
  }
}

SqliteStats SqliteStoreImpl::stats() const {
  SqliteStats s;
  s.pending = pending_.load(std::memory_order_relaxed);
  s.jobs_queued = pool_.queued();
  s.batches = batches_.load(std::memory_order_relaxed);
  s.failed_batches = failed_batches_.load(std::memory_order_relaxed);
  s.appended = appended_.load(std::memory_order_relaxed);
  s.failed = failed_.load(std::memory_order_relaxed);
  s.reads = reads_.load(std::memory_order_relaxed);
  s.failed_reads = failed_reads_.load(std::memory_order_relaxed);
  s.failure_lines = failure_lines_.load(std::memory_order_relaxed);
  std::vector<uint32_t> samples;
  {
    std::lock_guard<std::mutex> lock(latency_mutex_);
    samples = commit_us_;
  }
  if (!samples.empty()) {
    std::sort(samples.begin(), samples.end());
    auto at = [&](double q) {
      return samples[std::min(samples.size() - 1, size_t(q * double(samples.size())))];
    };
    s.commit_us_p50 = at(0.50);
    s.commit_us_p99 = at(0.99);
    s.commit_us_max = samples.back();
  }
  return s;
}

std::vector<StoredRoom> SqliteStoreImpl::load() {
  try {
    std::vector<StoredRoom> rooms;
    std::unordered_map<std::string, size_t> index;
    {
      Statement statement(db_.get(), "SELECT room, last_seq FROM rooms ORDER BY room");
      auto run = statement.run();
      while (run.step()) {
        index.emplace(run.text(0), rooms.size());
        rooms.push_back(StoredRoom{run.text(0), uint64_t(run.integer(1)), {}});
      }
    }
    {
      // With the text of its message while the store has it (a retry must repeat it); an id whose
      // message retention deleted is known by its number only.
      Statement statement(db_.get(),
                          "SELECT i.room, i.user, i.msg_id, i.seq, i.ts, m.text FROM ids i"
                          " LEFT JOIN messages m ON m.room = i.room AND m.seq = i.seq ORDER BY i.room, i.seq");
      auto run = statement.run();
      while (run.step()) {
        auto it = index.find(run.text(0));
        if (it == index.end()) continue;  // written with its room's row: cannot happen
        uint64_t fp = run.is_null(5) ? 0 : text_fingerprint(run.text(5));
        rooms[it->second].ids.push_back(
            StoredId{run.text(1), run.text(2), uint64_t(run.integer(3)), run.integer(4), fp});
      }
    }
    // The window as the rule says, whether or not a trim has caught up with it.
    int64_t young = cutoff(now_ms(), options_.retention.dedupe_ms);
    size_t keep = options_.retention.dedupe_ids;
    for (StoredRoom& room : rooms) {
      std::vector<StoredId>& ids = room.ids;
      size_t first_by_count = ids.size() > keep ? ids.size() - keep : 0;
      size_t max = std::max(options_.retention.dedupe_max_ids, keep);
      size_t first_by_max = ids.size() > max ? ids.size() - max : 0;
      size_t i = 0;
      ids.erase(std::remove_if(ids.begin(), ids.end(),
                               [&](const StoredId& id) {
                                 size_t at = i++;
                                 return at < first_by_max || (at < first_by_count && id.ts_ms < young);
                               }),
                ids.end());
    }
    return rooms;
  } catch (const SqliteFailure& e) {
    throw StoreError("store " + path() + ": cannot load: " + e.what());
  }
}

}  // namespace

std::unique_ptr<SqliteStore> open_sqlite_store(const SqliteOptions& options) {
  const std::string where = "store " + options.path + ": ";
  if (options.path.empty()) throw StoreError("store: no file given");
  sqlite3* raw = nullptr;
  int rc =
      sqlite3_open_v2(options.path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  Database db(raw);  // closed on every way out, also when opening failed
  if (rc != SQLITE_OK) {
    std::string why = raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    int err = raw ? sqlite3_system_errno(raw) : 0;
    if (err != 0) why += std::string(" (") + std::strerror(err) + ")";
    throw StoreError(where + "cannot open: " + why);
  }
  sqlite3_busy_timeout(raw, options.busy_timeout_ms);
  try {
    std::string epoch = set_up(db, options, where);
    return std::make_unique<SqliteStoreImpl>(options, std::move(db), std::move(epoch));
  } catch (const SqliteFailure& e) {
    throw StoreError(where + e.what());
  }
}

void SqliteStoreImpl::metrics(Exposition& out) const {
  SqliteStats s = stats();
  out.gauge("chat_store_queue_depth", "Messages waiting for their batch to start (the SQLite store)", s.pending);
  out.gauge("chat_store_jobs_queued", "Batches, reads and fences queued for the store's thread", s.jobs_queued);
  out.labelled("chat_store_batches_total", "counter", "Transactions of the SQLite store, by outcome", "result",
               {{"committed", s.batches}, {"failed", s.failed_batches}});
  out.labelled("chat_store_messages_total", "counter", "Messages written to the SQLite store, by outcome", "result",
               {{"committed", s.appended}, {"failed", s.failed}});
  out.labelled("chat_store_reads_total", "counter", "Reads of the SQLite store, by outcome", "result",
               {{"ok", s.reads - std::min(s.reads, s.failed_reads)}, {"failed", s.failed_reads}});
  reactor::LatencyHistogram commits;
  {
    std::lock_guard<std::mutex> lock(latency_mutex_);
    commits = commit_histogram_;
  }
  out.family("chat_store_commit_seconds", "histogram", "How long a batch's transaction took (the SQLite store)");
  out.histogram("chat_store_commit_seconds", commits);
}

}  // namespace chat
