// One suite, run against every backend: readiness, interest changes and removal from inside
// handlers, the stale-event rule, and many descriptors.
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "reactor/demultiplexer.h"
#include "reactor/reactor.h"
#include "test_util.h"

using reactor::Events;
using reactor::Interest;
using reactor::Reactor;
using testutil::make_pipe;
using testutil::put_byte;

class BackendTest : public ::testing::TestWithParam<std::string> {
 protected:
  Reactor loop_{GetParam()};
};

INSTANTIATE_TEST_SUITE_P(AllBackends, BackendTest, ::testing::Values("epoll", "poll", "select"),
                         [](const auto& info) { return info.param; });

TEST_P(BackendTest, ReportsItsName) { EXPECT_EQ(loop_.backend_name(), GetParam()); }

TEST_P(BackendTest, ReadReadinessOnlyWhenDataArrives) {
  auto p = make_pipe();
  int calls = 0;
  Events seen = 0;
  loop_.add(p.read.get(), Interest::kRead, [&](Events e) {
    ++calls;
    seen = e;
  });
  loop_.run_once(0);
  EXPECT_EQ(calls, 0);
  put_byte(p.write.get());
  loop_.run_once(1000);
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(seen & reactor::kReadable);
  EXPECT_FALSE(seen & reactor::kWritable);
}

TEST_P(BackendTest, WriteReadiness) {
  auto [a, b] = testutil::make_socketpair();
  Events seen = 0;
  loop_.add(a.get(), Interest::kWrite, [&](Events e) { seen = e; });
  loop_.run_once(1000);
  EXPECT_TRUE(seen & reactor::kWritable);
  EXPECT_FALSE(seen & reactor::kReadable);
}

TEST_P(BackendTest, ReadAndWriteTogether) {
  auto [a, b] = testutil::make_socketpair();
  put_byte(b.get());
  Events seen = 0;
  loop_.add(a.get(), Interest::kReadWrite, [&](Events e) { seen = e; });
  loop_.run_once(1000);
  EXPECT_EQ(seen & (reactor::kReadable | reactor::kWritable), reactor::kReadable | reactor::kWritable);
}

TEST_P(BackendTest, HangupIsReportedAsReadable) {
  auto [a, b] = testutil::make_socketpair();
  Events seen = 0;
  loop_.add(a.get(), Interest::kRead, [&](Events e) { seen = e; });
  b.reset();
  loop_.run_once(1000);
  ASSERT_TRUE(seen & reactor::kReadable);
  char c;
  EXPECT_EQ(::read(a.get(), &c, 1), 0);  // end of stream
}

TEST_P(BackendTest, ModifyFromInsideItsOwnHandler) {
  auto p = make_pipe();
  put_byte(p.write.get());
  int calls = 0;
  loop_.add(p.read.get(), Interest::kRead, [&](Events) {
    ++calls;
    loop_.modify(p.read.get(), Interest::kNone);  // still readable: the byte is not read
  });
  loop_.run_once(1000);
  loop_.run_once(0);
  loop_.run_once(0);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(loop_.interest(p.read.get()), Interest::kNone);
  loop_.modify(p.read.get(), Interest::kRead);
  loop_.run_once(1000);
  EXPECT_EQ(calls, 2);
}

TEST_P(BackendTest, InterestDroppedEarlierInTheBatchIsNotDelivered) {
  auto p1 = make_pipe();
  auto p2 = make_pipe();
  put_byte(p1.write.get());
  put_byte(p2.write.get());
  std::map<int, int> calls;
  // Whichever runs first switches the other's read interest off.
  loop_.add(p1.read.get(), Interest::kRead, [&](Events) {
    ++calls[1];
    loop_.modify(p2.read.get(), Interest::kNone);
  });
  loop_.add(p2.read.get(), Interest::kRead, [&](Events) {
    ++calls[2];
    loop_.modify(p1.read.get(), Interest::kNone);
  });
  loop_.run_once(1000);
  EXPECT_EQ(calls[1] + calls[2], 1);
}

TEST_P(BackendTest, RemoveFromInsideItsOwnHandler) {
  auto p = make_pipe();
  put_byte(p.write.get());
  int calls = 0;
  loop_.add(p.read.get(), Interest::kRead, [&](Events) {
    ++calls;
    loop_.remove(p.read.get());
  });
  loop_.run_once(1000);
  loop_.run_once(0);
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(loop_.contains(p.read.get()));
}

TEST_P(BackendTest, HandlerRemovedEarlierInTheBatchIsNeverCalled) {
  auto p1 = make_pipe();
  auto p2 = make_pipe();
  put_byte(p1.write.get());
  put_byte(p2.write.get());
  int calls1 = 0, calls2 = 0;
  loop_.add(p1.read.get(), Interest::kRead, [&](Events) {
    ++calls1;
    loop_.remove(p2.read.get());
  });
  loop_.add(p2.read.get(), Interest::kRead, [&](Events) {
    ++calls2;
    loop_.remove(p1.read.get());
  });
  loop_.run_once(1000);  // both were ready in this one batch
  EXPECT_EQ(calls1 + calls2, 1) << "both handlers ran although each removes the other";
}

TEST_P(BackendTest, ReusedDescriptorNumberDoesNotReceiveTheOldEvents) {
  // Two readable pipes. The first handler to run closes the other pipe and opens a new, empty one,
  // which takes the lowest free number: the one just closed. Its handler must not be called with
  // the readiness reported for the old descriptor.
  auto p1 = make_pipe();
  auto p2 = make_pipe();
  put_byte(p1.write.get());
  put_byte(p2.write.get());
  testutil::Pipe fresh;
  int old_fd = -1, fresh_calls = 0, first_calls = 0;
  auto victimise = [&](testutil::Pipe& other) {
    ++first_calls;
    old_fd = other.read.get();
    loop_.remove(old_fd);
    other.read.reset();
    other.write.reset();
    fresh = make_pipe();
    loop_.add(fresh.read.get(), Interest::kRead, [&](Events) { ++fresh_calls; });
  };
  loop_.add(p1.read.get(), Interest::kRead, [&](Events) {
    if (first_calls == 0) victimise(p2);
  });
  loop_.add(p2.read.get(), Interest::kRead, [&](Events) {
    if (first_calls == 0) victimise(p1);
  });
  loop_.run_once(1000);
  ASSERT_EQ(first_calls, 1);
  // The lowest free numbers go to a new pipe's read end first: it takes the number just freed.
  ASSERT_EQ(fresh.read.get(), old_fd) << "the test needs the read end to reuse the number";
  EXPECT_EQ(fresh_calls, 0);
  loop_.run_once(0);
  EXPECT_EQ(fresh_calls, 0) << "the new pipe is empty";
  put_byte(fresh.write.get());
  loop_.run_once(1000);
  EXPECT_EQ(fresh_calls, 1);
}

TEST_P(BackendTest, AddedInsideAHandlerWorksFromTheNextIteration) {
  auto p1 = make_pipe();
  auto p2 = make_pipe();
  put_byte(p1.write.get());
  put_byte(p2.write.get());
  int calls2 = 0;
  bool added = false;
  loop_.add(p1.read.get(), Interest::kRead, [&](Events) {
    if (!added) {
      added = true;
      loop_.add(p2.read.get(), Interest::kRead, [&](Events) { ++calls2; });
    }
  });
  loop_.run_once(1000);
  loop_.run_once(1000);
  EXPECT_EQ(calls2, 1);
}

TEST_P(BackendTest, AddingTwiceIsAnError) {
  auto p = make_pipe();
  loop_.add(p.read.get(), Interest::kRead, [](Events) {});
  EXPECT_THROW(loop_.add(p.read.get(), Interest::kRead, [](Events) {}), std::logic_error);
  EXPECT_THROW(loop_.modify(12345, Interest::kRead), std::logic_error);
}

// Many descriptors: select up to its limit, epoll and poll well past it.
TEST_P(BackendTest, ManyDescriptors) {
  const bool is_select = GetParam() == "select";
  std::vector<testutil::Pipe> pipes;
  std::vector<int> calls;
  // Each pipe takes two numbers; only read ends are watched. select: stop below FD_SETSIZE.
  const int limit = is_select ? FD_SETSIZE : 5000;
  for (;;) {
    auto p = make_pipe();
    if (p.read.get() >= limit || p.write.get() >= limit) break;
    pipes.push_back(std::move(p));
  }
  calls.assign(pipes.size(), 0);
  for (size_t i = 0; i < pipes.size(); ++i) {
    loop_.add(pipes[i].read.get(), Interest::kRead, [&, i](Events) {
      ++calls[i];
      char c;
      ASSERT_EQ(::read(pipes[i].read.get(), &c, 1), 1);
    });
    put_byte(pipes[i].write.get());
  }
  int max_fd = 0;
  for (auto& p : pipes) max_fd = std::max(max_fd, p.read.get());
  if (is_select) {
    EXPECT_GE(max_fd, FD_SETSIZE - 3);
  } else {
    EXPECT_GT(max_fd, 4000);
  }
  for (int i = 0; i < 100 && std::count(calls.begin(), calls.end(), 1) < static_cast<long>(calls.size()); ++i) {
    loop_.run_once(1000);
  }
  for (size_t i = 0; i < calls.size(); ++i) ASSERT_EQ(calls[i], 1) << "pipe " << i;
}

TEST(SelectBackend, RefusesDescriptorsAtOrAboveFdSetSize) {
  Reactor loop("select");
  std::vector<reactor::Handle> held;
  int high = -1;
  while (high < FD_SETSIZE) {
    held.emplace_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(held.back().valid());
    high = held.back().get();
  }
  auto p = make_pipe();  // its numbers are above FD_SETSIZE
  ASSERT_GE(p.read.get(), FD_SETSIZE);
  try {
    loop.add(p.read.get(), Interest::kRead, [](Events) {});
    FAIL() << "select accepted descriptor " << p.read.get();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("FD_SETSIZE"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(loop.contains(p.read.get()));
  EXPECT_THROW(reactor::make_select_demultiplexer()->add(FD_SETSIZE + 5, Interest::kRead),
               std::invalid_argument);
}

TEST(Demultiplexer, DefaultIsEpollAndUnknownNamesAreRefused) {
  EXPECT_STREQ(reactor::make_demultiplexer()->name(), "epoll");
  EXPECT_STREQ(reactor::make_demultiplexer("default")->name(), "epoll");
  try {
    reactor::make_demultiplexer("kqueue");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("kqueue"), std::string::npos);
  }
}
