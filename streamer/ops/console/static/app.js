// timesformer-stream console: tiles, event list and timelines, fed by Server-Sent Events (/api/updates).
// No build step, no dependencies. window.consoleStats keeps page-side measurements for the benchmark.
"use strict";

const state = { tiles: new Map(), events: new Map(), bands: new Map(), timelineS: 600, skew: 0 };
const stats = { latencies: [], updates: 0 };
window.consoleStats = stats;

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, cls, text) => {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
};

function hue(label) {  // one stable colour per label
  let h = 0;
  for (const c of label) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return `hsl(${h % 360} 65% 55%)`;
}

function fmtTime(ts) {
  return ts ? new Date(ts * 1000).toLocaleTimeString() : "";
}

// ---- tiles ---------------------------------------------------------------------------------------
function makeTile(stream) {
  const tile = el("article", "tile");
  tile.id = `tile-${stream}`;
  tile.dataset.stream = stream;
  const head = el("header");
  head.append(el("h3", "name", stream), el("span", "state", "connecting"));
  const img = el("img", "preview");
  img.alt = `live preview of ${stream}`;
  const top = el("ol", "top3");
  for (let i = 0; i < 3; i++) {
    const li = el("li");
    const bar = el("span", "bar");
    bar.append(el("span"));
    li.append(el("span", "label", ""), bar, el("span", "score", ""));
    top.append(li);
  }
  const statsRow = el("p", "stats");
  for (const [cls, name] of [["fps", "fps"], ["p50", "p50"], ["drops", "drops"]]) {
    const span = el("span", "", `${name} `);
    span.append(el("b", cls, "–"));
    statsRow.append(span);
  }
  const timeline = el("canvas", "timeline");
  timeline.width = 480;
  timeline.height = 16;
  tile.append(head, img, top, el("p", "reason"), statsRow, timeline, el("ul", "warnings"));
  $("#tiles").append(tile);
  watchPreview(tile, img, stream);
  return tile;
}

function renderTile(data) {
  const tile = state.tiles.get(data.stream) || makeTile(data.stream);
  state.tiles.set(data.stream, tile);
  tile.className = `tile state-${data.state}`;
  $(".state", tile).textContent = data.state;
  const rows = tile.querySelectorAll(".top3 li");
  rows.forEach((li, i) => {
    const t = (data.top || [])[i];
    li.querySelector(".label").textContent = t ? t.label : "";
    li.querySelector(".bar span").style.width = t ? `${Math.round(t.score * 100)}%` : "0";
    li.querySelector(".score").textContent = t ? t.score.toFixed(2) : "";
  });
  $(".reason", tile).textContent = data.reason || "";
  $(".fps", tile).textContent = data.fps !== undefined ? Number(data.fps).toFixed(1) : "–";
  $(".p50", tile).textContent = data.p50_ms != null ? `${Math.round(data.p50_ms)} ms` : "–";
  const drops = $(".drops", tile);
  drops.textContent = data.drops || 0;
  drops.title = Object.entries(data.drops_by || {}).map(([k, v]) => `${k}: ${v}`).join(", ");
  const warnings = $(".warnings", tile);
  warnings.replaceChildren(...(data.warnings || []).map((w) => el("li", "", w)));
  if (data.published_ts && String(data.published_ts) !== tile.dataset.published) {  // a new result, not a status
    tile.dataset.published = String(data.published_ts);
    tile.dataset.top = data.top && data.top.length ? data.top[0].label : "";
    stats.latencies.push(Date.now() / 1000 - data.published_ts);  // result published -> tile shows it
    if (stats.latencies.length > 5000) stats.latencies.shift();
    stats.updates++;
  }
}

// Previews: one WebSocket for the page (/api/previews). It says which tiles are on screen (none while the
// page is hidden) and how often (5 a second, 1 with many tiles). Each binary message is one round: per
// tile a 2-byte length, the stream id, a 4-byte length, the JPEG. The page acks each round; the server
// sends the next only then, so a page that falls behind gets fewer rounds, not a backlog.
const previews = { socket: null, visible: new Set(), shown: new Map(), sent: "", stopped: false };
const utf8 = new TextDecoder();

function watchPreview(tile, img, stream) {
  previews.observer = previews.observer || new IntersectionObserver((entries) => {
    for (const e of entries) {
      if (e.isIntersecting) previews.visible.add(e.target.dataset.stream);
      else previews.visible.delete(e.target.dataset.stream);
    }
    sendWatch();
  });
  previews.observer.observe(tile);
}

function sendWatch() {
  const ws = previews.socket;
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  const watch = document.hidden ? [] : [...previews.visible].filter((s) => state.tiles.has(s));
  const msg = JSON.stringify({ watch, period_s: state.tiles.size > 16 ? 1.0 : 0.2 });
  if (msg !== previews.sent) { ws.send(msg); previews.sent = msg; }
}

function showRound(data) {
  const view = new DataView(data);
  let i = 0;
  while (i < data.byteLength) {
    const n = view.getUint16(i);
    const stream = utf8.decode(new Uint8Array(data, i + 2, n));
    const size = view.getUint32(i + 2 + n);
    showPreview(stream, new Uint8Array(data, i + 6 + n, size));
    i += 6 + n + size;
  }
}

function showPreview(stream, jpeg) {
  const tile = state.tiles.get(stream);
  if (!tile) return;
  const url = URL.createObjectURL(new Blob([jpeg], { type: "image/jpeg" }));
  const img = $(".preview", tile);
  const old = previews.shown.get(stream);
  img.addEventListener("load", () => { if (old) URL.revokeObjectURL(old); }, { once: true });
  img.src = url;
  previews.shown.set(stream, url);
}

function connectPreviews() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/api/previews`);
  ws.binaryType = "arraybuffer";
  previews.socket = ws;
  previews.sent = "";
  ws.addEventListener("open", sendWatch);
  ws.addEventListener("message", (e) => {
    if (!(e.data instanceof ArrayBuffer)) return;
    showRound(e.data);
    ws.send('{"ack":1}');
  });
  ws.addEventListener("close", () => { if (!previews.stopped) setTimeout(connectPreviews, 2000); });
}
document.addEventListener("visibilitychange", sendWatch);

// ---- timelines -----------------------------------------------------------------------------------
function drawTimelines() {
  const now = Date.now() / 1000 - state.skew;
  for (const [stream, tile] of state.tiles) {
    const canvas = $(".timeline", tile);
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, span = state.timelineS;
    ctx.clearRect(0, 0, w, h);
    const labels = [];
    for (const band of state.bands.get(stream) || []) {
      const end = band.end_ts == null ? now : band.end_ts;
      if (end < now - span) continue;
      const x0 = Math.max(0, ((band.start_ts - (now - span)) / span) * w);
      const x1 = Math.min(w, ((end - (now - span)) / span) * w);
      ctx.fillStyle = hue(band.label);
      ctx.fillRect(x0, 0, Math.max(1, x1 - x0), h);
      labels.push(band.label);
    }
    canvas.title = `last ${Math.round(span / 60)} min: ${[...new Set(labels)].join(", ") || "no events"}`;
  }
}

// ---- events --------------------------------------------------------------------------------------
function renderEvent(ev) {
  state.events.set(ev.id, ev);
  const bands = state.bands.get(ev.stream) || [];
  const i = bands.findIndex((b) => b.id === ev.id);
  if (i >= 0) bands[i] = ev; else bands.push(ev);
  state.bands.set(ev.stream, bands);
  const body = $("#events tbody");
  let row = document.getElementById(`ev-${ev.id}`);
  if (!row) {
    row = el("tr");
    row.id = `ev-${ev.id}`;
    body.prepend(row);
    while (body.rows.length > 200) body.deleteRow(body.rows.length - 1);
  }
  row.className = ev.phase === "end" ? "" : "open";
  const label = el("td");
  const dot = el("span", "dot");
  dot.style.background = hue(ev.label);
  label.append(dot, ev.label);
  const clip = el("td");
  if (ev.clip) {
    const play = el("button", "play", "▶ play");
    play.addEventListener("click", () => playClip(ev));
    clip.append(play);
    if (!ev.clip_complete) {
      const note = el("span", "pending", " incomplete");
      note.title = ev.clip_note || "";
      clip.append(note);
    }
  } else if (ev.clip_pending || ev.phase !== "end") {
    clip.append(el("span", "pending", ev.phase === "end" ? "writing…" : "recording…"));
  }
  row.replaceChildren(label, el("td", "", ev.stream), el("td", "num", fmtTime(ev.start_ts)),
    el("td", "num", ev.duration_s != null ? `${Number(ev.duration_s).toFixed(1)} s` : ""),
    el("td", "num", ev.peak_score != null ? Number(ev.peak_score).toFixed(2) : ""), clip);
}

function playClip(ev) {
  const video = $("#video");
  $("#player-title").textContent = `${ev.label} on ${ev.stream} at ${fmtTime(ev.start_ts)}`;
  video.src = ev.clip;
  $("#player").showModal();
  video.play().catch(() => {});
}

// ---- the live connection -------------------------------------------------------------------------
function applySnapshot(snap) {
  state.timelineS = snap.timeline_s;
  state.skew = Date.now() / 1000 - snap.server_ts;
  document.body.classList.toggle("many", snap.streams.length > 16);
  snap.streams.forEach(renderTile);
  $("#events tbody").replaceChildren();
  state.bands = new Map(Object.entries(snap.bands));
  [...snap.events].reverse().forEach(renderEvent);
  $("#summary").textContent = `${snap.streams.length} stream${snap.streams.length === 1 ? "" : "s"}`;
  drawTimelines();
  sendWatch();
}

function connect() {
  const conn = $("#conn");
  const source = new EventSource("/api/updates");
  source.addEventListener("open", () => { conn.textContent = "live"; conn.className = "conn live"; });
  source.addEventListener("error", () => { conn.textContent = "reconnecting…"; conn.className = "conn lost"; });
  source.addEventListener("snapshot", (e) => applySnapshot(JSON.parse(e.data)));
  source.addEventListener("tile", (e) => renderTile(JSON.parse(e.data)));
  source.addEventListener("event", (e) => { renderEvent(JSON.parse(e.data)); drawTimelines(); });
  source.addEventListener("stop", () => {
    source.close();
    previews.stopped = true;
    if (previews.socket) previews.socket.close();
    conn.textContent = "stopped";
    conn.className = "conn lost";
  });
}

$("#player").addEventListener("close", () => { $("#video").pause(); });
setInterval(drawTimelines, 1000);
connect();
connectPreviews();
