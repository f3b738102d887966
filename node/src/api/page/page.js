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
const state = { me: null, chats: new Set(JSON.parse(localStorage.getItem("tim-chats") || "[]")), rooms: [], current: null };
const short = (id) => id ? id.slice(0, 8) + "…" + id.slice(-4) : "";

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
  for (const a of state.chats) chats.append(navButton("chat:" + a, "@ " + short(a), a));
  const rooms = $("#rooms"); rooms.replaceChildren();
  for (const r of state.rooms) rooms.append(navButton("room:" + r.room, "# " + r.room + ` (${r.peers})`, r.room));
}
function navButton(key, label, title) {
  const b = document.createElement("button");
  b.className = "conv" + (state.current === key ? " active" : ""); b.textContent = label; b.title = title;
  b.onclick = () => open(key); return b;
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
  renderNav(); loadHistory();
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
  meta.append(mine ? "me" : short(m.from), " · " + new Date(m.sent_at).toLocaleTimeString());
  if (m.state === "revoked" || m.state === "burned") {
    div.classList.add("gone");
    div.append(`message ${m.state} by ${m.by === state.me ? "me" : short(m.by)}`);
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
  } else {
    const body = document.createElement("div"); body.textContent = m.body; div.append(body);
  }
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
    if (ev.type === "delivery_failed") showError(`delivery of ${short(ev.mid)} failed: ${ev.name}`);
    // A receipt names only the message: redraw if it is on screen.
    if (ev.type === "deletion_confirmed" && document.querySelector(`#log [data-mid="${ev.mid}"]`)) { loadHistory(); return; }
    if (belongs(ev)) loadHistory();
  };
  ws.onclose = () => setTimeout(connectEvents, 1000);
}

$("#newchat").onsubmit = (e) => {
  e.preventDefault(); const a = e.target.account.value.trim();
  if (!/^[0-9a-f]{64}$/.test(a)) { showError("an account id is 64 lowercase hex digits"); return; }
  state.chats.add(a); saveChats(); e.target.reset(); open("chat:" + a);
};
$("#join").onsubmit = async (e) => {
  e.preventDefault(); const r = e.target.room.value.trim();
  try { await api("POST", `/v1/rooms/${r}/join`); e.target.reset(); await refreshStatus(); open("room:" + r); } catch (err) { showError(err); }
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

refreshStatus().then(connectEvents).catch(showError);
setInterval(() => refreshStatus().catch(() => {}), 5000);
