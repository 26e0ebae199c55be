// The IRC front end (docs/PROTOCOL.md, "IRC"): the client protocol of the "Modern IRC Client
// Protocol" document with the IRCv3 capabilities message-tags, server-time and echo-message, on
// its own port. Channel #R is the room R of every other front end; names are one namespace.
//
// Room events reach an IRC member in one of three formats, chosen by the capabilities it
// negotiated before registering (CAP ... END comes before the first JOIN, so a member's format is
// fixed before it is in any room): plain lines, lines with the server-time tag, and lines with
// every tag (server-time and msgid) for clients that negotiated message-tags.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <string>
#include <vector>

#include "chat/ops/token_bucket.h"
#include "chat/session/codec.h"
#include "irc/message.h"
#include "reactor/tcp_connection.h"
#include "reactor/timer_queue.h"

namespace chat {

// A server operator (OPER name password): its name and a crypt(3) hash of its password
// (docs/OPERATIONS.md, --irc-operators-file); never the password itself.
struct IrcOperator {
  std::string name;
  std::string hash;
};
// True if `password` is the one `hash` (a crypt(3) hash: $6$..., $y$..., $5$...) was made from.
bool irc_password_matches(const std::string& password, const std::string& hash);
// True if `hash` is a crypt(3) hash this system can check passwords against.
bool irc_hash_usable(const std::string& hash);

struct IrcOptions {
  std::string server_name = "reactor.chat";  // the source of the server's own lines
  std::string network = "ReactorChat";       // ISUPPORT NETWORK
  std::string password;                      // "": no PASS needed
  std::vector<std::string> motd;             // lines of the message of the day (none: 422)
  std::vector<IrcOperator> operators;        // OPER's (none: OPER answers 491)
  std::chrono::milliseconds registration_timeout{30000};
  std::chrono::milliseconds ping_interval{90000};  // a member silent this long is sent a PING ...
  std::chrono::milliseconds ping_timeout{60000};   // ... and closed if nothing comes back in time
  // Flood control: `flood_burst` lines at once, then `flood_rate` lines a second (0: none). A
  // client over it is read no faster (its lines wait); one that piles up more than `flood_backlog`
  // unread bytes meanwhile is closed ("Excess Flood").
  // Messages a client with server-time (and without draft/chathistory, which asks for its own) is
  // sent from a room's history when it joins (0: none).
  size_t playback = 20;
  double flood_rate = 4;
  double flood_burst = 20;
  size_t flood_backlog = 8192;
};

enum class IrcTags : uint8_t {
  kNone,  // plain lines
  kTime,  // server-time: @time=...
  kAll,   // message-tags: @time=...;msgid=...
};
const Format& irc_format(IrcTags tags);

// The host part other front ends' members show with on IRC: nick!nick@HOST, HOST their front end.
// A name that is not a valid nick (the article's names may hold spaces) is shown with '_' for the
// characters a nick cannot hold.
std::string irc_display_nick(std::string_view name);
// A client's token (a channel name, a command, a nick that was not found) as it may be put back in
// a reply: at most `max` bytes, control characters and spaces as '_', never starting with ':'.
std::string echoed(std::string_view token, size_t max);
// Nicks: 1 to 32 characters; a letter or one of []\`_^{|} first, then also digits and '-'.
bool valid_irc_nick(std::string_view nick);

class IrcCodec final : public Codec {
 public:
  IrcCodec(const IrcOptions& options, reactor::Clock::time_point now);

  const Format& format() const override { return irc_format(tags_); }
  FrameResult next_frame(std::string_view input) override;
  std::unique_ptr<Codec> on_frame(Session& session, std::string_view frame) override;
  void on_bad_frame(Session& session, const FrameResult& result, std::string_view skipped) override;
  reactor::SharedBytes joined(Session& session, const std::string& room, const JoinReply& reply,
                              std::optional<bool> recovered) override;
  std::string quit_reason() const override { return rare_ ? rare_->quit_reason : std::string(); }
  DirectResult direct(Session& session, const DirectMessage& message) override;
  std::string away() const override { return rare_ ? rare_->away : std::string(); }
  reactor::SharedBytes history(const std::string& room, const std::string& epoch, const ReadResult& result) override;
  reactor::SharedBytes join_refused(Session& session, const std::string& room, Refusal why) override;
  reactor::SharedBytes publish_refused(Session& session, const std::string& room, Refusal why,
                                       const std::string& id) override;
  void removed(Session& session, const std::string& room) override;
  reactor::SharedBytes going_away(Session& session, bool restart) override;
  reactor::SharedBytes killed(Session& session, const std::string& by, const std::string& reason) override;
  reactor::SharedBytes replay(Session& session, const std::string& room, const std::vector<StoredMessage>& messages) override;
  bool has_hooks() const override { return true; }
  bool accept(Session& session, const RoomEvent& event) override;
  bool hold_input(Session& session, size_t buffered) override;
  void counted(Session&, const std::string& room) override { std::erase(pending_, room); }
  void tick(Session& session, reactor::Clock::time_point now) override;

  // One command of the dispatch table: its name (as irc::parse uppercases it), the parameters it
  // needs (fewer: 461, written once, in command()), when it may come, and its handler.
  struct Command {
    enum When : uint8_t {
      kAny,         // before and after registration
      kRegistered,  // after registration only (before: 451)
      kOnce,        // before registration only (after: 462)
    };
    enum Flags : uint8_t {
      // The first and the last of the needed parameters may not be empty either (USER's user name
      // and real name, WALLOPS' text).
      kNonEmpty = 1,
      kNeedsAuthority = 2,  // offered with --auth-secret only (else an unknown command: 421)
    };
    std::string_view name;
    uint8_t min_params = 0;
    When when = kRegistered;
    uint8_t flags = 0;
    void (*handler)(IrcCodec& codec, Session& session, const irc::Message& m) = nullptr;
  };
  // The commands this codec knows; any other is answered 421 (451 before registration).
  static std::span<const Command> commands();
  static const Command* find_command(std::string_view name);

  // Lines longer than this the server never sends (tags aside): IRC's 512 with its CRLF.
  static constexpr size_t kMaxLine = irc::kMaxBody;
  // Targets one PRIVMSG or NOTICE may name (ISUPPORT TARGMAX).
  static constexpr size_t kMaxTargets = 4;
  // Rooms one LIST answers with.
  static constexpr size_t kMaxListed = 10000;
  // Members WHO lists for a mask (`WHO a*`) at most.
  static constexpr size_t kMaxWho = 200;
  // Bytes of an away message kept (ISUPPORT AWAYLEN).
  static constexpr size_t kAwayLength = 200;
  // Messages one CHATHISTORY answers with at most (ISUPPORT CHATHISTORY).
  static constexpr size_t kMaxHistory = 100;
  // Bytes of USER's user name kept, its '~' included (ISUPPORT USERLEN), and of its real name.
  static constexpr size_t kUserLength = 16;
  static constexpr size_t kRealnameLength = 200;
  // Bytes of a topic kept (ISUPPORT TOPICLEN), and mode changes one MODE may make (MODES).
  static constexpr size_t kTopicLength = 390;
  static constexpr size_t kMaxModes = 6;

 private:
  enum Cap : uint16_t {
    kMessageTags = 1,
    kServerTime = 2,
    kEchoMessage = 4,
    kBatch = 8,
    kChathistory = 16,
    kSasl = 32,  // offered with --auth-secret only
    // Not a capability: a server operator (OPER, user mode +o), kept in a free bit of caps_.
    kOper = 64,
    kWallops = 128,  // user mode +w: WALLOPS reach it (operators get them anyway)
    kMultiPrefix = 256,      // NAMES, WHO and WHOIS show every prefix of a member (@+), not the highest
    kUserhostInNames = 512,  // NAMES shows nick!user@host
  };
  bool oper() const { return (caps_ & kOper) != 0; }
  // SASL (AUTHENTICATE): base64 bytes of one PLAIN message at most (a token of
  // TokenAuthority::kMaxToken, two names and two NULs, with room), chunks of 400, failures allowed.
  static constexpr size_t kMaxSasl = 6000;
  static constexpr size_t kSaslChunk = 400;
  static constexpr uint8_t kMaxSaslFailures = 3;

  // Dispatches `m` through the command table (commands()).
  void command(Session& session, const irc::Message& m);
  void ping(Session& session, const irc::Message& m);
  void version(Session& session, const irc::Message& m);
  void time_now(Session& session, const irc::Message& m);
  void info(Session& session, const irc::Message& m);
  void numeric(Session& session, std::string_view code, std::string_view rest);
  // ":server CODE target rest" with the target this connection is known by.
  std::string numeric_line(Session& session, std::string_view code, std::string_view rest) const;
  void send_line(Session& session, std::string line);
  // "nick!nick@irc": how this member appears in the lines it causes.
  std::string self_source(Session& session) const;
  // An ERROR line, then the connection closes after its flush; the rooms hear `reason`.
  void close_with_error(Session& session, const std::string& reason, reactor::CloseCode code);

  void cap(Session& session, const irc::Message& m);
  void pass(Session& session, const irc::Message& m);
  // --auth-secret: AUTHENTICATE PLAIN (IRCv3 SASL), and what PASS and SASL share.
  void authenticate(Session& session, const irc::Message& m);
  void sasl_plain(Session& session);
  // 904 (or 905) saying `why`; the third failure closes the connection (unauthorized).
  void sasl_failed(Session& session, const char* code, const std::string& why);
  // A token checked: true if it is good and, when `user` is given, for `user`; the name
  // it is for is kept until registration. Else `why` says what was wrong.
  bool accept_token(Session& session, std::string_view token, std::string_view user, std::string& why);
  // 464 and ERROR, then the close (counted: Session::refuse_unauthenticated).
  void unauthorized(Session& session, const std::string& why);
  void nick(Session& session, const irc::Message& m);
  void user(Session& session, const irc::Message& m);
  void try_register(Session& session);
  void welcome(Session& session);
  void lusers(Session& session);
  void motd(Session& session);
  void join(Session& session, const irc::Message& m);
  void part(Session& session, const irc::Message& m);
  void message(Session& session, const irc::Message& m, bool notice);
  void names(Session& session, const irc::Message& m);
  void who(Session& session, const irc::Message& m);
  void whois(Session& session, const irc::Message& m);
  void away(Session& session, const irc::Message& m);
  void ison(Session& session, const irc::Message& m);
  void userhost(Session& session, const irc::Message& m);
  void whowas(Session& session, const irc::Message& m);
  // Server operators: OPER, KILL, WALLOPS, and the user modes +o and +w (MODE nick).
  void oper(Session& session, const irc::Message& m);
  void kill(Session& session, const irc::Message& m);
  void wallops(Session& session, const irc::Message& m);
  void user_mode(Session& session, const irc::Message& m);
  // Failed OPERs a connection may make before it is closed.
  static constexpr uint8_t kMaxOperFailures = 3;
  // The member's away and operator flags, as the names registry keeps them for others to see.
  void publish_flags(Session& session);
  // PRIVMSG or NOTICE to a nick: through the names registry to its member (Hub::direct).
  void send_direct(Session& session, std::string target, const std::string& text, bool notice);
  void list(Session& session, const irc::Message& m);
  void mode(Session& session, const irc::Message& m);
  void topic(Session& session, const irc::Message& m);
  void kick(Session& session, const irc::Message& m);
  void chathistory(Session& session, const irc::Message& m);
  void fail(Session& session, std::string_view command, std::string_view code, std::string_view context,
            std::string_view text);
  void invite(Session& session, const irc::Message& m);
  // A request to the room's owner (Hub::policy) whose refusals are answered as numerics.
  void ask_owner(Session& session, const std::string& room, PolicyRequest request);
  std::string refusal(Session& session, const PolicyAnswer::Refused& refused, const std::string& room) const;
  void topic_reply(Session& session, const std::string& room, const std::string& topic, const std::string& by,
                   int64_t at, std::string& out) const;
  void quit(Session& session, const irc::Message& m);
  // A member as NAMES lists it: its prefixes and nick, and with userhost-in-names its user and host.
  std::string names_entry(Session& session, const MemberModes& modes, const std::string& name) const;
  // A member as WHO shows it (352) in channel `chan` ("*": none), its prefixes there after its flags.
  std::string who_line(Session& session, const std::string& chan, const std::string& name, const std::string& front,
                       const std::string& prefixes) const;
  void names_reply(Session& session, const std::string& room, const std::vector<std::string>& names, bool listed,
                   size_t count, std::string& out) const;
  bool pending(const std::string& room) const;

  const IrcOptions& options_;
  uint16_t caps_ = 0;
  irc::LineState line_state_;
  IrcTags tags_ = IrcTags::kNone;
  bool negotiating_ : 1 = false;  // CAP LS/REQ seen, no CAP END yet: registration waits
  bool registered_ : 1 = false;
  bool user_given_ : 1 = false;
  bool pass_ok_ : 1 = false;  // the password given (--irc-password-file), or a token (--auth-secret)
  uint8_t recent_next_ = 0;
  // What few members have for long, apart: every byte here is paid by every idle member.
  struct Rare {
    std::string nick;         // asked for before registration (the session's name after)
    std::string quit_reason;  // why it is going
    std::string away;         // its away message
    // USER's user name ('~' first: no ident server confirmed it) and real name, until registration
    // (the names registry keeps them after: ShardTable::NameHolder).
    std::string user, realname;
    // --auth-secret, until registration: the name a token was accepted for, and SASL's exchange.
    std::string account;
    std::string sasl;          // base64 chunks of AUTHENTICATE so far
    bool sasl_started = false;  // AUTHENTICATE PLAIN said, its message not yet complete
    bool sasl_done = false;     // SASL succeeded (a second AUTHENTICATE: 907)
    uint8_t sasl_failures = 0;
    uint8_t oper_failures = 0;
  };
  Rare& rare() {
    if (!rare_) rare_ = std::make_unique<Rare>();
    return *rare_;
  }
  const std::string& asked_nick() const;
  // The target of the lines sent to this connection: its name, the nick it asked for, or "*".
  std::string target(Session& session) const;
  void trim_rare() {
    if (rare_ && rare_->nick.empty() && rare_->quit_reason.empty() && rare_->away.empty() && rare_->account.empty() &&
        rare_->user.empty() && rare_->realname.empty() &&
        rare_->sasl.empty() && !rare_->sasl_started && !rare_->sasl_done && rare_->sasl_failures == 0 &&
        rare_->oper_failures == 0) {
      rare_.reset();
    }
  }
  std::unique_ptr<Rare> rare_;
  // Channels joined whose owner has not answered yet: their events are not this member's yet.
  std::vector<std::string> pending_;
  // Quits and nick changes of members seen lately: one per member however many rooms it shares
  // (the copies of one departure come close together; a duplicate that slips past is harmless).
  std::array<uint64_t, 3> recent_{};
  // Flood control: a token bucket, and when the held input is next offered again.
  [[no_unique_address]] TokenBucket<float, reactor::Clock::time_point> flood_;
  uint32_t batches_ = 0;  // batch ids given (in the bucket's tail padding)
  reactor::Clock::time_point since_;     // connected (registration timeout) or last line in
  reactor::Clock::time_point ping_sent_{};  // a PING awaits an answer (epoch: none)
  reactor::Clock::time_point retry_at_{};
};

}  // namespace chat
