// Home: the rooms with presence and occupancy, each node's card, the live chart, events as they happen.
"use strict";
import {el, fmt, ago, presenceText} from "./dom.js";
import {Chart} from "./chart.js";

export class HomePage {
  constructor(app) {
    this.app = app;
    this.chart = new Chart();
    this.root = el("section", {"aria-labelledby": "home-title"},
      el("h2", {id: "home-title"}, "Home"),
      el("div", {id: "rooms", class: "rooms"}),
      el("h3", {}, "Presence over time"), this.chart.box,
      el("h3", {}, "Events"), el("ol", {id: "events", class: "events"}));
  }

  show(data) {
    this.chart.load(data.samples);
    this.renderRooms();
    const list = this.root.querySelector("#events");
    list.textContent = "";
    for (const e of data.events) list.append(this.eventItem(e));
    if (!data.events.length) list.append(el("li", {class: "muted"}, "Nothing yet."));
  }

  renderRooms() {
    const box = this.root.querySelector("#rooms");
    box.textContent = "";
    const rooms = new Map();
    for (const n of this.app.nodes.values()) {
      const room = n.room || `${n.name} (no room)`;
      if (!rooms.has(room)) rooms.set(room, []);
      rooms.get(room).push(n);
    }
    if (!rooms.size) box.append(el("p", {class: "muted"}, "No nodes yet: they appear when they send their first frame."));
    for (const [room, nodes] of [...rooms.entries()].sort()) {
      const present = nodes.some(n => n.presence), occupied = nodes.some(n => n.occupancy);
      const unknown = nodes.every(n => n.presence === null || n.presence === undefined);
      box.append(el("article", {class: "room" + (occupied ? " occupied" : ""), "aria-label": `Room ${room}`},
        el("h3", {}, room),
        el("p", {class: "state"}, el("strong", {}, occupied ? "Occupied" : "Not occupied"), " · ",
           unknown ? "presence unknown" : present ? "someone there now" : "nobody there now"),
        nodes.map(n => this.card(n))));
    }
  }

  card(s) {
    const facts = [["room", `${s.room || "no room"} · ${s.privacy_class}`],
                   ["score / baseline", `${fmt(s.presence_score, 2)} / ${fmt(s.baseline, 2)}`],
                   ["persons", s.persons ?? "—"]];
    if ("breathing_bpm" in s || "heart_bpm" in s) {
      facts.push(["breathing", fmt(s.breathing_bpm, 1, " br/min")], ["heart rate", fmt(s.heart_bpm, 0, " bpm")]);
    } else if (s.privacy_class === "restricted") {
      facts.push(["vitals", "withheld (restricted)"]);
    }
    facts.push(["signal", fmt(s.rssi, 0, " dBm")], ["last seen", ago(s.last_seen)]);
    const badges = [[s.online ? "online" : "offline", s.online], [presenceText(s), s.presence]];
    if (s.motion) badges.push(["motion", true]);
    if (s.fall) badges.push(["fall", false, true]);
    if (s.calibrating) badges.push(["calibrating", false]);
    return el("div", {class: "node" + (s.online ? "" : " offline"), "data-node": s.name},
      el("h4", {}, el("a", {href: `#/nodes/${encodeURIComponent(s.name)}`}, s.name)),
      el("div", {class: "badges"}, badges.map(([t, on, alert]) =>
        el("span", {class: "badge" + (on ? " yes" : "") + (alert ? " alert" : "")}, t))),
      el("dl", {class: "facts"}, facts.map(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))])));
  }

  eventItem(e) {
    const t = e.time ? new Date(e.time).toLocaleTimeString() : "";
    return el("li", {}, el("time", {datetime: e.time || ""}, t), ` ${e.node} · ${e.event_type.replaceAll("_", " ")}`,
      e.room ? ` · ${e.room}` : "");
  }

  onEvent(e) {
    const list = this.root.querySelector("#events");
    if (list.querySelector(".muted")) list.textContent = "";
    list.prepend(this.eventItem(e));
    while (list.children.length > 50) list.lastChild.remove();
  }
}
