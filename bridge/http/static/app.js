// The status page: the bridge's gated node state, live. No build step, nothing from outside this host.
"use strict";

const POINTS = 120;                       // chart history per node (one point per state update)
const nodes = new Map();                  // name -> {summary, history: [[t, score, baseline]], el}
let events = [];

// A token in the URL fragment (never sent to the server, never in a log) becomes a cookie.
if (location.hash.startsWith("#token=")) {
  document.cookie = `ruview_token=${encodeURIComponent(location.hash.slice(7))}; path=/; SameSite=Strict`;
  history.replaceState(null, "", location.pathname);
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function fmt(v, digits = 1, unit = "") {
  return v === null || v === undefined ? "—" : `${Number(v).toFixed(digits)}${unit}`;
}

function notice(text) {
  const n = document.getElementById("notice");
  n.textContent = text; n.hidden = !text;
}

async function getJSON(path) {
  const r = await fetch(path, {credentials: "same-origin"});
  if (r.status === 401) {
    notice("This bridge needs its API token: open this page as " + location.origin + "/#token=YOUR_TOKEN");
    throw new Error("unauthorized");
  }
  return r.json();
}

function renderHealth(h) {
  const dot = document.querySelector("#health .dot");
  dot.className = "dot " + (h.mqtt && h.mqtt.connected ? "on" : "bad");
  const up = h.uptime_s ? `${Math.floor(h.uptime_s / 60)} min` : "—";
  document.getElementById("health-text").textContent =
    `MQTT ${h.mqtt && h.mqtt.connected ? "connected" : "disconnected"} · ${h.nodes.online}/${h.nodes.count} nodes online · ` +
    `${fmt(h.frames_per_second, 1)} frames/s · up ${up} · v${h.version}`;
}

function card(name) {
  const canvas = el("canvas", {width: 600, height: 140, "aria-label": `presence score of ${name}`});
  const e = el("article", {class: "node", "data-node": name},
    el("header", {}, el("h3", {}, name), el("span", {class: "room"})),
    el("div", {class: "badges"}), canvas, el("dl", {class: "facts"}));
  document.getElementById("nodes").append(e);
  return e;
}

function renderNode(s) {
  let n = nodes.get(s.name);
  if (!n) {
    if (!nodes.size) document.getElementById("nodes").textContent = "";
    n = {history: [], el: card(s.name)};
    nodes.set(s.name, n);
  }
  n.summary = s;
  if (s.presence_score) n.history.push([Date.now(), s.presence_score, s.baseline]);
  if (n.history.length > POINTS) n.history.shift();
  const e = n.el;
  e.classList.toggle("offline", !s.online);
  e.querySelector(".room").textContent = `${s.room || "no room"} · ${s.privacy_class}`;
  const badges = e.querySelector(".badges");
  badges.textContent = "";
  const badge = (text, on, alert) => badges.append(el("span", {class: "badge" + (on ? " yes" : "") + (alert ? " alert" : "")}, text));
  badge(s.online ? "online" : "offline", s.online);
  badge(s.presence === null || s.presence === undefined ? "presence unknown" : (s.presence ? "present" : "empty"), s.presence);
  badge(s.occupancy ? "occupied" : "not occupied", s.occupancy);
  if (s.motion) badge("motion", true);
  if (s.fall) badge("fall", false, true);
  if (s.calibrating) badge("calibrating", false);
  const facts = e.querySelector(".facts");
  facts.textContent = "";
  const fact = (k, v) => facts.append(el("dt", {}, k), el("dd", {}, v));
  fact("score / baseline", `${fmt(s.presence_score, 2)} / ${fmt(s.baseline, 2)}`);
  fact("persons", s.persons ?? "—");
  if ("breathing_bpm" in s || "heart_bpm" in s) {
    fact("breathing", fmt(s.breathing_bpm, 1, " br/min"));
    fact("heart rate", fmt(s.heart_bpm, 0, " bpm"));
  } else if (s.privacy_class === "restricted") {
    fact("vitals", "withheld (restricted)");
  }
  fact("signal", fmt(s.rssi, 0, " dBm"));
  fact("last seen", s.last_seen ? new Date(s.last_seen).toLocaleTimeString() : "—");
  draw(n);
  document.getElementById("node-count").textContent = `(${nodes.size})`;
}

function draw(n) {
  const c = n.el.querySelector("canvas"), g = c.getContext("2d");
  const w = c.width, h = c.height, pts = n.history;
  g.clearRect(0, 0, w, h);
  if (pts.length < 2) return;
  const values = pts.flatMap(p => [p[1], p[2]].filter(v => v > 0));
  const lo = Math.log(Math.min(...values) * 0.8), hi = Math.log(Math.max(...values) * 1.25);
  const y = v => h - 6 - (Math.log(v) - lo) / (hi - lo || 1) * (h - 12);
  const x = i => 4 + i * (w - 8) / (POINTS - 1);
  const line = (idx, colour, width) => {
    g.beginPath(); g.strokeStyle = colour; g.lineWidth = width;
    pts.forEach((p, i) => { if (p[idx] > 0) (i ? g.lineTo(x(i), y(p[idx])) : g.moveTo(x(i), y(p[idx]))); });
    g.stroke();
  };
  line(2, "#16a34a", 2);       // baseline
  line(1, "#2563eb", 2.5);     // smoothed score
}

function renderEvent(ev, live = true) {
  const list = document.getElementById("events");
  if (!events.length) list.textContent = "";
  events.unshift(ev);
  const t = ev.time ? new Date(ev.time).toLocaleTimeString() : "";
  const item = el("li", {}, el("time", {}, t), `${ev.node} · ${ev.event_type.replaceAll("_", " ")}`);
  live ? list.prepend(item) : list.append(item);
  while (list.children.length > 50) list.lastChild.remove();
}

function renderPlugins(plugins) {
  const list = document.getElementById("plugins");
  if (!plugins.length) return;
  list.textContent = "";
  for (const p of plugins) list.append(el("li", {}, `${p.name || p.id} ${p.version || ""} — ${p.state || ""}`));
}

async function start() {
  try {
    const status = await getJSON("/api/v1/status");
    renderHealth(status.health);
    status.nodes.forEach(renderNode);
    status.events.slice().reverse().forEach(e => renderEvent(e, true));
    renderPlugins(status.plugins);
  } catch (e) { return; }
  const stream = new EventSource("/api/v1/events/stream");
  stream.addEventListener("node_state", m => renderNode(JSON.parse(m.data)));
  stream.addEventListener("node_event", m => renderEvent(JSON.parse(m.data)));
  stream.addEventListener("node_removed", m => {
    const d = JSON.parse(m.data), n = nodes.get(d.name);
    if (n) { n.el.remove(); nodes.delete(d.name); }
  });
  stream.onerror = () => document.querySelector("#health .dot").className = "dot bad";
  stream.onopen = () => notice("");
  setInterval(async () => { try { renderHealth(await getJSON("/health")); } catch (e) {} }, 5000);
}

start();
