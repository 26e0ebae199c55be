// Fuzz target for a chat session: arbitrary bytes from a client, in arbitrary pieces, through the
// codec and the hub, with a second member in the lobby receiving what is broadcast. Nothing may
// crash, leak or read out of bounds (run under ASan/UBSan); replies are flushed to a real socket.
// The first byte chooses the frame limit: 16 bytes (a stream is given up past 256 bytes, well
// within a fuzzer's input, so the give-up path runs), 256, the server's default of 64 KiB, and
// 1 MiB (a server may run with a large limit: what a large frame can hold must not crash it).
// The next bit chooses the port: the chat port (the article's dialect, handing over to the native
// one) or the IRC port (flood control off, so that every line of the input is read).
#include <cstdint>
#include <memory>
#include <string_view>

#include "chat/frontends/irc/irc.h"
#include "chat/frontends/tcp/article.h"
#include "chat_fuzz.h"
#include "reactor/log.h"

namespace {

constexpr size_t kFrameLimits[] = {16, 256, 64 * 1024, 1024 * 1024};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  static bool quiet = (reactor::set_log_level(reactor::LogLevel::kOff), true);
  (void)quiet;
  static reactor::Reactor loop("poll");
  if (size < 1) return 0;
  fuzzing::Shard shard(loop, kFrameLimits[bytes[0] & 3]);
  fuzzing::Peer client = fuzzing::make_peer(loop);
  static const chat::IrcOptions irc = [] {
    chat::IrcOptions o;
    o.flood_rate = 0;
    return o;
  }();
  std::unique_ptr<chat::Codec> codec;
  if (bytes[0] & 4) {
    codec = std::make_unique<chat::IrcCodec>(irc, reactor::Clock::now());
  } else {
    codec = std::make_unique<chat::ArticleCodec>(shard.limits.max_frame);
  }
  auto session = std::make_shared<chat::TcpSession>(shard.context, *client.conn, std::move(codec));
  session->start();
  std::string_view data(reinterpret_cast<const char*>(bytes + 1), size - 1);
  shard.in_pieces(data, client.other_end.get(), [&](reactor::Buffer& input) { session->input(input); });
  session->closed();
  client.conn->close(reactor::CloseCode::kLocal, "done");
  loop.run_once(0);
  return 0;
}
