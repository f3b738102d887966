// The web page's script, served as /page.js (the CSP allows no inline script).
"use strict";
const TOKEN_KEY = "tim-token";

// The API token: the stored one, or one from `?token=` (as `tim-node demo` prints). A link must
// not silently replace a stored token (whoever wrote the link would choose the token this page
// sends), so a different one is taken only after the user agrees. The token leaves the URL at
// once, so it stays out of the history and of anything that shows the address.
function chooseToken() {
  const params = new URLSearchParams(location.search);
  const offered = params.get("token");
  if (params.has("token")) {
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
  }
  const stored = localStorage.getItem(TOKEN_KEY);
  if (offered && offered !== stored) {
    const replace = !stored || confirm("This link carries an API token different from the one this page has stored.\n\n" +
      "Replace the stored token? Only do so if you started this node yourself (e.g. tim-node demo).");
    if (replace) { localStorage.setItem(TOKEN_KEY, offered); return offered; }
  }
  if (stored) return stored;
  const typed = (prompt("API token (from DATA_DIR/api-token):") || "").trim();
  if (typed) localStorage.setItem(TOKEN_KEY, typed);
  return typed;
}
const token = chooseToken();

const $ = (s) => document.querySelector(s);
const state = {
  me: null, chats: new Set(JSON.parse(localStorage.getItem("tim-chats") || "[]")), rooms: [], current: null,
  // From GET /v1/conversations: unread counts by conversation key, and their order, newest first.
  unread: new Map(), order: [],
  contacts: [],
  // Invitations to founded rooms heard while the page is open: {room, by, name}.
  invites: [],
};
const short = (id) => id ? id.slice(0, 8) + "…" + id.slice(-4) : "";
// A contact's signed display name where the node knows one, else the short id.
const label = (id) => (state.contacts.find((c) => c.account === id) || {}).name || short(id);

async function api(method, path, body) {
  const res = await fetch(path, { method, headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json" }, body: body ? JSON.stringify(body) : undefined });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const e = data.error || { code: res.status, name: "http_error", message: res.statusText };
    throw new Error(`${e.message} (${e.code} ${e.name})`);
  }
  return data;
}
function showError(e) { $("#error").textContent = e ? String(e.message || e) : ""; }

function saveChats() { localStorage.setItem("tim-chats", JSON.stringify([...state.chats])); }
function renderNav() {
  const chats = $("#chats"); chats.replaceChildren();
  // Most recently active first (the inbox's order), then chats opened here with nothing yet.
  const rank = (a) => { const i = state.order.indexOf("chat:" + a); return i < 0 ? Infinity : i; };
  for (const a of [...state.chats].sort((x, y) => rank(x) - rank(y))) chats.append(navButton("chat:" + a, "@ " + label(a), a));
  const rooms = $("#rooms"); rooms.replaceChildren();
  for (const r of state.rooms) rooms.append(navButton("room:" + r.room, "# " + (r.name || r.room) + ` (${r.peers})`, r.room));
  renderContacts();
  if (state.current) {
    const [kind, id] = state.current.split(/:(.*)/s);
    if (kind === "chat") $("#convname").textContent = "chat with " + label(id);
  }
}
function navButton(key, label, title) {
  const b = document.createElement("button");
  b.className = "conv" + (state.current === key ? " active" : ""); b.textContent = label; b.title = title;
  const unread = state.unread.get(key) || 0;
  if (unread > 0 && state.current !== key) {
    const badge = document.createElement("span"); badge.className = "unread"; badge.textContent = String(unread);
    b.append(" ", badge);
  }
  b.onclick = () => open(key); return b;
}
// The inbox: every conversation with its unread count, so the list survives a reload.
async function refreshInbox() {
  const inbox = await api("GET", "/v1/conversations?limit=200");
  state.unread = new Map(); state.order = [];
  for (const c of inbox.conversations) {
    const key = c.to ? "chat:" + c.to : "room:" + c.room;
    state.order.push(key); state.unread.set(key, c.unread);
    if (c.to && !state.chats.has(c.to)) state.chats.add(c.to);
  }
  saveChats(); renderNav();
}
async function markRead(key) {
  const [kind, id] = key.split(/:(.*)/s);
  if (!state.unread.get(key)) return;
  await api("POST", kind === "room" ? `/v1/rooms/${id}/read` : `/v1/conversations/${id}/read`);
  await refreshInbox();
}
// Contacts: requests waiting for an answer, with accept and reject; contacts open their chat.
async function refreshContacts() {
  state.contacts = (await api("GET", "/v1/contacts")).contacts; renderNav();
}
function renderContacts() {
  const list = $("#contacts"); list.replaceChildren();
  for (const c of state.contacts) {
    const row = document.createElement("div"); row.className = "contact " + c.state; row.dataset.account = c.account;
    const who = navButton("chat:" + c.account, "@ " + label(c.account), c.account);
    // A contact's presence: a dot, its text as the tooltip (offline when not heard from).
    const p = c.presence || { status: "offline", text: "" };
    const dot = document.createElement("span"); dot.className = "dot " + p.status;
    dot.title = p.status + (p.text ? ": " + p.text : "");
    row.append(dot, who, " " + c.state);
    if (c.state === "incoming") {
      if (c.note) { const n = document.createElement("span"); n.className = "note"; n.textContent = " “" + c.note + "”"; row.append(n); }
      row.append(action("accept", () => contactAction(c.account, "accept")), action("reject", () => contactAction(c.account, "reject")));
    }
    list.append(row);
  }
  const [kind, id] = (state.current || "").split(/:(.*)/s);
  const known = state.contacts.find((c) => c.account === id);
  $("#addcontact").hidden = kind !== "chat" || (known && known.state !== "incoming");
}
// Messages held from accounts not admitted (inbound = "contacts"): shown apart, with accept
// (they join the history) and reject (destroyed).
async function refreshRequests() {
  const { requests } = await api("GET", "/v1/requests");
  const list = $("#requests"); list.replaceChildren();
  $("#requests-box").hidden = requests.length === 0;
  for (const r of requests) {
    const row = document.createElement("div"); row.className = "contact request"; row.dataset.account = r.account;
    row.append(short(r.account) + ` (${r.messages.length}) `);
    row.append(action("accept", () => requestAction(r.account, "accept")), action("reject", () => requestAction(r.account, "reject")));
    for (const m of r.messages) {
      const body = document.createElement("div"); body.className = "note";
      body.textContent = m.sealed ? "(burns after reading)" : m.body; row.append(body);
    }
    list.append(row);
  }
}
async function requestAction(account, what) {
  try { await api("POST", `/v1/requests/${account}/${what}`); showError(null); await refreshRequests(); await refreshInbox(); await refreshContacts(); } catch (e) { showError(e); }
}
async function contactAction(account, what) {
  try { await api("POST", `/v1/contacts/${account}/${what}`); showError(null); await refreshContacts(); } catch (e) { showError(e); }
}
async function refreshStatus() {
  const s = await api("GET", "/v1/status");
  state.me = s.account; state.rooms = s.rooms;
  $("#me").textContent = "me: " + s.account; $("#me").title = s.listen_addrs.join("\n");
  $("#peers").textContent = s.peers + " peer" + (s.peers === 1 ? "" : "s");
  renderNav();
}

function open(key) {
  state.current = key; showError(null);
  const [kind, id] = key.split(/:(.*)/s);
  $("#convname").textContent = kind === "room" ? "# " + id : "chat with " + id;
  $("#leave").hidden = kind !== "room";
  $("#compose").hidden = false;
  $("#compose select").hidden = kind === "room";
  $("#block").hidden = kind !== "chat";
  renderNav(); loadHistory(); loadRoomInfo().catch(showError); markRead(key).catch(showError);
}

// A founded room's roles, with what this account may do about each member.
async function loadRoomInfo() {
  const box = $("#roominfo");
  const [kind, id] = (state.current || "").split(/:(.*)/s);
  if (kind !== "room" || !id.startsWith("r.")) { box.hidden = true; box.replaceChildren(); return; }
  let r;
  try { r = await api("GET", `/v1/rooms/${id}`); } catch (e) { box.hidden = true; return; }
  $("#convname").textContent = "# " + r.name + (r.private ? " (private)" : "") + (r.cancelled ? " (cancelled)" : "");
  const iFound = r.founder === state.me, iManage = r.managers.includes(state.me);
  const act = (what, account) => async () => {
    try {
      if (what === "demote") await api("DELETE", `/v1/rooms/${id}/managers/${account}`);
      else await api("POST", `/v1/rooms/${id}/${what === "promote" ? "managers" : what}`, { account });
      showError(null); loadRoomInfo();
    } catch (e) { showError(e); }
  };
  const row = (account, role, buttons) => {
    const div = document.createElement("div"); div.className = "member"; div.dataset.account = account;
    const name = document.createElement("span"); name.textContent = label(account) + " · " + role; name.title = account;
    div.append(name, ...buttons); return div;
  };
  const list = document.createElement("div");
  for (const m of r.members) {
    const role = m === r.founder ? "founder" : r.managers.includes(m) ? "manager" : "member";
    const buttons = [];
    if (m !== r.founder && m !== state.me && !r.cancelled) {
      if (iFound && role === "manager") buttons.push(action("Demote", act("demote", m)));
      if (iFound && role === "member") buttons.push(action("Make manager", act("promote", m)));
      if (iFound || (iManage && role === "member")) buttons.push(action("Remove", act("kick", m)));
    }
    list.append(row(m, role, buttons));
  }
  for (const a of r.requests) list.append(row(a, "asks to join", iManage && !r.cancelled ? [action("Approve", act("approve", a)), action("Refuse", act("kick", a))] : []));
  for (const a of r.invited) list.append(row(a, "invited", iManage && !r.cancelled ? [action("Withdraw", act("kick", a))] : []));
  box.replaceChildren(list);
  if (iManage && !r.cancelled) {
    const form = document.createElement("form"); form.id = "invite";
    const input = document.createElement("input"); input.name = "account"; input.placeholder = "account id to invite"; input.className = "mono"; input.required = true;
    const button = document.createElement("button"); button.textContent = "Invite";
    form.append(input, button);
    form.onsubmit = async (e) => { e.preventDefault(); await act("invite", input.value.trim())(); };
    box.append(form);
  }
  if (iFound && !r.cancelled) box.append(action("Cancel room", async () => {
    if (!confirm("Cancel this room for everyone? Nothing more can be posted in it.")) return;
    try { await api("POST", `/v1/rooms/${id}/cancel`); loadRoomInfo(); } catch (e) { showError(e); }
  }));
  box.hidden = false;
}
function renderInvites() {
  $("#invites-box").hidden = state.invites.length === 0;
  const box = $("#invites"); box.replaceChildren();
  for (const inv of state.invites) {
    const div = document.createElement("div");
    const text = document.createElement("span"); text.textContent = `# ${inv.name} from ${label(inv.by)}`; text.title = inv.room;
    div.append(text, action("Join", async () => {
      try {
        await api("POST", `/v1/rooms/${inv.room}/join`);
        state.invites = state.invites.filter((i) => i.room !== inv.room); renderInvites();
        await refreshStatus(); open("room:" + inv.room);
      } catch (e) { showError(e); }
    }));
    box.append(div);
  }
}
async function loadHistory() {
  if (!state.current) return;
  const [kind, id] = state.current.split(/:(.*)/s);
  const path = kind === "room" ? `/v1/rooms/${id}/messages?limit=100` : `/v1/conversations/${id}/messages?limit=100`;
  try { const h = await api("GET", path); renderLog(h.messages); } catch (e) { showError(e); }
}
function renderLog(messages) {
  const log = $("#log"); log.replaceChildren();
  for (const m of messages) log.append(renderMessage(m));
}
function renderMessage(m) {
  const div = document.createElement("div");
  const mine = m.from === state.me;
  div.className = "msg" + (mine ? " mine" : ""); div.dataset.mid = m.mid;
  const meta = document.createElement("div"); meta.className = "meta";
  meta.append(mine ? "me" : label(m.from), " · " + new Date(m.sent_at).toLocaleTimeString());
  if (m.state === "revoked" || m.state === "burned") {
    div.classList.add("gone");
    div.append(`message ${m.state} by ${m.by === state.me ? "me" : label(m.by)}`);
    // This account's own deletion: how many replicas confirmed it with a signed receipt.
    if (m.confirmed !== undefined) {
      const tally = document.createElement("span"); tally.className = "deleted-on";
      tally.textContent = "deleted on " + m.confirmed + (m.expected === null ? "" : " of " + m.expected);
      tally.title = "replicas that confirmed, with a signed receipt, that they destroyed it";
      meta.append(tally);
    }
    div.append(meta); return div;
  }
  if (m.sealed) {
    // A received burn-after-reading message not yet read: the API withholds its body until the
    // read call, which starts the timer, so the user sees it only by asking to.
    const reveal = action(`click to read (burns ${m.burn_after_read} s after)`, () => openSealed(m, div));
    reveal.className = "reveal"; div.append(reveal);
  } else if (m.undecryptable) {
    // An encrypted body this account is no reader of (a private room's post from before it joined).
    const body = document.createElement("div"); body.className = "undecryptable";
    body.textContent = "(encrypted for others: cannot be read here)"; div.append(body);
  } else {
    const body = document.createElement("div"); body.textContent = m.body; div.append(body);
  }
  if (m.encrypted) { const lock = document.createElement("span"); lock.className = "lock"; lock.textContent = " · encrypted"; lock.title = "end-to-end encrypted"; meta.append(lock); }
  if (m.state === "sent" || m.state === "delivered") meta.append(" · " + m.state);
  if (mine) meta.append(action("revoke", () => control(m.mid, "revoke")));
  if (!mine && m.to) {
    meta.append(action("burn", () => control(m.mid, "burn")));
    if (m.burn_at) {
      const c = document.createElement("span"); c.className = "countdown"; meta.append(c);
      countdown(m.burn_at, c);
    }
  }
  div.append(meta); return div;
}
function action(label, fn) { const b = document.createElement("button"); b.textContent = label; b.onclick = fn; return b; }
async function control(mid, kind) {
  try { await api("POST", `/v1/messages/${mid}/${kind}`); showError(null); } catch (e) { showError(e); }
}
// Reads a sealed message: the answer carries its body and burn deadline.
async function openSealed(m, div) {
  try {
    const r = await api("POST", `/v1/messages/${m.mid}/read`);
    showError(null);
    // The log may have been redrawn meanwhile; then the history has the body now.
    if (div.isConnected) div.replaceWith(renderMessage({ ...m, sealed: false, body: r.body, read_at: r.read_at, burn_at: r.burn_at }));
    else loadHistory();
  } catch (e) { showError(e); }
}
// Shows the seconds left until `burnAt`; the node burns the message then, and its `burned`
// event redraws the log.
function countdown(burnAt, el) {
  const tick = () => {
    const left = Math.max(0, Math.ceil((burnAt - Date.now()) / 1000));
    el.textContent = "burns in " + left + " s";
    if (left > 0 && document.body.contains(el)) setTimeout(tick, 500);
  };
  tick();
}

function belongs(ev) {
  if (!state.current) return false;
  const [kind, id] = state.current.split(/:(.*)/s);
  return kind === "room" ? ev.room === id : ev.to === id;
}
function connectEvents() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/events?token=${encodeURIComponent(token)}`);
  ws.onmessage = (msg) => {
    const ev = JSON.parse(msg.data);
    if (ev.type === "peer") { refreshStatus().catch(showError); return; }
    if (ev.type === "message" && ev.to && !state.chats.has(ev.to)) { state.chats.add(ev.to); saveChats(); renderNav(); }
    if (ev.type === "message_request") { refreshRequests().catch(showError); return; }
    if (ev.type === "contact" || ev.type === "contact_request" || ev.type === "profile" || ev.type === "presence") { refreshContacts().then(loadHistory).catch(showError); return; }
    if (ev.type === "message") {
      // Read at once where it is on screen; elsewhere it raises the unread count.
      if (belongs(ev) && ev.from !== state.me) refreshInbox().then(() => markRead(state.current)).catch(showError);
      else refreshInbox().catch(showError);
    }
    if (ev.type === "room_invite") { state.invites = state.invites.filter((i) => i.room !== ev.room).concat([ev]); renderInvites(); return; }
    if (ev.type === "room_member" || ev.type === "room_join_request" || ev.type === "room_cancelled") { if (belongs(ev)) loadRoomInfo().catch(showError); refreshStatus().catch(showError); return; }
    if (ev.type === "delivery_failed") showError(`delivery of ${short(ev.mid)} failed: ${ev.name}`);
    // A receipt names only the message: redraw if it is on screen.
    if (ev.type === "deletion_confirmed" && document.querySelector(`#log [data-mid="${ev.mid}"]`)) { loadHistory(); return; }
    if (belongs(ev)) loadHistory();
  };
  ws.onclose = () => setTimeout(connectEvents, 1000);
}

$("#addcontact").onclick = () => {
  const [, id] = state.current.split(/:(.*)/s);
  const known = state.contacts.find((c) => c.account === id);
  contactAction(id, known && known.state === "incoming" ? "accept" : "request");
};
$("#block").onclick = async () => {
  const [, id] = state.current.split(/:(.*)/s);
  if (!confirm("Block " + id + "? Nothing of theirs reaches you, and nothing of yours reaches them.")) return;
  try { await api("POST", `/v1/blocks/${id}`); showError(null); } catch (e) { showError(e); }
};
$("#profile").onsubmit = async (e) => {
  e.preventDefault();
  try {
    await api("PUT", "/v1/profile", { name: e.target.name.value.trim() });
    showError(null); $("#profile button").textContent = "Saved";
  } catch (err) { showError(err); }
};
$("#presence").onchange = async (e) => {
  try { await api("PUT", "/v1/presence", { status: e.target.value }); showError(null); } catch (err) { showError(err); }
};
$("#profile input").oninput = () => { $("#profile button").textContent = "Save"; };
$("#newchat").onsubmit = (e) => {
  e.preventDefault(); const a = e.target.account.value.trim();
  if (!/^[0-9a-f]{64}$/.test(a)) { showError("an account id is 64 lowercase hex digits"); return; }
  state.chats.add(a); saveChats(); e.target.reset(); open("chat:" + a);
};
$("#join").onsubmit = async (e) => {
  e.preventDefault(); const r = e.target.room.value.trim();
  try { await api("POST", `/v1/rooms/${r}/join`); e.target.reset(); await refreshStatus(); open("room:" + r); } catch (err) { showError(err); }
};
$("#newroom").onsubmit = async (e) => {
  e.preventDefault();
  try {
    const r = await api("POST", "/v1/rooms", { name: e.target.name.value.trim(), private: e.target.private.checked });
    e.target.reset(); await refreshStatus(); open("room:" + r.room);
  } catch (err) { showError(err); }
};
$("#leave").onclick = async () => {
  const [, id] = state.current.split(/:(.*)/s);
  try { await api("POST", `/v1/rooms/${id}/leave`); state.current = null; $("#log").replaceChildren(); $("#compose").hidden = true; await refreshStatus(); } catch (e) { showError(e); }
};
$("#compose").onsubmit = async (e) => {
  e.preventDefault();
  const [kind, id] = state.current.split(/:(.*)/s);
  const req = kind === "room" ? { room: id, body: e.target.body.value } : { to: id, body: e.target.body.value };
  if (kind !== "room" && e.target.burn.value) req.burn_after_read = Number(e.target.burn.value);
  try { await api("POST", "/v1/messages", req); e.target.body.value = ""; showError(null); loadHistory(); } catch (err) { showError(err); }
};

refreshStatus().then(refreshInbox).then(refreshContacts).then(refreshRequests)
  .then(() => api("GET", "/v1/profile")).then((p) => { $("#profile input").value = p.name || ""; })
  .then(() => api("GET", "/v1/presence")).then((p) => { $("#presence").value = p.status; })
  .then(connectEvents).catch(showError);
setInterval(() => refreshStatus().catch(() => {}), 5000);
