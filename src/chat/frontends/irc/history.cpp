// History: CHATHISTORY, the playback on joining, and the batches they come in.
#include "chat/frontends/irc/irc.h"

#include <algorithm>

#include "chat/core/store.h"
#include "chat/frontends/irc/lines.h"
#include "chat/session/session.h"

namespace chat {

// ---- History ------------------------------------------------------------------------------------

void IrcCodec::fail(Session& session, std::string_view command, std::string_view code, std::string_view context,
                    std::string_view text) {
  std::string line = ":" + options_.server_name + " FAIL ";
  line += command;
  line += ' ';
  line += code;
  if (!context.empty()) {
    line += ' ';
    line += context;
  }
  line += " :";
  line += text;
  line += "\r\n";
  send_line(session, std::move(line));
}

namespace {
// The number a msgid reference names in `room` ("msgid=ROOM~SEQ" or "msgid=ROOM~SEQ~K"), or 0.
uint64_t msgid_seq(std::string_view ref, std::string_view room) {
  if (ref.substr(0, 6) != "msgid=") return 0;
  ref.remove_prefix(6);
  size_t tilde = ref.find('~');
  if (tilde == std::string_view::npos || ref.substr(0, tilde) != room) return 0;
  ref.remove_prefix(tilde + 1);
  uint64_t seq = 0;
  for (char c : ref.substr(0, ref.find('~'))) {
    if (c < '0' || c > '9' || seq > (uint64_t{1} << 60)) return 0;
    seq = seq * 10 + static_cast<uint64_t>(c - '0');
  }
  return seq;
}
}  // namespace

void IrcCodec::chathistory(Session& session, const irc::Message& m) {
  if (m.params.size() < 4) return fail(session, "CHATHISTORY", "NEED_MORE_PARAMS", "", "Missing parameters");
  std::string sub = m.params[0];
  for (char& ch : sub) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  bool between = sub == "BETWEEN";
  if (sub != "LATEST" && sub != "BEFORE" && sub != "AFTER" && sub != "AROUND" && !between) {
    return fail(session, "CHATHISTORY", "INVALID_PARAMS", echoed(sub, 16), "Unknown subcommand");
  }
  if (between && m.params.size() < 5) return fail(session, "CHATHISTORY", "NEED_MORE_PARAMS", sub, "Missing parameters");
  const std::string& target = m.params[1];
  std::string room;
  if (!room_of(target, room) || !session.in_room(room)) {
    return fail(session, "CHATHISTORY", "INVALID_TARGET", sub + " " + echoed(target, 65),
                "Not a channel you are on");
  }
  size_t limit = 0;
  for (char c : m.params[between ? 4 : 3]) limit = (c >= '0' && c <= '9' && limit < 100000) ? limit * 10 + (c - '0') : 100001;
  if (limit == 0 || limit > 100000) return fail(session, "CHATHISTORY", "INVALID_PARAMS", sub, "Bad limit");
  limit = std::min(limit, kMaxHistory);
  const std::string& ref = m.params[2];
  uint64_t seq = msgid_seq(ref, room);
  // History costs by what it returns (--history-rate): past the budget, refused for now.
  auto ask = [&](uint64_t after, uint64_t before, size_t n, bool newest) {
    if (!session.history(room, after, before, n, newest)) {
      fail(session, "CHATHISTORY", "MESSAGE_ERROR", sub + " " + channel(room),
           "Too much history asked for in a short time (--history-rate): try again later");
    }
  };
  if (sub == "LATEST" && ref == "*") return ask(0, 0, limit, /*newest=*/true);
  if (seq == 0) {
    return fail(session, "CHATHISTORY", "INVALID_PARAMS", sub + " " + echoed(ref, 80),
                "Only msgid references of this channel (MSGREFTYPES=msgid), or * with LATEST");
  }
  if (sub == "LATEST") return ask(seq, 0, limit, true);
  if (sub == "BEFORE") return ask(0, seq, limit, true);
  if (sub == "AFTER") return ask(seq, 0, limit, false);
  if (sub == "AROUND") return ask(seq > limit / 2 + 1 ? seq - limit / 2 - 1 : 0, 0, limit, false);
  uint64_t other = msgid_seq(m.params[3], room);
  if (other == 0) return fail(session, "CHATHISTORY", "INVALID_PARAMS", sub, "Only msgid references of this channel");
  // BETWEEN: from the first reference towards the second.
  if (seq < other) return ask(seq, other, limit, false);
  ask(other, seq, limit, true);
}

reactor::SharedBytes IrcCodec::replay(Session&, const std::string& room, const std::vector<StoredMessage>& messages) {
  // A notice that what follows is history (each line with its own time: server-time), then the
  // messages in a chathistory batch where batch is negotiated.
  std::string out = ":" + options_.server_name + " NOTICE " + channel(room) + " :Playback: the last " +
                    std::to_string(messages.size()) + (messages.size() == 1 ? " message" : " messages") +
                    " said here before you joined (history, not live)\r\n";
  std::string id;
  if (caps_ & kBatch) {
    id = std::to_string(++batches_);
    out += ":" + options_.server_name + " BATCH +" + id + " chathistory " + channel(room) + "\r\n";
  }
  for (const StoredMessage& msg : messages) {
    out += message_lines(tags_, source_of(msg.user, msg.front), msg.automatic ? "NOTICE" : "PRIVMSG", channel(room),
                         msg.text, msg.ts_ms, room, msg.seq, id);
  }
  if (!id.empty()) out += ":" + options_.server_name + " BATCH -" + id + "\r\n";
  return std::make_shared<const std::string>(std::move(out));
}

reactor::SharedBytes IrcCodec::history(const std::string& room, const std::string&, const ReadResult& result) {
  std::string out;
  if (!result.ok) {
    out = ":" + options_.server_name + " FAIL CHATHISTORY MESSAGE_ERROR " + channel(room) + " :History could not be read\r\n";
    return std::make_shared<const std::string>(std::move(out));
  }
  std::string id;
  if (caps_ & kBatch) {
    id = std::to_string(++batches_);
    out = ":" + options_.server_name + " BATCH +" + id + " chathistory " + channel(room) + "\r\n";
  }
  for (const StoredMessage& msg : result.messages) {
    out += message_lines(tags_, source_of(msg.user, msg.front), msg.automatic ? "NOTICE" : "PRIVMSG", channel(room),
                         msg.text, msg.ts_ms, room, msg.seq, id);
  }
  if (!id.empty()) out += ":" + options_.server_name + " BATCH -" + id + "\r\n";
  if (out.empty()) return nullptr;
  return std::make_shared<const std::string>(std::move(out));
}

}  // namespace chat
