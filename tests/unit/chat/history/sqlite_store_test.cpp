// chat::SqliteStore: what store.h promises, kept in an SQLite file: reads, ordering of completions,
// group commit, the epoch and numbering across reopening, the sender's front end, retention, the
// dedupe window, refusing a file that is not ours, migration, and failure as a state the store
// comes back from.
#include "chat/history/sqlite_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "reactor/reactor.h"
#include "reactor/reactor_pool.h"

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using chat::StoredMessage;

// Runs `loop` until `done` or 10 s.
bool run_until(reactor::Reactor& loop, const std::function<bool()>& done) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    loop.run_once(10);
  }
  return true;
}

int64_t wall_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A message sent now, unless `ts_ms` says when.
StoredMessage message(uint64_t seq, std::string text, std::string id = "", int64_t ts_ms = -1) {
  StoredMessage m;
  m.seq = seq;
  m.ts_ms = ts_ms >= 0 ? ts_ms : wall_clock_ms();
  m.user = "user" + std::to_string(seq % 3);
  m.text = std::move(text);
  m.id = std::move(id);
  return m;
}

std::vector<uint64_t> seqs(const std::vector<StoredMessage>& messages) {
  std::vector<uint64_t> out;
  for (const auto& m : messages) out.push_back(m.seq);
  return out;
}

// A connection of the test's own, beside the store's, to look at or tamper with the file.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK)
      throw std::runtime_error(sqlite3_errmsg(db_));
  }
  ~RawDb() { sqlite3_close(db_); }
  void exec(const std::string& sql) {
    char* error = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
      std::string what = error ? error : "?";
      sqlite3_free(error);
      throw std::runtime_error(sql + ": " + what);
    }
  }
  int64_t integer(const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      throw std::runtime_error(sql + ": " + sqlite3_errmsg(db_));
    }
    int64_t value = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : -1;
    sqlite3_finalize(stmt);
    return value;
  }
  std::string text(const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      throw std::runtime_error(sql + ": " + sqlite3_errmsg(db_));
    }
    std::string value;
    if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0)) {
      value = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    }
    sqlite3_finalize(stmt);
    return value;
  }

 private:
  sqlite3* db_ = nullptr;
};

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "sqlite_store_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    path_ = (dir_ / "chat.db").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  chat::SqliteOptions options() {
    chat::SqliteOptions o;
    o.path = path_;
    return o;
  }

  // Appends and waits for the completion; returns what it said.
  bool append(chat::Store& store, const std::string& room, StoredMessage m) {
    bool finished = false, stored = false;
    store.append(loop_, room, std::move(m), [&](bool ok) {
      finished = true;
      stored = ok;
    });
    EXPECT_TRUE(run_until(loop_, [&] { return finished; }));
    return stored;
  }

  chat::ReadResult read(chat::Store& store, const std::string& room, uint64_t after,
                        uint64_t before, size_t limit, bool newest) {
    bool finished = false;
    chat::ReadResult result;
    store.read(loop_, room, after, before, limit, newest, [&](chat::ReadResult r) {
      finished = true;
      result = std::move(r);
    });
    EXPECT_TRUE(run_until(loop_, [&] { return finished; }));
    return result;
  }

  std::vector<uint64_t> all_seqs(chat::Store& store, const std::string& room) {
    auto r = read(store, room, 0, 0, 1'000'000, false);
    EXPECT_TRUE(r.ok);
    return seqs(r.messages);
  }

  void expect_open_fails(const std::string& says) {
    try {
      chat::SqliteOptions o = options();
      auto store = chat::open_sqlite_store(o);
      ADD_FAILURE() << "opened; expected an error saying \"" << says << "\"";
    } catch (const chat::StoreError& e) {
      std::string what = e.what();
      EXPECT_NE(what.find(says), std::string::npos) << what;
      EXPECT_NE(what.find(path_), std::string::npos)
          << "the message should name the file: " << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << "one line: " << what;
    }
  }

  reactor::Reactor loop_;  // before the stores the tests make: it outlives their completions
  fs::path dir_;
  std::string path_;
};

TEST_F(SqliteStoreTest, AppendedMessagesReadBackWithinBoundsAndLimits) {
  auto store = chat::open_sqlite_store(options());
  EXPECT_TRUE(store->asynchronous());
  for (uint64_t seq = 1; seq <= 10; ++seq) {
    ASSERT_TRUE(
        append(*store, "lobby",
               message(seq, "text " + std::to_string(seq),
                       seq % 2 ? "id" + std::to_string(seq) : "", 4102444800000 + int64_t(seq))));
  }
  ASSERT_TRUE(append(*store, "other", message(1, "elsewhere")));

  auto all = read(*store, "lobby", 0, 0, 100, false);
  ASSERT_TRUE(all.ok);
  ASSERT_EQ(seqs(all.messages), (std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
  const StoredMessage& third = all.messages[2];
  EXPECT_EQ(third.ts_ms, 4102444800003);
  EXPECT_EQ(third.user, "user0");
  EXPECT_EQ(third.text, "text 3");
  EXPECT_EQ(third.id, "id3");
  EXPECT_EQ(all.messages[3].id, "");

  EXPECT_EQ(seqs(read(*store, "lobby", 0, 0, 3, false).messages), (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(seqs(read(*store, "lobby", 0, 0, 3, true).messages), (std::vector<uint64_t>{8, 9, 10}));
  EXPECT_EQ(seqs(read(*store, "lobby", 4, 8, 100, false).messages),
            (std::vector<uint64_t>{5, 6, 7}));
  EXPECT_EQ(seqs(read(*store, "lobby", 0, 8, 2, true).messages), (std::vector<uint64_t>{6, 7}));
  EXPECT_EQ(seqs(read(*store, "lobby", 7, 0, 2, false).messages), (std::vector<uint64_t>{8, 9}));
  auto none = read(*store, "lobby", 10, 0, 100, false);
  EXPECT_TRUE(none.ok);
  EXPECT_TRUE(none.messages.empty());
  EXPECT_TRUE(read(*store, "lobby", 0, 0, 0, true).messages.empty());
  EXPECT_TRUE(read(*store, "nobody-here", 0, 0, 100, true).messages.empty());
  EXPECT_EQ(seqs(read(*store, "other", 0, 0, 100, true).messages), (std::vector<uint64_t>{1}));

  // Text is kept byte for byte, a NUL included.
  std::string odd("a\0b\xff\n", 5);
  ASSERT_TRUE(append(*store, "bytes", message(1, odd)));
  EXPECT_EQ(read(*store, "bytes", 0, 0, 1, false).messages.at(0).text, odd);
}

TEST_F(SqliteStoreTest, CompletionsRunOnTheReactorInCallOrderAndReadsSeeEarlierAppends) {
  auto store = chat::open_sqlite_store(options());
  // Everything is called before the loop runs, so appends keep finding a batch queued and not yet
  // started: an append after a read or fence must still complete after it.
  std::vector<std::string> order, expected;
  std::vector<std::thread::id> threads;
  uint64_t seq = 0;
  for (int round = 0; round < 200; ++round) {
    std::string r = std::to_string(round);
    ++seq;
    store->append(loop_, "room", message(seq, "m"), [&, r](bool ok) {
      order.push_back("append " + r + (ok ? "" : " failed"));
      threads.push_back(std::this_thread::get_id());
    });
    expected.push_back("append " + r);
    uint64_t appended = seq;
    store->read(loop_, "room", 0, 0, 1'000'000, true, [&, r, appended](chat::ReadResult result) {
      // Every append made before the read is in it, none made after.
      bool sees =
          result.ok && result.messages.size() == appended && result.messages.back().seq == appended;
      order.push_back("read " + r + (sees ? "" : " saw " + std::to_string(result.messages.size())));
      threads.push_back(std::this_thread::get_id());
    });
    expected.push_back("read " + r);
    ++seq;
    store->append(loop_, "room", message(seq, "m"), [&, r](bool ok) {
      order.push_back("second append " + r + (ok ? "" : " failed"));
    });
    expected.push_back("second append " + r);
    store->fence(loop_, [&, r] { order.push_back("fence " + r); });
    expected.push_back("fence " + r);
  }
  ASSERT_TRUE(run_until(loop_, [&] { return order.size() == expected.size(); }));
  EXPECT_EQ(order, expected);
  for (auto id : threads)
    ASSERT_EQ(id, std::this_thread::get_id()) << "a completion ran off the reactor's thread";
}

TEST_F(SqliteStoreTest, AReadSeesAnAppendMadeBeforeItOnAnotherReactor) {
  int stored_from_other = 0;  // counted on this reactor
  reactor::ReactorPool others(1, "", nullptr);
  auto store =
      chat::open_sqlite_store(options());  // after the pool: gone (drained) before it stops
  for (uint64_t seq = 1; seq <= 50; ++seq) {
    bool read_done = false;
    bool saw = false;
    // The other reactor appends; right after its call returns, it asks this one to read.
    others.at(0).post([&, seq] {
      store->append(others.at(0), "room", message(seq, "from the other reactor"), [&](bool ok) {
        bool on_its_thread = others.at(0).in_loop_thread();
        loop_.post([&, ok, on_its_thread] { stored_from_other += ok && on_its_thread ? 1 : 0; });
      });
      loop_.post([&, seq] {
        store->read(loop_, "room", 0, 0, 1, true, [&, seq](chat::ReadResult r) {
          saw = r.ok && !r.messages.empty() && r.messages.back().seq == seq;
          read_done = true;
        });
      });
    });
    ASSERT_TRUE(run_until(loop_, [&] { return read_done; }));
    ASSERT_TRUE(saw) << "the read did not see message " << seq;
  }
  // Every append was stored, and its completion ran on the other reactor's thread.
  EXPECT_TRUE(run_until(loop_, [&] { return stored_from_other == 50; })) << stored_from_other;
}

TEST_F(SqliteStoreTest, AppendsWaitingTogetherShareOneTransaction) {
  auto store = chat::open_sqlite_store(options());
  constexpr int kMessages = 1000;
  int stored = 0, done = 0;
  for (int i = 1; i <= kMessages; ++i) {
    store->append(loop_, "busy", message(uint64_t(i), "burst", "id" + std::to_string(i)),
                  [&](bool ok) {
                    ++done;
                    if (ok) ++stored;
                  });
  }
  ASSERT_TRUE(run_until(loop_, [&] { return done == kMessages; }));
  EXPECT_EQ(stored, kMessages);
  auto stats = store->stats();
  EXPECT_EQ(stats.appended, uint64_t(kMessages));
  EXPECT_EQ(stats.pending, 0u);
  // At one transaction per message this would be 1000. Each append takes about a microsecond and a
  // commit far longer, so the appends pile up while a batch commits.
  EXPECT_LE(stats.batches, uint64_t(kMessages / 10)) << "group commit did not group";
  EXPECT_GE(stats.batches, 1u);
  EXPECT_EQ(all_seqs(*store, "busy").size(), size_t(kMessages));
}

TEST_F(SqliteStoreTest, ReopeningKeepsTheEpochTheNumberingAndTheIds) {
  std::string epoch;
  {
    auto store = chat::open_sqlite_store(options());
    epoch = store->epoch();
    ASSERT_EQ(epoch.size(), 16u);
    EXPECT_EQ(epoch.find_first_not_of("0123456789abcdef"), std::string::npos) << epoch;
    int64_t now = wall_clock_ms();
    ASSERT_TRUE(append(*store, "a", message(1, "one", "x1", now)));
    ASSERT_TRUE(append(*store, "a", message(2, "two", "", now)));
    ASSERT_TRUE(append(*store, "a", message(3, "three", "x3", now)));
    ASSERT_TRUE(append(*store, "b", message(7, "seven", "y7", now)));
  }
  auto store = chat::open_sqlite_store(options());
  EXPECT_EQ(store->epoch(), epoch);
  auto rooms = store->load();
  ASSERT_EQ(rooms.size(), 2u);
  EXPECT_EQ(rooms[0].room, "a");
  EXPECT_EQ(rooms[0].last_seq, 3u);
  ASSERT_EQ(rooms[0].ids.size(), 2u);
  EXPECT_EQ(rooms[0].ids[0].id, "x1");
  EXPECT_EQ(rooms[0].ids[0].seq, 1u);
  EXPECT_EQ(rooms[0].ids[0].user, "user1");
  EXPECT_EQ(rooms[0].ids[1].id, "x3");
  EXPECT_EQ(rooms[0].ids[1].seq, 3u);
  EXPECT_EQ(rooms[1].room, "b");
  EXPECT_EQ(rooms[1].last_seq, 7u);
  ASSERT_EQ(rooms[1].ids.size(), 1u);
  EXPECT_EQ(rooms[1].ids[0].id, "y7");
  EXPECT_EQ(all_seqs(*store, "a"), (std::vector<uint64_t>{1, 2, 3}));

  RawDb raw(path_);
  EXPECT_EQ(raw.text("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(raw.integer("PRAGMA application_id"), chat::SqliteStore::kApplicationId);
  EXPECT_EQ(raw.integer("PRAGMA user_version"), 4);
}

// Read marks (IRC playback once): kept per reader and room, across a reopen.
TEST_F(SqliteStoreTest, ReadMarksAreKeptPerReaderAndRoomAcrossAReopen) {
  auto mark = [this](chat::Store& store, const std::string& reader, const std::string& room) {
    bool finished = false;
    uint64_t seq = 99;
    store.get_mark(loop_, reader, room, [&](uint64_t s) {
      finished = true;
      seq = s;
    });
    EXPECT_TRUE(run_until(loop_, [&] { return finished; }));
    return seq;
  };
  {
    auto store = chat::open_sqlite_store(options());
    EXPECT_EQ(mark(*store, "alice", "a"), 0u);
    store->set_mark(loop_, "alice", "a", 5);
    store->set_mark(loop_, "alice", "b", 2);
    store->set_mark(loop_, "alice", "a", 7);
    EXPECT_EQ(mark(*store, "alice", "a"), 7u);
  }
  auto store = chat::open_sqlite_store(options());
  EXPECT_EQ(mark(*store, "alice", "a"), 7u);
  EXPECT_EQ(mark(*store, "alice", "b"), 2u);
  EXPECT_EQ(mark(*store, "bob", "a"), 0u);
}

// The sender's front end is kept with its message: IRC shows it as the sender's host, also in what a
// member is given back from the store (history, recovery) after the server restarted.
TEST_F(SqliteStoreTest, TheFrontEndIsKeptReadBackAndSurvivesReopening) {
  auto with_front = [](uint64_t seq, std::string front) {
    StoredMessage m = message(seq, "from " + (front.empty() ? std::string("nowhere") : front));
    m.front = std::move(front);
    return m;
  };
  const std::vector<std::string> fronts{"native", "irc", "", "web", "article"};
  auto expect_fronts = [&](chat::Store& store) {
    for (bool newest : {false, true}) {
      auto r = read(store, "lobby", 0, 0, 100, newest);
      ASSERT_TRUE(r.ok);
      ASSERT_EQ(r.messages.size(), fronts.size());
      for (size_t i = 0; i < fronts.size(); ++i) {
        EXPECT_EQ(r.messages[i].front, fronts[i]) << "message " << r.messages[i].seq << (newest ? " (newest)" : "");
      }
    }
  };
  {
    auto store = chat::open_sqlite_store(options());
    for (size_t i = 0; i < fronts.size(); ++i) ASSERT_TRUE(append(*store, "lobby", with_front(i + 1, fronts[i])));
    expect_fronts(*store);
  }
  auto store = chat::open_sqlite_store(options());
  expect_fronts(*store);
  RawDb raw(path_);
  EXPECT_EQ(raw.text("SELECT front FROM messages WHERE room='lobby' AND seq=2"), "irc");
  EXPECT_EQ(raw.integer("SELECT count(*) FROM messages WHERE front IS NULL"), 1) << "not known is NULL, not ''";
}

TEST_F(SqliteStoreTest, ANewFileHasANewEpoch) {
  auto first = chat::open_sqlite_store(options());
  chat::SqliteOptions o = options();
  o.path = (dir_ / "another.db").string();
  auto second = chat::open_sqlite_store(o);
  EXPECT_NE(first->epoch(), second->epoch());
  EXPECT_TRUE(second->load().empty());
}

TEST_F(SqliteStoreTest, RetentionKeepsTheNewestMessagesOfARoomAndItsNumbering) {
  chat::SqliteOptions o = options();
  o.retention.max_messages = 5;
  auto store = chat::open_sqlite_store(o);
  for (uint64_t seq = 1; seq <= 12; ++seq) ASSERT_TRUE(append(*store, "r", message(seq, "m")));
  EXPECT_EQ(all_seqs(*store, "r"), (std::vector<uint64_t>{8, 9, 10, 11, 12}));
  store.reset();

  // Nothing kept at all: the numbering still goes on from where it was.
  o.retention.max_messages = 0;
  store = chat::open_sqlite_store(o);
  ASSERT_TRUE(append(*store, "r", message(13, "m")));
  EXPECT_TRUE(all_seqs(*store, "r").empty());
  store.reset();
  store = chat::open_sqlite_store(o);
  auto rooms = store->load();
  ASSERT_EQ(rooms.size(), 1u);
  EXPECT_EQ(rooms[0].last_seq, 13u);
}

TEST_F(SqliteStoreTest, RetentionByAgeInTheRoomsWrittenToAndInEveryRoomOnceASweepIsDue) {
  std::atomic<int64_t> now{1'000'000};
  chat::SqliteOptions o = options();
  o.retention.max_age_ms = 1000;
  o.sweep_interval_ms = 60'000;
  o.now_ms = [&] { return now.load(); };
  auto store = chat::open_sqlite_store(o);
  ASSERT_TRUE(append(*store, "quiet", message(1, "old news", "", now - 500)));
  ASSERT_TRUE(append(*store, "busy", message(1, "too old already", "", now - 5000)));
  ASSERT_TRUE(append(*store, "busy", message(2, "recent", "", now - 500)));
  ASSERT_TRUE(append(*store, "busy", message(3, "new", "", now)));
  EXPECT_EQ(all_seqs(*store, "busy"), (std::vector<uint64_t>{2, 3}));

  RawDb raw(path_);
  now += 800;  // message 2 of busy is now 1300 ms old, quiet's 1300 ms too
  EXPECT_EQ(all_seqs(*store, "busy"), (std::vector<uint64_t>{3}))
      << "a read returns nothing older than max_age";
  ASSERT_TRUE(append(*store, "busy", message(4, "newer", "", now)));
  EXPECT_EQ(raw.integer("SELECT count(*) FROM messages WHERE room='busy'"), 2)
      << "trimmed when written to";
  EXPECT_EQ(raw.integer("SELECT count(*) FROM messages WHERE room='quiet'"), 1)
      << "no sweep due yet";

  now += 60'000;
  ASSERT_TRUE(append(*store, "busy", message(5, "later", "", now)));
  // The sweep runs on the store's thread after the batch: a fence waits for it.
  bool fenced = false;
  store->fence(loop_, [&] { fenced = true; });
  ASSERT_TRUE(run_until(loop_, [&] { return fenced; }));
  EXPECT_EQ(raw.integer("SELECT count(*) FROM messages WHERE room='quiet'"), 0)
      << "the sweep did not trim";
  EXPECT_EQ(raw.integer("SELECT count(*) FROM messages WHERE room='busy'"), 1);
  EXPECT_EQ(raw.integer("SELECT last_seq FROM rooms WHERE room='quiet'"), 1);
}

// However fast ids come, a room keeps at most dedupe_max_ids of them: young ones past the bound go
// too (oldest first), in the file and in what load() gives.
TEST_F(SqliteStoreTest, TheDedupeWindowIsBoundedWhateverTheRate) {
  chat::SqliteOptions o = options();
  o.retention.dedupe_ids = 2;
  o.retention.dedupe_ms = 3'600'000;  // all of them young
  o.retention.dedupe_max_ids = 4;
  o.now_ms = [] { return int64_t{1000}; };
  auto store = chat::open_sqlite_store(o);
  RawDb raw(path_);
  for (uint64_t seq = 1; seq <= 9; ++seq) {
    ASSERT_TRUE(append(*store, "r", message(seq, "m", "k" + std::to_string(seq), 1000)));
  }
  EXPECT_EQ(raw.integer("SELECT count(*) FROM ids"), 4);
  auto rooms = store->load();
  ASSERT_EQ(rooms.size(), 1u);
  std::vector<std::string> ids;
  for (const auto& id : rooms[0].ids) ids.push_back(id.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"k6", "k7", "k8", "k9"}));
}

TEST_F(SqliteStoreTest, TheDedupeWindowKeepsTheLastIdsOrTheYoungOnes) {
  std::atomic<int64_t> now{0};
  chat::SqliteOptions o = options();
  o.retention.dedupe_ids = 3;
  o.retention.dedupe_ms = 1000;
  o.now_ms = [&] { return now.load(); };
  auto store = chat::open_sqlite_store(o);
  RawDb raw(path_);
  auto ids_of = [](const chat::StoredRoom& room) {
    std::vector<std::string> out;
    for (const auto& id : room.ids) out.push_back(id.id);
    return out;
  };

  // Six ids, all young: all kept although past the count.
  for (uint64_t seq = 1; seq <= 6; ++seq)
    ASSERT_TRUE(append(*store, "r", message(seq, "m", "k" + std::to_string(seq), now)));
  EXPECT_EQ(raw.integer("SELECT count(*) FROM ids"), 6);
  auto rooms = store->load();
  ASSERT_EQ(rooms.size(), 1u);
  EXPECT_EQ(ids_of(rooms[0]), (std::vector<std::string>{"k1", "k2", "k3", "k4", "k5", "k6"}));

  // Later, the old ones go but the last three; a message without an id is no id.
  now = 5000;
  ASSERT_TRUE(append(*store, "r", message(7, "m", "", now)));
  EXPECT_EQ(raw.integer("SELECT count(*) FROM ids"), 3);
  rooms = store->load();
  EXPECT_EQ(ids_of(rooms[0]), (std::vector<std::string>{"k4", "k5", "k6"}));
  EXPECT_EQ(rooms[0].ids[0].seq, 4u);

  ASSERT_TRUE(append(*store, "r", message(8, "m", "k8", now)));
  EXPECT_EQ(ids_of(store->load()[0]), (std::vector<std::string>{"k5", "k6", "k8"}));
  EXPECT_EQ(raw.integer("SELECT count(*) FROM ids"), 3);

  // load() applies the rule itself, also where no trim has run yet (another room, never written
  // to again).
  for (uint64_t seq = 1; seq <= 5; ++seq)
    ASSERT_TRUE(append(*store, "s", message(seq, "m", "s" + std::to_string(seq), now)));
  now = 10'000;
  EXPECT_EQ(raw.integer("SELECT count(*) FROM ids WHERE room='s'"), 5);
  rooms = store->load();
  ASSERT_EQ(rooms.size(), 2u);
  EXPECT_EQ(ids_of(rooms[1]), (std::vector<std::string>{"s3", "s4", "s5"}));

  // An id given again (its owner forgot it) names the newer message.
  ASSERT_TRUE(append(*store, "r", message(9, "m", "k5", now)));
  rooms = store->load();
  ASSERT_FALSE(rooms[0].ids.empty());
  EXPECT_EQ(rooms[0].ids.back().id, "k5");
  EXPECT_EQ(rooms[0].ids.back().seq, 9u);
}

TEST_F(SqliteStoreTest, AFileOfOtherBytesIsRefused) {
  {
    std::ofstream out(path_, std::ios::binary);
    for (int i = 0; i < 4096; ++i) out.put(char(i * 7 + 3));
  }
  expect_open_fails("file is not a database");
}

TEST_F(SqliteStoreTest, AnotherProgramsDatabaseIsRefusedAndLeftAsItWas) {
  {
    RawDb raw(path_);
    raw.exec("CREATE TABLE contacts(name TEXT); INSERT INTO contacts VALUES('ann')");
  }
  expect_open_fails("not a chat-server store");
  RawDb raw(path_);
  EXPECT_EQ(raw.text("PRAGMA journal_mode"), "delete") << "the foreign file was changed";
  EXPECT_EQ(raw.integer("SELECT count(*) FROM sqlite_master"), 1);
  raw.exec("PRAGMA application_id=1234");
  expect_open_fails("application_id 0x000004d2");
}

TEST_F(SqliteStoreTest, ANewerSchemaIsRefused) {
  chat::open_sqlite_store(options()).reset();
  RawDb(path_).exec("PRAGMA user_version=5");
  expect_open_fails("schema version 5 is newer than this program knows (4)");
}

TEST_F(SqliteStoreTest, AFileThatCannotBeCreatedIsRefused) {
  path_ = (dir_ / "no-such-directory" / "chat.db").string();
  expect_open_fails("cannot open");
}

TEST_F(SqliteStoreTest, AVersion1StoreIsMigrated) {
  {
    RawDb raw(path_);
    raw.exec("PRAGMA application_id=" + std::to_string(chat::SqliteStore::kApplicationId) +
             ";"
             "PRAGMA user_version=1;"
             "CREATE TABLE messages(room TEXT, seq INTEGER, ts INTEGER, user TEXT, text TEXT,"
             "                      PRIMARY KEY(room, seq)) WITHOUT ROWID;"
             "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);"
             "INSERT INTO meta VALUES('epoch', '00000000deadbeef');"
             "INSERT INTO messages VALUES('lobby', 1, 4102444800000, 'ann', 'hello');"
             "INSERT INTO messages VALUES('lobby', 2, 4102444800001, 'bob', 'hi');"
             "INSERT INTO messages VALUES('attic', 5, 4102444800002, 'cid', 'dusty');");
  }
  auto store = chat::open_sqlite_store(options());
  EXPECT_EQ(store->epoch(), "00000000deadbeef");
  auto rooms = store->load();
  ASSERT_EQ(rooms.size(), 2u);
  EXPECT_EQ(rooms[0].room, "attic");
  EXPECT_EQ(rooms[0].last_seq, 5u);
  EXPECT_EQ(rooms[1].room, "lobby");
  EXPECT_EQ(rooms[1].last_seq, 2u);

  auto lobby = read(*store, "lobby", 0, 0, 10, false);
  ASSERT_TRUE(lobby.ok);
  ASSERT_EQ(seqs(lobby.messages), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(lobby.messages[0].user, "ann");
  EXPECT_EQ(lobby.messages[0].text, "hello");
  EXPECT_EQ(lobby.messages[0].id, "");
  EXPECT_EQ(lobby.messages[0].front, "");
  ASSERT_TRUE(append(*store, "lobby", message(3, "after the migration", "m3", 4102444800003)));
  EXPECT_EQ(all_seqs(*store, "lobby"), (std::vector<uint64_t>{1, 2, 3}));
  store.reset();

  // Through version 2 to the current one.
  RawDb raw(path_);
  EXPECT_EQ(raw.integer("PRAGMA user_version"), 4);
  EXPECT_EQ(raw.integer("SELECT last_seq FROM rooms WHERE room='lobby'"), 3);
  EXPECT_EQ(raw.text("SELECT msg_id FROM ids WHERE room='lobby'"), "m3");
  EXPECT_EQ(raw.integer("SELECT count(*) FROM pragma_table_info('messages') WHERE name='front'"), 1);
}

// A version 2 file, as chat-server made it before front ends were recorded: its rows are kept with
// no front end (not known), its numbering and ids too, and new messages keep theirs.
TEST_F(SqliteStoreTest, AVersion2StoreIsMigratedAndItsMessagesHaveNoFrontEnd) {
  {
    RawDb raw(path_);
    raw.exec("PRAGMA application_id=" + std::to_string(chat::SqliteStore::kApplicationId) +
             ";"
             "PRAGMA user_version=2;"
             "CREATE TABLE messages(room TEXT, seq INTEGER, ts INTEGER, user TEXT, text TEXT, msg_id TEXT,"
             "                      PRIMARY KEY(room, seq)) WITHOUT ROWID;"
             "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);"
             "CREATE INDEX messages_by_ts ON messages(room, ts);"
             "CREATE TABLE ids(room TEXT, user TEXT, msg_id TEXT, seq INTEGER, ts INTEGER,"
             "                 PRIMARY KEY(room, user, msg_id)) WITHOUT ROWID;"
             "CREATE INDEX ids_by_seq ON ids(room, seq);"
             "CREATE TABLE rooms(room TEXT PRIMARY KEY, last_seq INTEGER) WITHOUT ROWID;"
             "INSERT INTO meta VALUES('epoch', '00000000cafef00d');"
             "INSERT INTO messages VALUES('lobby', 6, 4102444800000, 'ann', 'hello', 'a-6');"
             "INSERT INTO messages VALUES('lobby', 7, 4102444800001, 'bob', 'hi', NULL);"
             "INSERT INTO ids VALUES('lobby', 'ann', 'a-6', 6, 4102444800000);"
             "INSERT INTO rooms VALUES('lobby', 9);");
  }
  chat::SqliteOptions o = options();
  o.now_ms = [] { return int64_t{4102444800100}; };  // the rows are young, their ids in the window
  auto store = chat::open_sqlite_store(o);
  EXPECT_EQ(store->epoch(), "00000000cafef00d") << "the same history: the same epoch";
  auto rooms = store->load();
  ASSERT_EQ(rooms.size(), 1u);
  EXPECT_EQ(rooms[0].last_seq, 9u);
  ASSERT_EQ(rooms[0].ids.size(), 1u);
  EXPECT_EQ(rooms[0].ids[0].id, "a-6");

  auto lobby = read(*store, "lobby", 0, 0, 10, false);
  ASSERT_TRUE(lobby.ok);
  ASSERT_EQ(seqs(lobby.messages), (std::vector<uint64_t>{6, 7}));
  EXPECT_EQ(lobby.messages[0].user, "ann");
  EXPECT_EQ(lobby.messages[0].text, "hello");
  EXPECT_EQ(lobby.messages[0].id, "a-6");
  EXPECT_EQ(lobby.messages[0].front, "");
  EXPECT_EQ(lobby.messages[1].front, "");
  StoredMessage m = message(10, "after the migration", "", 4102444800002);
  m.front = "irc";
  ASSERT_TRUE(append(*store, "lobby", m));
  lobby = read(*store, "lobby", 0, 0, 10, false);
  ASSERT_EQ(seqs(lobby.messages), (std::vector<uint64_t>{6, 7, 10}));
  EXPECT_EQ(lobby.messages[2].front, "irc");
  store.reset();

  RawDb raw(path_);
  EXPECT_EQ(raw.integer("PRAGMA user_version"), 4);
  EXPECT_EQ(raw.integer("SELECT count(*) FROM messages"), 3);
  EXPECT_EQ(raw.integer("SELECT count(*) FROM messages WHERE front IS NULL"), 2);
  EXPECT_EQ(raw.integer("SELECT last_seq FROM rooms WHERE room='lobby'"), 10);
}

TEST_F(SqliteStoreTest, ALockedFileFailsBatchesThenTheStoreComesBack) {
  chat::SqliteOptions o = options();
  o.busy_timeout_ms = 50;
  auto store = chat::open_sqlite_store(o);
  ASSERT_TRUE(append(*store, "r", message(1, "before")));
  RawDb other(path_);
  other.exec("BEGIN EXCLUSIVE");

  testing::internal::CaptureStderr();
  EXPECT_FALSE(append(*store, "r", message(2, "while locked")));
  EXPECT_FALSE(append(*store, "r", message(3, "still locked")));
  // Reads are not blocked by a writer in WAL mode.
  EXPECT_EQ(all_seqs(*store, "r"), (std::vector<uint64_t>{1}));
  std::string log = testing::internal::GetCapturedStderr();
  auto stats = store->stats();
  EXPECT_EQ(stats.failed_batches, 2u);
  EXPECT_EQ(stats.failed, 2u);
  EXPECT_EQ(stats.failure_lines, 1u) << "at most one line per 10 s";
  EXPECT_NE(log.find("database is locked"), std::string::npos) << log;
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 1) << log;

  other.exec("ROLLBACK");
  EXPECT_TRUE(append(*store, "r", message(4, "after")));
  EXPECT_EQ(all_seqs(*store, "r"), (std::vector<uint64_t>{1, 4}));
  EXPECT_EQ(store->stats().appended, 2u);
}

TEST_F(SqliteStoreTest, AFileDeletedUnderTheStoreFailsItsBatches) {
  auto store = chat::open_sqlite_store(options());
  ASSERT_TRUE(append(*store, "r", message(1, "kept")));
  fs::remove(path_);
  EXPECT_FALSE(append(*store, "r", message(2, "nowhere to go")));
  EXPECT_EQ(store->stats().failed, 1u);
}

TEST_F(SqliteStoreTest, AReadThatFailsSaysSo) {
  auto store = chat::open_sqlite_store(options());
  ASSERT_TRUE(append(*store, "r", message(1, "m")));
  RawDb(path_).exec("DROP TABLE messages");
  auto r = read(*store, "r", 0, 0, 10, false);
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(r.messages.empty());
  EXPECT_EQ(store->stats().failed_reads, 1u);
}

TEST_F(SqliteStoreTest, DescribeGivesTheFigures) {
  auto store = chat::open_sqlite_store(options());
  ASSERT_TRUE(append(*store, "r", message(1, "m")));
  std::string line = store->describe();
  EXPECT_NE(line.find("store=sqlite"), std::string::npos) << line;
  EXPECT_NE(line.find("appended=1"), std::string::npos) << line;
  EXPECT_NE(line.find("batches=1"), std::string::npos) << line;
  EXPECT_NE(line.find("commit_us_p99="), std::string::npos) << line;
  EXPECT_GT(store->stats().commit_us_max, 0u);
}

}  // namespace
