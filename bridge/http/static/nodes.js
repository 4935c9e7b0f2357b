// Nodes: the table, and a node's page (name, room, privacy class, expected hours, thresholds,
// calibration, removal). Every change is a request verb; the page then shows what the bridge says.
"use strict";
import {el, fmt, ago, field, presenceText, say} from "./dom.js";
import {get, request} from "./api.js";

export function nodesTable(app) {
  const rows = [...app.nodes.values()].sort((a, b) => a.node_id - b.node_id).map(n => el("tr", {},
    el("th", {scope: "row"}, el("a", {href: `#/nodes/${encodeURIComponent(n.name)}`}, n.name)),
    el("td", {}, n.room || "—"), el("td", {}, n.privacy_class),
    el("td", {}, n.online ? "online" : "offline"), el("td", {}, presenceText(n)),
    el("td", {}, ago(n.last_seen)), el("td", {}, fmt(n.rssi, 0, " dBm")),
    el("td", {}, n.packet_loss === null || n.packet_loss === undefined ? "—" : `${(n.packet_loss * 100).toFixed(1)} %`),
    el("td", {}, n.firmware || "—")));
  return el("section", {"aria-labelledby": "nodes-title"},
    el("h2", {id: "nodes-title"}, "Nodes"),
    rows.length ? el("div", {class: "scroll"}, el("table", {class: "table"},
      el("caption", {class: "muted"}, `${rows.length} node${rows.length === 1 ? "" : "s"}; a name opens its page`),
      el("thead", {}, el("tr", {}, ["Name", "Room", "Privacy class", "Online", "Presence", "Last seen", "Signal",
        "Packet loss", "Firmware"].map(h => el("th", {scope: "col"}, h)))),
      el("tbody", {}, rows)))
      : el("p", {class: "muted"}, "No nodes yet: they appear when they send their first frame."));
}

export class NodePage {
  constructor(app, name) {
    this.app = app;
    this.name = name;
    this.calibration = null;  // {started, seconds, timer, seen}
    this.root = el("section", {"aria-labelledby": "node-title"}, el("p", {class: "muted"}, "Loading…"));
  }

  async load() {
    const data = await get(`/ui/api/node/${encodeURIComponent(this.name)}`);
    this.node = data.node;
    this.classes = data.classes;
    this.render();
  }

  render() {
    const n = this.node, r = this.root;
    r.textContent = "";
    const nameIn = el("input", {name: "name", value: n.name, autocomplete: "off", required: true, maxlength: 64});
    const roomIn = el("input", {name: "room", value: n.room || "", autocomplete: "off", maxlength: 64});
    const saved = el("p", {class: "result", role: "status"});
    const identity = el("form", {class: "card", "aria-labelledby": "identity-title", onsubmit: e => {
      e.preventDefault(); this.saveIdentity(nameIn.value.trim(), roomIn.value.trim(), saved);
    }}, el("h3", {id: "identity-title"}, "Name and room"),
      field("Name", nameIn, "lower-case letters and digits, words joined by - or _"),
      field("Room", roomIn, "as Home Assistant, HomeKit and assist name it"),
      el("button", {type: "submit"}, "Save"), saved);

    const current = this.classes.find(c => c.class === n.privacy_class);
    const privacyResult = el("p", {class: "result", role: "status"});
    const choices = this.classes.filter(c => c.exportable).map(c => {
      const id = `class-${c.class}`;
      const allowed = c.exportable && c.level >= current.level;
      return el("div", {class: "choice"},
        el("input", {type: "radio", name: "class", id, value: c.class, checked: c.class === n.privacy_class,
                     disabled: !allowed, "aria-describedby": `${id}-says`}),
        el("label", {for: id}, c.class),
        el("small", {id: `${id}-says`, class: "hint"}, `Lets out: ${c.lets_out}`));
    });
    const privacy = el("form", {class: "card", onsubmit: e => {
      e.preventDefault();
      const chosen = privacy.querySelector("input[name=class]:checked");
      if (chosen) this.setClass(chosen.value, privacyResult);
    }}, el("fieldset", {}, el("legend", {}, "Privacy class"), choices,
      el("p", {class: "hint"}, "Raw CSI never leaves this host, whatever the class. A class only moves toward more "
        + "privacy while the bridge runs (privacy rule 4); raw and derived nodes are never exported (rule 2).")),
      el("button", {type: "submit"}, "Apply privacy class"), privacyResult);

    const th = n.thresholds || {};
    const enterIn = el("input", {type: "number", step: "0.05", min: "1", value: th.enter_ratio ?? "", name: "enter_ratio"});
    const exitIn = el("input", {type: "number", step: "0.05", min: "1", value: th.exit_ratio ?? "", name: "exit_ratio"});
    const holdIn = el("input", {type: "number", step: "1", min: "0", value: th.hold ?? "", name: "hold"});
    const thResult = el("p", {class: "result", role: "status", id: "th-result"});
    const thresholds = el("form", {class: "card", "aria-labelledby": "th-title", onsubmit: e => {
      e.preventDefault(); this.setThresholds({enter_ratio: enterIn.value, exit_ratio: exitIn.value, hold: holdIn.value}, thResult);
    }}, el("h3", {id: "th-title"}, "Presence thresholds"),
      field("Enter ratio", enterIn, "score over baseline that means someone came in"),
      field("Exit ratio", exitIn, "score over baseline below which the room is empty"),
      field("Hold (seconds)", holdIn, "how long presence is held after the score drops"),
      el("button", {type: "submit"}, "Save thresholds"), thResult);

    const progress = el("progress", {max: "100", value: "0", "aria-label": "Calibration progress"});
    const calStatus = el("p", {id: "calibration-status", role: "status"},
      n.calibrating ? "Calibrating…" : n.baseline ? `Baseline ${fmt(n.baseline, 2)}` : "No baseline yet");
    const calibrate = el("div", {class: "card", "aria-labelledby": "cal-title"},
      el("h3", {id: "cal-title"}, "Calibration"),
      el("p", {class: "hint"}, "Keep the room empty while the node learns its baseline."),
      el("button", {type: "button", onclick: () => this.calibrate(progress, calStatus)}, "Calibrate"),
      progress, calStatus);

    const hoursIn = el("input", {name: "expected_hours", value: n.expected_hours.join(", "), autocomplete: "off",
                                 placeholder: "07:00-23:30"});
    const hoursResult = el("p", {class: "result", role: "status", id: "hours-result"});
    const hours = el("form", {class: "card", onsubmit: e => {
      e.preventDefault(); this.setHours(hoursIn.value, hoursResult);
    }}, el("h3", {id: "hours-title"}, "Expected hours"),
      field("Expected hours", hoursIn, "when occupancy is expected, e.g. 07:00-23:30, comma separated; empty: any time"
        + " (occupancy outside them raises unexpected_occupancy)"),
      el("button", {type: "submit"}, "Save expected hours"), hoursResult);

    const removed = el("p", {class: "result", role: "status"});
    const remove = el("div", {class: "card danger"}, el("h3", {}, "Remove"),
      el("p", {class: "hint"}, "Forgets the node and clears its retained topics; it comes back if it sends again."),
      el("button", {type: "button", class: "danger", onclick: () => this.remove(removed)}, "Remove node"), removed);

    r.append(el("p", {}, el("a", {href: "#/nodes"}, "← Nodes")),
      el("h2", {id: "node-title"}, n.name),
      el("p", {class: "muted", id: "node-facts"}, `node ${n.node_id} · ${n.online ? "online" : "offline"} · ${presenceText(n)} · `
        + `${n.room || "no room"} · ${n.privacy_class} · firmware ${n.firmware || "unknown"}`),
      el("div", {class: "grid"}, identity, calibrate, privacy, thresholds, hours, remove));
  }

  async saveIdentity(name, room, box) {
    const n = this.node;
    let answer = {status: "ok", data: {}};
    if (name !== n.name) {
      answer = await request("node/rename", {from: n.name, to: name});
      if (answer.status !== "ok") return say(box, answer);
    }
    if (room !== (n.room || "")) {
      answer = await request("node/set", {node: name, room: room || null});
      if (answer.status !== "ok") return say(box, answer);
    }
    say(box, answer, "Saved.");
    if (name !== n.name) {
      this.name = name;
      history.replaceState(null, "", `#/nodes/${encodeURIComponent(name)}`);
    }
    await this.load();
    this.root.querySelector("form .result").textContent = "Saved.";
  }

  async setClass(cls, box) {
    say(box, await request("node/privacy", {node: this.node.name, class: cls}), `Now ${cls}.`);
    await this.load();
  }

  async setThresholds(values, box) {
    const body = {node: this.node.name};
    for (const [k, v] of Object.entries(values)) if (v !== "") body[k] = Number(v);
    const answer = await request("node/set", body);
    if (answer.status === "ok") await this.load();
    say(this.root.querySelector("#th-result") || box, answer, "Saved.");
  }

  async setHours(text, box) {
    const hours = text.split(",").map(h => h.trim()).filter(Boolean);
    const answer = await request("node/set", {node: this.node.name, expected_hours: hours.length ? hours : null});
    if (answer.status === "ok") await this.load();
    say(this.root.querySelector("#hours-result") || box, answer, "Saved.");
  }

  async calibrate(progress, status) {
    const answer = await request("node/calibrate", {node: this.node.name});
    if (answer.status !== "ok") return say(status, answer);
    const seconds = answer.data.seconds;
    if (this.calibration) clearInterval(this.calibration.timer);
    const c = this.calibration = {started: Date.now(), seconds, seen: false};
    const tick = () => {
      const done = Math.min(1, (Date.now() - c.started) / 1000 / seconds);
      progress.value = Math.round(done * 100);
      if (this.calibration === c && status.dataset.done !== "1") {
        status.textContent = `Calibrating: ${Math.round(done * seconds)} of ${Math.round(seconds)} s — keep the room empty`;
      }
    };
    status.dataset.done = "";
    c.timer = setInterval(tick, 250);
    tick();
  }

  // the node's live state: the calibration ends when the bridge says it does
  onState(s) {
    if (!this.node || s.name !== this.node.name) return;
    Object.assign(this.node, s);
    const c = this.calibration;
    if (!c) return;
    if (s.calibrating) c.seen = true;
    else if (c.seen) {
      clearInterval(c.timer);
      this.calibration = null;
      const progress = this.root.querySelector("progress"), status = this.root.querySelector("#calibration-status");
      progress.value = 100;
      status.dataset.done = "1";
      status.textContent = `Calibrated: baseline ${fmt(s.baseline, 2)}`;
    }
  }

  async remove(box) {
    if (!confirm(`Remove ${this.node.name}?`)) return;
    const answer = await request("node/remove", {node: this.node.name});
    say(box, answer, "Removed.");
    if (answer.status === "ok") location.hash = "#/nodes";
  }
}
