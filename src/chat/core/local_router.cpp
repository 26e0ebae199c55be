#include "chat/core/router.h"

#include "chat/core/hub.h"

namespace chat {

// ---- LocalRouter ------------------------------------------------------------------------------

void LocalRouter::when_visible(Hub& owner, const std::string&, std::function<void(size_t)> ready) {
  ready(owner.shard());  // the owner delivers every message itself: a member is in as it is counted
}

void LocalRouter::route(Hub& owner, const std::string& room, Publish p) {
  ShardTable& table = owner.table();
  reactor::Reactor& here = table.reactor(owner.shard());
  RoomLog& log = owner.log(room);
  if (!p.id.empty() && log.ids) {
    if (IdWindow::Entry* seen = log.ids->find(p.user, p.id)) {
      if (!seen->same_message(p.text)) return owner.id_reused(p, room);  // another message: the client is told
      if (seen->stored) return owner.ack(p, room, seen->seq, true);  // a retry: the same answer, no copy
      // The first one is still on its way into the store: decide once it got there.
      table.store().fence(here, [this, &owner, room, p = std::move(p)]() mutable { route(owner, room, std::move(p)); });
      return;
    }
  }
  // Numbered here, delivered once kept: every number a member sees is in the store (unless the
  // store failed), so a restart never reuses one.
  StoredMessage m{
      .seq = ++log.last_seq, .ts_ms = now_ms(), .user = p.user, .text = p.text, .id = p.id, .front = p.front,
      .automatic = p.automatic};
  if (!p.id.empty()) {
    if (!log.ids) log.ids = std::make_unique<IdWindow>();
    log.ids->add(p.user, p.id, {.seq = m.seq, .ts_ms = m.ts_ms, .stored = false, .text_fp = text_fingerprint(p.text)},
                 table.retention());
  }
  table.store().append(here, room, m, [&owner, room, m, p = std::move(p)](bool stored) {
    owner.deliver_message(room, m);  // live chat goes on when the store fails
    if (p.id.empty()) return;
    IdWindow& ids = *owner.log(room).ids;
    if (IdWindow::Entry* e = ids.find(p.user, p.id); e && e->seq == m.seq && stored) {
      e->stored = true;
    } else if (!stored) {
      ids.forget(p.user, p.id);  // nothing is acknowledged that was not stored: a retry may be
    }
    owner.ack(p, room, m.seq, stored);
  });
}

}  // namespace chat
