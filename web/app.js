// Reactor Chat in the browser: the native dialect of docs/PROTOCOL.md, one JSON object per
// WebSocket text frame. Everything a peer sends is put on the page with textContent, never parsed
// as HTML, so a message can only ever show its characters.
'use strict';

(function () {
  const FIRST_ROOM = 'lobby';
  const PING_EVERY_MS = 20000;
  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const KEEP_MESSAGES = 500;           // per room: what the page holds, so a long day stays light
  const RETAKE_NAME_TRIES = 4;         // after a reconnect, how often a name_taken is retried
  const OPEN_TIMEOUT_MS = 10000;       // a connection attempt nobody answers is given up then

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
    rooms: new Map(),       // name -> {name, joined, count, members: Set|null, messages, unread}
    order: [],              // room names in join order
    current: null,
    pendingJoins: new Set(),
  };

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
    ws.onclose = () => {
      clearTimeout(openTimer);
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
    for (const room of state.rooms.values()) room.joined = false;
    state.pendingJoins.clear();
    if (state.user) state.helloPending = null;
    scheduleReconnect();
    updateControls();
    renderRooms();
    renderRoom();
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
    if (state.ws) return;
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
      case 'join': return onPresence(msg, true);
      case 'leave': return onPresence(msg, false);
      case 'error': return onError(msg);
      case 'pong': state.pongOwed = false; return;
      default: return;          // rooms replies and anything newer: nothing to show
    }
  }

  function sayHello(name) {
    state.helloPending = name;
    send({ type: 'hello', user: name });
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
    if (send({ type: 'join', room: name })) {
      state.pendingJoins.add(name);
      if (show) state.showOnJoin = name;
    }
  }

  function roomState(name) {
    let room = state.rooms.get(name);
    if (!room) {
      room = { name, joined: false, everJoined: false, count: 0, members: null, messages: [], unread: 0 };
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
    if (rejoined) {
      addSystemLine(room, 'Reconnected. Messages sent while you were away are not shown.');
    }
    if (state.showOnJoin === name || !state.current) {
      state.showOnJoin = null;
      showRoom(name);
    } else {
      renderRooms();
      if (state.current === name) renderRoom();
    }
  }

  function onLeft(msg) {
    const name = String(msg.room);
    state.rooms.delete(name);
    state.order = state.order.filter((r) => r !== name);
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
    if (room.members) {
      if (entered) room.members.add(user); else room.members.delete(user);
    }
    room.count = Math.max(0, room.count + (entered ? 1 : -1));
    addSystemLine(room, user + (entered ? ' joined' : ' left'));
    if (room.name === state.current) renderMembers();
  }

  function onMessage(msg) {
    const name = String(msg.room);
    // A message of a room may come just before the joined of that room (docs/PROTOCOL.md).
    const room = state.rooms.get(name) || (state.pendingJoins.has(name) ? roomState(name) : null);
    if (!room) return;
    const entry = {
      kind: 'message',
      user: String(msg.user),
      text: typeof msg.text === 'string' ? msg.text : String(msg.text),
      ts: Number(msg.ts) || Date.now(),
      seq: msg.seq,
      mine: msg.user === state.user,
    };
    remember(room, entry);
    const visible = room.name === state.current && !document.hidden;
    if (room.name === state.current) appendEntry(entry);
    if (!visible && !entry.mine) {
      room.unread += 1;
      renderRooms();
      updateTitle();
    }
  }

  function onError(msg) {
    const code = String(msg.code || 'error');
    const text = String(msg.message || code);
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
    showNotice(text + ' (' + code + ')');
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
    const text = ui.messageInput.value;
    const room = state.current && state.rooms.get(state.current);
    if (!text.trim() || !room || !room.joined) return;
    if (send({ type: 'message', room: state.current, text })) {
      ui.messageInput.value = '';
    }
    ui.messageInput.focus();
  });

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

  function renderRoom() {
    const room = state.current && state.rooms.get(state.current);
    // A screen reader should not read a whole room's history out as new when the room changes.
    ui.messages.setAttribute('aria-busy', 'true');
    ui.messages.replaceChildren();
    ui.emptyRoom.hidden = !!room;
    ui.messages.hidden = !room;
    ui.leaveButton.hidden = !room;
    ui.membersToggle.hidden = !room;
    ui.roomTitle.textContent = room ? '#' + room.name : 'No room';
    if (room) {
      ui.leaveButton.setAttribute('aria-label', 'Leave #' + room.name);
      for (const entry of room.messages) appendEntry(entry, true);
      ui.messages.scrollTop = ui.messages.scrollHeight;
    }
    ui.messages.removeAttribute('aria-busy');
    renderMembers();
    updateControls();
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
    ui.loginButton.disabled = false;
    ui.joinForm.querySelector('button').disabled = !state.online;
    ui.leaveButton.disabled = !state.online;
  }

  function remember(room, entry) {
    room.messages.push(entry);
    if (room.messages.length > KEEP_MESSAGES) room.messages.splice(0, room.messages.length - KEEP_MESSAGES);
  }

  function addSystemLine(room, text) {
    const entry = { kind: 'system', text, ts: Date.now() };
    remember(room, entry);
    if (room.name === state.current) appendEntry(entry);
  }

  const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
    month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
  });
  const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });

  function appendEntry(entry, bulk) {
    const log = ui.messages;
    const atBottom = bulk || log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    const li = document.createElement('li');
    if (entry.kind === 'system') {
      li.className = 'system';
      li.textContent = entry.text;
    } else {
      li.className = 'message' + (entry.mine ? ' mine' : '');
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
      const text = document.createElement('p');
      text.className = 'text';
      text.textContent = entry.text;
      li.append(meta, text);
    }
    log.append(li);
    while (log.childElementCount > KEEP_MESSAGES) log.firstElementChild.remove();
    if (atBottom && !bulk) log.scrollTop = log.scrollHeight;
  }

  function sameDay(a, b) {
    return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
  }

  let noticeTimer = null;
  function showNotice(text) {
    ui.notice.textContent = text;
    ui.notice.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { ui.notice.hidden = true; }, 6000);
  }

  // ---- start -------------------------------------------------------------------------------
  try {
    const saved = localStorage.getItem('reactor-chat-name');
    if (saved) ui.nameInput.value = saved;
  } catch (e) { /* private mode */ }
  ui.nameInput.focus();
  connect();
})();
