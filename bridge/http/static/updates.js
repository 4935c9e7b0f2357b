// Updates: the firmware releases the bridge holds, each node's installed version, and a rollout
// (node/ota: one canary, then batches, halting at the first failure) with its progress (node/ota_status).
"use strict";
import {el, field} from "./dom.js";
import {request} from "./api.js";

const WATCH_MS = 1000;  // how often a running rollout is looked at

export class UpdatesPage {
  constructor(app) {
    this.app = app;
    this.timer = null;
    this.root = el("section", {"aria-labelledby": "updates-title"}, el("h2", {id: "updates-title"}, "Updates"),
      el("p", {class: "muted"}, "Loading…"));
  }

  async load() {
    const answer = await request("node/ota_status");
    const r = this.root;
    r.textContent = "";
    r.append(el("h2", {id: "updates-title"}, "Updates"));
    if (answer.status !== "ok") {
      r.append(el("p", {}, "Over-the-air updates are off on this bridge (ota.enabled: true turns them on; "
        + "docs/nodes.md, \"Update nodes over the air\")."));
      return;
    }
    const {releases, installed, rollout} = answer.data;
    const version = el("select", {name: "version"}, releases.slice().reverse().map(v => el("option", {value: v}, v)));
    const result = el("p", {id: "rollout-result", class: "result", role: "status"});
    r.append(el("div", {class: "grid"},
      el("div", {class: "card"}, el("h3", {}, "Releases"),
        releases.length ? el("ul", {id: "releases"}, releases.map(v => el("li", {}, v)))
          : el("p", {id: "releases"}, "None yet: `ruview-node release add IMAGE` adds one."),
        releases.length ? el("form", {onsubmit: e => { e.preventDefault(); this.start(version.value, result); }},
          field("Version", version, "Every node not pinned elsewhere (ota.pins) gets it: one canary first, then batches"),
          el("button", {type: "submit"}, "Update all nodes"), result) : null),
      el("div", {class: "card"}, el("h3", {}, "Nodes"), this.table(installed, rollout))));
    r.append(this.progress(rollout));
    this.watch(rollout);
  }

  table(installed, rollout) {
    const names = Object.keys(installed).sort();
    const steps = (rollout && rollout.per_node) || {};
    if (!names.length) return el("p", {}, "No node has said its version yet.");
    return el("div", {class: "scroll"}, el("table", {class: "table", id: "versions"},
      el("thead", {}, el("tr", {}, ["Node", "Installed", "Rollout"].map(h => el("th", {scope: "col"}, h)))),
      el("tbody", {}, names.map(n => {
        const step = steps[n];
        return el("tr", {}, el("td", {}, n), el("td", {}, installed[n] || "unknown"),
          el("td", {}, step ? `${step.state}${step.percent !== undefined && step.state === "uploading"
            ? ` ${step.percent} %` : ""}` : "—"));
      }))));
  }

  progress(rollout) {
    if (!rollout) return el("p", {id: "rollout-state", class: "muted"}, "No rollout yet.");
    const why = rollout.why ? `: ${rollout.why}` : "";
    return el("p", {id: "rollout-state", class: rollout.state === "halted" ? "result bad" : "result"},
      `Rollout ${rollout.id} to ${rollout.version}: ${rollout.state}${why}`);
  }

  async start(version, result) {
    const answer = await request("node/ota", {nodes: "all", version});
    if (answer.status !== "ok") {
      result.textContent = answer.error;
      result.className = "result bad";
      return;
    }
    await this.load();
  }

  watch(rollout) {
    clearTimeout(this.timer);
    if (rollout && rollout.state === "running") {
      this.timer = setTimeout(() => { if (this.app.page === this) this.load(); }, WATCH_MS);
    }
  }
}
