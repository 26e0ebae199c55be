// Reactor Chat in the browser: the native dialect of docs/PROTOCOL.md, one JSON object per
// WebSocket text frame. Everything a peer sends is put on the page with textContent, never parsed
// as HTML, so a message can only ever show its characters.
//
// History and recovery (docs/PROTOCOL.md, "History, recovery, ids and acks"): the page remembers
// each room's epoch and the last seq it has, and joins again after a reconnect with since/epoch, so
// what was said meanwhile is replayed; when it cannot be, the room says so and shows the latest
// from history. Every message goes out with an id of the page's own; it shows as sending until the
// server's copy comes back, carries a check once the server acknowledged it as stored, and is sent
// again with the same id after a reconnect until it is (the server knows the id and answers with
// the same ack). A message the server refuses (any error naming its id, or a close for a message
// too long) shows as not sent, with a notice in plain words and a way to send it again. Scrolling
// to the top of a room asks for the messages before the oldest shown.
'use strict';

(function () {
  const FIRST_ROOM = 'lobby';
  const PING_EVERY_MS = 20000;
  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const KEEP_MESSAGES = 500;           // per room: what the page holds, so a long day stays light
  const RETAKE_NAME_TRIES = 4;         // after a reconnect, how often a name_taken is retried
  const OPEN_TIMEOUT_MS = 10000;       // a connection attempt nobody answers is given up then
  const HISTORY_PAGE = 50;             // messages asked per history request (the server allows 100)
  const NEAR_TOP_PX = 48;              // scrolled this close to the top, the earlier ones are asked

  const $ = (id) => document.getElementById(id);
  const ui = {
    body: document.body,
    connText: $('conn-text'), retryNow: $('retry-now'),
    me: $('me'), meName: $('me-name'),
    login: $('login'), loginForm: $('login-form'), nameInput: $('name-input'),
    loginError: $('login-error'), loginButton: $('login-button'),
    chat: $('chat'), roomList: $('room-list'),
    joinForm: $('join-form'), joinInput: $('join-input'), joinError: $('join-error'),
    roomTitle: $('room-title'), leaveButton: $('leave-button'),
    membersToggle: $('members-toggle'), memberCountShort: $('member-count-short'),
    notice: $('notice'), messages: $('messages'), emptyRoom: $('empty-room'),
    composer: $('composer'), messageInput: $('message-input'), sendButton: $('send-button'),
    members: $('members'), memberCount: $('member-count'), memberList: $('member-list'),
  };

  // ---- state -------------------------------------------------------------------------------
  const state = {
    ws: null,
    online: false,          // the socket is open
    user: null,             // the name the server welcomed, kept across reconnects
    helloPending: null,     // the name of a hello not answered yet
    retakeTries: 0,
    attempt: 0,             // failed connection attempts in a row, for the backoff
    reconnectTimer: null,
    reconnectAt: 0,
    countdownTimer: null,
    pingTimer: null,
    pongOwed: false,
    refused: false,         // the server refused our token: no reconnecting (it would refuse again)
    rooms: new Map(),       // name -> room state, see roomState()
    order: [],              // room names in join order
    current: null,
    pendingJoins: new Set(),
    outbox: new Map(),      // id -> own message entry not acknowledged yet (or refused, shown as not sent)
  };

  // Message ids: a random prefix per page load and a counter, so two tabs of one user (or this
  // page loaded again) never reuse an id the server still remembers for that user and room.
  const idPrefix = (() => {
    const bytes = new Uint8Array(6);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(36).padStart(2, '0')).join('');
  })();
  let idCounter = 0;
  function nextId() {
    idCounter += 1;
    return idPrefix + '-' + idCounter;
  }

  // A server with --auth-secret wants a token in every hello: the page's address carries it as
  // #token=... (a fragment never leaves the browser in a request, so no server log holds it). The
  // name it is for (its "sub") is the name the page signs in with.
  const token = (() => {
    const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    return m ? decodeURIComponent(m[1]) : null;
  })();
  function tokenUser(t) {
    try {
      const sub = JSON.parse(atob(t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))).sub;
      return typeof sub === 'string' ? sub : null;
    } catch (e) {
      return null;              // not a token the page can read: the server will say so
    }
  }

  function wsUrl() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return scheme + '//' + location.host + '/ws';
  }

  function send(obj) {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return false;
    state.ws.send(JSON.stringify(obj));
    return true;
  }

  // ---- connection --------------------------------------------------------------------------
  function connect() {
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    clearInterval(state.countdownTimer);
    // Until a connection is back, the page says it is offline, between attempts and during them.
    if (state.attempt > 0) setConn('offline', 'Offline, reconnecting…');
    else setConn('connecting');
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (e) {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    const openTimer = setTimeout(() => drop(ws), OPEN_TIMEOUT_MS);
    ws.onopen = () => {
      clearTimeout(openTimer);
      if (state.ws !== ws) return;
      state.online = true;
      state.pongOwed = false;
      state.pingTimer = setInterval(keepAlive, PING_EVERY_MS);
      if (state.user) {
        // A reconnect: greet with the same name; the rooms are joined again on welcome.
        setConn('connecting', 'Signing in again as ' + state.user + '…');
        sayHello(state.user);
      } else {
        setConn('online');
        if (state.helloPending) sayHello(state.helloPending);
      }
      updateControls();
    };
    ws.onmessage = (ev) => {
      if (state.ws !== ws || typeof ev.data !== 'string') return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (e) {
        return;                 // not ours to show; the server speaks JSON only
      }
      if (msg && typeof msg === 'object') handle(msg);
    };
    ws.onclose = (ev) => {
      clearTimeout(openTimer);
      if (ev.code === 1009 && state.ws === ws) refuseLargest();
      lost(ws);
    };
    // onerror is always followed by onclose, which does the work.
  }

  // Gives a connection up at once, without waiting for a close handshake a dead link never ends.
  function drop(ws) {
    ws.close();
    lost(ws);
  }

  function lost(ws) {
    if (state.ws !== ws) return;
    state.ws = null;
    state.online = false;
    clearInterval(state.pingTimer);
    for (const room of state.rooms.values()) {
      room.joined = false;
      room.history = null;        // a request in flight died with the connection
    }
    state.pendingJoins.clear();
    if (state.user) state.helloPending = null;
    if (state.refused) {
      setConn('offline', 'Not signed in');
      ui.retryNow.hidden = true;
    } else {
      scheduleReconnect();
    }
    updateControls();
    renderRooms();
    renderRoom({ keepScroll: true });
  }

  // The server closes the connection (1009) on a message longer than it takes, without an error
  // naming it. The longest of our messages it has not taken is at least as long as that one, so it
  // is too long as well: it shows as not sent, and is not sent again by itself after the reconnect
  // (were there two, the next close would take the next).
  function refuseLargest() {
    let largest = null;
    for (const entry of state.outbox.values()) {
      if (entry.state === 'sending' && (!largest || byteLength(entry.text) > byteLength(largest.text))) largest = entry;
    }
    if (largest) refuseSending(largest.id, 'too_long');
  }

  function byteLength(text) {
    return new TextEncoder().encode(text).length;
  }

  function keepAlive() {
    if (state.pongOwed && state.ws) {
      // The last ping went unanswered for a whole period: the link is dead without a close
      // (a sleeping laptop, a dropped NAT entry). Start again rather than wait for TCP.
      drop(state.ws);
      return;
    }
    if (send({ type: 'ping' })) state.pongOwed = true;
  }

  function scheduleReconnect() {
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * Math.pow(2, state.attempt));
    // Jitter, so a room full of pages does not knock on a restarted server all at once.
    const wait = Math.round(delay * (0.75 + Math.random() * 0.5));
    state.attempt += 1;
    state.reconnectAt = Date.now() + wait;
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = setTimeout(connect, wait);
    showCountdown();
    clearInterval(state.countdownTimer);
    state.countdownTimer = setInterval(showCountdown, 1000);
  }

  function showCountdown() {
    const seconds = Math.max(0, Math.ceil((state.reconnectAt - Date.now()) / 1000));
    setConn('offline', seconds > 0 ? 'Offline, reconnecting in ' + seconds + ' s' : 'Offline, reconnecting…');
  }

  function reconnectNow() {
    if (state.ws || state.refused) return;
    state.attempt = 0;
    connect();
  }

  function setConn(kind, text) {
    ui.body.dataset.conn = kind;
    ui.connText.textContent = text || { online: 'Online', connecting: 'Connecting…', offline: 'Offline' }[kind];
    ui.retryNow.hidden = kind !== 'offline';
  }

  // ---- the server's messages ---------------------------------------------------------------
  function handle(msg) {
    switch (msg.type) {
      case 'welcome': return onWelcome(msg);
      case 'joined': return onJoined(msg);
      case 'left': return onLeft(msg);
      case 'message': return onMessage(msg);
      case 'ack': return onAck(msg);
      case 'history': return onHistory(msg);
      case 'join': return onPresence(msg, true);
      case 'leave': return onPresence(msg, false);
      case 'topic': return onTopic(msg);
      case 'error': return onError(msg);
      case 'pong': state.pongOwed = false; return;
      // The server is going away (a drain, a stop): leave now and come back after the jittered
      // backoff, rejoining every room from the last message we have.
      case 'reconnect': if (state.ws) drop(state.ws); return;
      default: return;          // rooms replies and anything newer: nothing to show
    }
  }

  function sayHello(name) {
    state.helloPending = name;
    send(token ? { type: 'hello', user: name, token } : { type: 'hello', user: name });
  }

  function onWelcome(msg) {
    const name = String(msg.user);
    state.user = name;
    state.helloPending = null;
    state.attempt = 0;
    state.retakeTries = 0;
    setConn('online');
    try { localStorage.setItem('reactor-chat-name', name); } catch (e) { /* private mode */ }
    ui.meName.textContent = name;
    ui.me.hidden = false;
    ui.loginError.textContent = '';
    ui.body.dataset.view = 'chat';
    ui.login.hidden = true;
    ui.chat.hidden = false;

    if (state.order.length) {
      // Back after a reconnect (or under a new name after ours was kept from us): the same rooms.
      for (const room of state.order) join(room);
    } else {
      join(FIRST_ROOM, true);
      ui.messageInput.focus();
    }
    updateControls();
  }

  function join(name, show) {
    if (state.pendingJoins.has(name)) return;
    const room = state.rooms.get(name);
    const request = { type: 'join', room: name };
    // Back in a room we were in: ask for what we missed, counted from the last seq we have.
    const recover = !!(room && room.everJoined && room.epoch !== null);
    if (recover) {
      request.since = room.lastSeq;
      request.epoch = room.epoch;
    }
    if (send(request)) {
      state.pendingJoins.add(name);
      if (room) room.askedRecovery = recover;
      if (show) state.showOnJoin = name;
    }
  }

  function roomState(name) {
    let room = state.rooms.get(name);
    if (!room) {
      room = {
        name, joined: false, everJoined: false, count: 0, members: null, unread: 0,
        entries: [],        // what the log shows, in order: messages (by seq), system lines
        pending: [],        // own messages with no seq yet, shown after the entries
        epoch: null,        // the numbering the seqs belong to (null: the server has no history)
        lastSeq: 0,         // everything up to here was received (or is known to be missed)
        seen: new Set(),    // epoch + seq of every message shown: nothing is shown twice
        ids: new Set(),     // user + id of every message shown that had an id
        history: null,      // the history request in flight: {kind, limit, epoch}
        reachedStart: false, // no message before the oldest shown
        askedRecovery: false,
      };
      state.rooms.set(name, room);
      state.order.push(name);
    }
    return room;
  }

  function onJoined(msg) {
    const name = String(msg.room);
    const room = roomState(name);
    const rejoined = room.everJoined;
    state.pendingJoins.delete(name);
    room.joined = true;
    room.everJoined = true;
    room.count = Number(msg.count) || 0;
    room.members = Array.isArray(msg.members) ? new Set(msg.members.map(String)) : null;
    if (typeof msg.topic === 'string' && msg.topic !== room.topic) {
      room.topic = msg.topic;
      addSystemLine(room, 'Topic: ' + room.topic);
    }
    const epoch = typeof msg.epoch === 'string' ? msg.epoch : null;
    const last = Number.isSafeInteger(msg.seq) && msg.seq >= 0 ? msg.seq : 0;
    if (!rejoined || epoch === null) {
      if (rejoined) addSystemLine(room, 'Reconnected. Messages sent while you were away are not shown.');
      adoptEpoch(room, epoch);
      room.lastSeq = Math.max(room.lastSeq, last);
      if (epoch !== null) {
        // A room entered afresh shows its latest messages at once; older ones come on scrolling up.
        if (last > 0) requestHistory(room, last + 1, 'top');
        else room.reachedStart = true;
      }
    } else if (room.askedRecovery && msg.recovered === true) {
      // The missed messages follow this line, replayed in order, then the live ones.
      const missed = last - room.lastSeq;
      if (missed > 0) {
        addSystemLine(room, 'Reconnected: ' + missed + (missed === 1 ? ' message' : ' messages') +
          ' sent while you were away follow.');
      }
    } else {
      // A gap: too much was missed, or the server lost the history behind our numbering (a new
      // epoch). The line marks where it is; the latest messages before now are fetched below it.
      const newEpoch = room.epoch !== epoch;
      const text = newEpoch
        ? 'The server lost this room\u2019s history while you were away: earlier messages may be missing.'
        : 'Some messages were missed while you were away.';
      addSystemLine(room, text, 'gap');
      noticeFor(room, text);
      const olderShown = !newEpoch && oldestSeq(room) !== null;
      if (newEpoch) adoptEpoch(room, epoch);
      room.lastSeq = last;
      if (last > 0) requestHistory(room, last + 1, olderShown ? 'gap' : 'top');
      else room.reachedStart = true;
    }
    if (rejoined) resendUnacknowledged(room);
    if (state.showOnJoin === name || !state.current) {
      state.showOnJoin = null;
      showRoom(name);
    } else {
      renderRooms();
      if (state.current === name) renderRoom({ keepScroll: true });
    }
  }

  // The room's numbering is (now) this epoch. Messages shown under another numbering stay on the
  // page but are no longer compared with the new seqs; those that came before any joined (a
  // message may come just before its room's joined) take this epoch.
  function adoptEpoch(room, epoch) {
    if (room.epoch === epoch) return;
    room.epoch = epoch;
    room.seen.clear();
    room.ids.clear();
    room.reachedStart = false;
    for (const entry of room.entries) {
      if (entry.kind !== 'message') continue;
      if (entry.epoch === null && entry.seq !== null) entry.epoch = epoch;
      if (entry.epoch === epoch) remember(room, entry);
    }
  }

  // Own messages the server has not acknowledged, sent again with their ids after a rejoin: one
  // the server stored already is answered with the same ack and is not delivered again.
  function resendUnacknowledged(room) {
    for (const entry of state.outbox.values()) {
      if (entry.room === room.name && entry.state !== 'failed') {
        send({ type: 'message', room: room.name, text: entry.text, id: entry.id });
      }
    }
  }

  function onLeft(msg) {
    const name = String(msg.room);
    state.rooms.delete(name);
    state.order = state.order.filter((r) => r !== name);
    for (const [id, entry] of state.outbox) if (entry.room === name) state.outbox.delete(id);
    if (state.current === name) {
      state.current = null;
      showRoom(state.order[0] || null);
    } else {
      renderRooms();
    }
  }

  function onPresence(msg, entered) {
    const room = state.rooms.get(String(msg.room));
    if (!room) return;
    const user = String(msg.user);
    if (!entered && user === state.user) {
      // An operator (on IRC) removed us: the server no longer counts us in the room.
      onLeft(msg);
      showNotice('You were removed from #' + room.name + (msg.by !== undefined ? ' by ' + String(msg.by) : '') +
        (msg.reason ? ': ' + String(msg.reason) : '.'));
      return;
    }
    if (room.members) {
      if (entered) room.members.add(user); else room.members.delete(user);
    }
    room.count = Math.max(0, room.count + (entered ? 1 : -1));
    addSystemLine(room, user + (entered ? ' joined' : ' left'));
    if (room.name === state.current) renderMembers();
  }

  function onTopic(msg) {
    const room = state.rooms.get(String(msg.room));
    if (!room) return;
    room.topic = String(msg.topic);
    addSystemLine(room, String(msg.user) + ' set the topic: ' + room.topic);
    if (room.name === state.current) ui.roomTitle.title = room.topic;
  }

  function messageEntry(room, msg) {
    const user = String(msg.user);
    return {
      kind: 'message',
      user,
      text: typeof msg.text === 'string' ? msg.text : String(msg.text),
      ts: Number(msg.ts) || Date.now(),
      seq: Number.isSafeInteger(msg.seq) ? msg.seq : null,
      epoch: room.epoch,
      id: typeof msg.id === 'string' ? msg.id : null,
      mine: user === state.user,
      state: null,
    };
  }

  function onMessage(msg) {
    const name = String(msg.room);
    // A message of a room may come just before the joined of that room (docs/PROTOCOL.md).
    const room = state.rooms.get(name) || (state.pendingJoins.has(name) ? roomState(name) : null);
    if (!room) return;
    const entry = messageEntry(room, msg);
    if (entry.seq !== null && entry.seq > room.lastSeq) room.lastSeq = entry.seq;
    const own = entry.mine && entry.id !== null ? state.outbox.get(entry.id) : null;
    if (own && own.room === name) {
      // Our own message came back: it has its place (seq) and the server's time now.
      own.ts = entry.ts;
      if (own.state === 'sending') own.state = 'sent';
      settle(room, own, entry.seq);
      return;
    }
    if (!remember(room, entry)) return;
    const at = place(room, entry);
    trim(room);
    if (room.name === state.current) {
      if (at === room.entries.length - 1) appendEntry(entry);
      else renderRoom({ keepScroll: true });
    }
    const visible = room.name === state.current && !document.hidden;
    if (!visible && !entry.mine) {
      room.unread += 1;
      renderRooms();
      updateTitle();
    }
  }

  function onAck(msg) {
    const entry = state.outbox.get(String(msg.id));
    const room = entry && state.rooms.get(entry.room);
    if (!room || String(msg.room) !== room.name) return;
    state.outbox.delete(entry.id);
    entry.state = 'saved';
    // An ack may be all that comes back for a message whose copy we missed (it was delivered
    // while we were away and could not be replayed): the ack's seq gives it its place.
    settle(room, entry, Number.isSafeInteger(msg.seq) ? msg.seq : null);
  }

  // An own message learned its seq (from its copy or its ack): from the pending tail it moves to
  // its place among the room's messages. Without a seq it only shows its new state.
  function settle(room, entry, seq) {
    const wasPending = room.pending.indexOf(entry);
    if (seq === null || wasPending < 0) {
      if (wasPending < 0 && entry.seq === null && seq !== null) entry.seq = seq;
      updateEntry(entry);
      return;
    }
    room.pending.splice(wasPending, 1);
    entry.seq = seq;
    entry.epoch = room.epoch;
    if (!remember(room, entry)) {
      // Shown already (a copy without our outbox's knowledge): the pending one goes.
      if (entry.el) entry.el.remove();
      return;
    }
    const at = place(room, entry);
    if (room.name !== state.current) return;
    // The usual case, the first pending message taking the last place, moves nothing on screen.
    if (wasPending === 0 && at === room.entries.length - 1) updateEntry(entry);
    else renderRoom({ keepScroll: true });
  }

  // Records a message as shown; false when it was shown already (same seq, or same sender and id).
  function remember(room, entry) {
    const seqKey = entry.seq !== null && entry.epoch !== null ? entry.epoch + ' ' + entry.seq : null;
    const idKey = entry.id !== null ? entry.user + ' ' + entry.id : null;
    if ((seqKey && room.seen.has(seqKey)) || (idKey && room.ids.has(idKey))) return false;
    if (seqKey) room.seen.add(seqKey);
    if (idKey) room.ids.add(idKey);
    return true;
  }

  function forget(room, entry) {
    if (entry.kind !== 'message' || entry.epoch !== room.epoch) return;
    if (entry.seq !== null) room.seen.delete(entry.epoch + ' ' + entry.seq);
    if (entry.id !== null) room.ids.delete(entry.user + ' ' + entry.id);
  }

  // Puts a message in seq order among those of its epoch (live ones land at the end at once);
  // returns its index.
  function place(room, entry) {
    const list = room.entries;
    let at = list.length;
    if (entry.seq !== null) {
      for (let i = list.length - 1; i >= 0; i--) {
        const other = list[i];
        if (other.kind !== 'message' || other.seq === null || other.epoch !== entry.epoch) continue;
        if (other.seq < entry.seq) break;
        at = i;
      }
    }
    list.splice(at, 0, entry);
    return at;
  }

  function oldestSeq(room) {
    for (const entry of room.entries) {
      if (entry.kind === 'message' && entry.seq !== null && entry.epoch === room.epoch) return entry.seq;
    }
    return null;
  }

  // A long day stays light: past KEEP_MESSAGES the oldest lines go, unless the person is reading
  // back through them (scrolled up in this room); they can be fetched again from history.
  function trim(room) {
    const excess = room.entries.length - KEEP_MESSAGES;
    if (excess <= 0) return;
    if (room.name === state.current && !atBottom()) return;
    const gone = room.entries.splice(0, excess);
    for (const entry of gone) {
      forget(room, entry);
      if (entry.el) entry.el.remove();
      if (entry.kind === 'message') room.reachedStart = false;
    }
    if (room.name === state.current) renderEdge(room);
  }

  // ---- scrollback ------------------------------------------------------------------------------
  function requestHistory(room, before, kind) {
    if (room.history || !room.joined || room.epoch === null) return;
    const request = { type: 'history', room: room.name, limit: HISTORY_PAGE };
    if (before !== null) request.before = before;
    if (!send(request)) return;
    room.history = { kind, limit: HISTORY_PAGE, epoch: room.epoch };
    if (room.name === state.current) renderEdge(room);
  }

  function loadEarlier(room) {
    if (!room || room.reachedStart || room.history) return;
    const oldest = oldestSeq(room);
    if (oldest === 1) {
      room.reachedStart = true;
      renderEdge(room);
      return;
    }
    requestHistory(room, oldest !== null ? oldest : room.lastSeq + 1, 'top');
  }

  function onHistory(msg) {
    const room = state.rooms.get(String(msg.room));
    if (!room || !room.history) return;
    const asked = room.history;
    room.history = null;
    const messages = Array.isArray(msg.messages) ? msg.messages : [];
    if (msg.epoch !== room.epoch || asked.epoch !== room.epoch) {
      if (room.name === state.current) renderEdge(room);
      return;                   // numbered in a history we no longer follow
    }
    for (const m of messages) {
      if (!m || typeof m !== 'object') continue;
      const entry = messageEntry(room, m);
      if (entry.seq === null) continue;
      const own = entry.mine && entry.id !== null ? state.outbox.get(entry.id) : null;
      if (own && own.room === room.name) {
        if (own.state === 'sending') own.state = 'sent';
        settle(room, own, entry.seq);
        continue;
      }
      if (remember(room, entry)) place(room, entry);
    }
    // Fewer than asked: nothing older is kept, unless the server cut the answer short at its byte
    // cap ("more"). (A request that filled a gap says nothing about the start: older messages are
    // shown above the gap.)
    if (asked.kind === 'top' && messages.length < asked.limit && msg.more !== true) room.reachedStart = true;
    if (oldestSeq(room) === 1) room.reachedStart = true;
    if (room.name === state.current) renderRoom({ keepScroll: true });
  }

  function onError(msg) {
    const code = String(msg.code || 'error');
    const text = String(msg.message || code);
    if (code === 'unauthorized') {
      // The server closes the connection after this: say why, once, and stay put.
      state.refused = true;
      state.user = null;
      state.helloPending = null;
      showLogin(token
        ? 'This link could not sign you in (' + text + '). Ask for a new one.'
        : 'This server admits only signed-in users (' + text + '). Open the link your site gave you.');
      updateControls();
      return;
    }
    if ((code === 'name_taken' || code === 'bad_name') && state.helloPending) {
      const name = state.helloPending;
      state.helloPending = null;
      if (state.user && code === 'name_taken' && state.retakeTries < RETAKE_NAME_TRIES) {
        // After a reconnect the server may not yet have noticed that our old connection is gone
        // (it was cut without a close): try the name again after a backoff.
        state.retakeTries += 1;
        if (state.ws) drop(state.ws);
        return;
      }
      state.user = null;
      showLogin(code === 'name_taken'
        ? 'The name “' + name + '” is taken by someone else. Please choose another.'
        : '“' + name + '” is not a valid name: use 1 to 32 letters, digits, _ . or -.');
      return;
    }
    if (code === 'bad_room' || code === 'too_many_rooms' || code === 'already_member') {
      state.pendingJoins.clear();
      ui.joinError.textContent = code === 'bad_room'
        ? 'That is not a valid room name: 1 to 64 letters, digits, _ . # or -.'
        : code === 'too_many_rooms' ? 'You are in as many rooms as the server allows. Leave one first.'
          : 'You are already in that room.';
      return;
    }
    if (code === 'join_refused') {
      const name = String(msg.room);
      state.pendingJoins.delete(name);
      if (state.showOnJoin === name) state.showOnJoin = null;
      ui.joinError.textContent = 'You cannot join #' + name + ': ' + text + '.';
      return;
    }
    if (msg.id !== undefined && refuseSending(String(msg.id), code)) return;
    const room = msg.room !== undefined && state.rooms.get(String(msg.room));
    if (room && room.history && (code === 'unavailable' || code === 'not_member' || code === 'bad_request' ||
                                 code === 'rate_limited')) {
      room.history = null;
      if (room.name === state.current) renderEdge(room);
      noticeFor(room, code === 'rate_limited'
        ? 'Many earlier messages were loaded just now; wait a moment, then scroll up again.'
        : 'Earlier messages cannot be loaded right now.');
      return;
    }
    if (room) noticeFor(room, inPlainWords(code, room, null));
    else showNotice(inPlainWords(code, null, null));
  }

  // An error about one of our messages (it names its id): whatever the reason, the message shows
  // as not sent, with a way to send it again, and the notice says why in plain words. It stays in
  // the outbox (a retry's ack must find it) but is not sent again by itself. False when the id is
  // not one of ours waiting.
  function refuseSending(id, code) {
    const entry = state.outbox.get(id);
    if (!entry || entry.state === 'saved') return false;
    entry.state = 'failed';
    entry.reason = code;
    updateEntry(entry);
    const room = state.rooms.get(entry.room);
    if (room) noticeFor(room, inPlainWords(code, room, entry));
    else showNotice(inPlainWords(code, null, entry));
    return true;
  }

  // What an error means to the person, in their words: never a code or a server flag (the
  // server's own message may name its flags).
  function inPlainWords(code, room, entry) {
    const where = room ? '#' + room.name : 'that room';
    const mine = entry ? 'this message was not sent' : 'a message was not sent';
    switch (code) {
      case 'rate_limited':
        return 'You are sending too fast; ' + mine + '. Wait a moment, then send it again.';
      case 'not_allowed':
        return 'The room is moderated: only its operators and voiced members speak; ' + mine + '.';
      case 'not_stored':
        return 'A message could not be saved on the server. You can send it again.';
      case 'not_member':
        return 'You are not in ' + where + ' any more' + (entry ? '; this message was not sent.' : '.');
      case 'too_long':
        return (entry ? 'This message is' : 'A message was') + ' too long to send; shorten it and send it again.';
      case 'unavailable':
        return 'The server cannot read this room\u2019s history right now.';
      case 'bad_request': case 'bad_json': case 'bad_utf8': case 'unknown_type':
        return entry ? 'The server could not read this message; it was not sent.'
          : 'The server could not understand a request from this page. Reloading the page may help.';
      default:
        return entry ? 'The server refused this message; it was not sent. You can send it again.'
          : 'The server refused a request from this page.';
    }
  }

  // ---- what the person does ----------------------------------------------------------------
  ui.loginForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = ui.nameInput.value.trim();
    ui.loginError.textContent = '';
    if (!name) {
      ui.loginError.textContent = 'Please enter a name.';
      ui.nameInput.focus();
      return;
    }
    if (state.online) {
      sayHello(name);
    } else {
      state.helloPending = name;
      ui.loginError.textContent = 'Not connected yet; you will enter as soon as the server answers.';
    }
  });

  ui.joinForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = ui.joinInput.value.trim().replace(/^#(?=[^#])/, '');
    ui.joinError.textContent = '';
    if (!name) return;
    if (state.rooms.has(name) && state.rooms.get(name).joined) {
      showRoom(name);
      ui.joinInput.value = '';
      return;
    }
    join(name, true);
    ui.joinInput.value = '';
  });

  ui.composer.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = wellFormed(ui.messageInput.value);
    const room = state.current && state.rooms.get(state.current);
    if (!text.trim() || !room || !room.joined) return;
    if (room.epoch === null) {
      // A server without history (its joined had no epoch) knows no ids and sends no acks.
      if (send({ type: 'message', room: room.name, text })) ui.messageInput.value = '';
      ui.messageInput.focus();
      return;
    }
    const id = nextId();
    if (send({ type: 'message', room: room.name, text, id })) {
      ui.messageInput.value = '';
      const entry = {
        kind: 'message', user: state.user, text, ts: Date.now(), seq: null, epoch: null, id,
        mine: true, state: 'sending', room: room.name,
      };
      state.outbox.set(id, entry);
      room.pending.push(entry);
      appendEntry(entry);
    }
    ui.messageInput.focus();
  });

  // Half of a surrogate pair (a broken emoji pasted in) is no character: JSON.stringify writes it
  // as an escape that is no UTF-8, and the server refuses the whole line as bad JSON without saying
  // which message it was. It goes as U+FFFD, as a browser shows it.
  function wellFormed(text) {
    return text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
  }

  function retry(entry) {
    if (entry.state !== 'failed' || !state.outbox.has(entry.id)) return;
    entry.state = entry.seq === null ? 'sending' : 'sent';
    entry.reason = null;
    updateEntry(entry);
    // Offline, it goes with the others when the room is joined again.
    const room = state.rooms.get(entry.room);
    if (room && room.joined) send({ type: 'message', room: entry.room, text: entry.text, id: entry.id });
  }

  ui.messages.addEventListener('scroll', () => {
    if (ui.messages.scrollTop > NEAR_TOP_PX) return;
    const room = state.current && state.rooms.get(state.current);
    // Only when there is something to scroll: a short room shows its "load earlier" button.
    if (room && ui.messages.scrollHeight > ui.messages.clientHeight) loadEarlier(room);
  }, { passive: true });

  ui.leaveButton.addEventListener('click', () => {
    if (state.current) send({ type: 'leave', room: state.current });
  });

  function setMembersOpen(open) {
    if (open) {
      // On a narrow screen the list drops down just under the room's header, wherever that is.
      const head = ui.roomTitle.parentElement;
      const chatTop = ui.chat.getBoundingClientRect().top;
      const top = head.getBoundingClientRect().bottom - chatTop + 6;
      ui.members.style.setProperty('--members-top', top + 'px');
    }
    ui.body.dataset.members = open ? 'open' : 'closed';
    ui.membersToggle.setAttribute('aria-expanded', String(open));
  }

  ui.membersToggle.addEventListener('click', () => setMembersOpen(ui.body.dataset.members !== 'open'));

  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && ui.body.dataset.members === 'open') {
      setMembersOpen(false);
      ui.membersToggle.focus();
    }
  });

  document.querySelector('.skip-link').addEventListener('click', (ev) => {
    ev.preventDefault();
    ui.messageInput.focus();
  });

  ui.retryNow.addEventListener('click', reconnectNow);
  window.addEventListener('online', reconnectNow);

  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && state.current) markRead(state.rooms.get(state.current));
  });

  ui.messages.addEventListener('keydown', (ev) => {
    // Typing while the log has focus goes to the message box.
    if (ev.key.length === 1 && !ev.ctrlKey && !ev.metaKey && !ev.altKey) ui.messageInput.focus();
  });

  // ---- rendering ---------------------------------------------------------------------------
  function showLogin(error) {
    ui.body.dataset.view = 'login';
    ui.chat.hidden = true;
    ui.login.hidden = false;
    ui.me.hidden = true;
    ui.loginError.textContent = error || '';
    ui.nameInput.focus();
    ui.nameInput.select();
  }

  function showRoom(name) {
    state.current = name;
    const room = name && state.rooms.get(name);
    if (room) markRead(room);
    renderRooms();
    renderRoom();
  }

  function markRead(room) {
    if (!room || !room.unread) return;
    room.unread = 0;
    renderRooms();
    updateTitle();
  }

  function updateTitle() {
    let unread = 0;
    for (const room of state.rooms.values()) unread += room.unread;
    document.title = (unread ? '(' + unread + ') ' : '') + 'Reactor Chat';
  }

  function renderRooms() {
    const focusedRoom = document.activeElement && document.activeElement.dataset
      ? document.activeElement.dataset.room : undefined;
    ui.roomList.replaceChildren();
    for (const name of state.order) {
      const room = state.rooms.get(name);
      const li = document.createElement('li');
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'room-button';
      button.dataset.room = name;
      if (name === state.current) button.setAttribute('aria-current', 'true');
      if (!room.joined) button.classList.add('stale');
      const label = document.createElement('span');
      label.className = 'room-name';
      label.textContent = '#' + name;
      button.append(label);
      if (room.unread) {
        const badge = document.createElement('span');
        badge.className = 'unread';
        badge.textContent = room.unread > 99 ? '99+' : String(room.unread);
        const hidden = document.createElement('span');
        hidden.className = 'visually-hidden';
        hidden.textContent = ' unread';
        badge.append(hidden);
        button.append(badge);
      }
      button.addEventListener('click', () => showRoom(name));
      li.append(button);
      ui.roomList.append(li);
      if (focusedRoom === name) button.focus();
    }
  }

  // Rebuilds the log of the room shown. With keepScroll (the same room, redrawn because lines
  // came in above or between), what the person was looking at stays where it was on screen, and
  // a log scrolled to the bottom stays at the bottom.
  let renderedRoom = null;
  function renderRoom(options) {
    const room = state.current && state.rooms.get(state.current);
    const log = ui.messages;
    const keep = !!(options && options.keepScroll) && !!room && renderedRoom === room.name;
    const stick = !keep || atBottom();
    const anchor = keep && !stick ? firstVisibleEntry(room) : null;
    const anchorTop = anchor ? anchor.el.getBoundingClientRect().top : 0;
    // A screen reader should not read a whole room's history out as new when the room changes.
    log.setAttribute('aria-busy', 'true');
    log.replaceChildren();
    ui.emptyRoom.hidden = !!room;
    log.hidden = !room;
    ui.leaveButton.hidden = !room;
    ui.membersToggle.hidden = !room;
    ui.roomTitle.textContent = room ? '#' + room.name : 'No room';
    ui.roomTitle.title = room && room.topic ? room.topic : '';
    renderedRoom = room ? room.name : null;
    if (room) {
      ui.leaveButton.setAttribute('aria-label', 'Leave #' + room.name);
      const edge = document.createElement('li');
      edge.className = 'history-edge';
      log.append(edge);
      renderEdge(room);
      for (const entry of room.entries) log.append(buildEntry(entry));
      for (const entry of room.pending) log.append(buildEntry(entry));
      if (anchor && anchor.el) log.scrollTop += anchor.el.getBoundingClientRect().top - anchorTop;
      else if (stick) log.scrollTop = log.scrollHeight;
    }
    log.removeAttribute('aria-busy');
    renderMembers();
    updateControls();
  }

  function firstVisibleEntry(room) {
    const top = ui.messages.getBoundingClientRect().top;
    for (const list of [room.entries, room.pending]) {
      for (const entry of list) {
        if (entry.el && entry.el.isConnected && entry.el.getBoundingClientRect().bottom > top) return entry;
      }
    }
    return null;
  }

  function atBottom() {
    const log = ui.messages;
    return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  }

  // The top of the log: a way to earlier messages, a sign they are coming, or their start.
  function renderEdge(room) {
    const edge = ui.messages.querySelector('.history-edge');
    if (!edge || renderedRoom !== room.name) return;
    edge.replaceChildren();
    edge.hidden = room.epoch === null;     // a server without history: nothing to offer
    if (room.history) {
      edge.textContent = 'Loading earlier messages…';
    } else if (room.reachedStart) {
      edge.textContent = 'This is the start of #' + room.name + '.';
    } else {
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'link-button load-earlier';
      button.textContent = 'Load earlier messages';
      button.addEventListener('click', () => loadEarlier(room));
      edge.append(button);
    }
  }

  function renderMembers() {
    const room = state.current && state.rooms.get(state.current);
    ui.memberList.replaceChildren();
    if (!room) {
      ui.memberCount.textContent = '';
      ui.memberCountShort.textContent = '';
      return;
    }
    const count = room.count;
    const people = count === 1 ? '1 person' : count + ' people';
    ui.memberCountShort.textContent = people;
    ui.membersToggle.setAttribute('aria-label', people + ' in this room: show or hide the list');
    if (!room.members) {
      ui.memberCount.textContent = people + ' when you joined. This room is too big to list who is here.';
      return;
    }
    const names = Array.from(room.members).sort((a, b) => a.localeCompare(b));
    ui.memberCount.textContent = people;
    for (const name of names) {
      const li = document.createElement('li');
      li.textContent = name;
      if (name === state.user) {
        li.classList.add('self');
        const you = document.createElement('span');
        you.className = 'you';
        you.textContent = ' (you)';
        li.append(you);
      }
      ui.memberList.append(li);
    }
    const others = count - names.length;
    if (others > 0) {
      const li = document.createElement('li');
      li.className = 'others';
      li.textContent = 'and ' + others + ' on other clients';
      ui.memberList.append(li);
    }
  }

  function updateControls() {
    const canTalk = state.online && !!state.user && !!state.current &&
      !!(state.rooms.get(state.current) || {}).joined;
    ui.sendButton.disabled = !canTalk;
    ui.messageInput.setAttribute('aria-disabled', String(!canTalk));
    ui.loginButton.disabled = state.refused;
    ui.joinForm.querySelector('button').disabled = !state.online;
    ui.leaveButton.disabled = !state.online;
  }

  function addSystemLine(room, text, kind) {
    const entry = { kind: 'system', text, ts: Date.now(), gap: kind === 'gap' };
    room.entries.push(entry);
    if (room.name === state.current) appendEntry(entry);
    trim(room);
  }

  const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
    month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
  });
  const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });

  // A new line at the end of the room shown: after the room's lines, before its pending own
  // messages (or after them, for a pending one). The log follows it if it was at the bottom, and
  // always for a message the person just sent.
  function appendEntry(entry) {
    const room = state.rooms.get(state.current);
    if (!room || renderedRoom !== room.name) return;
    const log = ui.messages;
    const follow = atBottom() || entry.state === 'sending';
    const li = buildEntry(entry);
    const firstPending = room.pending.length && room.pending[0] !== entry ? room.pending[0].el : null;
    if (entry.state !== 'sending' && firstPending && firstPending.parentNode === log) log.insertBefore(li, firstPending);
    else log.append(li);
    if (follow) log.scrollTop = log.scrollHeight;
  }

  // Shows an own message's new state where it is.
  function updateEntry(entry) {
    if (!entry.el || !entry.el.isConnected) return;
    const hadFocus = entry.el.contains(document.activeElement);
    entry.el.replaceWith(buildEntry(entry));
    if (hadFocus) ui.messageInput.focus();
  }

  const STATE_TEXT = { sending: 'Sending…', failed: 'Not sent' };

  function buildEntry(entry) {
    const li = document.createElement('li');
    entry.el = li;
    if (entry.kind === 'system') {
      li.className = entry.gap ? 'system gap' : 'system';
      li.dir = 'auto';
      li.textContent = entry.text;
      return li;
    }
    li.className = 'message' + (entry.mine ? ' mine' : '');
    if (entry.seq !== null) li.dataset.seq = String(entry.seq);
    if (entry.id !== null) li.dataset.id = entry.id;
    if (entry.state) li.dataset.state = entry.state;
    const meta = document.createElement('div');
    meta.className = 'meta';
    const who = document.createElement('span');
    who.className = 'sender';
    who.textContent = entry.user;
    const when = document.createElement('time');
    const date = new Date(entry.ts);
    when.dateTime = date.toISOString();
    when.title = fullFormat.format(date);
    when.textContent = (sameDay(date, new Date()) ? timeFormat : dateTimeFormat).format(date);
    meta.append(who, ' ', when);
    if (entry.state) meta.append(' ', buildStatus(entry));
    const text = document.createElement('p');
    text.className = 'text';
    // A right-to-left line (Arabic, Hebrew) reads from the right, a left-to-right one from the left.
    text.dir = 'auto';
    text.textContent = entry.text;
    li.append(meta, text);
    return li;
  }

  function buildStatus(entry) {
    const status = document.createElement('span');
    status.className = 'status';
    if (entry.state === 'saved') {
      status.title = 'Saved on the server';
      const check = document.createElement('span');
      check.setAttribute('aria-hidden', 'true');
      check.textContent = '✓';
      const said = document.createElement('span');
      said.className = 'visually-hidden';
      said.textContent = 'saved';
      status.append(check, said);
    } else if (entry.state === 'failed' && entry.reason === 'not_stored') {
      status.textContent = 'Not saved';   // it may have been delivered: it was sent
    } else if (STATE_TEXT[entry.state]) {
      status.textContent = STATE_TEXT[entry.state];
    }
    if (entry.state === 'failed') {
      const again = document.createElement('button');
      again.type = 'button';
      again.className = 'link-button retry';
      again.textContent = 'Send again';
      again.setAttribute('aria-label', 'Send again: ' + entry.text);
      again.addEventListener('click', () => retry(entry));
      status.append(' ', again);
    }
    return status;
  }

  function sameDay(a, b) {
    return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
  }

  let noticeTimer = null;
  function showNotice(text) {
    keepingBottom(() => {
      ui.notice.textContent = text;
      ui.notice.hidden = false;
    });
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => keepingBottom(() => { ui.notice.hidden = true; }), 6000);
  }

  // The notice sits above the log: showing it makes the log shorter, and a log that was at the
  // bottom must stay there (else what comes next lands out of sight).
  function keepingBottom(change) {
    const stick = atBottom();
    change();
    if (stick) ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  // A notice about a room: in place when it is the room shown, else named.
  function noticeFor(room, text) {
    showNotice(room.name === state.current ? text : '#' + room.name + ': ' + text);
  }

  // ---- start -------------------------------------------------------------------------------
  try {
    const saved = localStorage.getItem('reactor-chat-name');
    if (saved) ui.nameInput.value = saved;
  } catch (e) { /* private mode */ }
  const signedAs = token && tokenUser(token);
  if (signedAs) {
    // Signed in by the link: in as its name as soon as the connection is up.
    ui.nameInput.value = signedAs;
    state.helloPending = signedAs;
  }
  ui.nameInput.focus();
  connect();
})();
