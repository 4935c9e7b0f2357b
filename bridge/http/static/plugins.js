// Plugins: each plugin's status, permissions and counters, load/unload/reload (request verbs),
// and the audit log with its hash chain checked.
"use strict";
import {el, field, say} from "./dom.js";
import {get, request} from "./api.js";

const COUNTERS = ["events", "dropped", "denied", "host_calls", "crashes", "rate_limited", "queued"];

// a module hash in full is noise in a table: its first 12 hex digits name it
const short = v => v.replace(/\b(sha256:)?([0-9a-f]{12})[0-9a-f]{52}\b/g, "$1$2…");

export class PluginsPage {
  constructor(app) {
    this.app = app;
    this.result = el("p", {class: "result", role: "status"});
    this.root = el("section", {"aria-labelledby": "plugins-title"}, el("h2", {id: "plugins-title"}, "Plugins"),
      el("p", {class: "muted"}, "Loading…"));
  }

  async load() {
    this.data = await get("/ui/api/plugins");
    this.render();
  }

  render() {
    const d = this.data, r = this.root;
    r.textContent = "";
    r.append(el("h2", {id: "plugins-title"}, "Plugins"));
    if (!d.enabled) {
      r.append(el("p", {}, "Plugins are off on this bridge (plugins.enabled: true turns them on)."));
      return;
    }
    const path = el("input", {name: "path", autocomplete: "off", placeholder: "/var/lib/ruview/plugins/occupancy"});
    r.append(el("form", {class: "card", onsubmit: async e => {
      e.preventDefault();
      say(this.result, await request("plugin/load", {path: path.value.trim()}), "Loaded.");
      await this.load();
    }}, field("Plugin directory", path, "a directory with manifest.json and its signed module"),
      el("button", {type: "submit"}, "Load")), this.result);
    if (!d.plugins.length) r.append(el("p", {class: "muted"}, "No plugin is loaded."));
    for (const p of d.plugins) {
      const perms = p.permissions || [];
      r.append(el("article", {class: "card plugin", "data-plugin": p.domain, "aria-label": `Plugin ${p.name || p.domain}`},
        el("h3", {}, `${p.name || p.domain} `, el("span", {class: "muted"}, p.version || "")),
        el("p", {}, el("span", {class: "badge" + (p.state === "running" ? " yes" : " alert")}, p.state),
          ` domain ${p.domain} · ${p.category || "plugin"} · trust: ${p.trust || "—"}`, p.reason ? ` · ${p.reason}` : ""),
        el("p", {}, "Permissions (its manifest): ", p.permissions === null ? "unreadable" : perms.length ? perms.join(", ") : "none claimed"),
        el("dl", {class: "counters"}, COUNTERS.filter(k => k in p).map(k => [el("dt", {}, k.replaceAll("_", " ")), el("dd", {}, String(p[k]))])),
        el("div", {class: "buttons"},
          el("button", {type: "button", "aria-label": `Reload ${p.domain}`, onclick: async () => {
            say(this.result, await request("plugin/reload", {domain: p.domain}), `Reloaded ${p.domain}.`); await this.load();
          }}, "Reload"),
          el("button", {type: "button", class: "danger", "aria-label": `Unload ${p.domain}`, onclick: async () => {
            say(this.result, await request("plugin/unload", {domain: p.domain}), `Unloaded ${p.domain}.`); await this.load();
          }}, "Unload"))));
    }
    for (const p of d.rejected || []) {
      r.append(el("article", {class: "card plugin"}, el("h3", {}, p.name || p.domain),
        el("p", {}, el("span", {class: "badge alert"}, p.state || "rejected"), ` ${p.reason || ""}`)));
    }
    const a = d.audit;
    r.append(el("h3", {}, "Audit log"),
      el("p", {id: "audit-chain", class: a.problem ? "result bad" : "result good"},
        a.problem ? `Chain NOT verified: ${a.problem}` : `Chain verified: ${a.verified} record${a.verified === 1 ? "" : "s"}, none changed, removed or reordered`),
      el("p", {class: "muted"}, a.path || ""),
      el("div", {class: "scroll"}, el("table", {class: "table"},
        el("thead", {}, el("tr", {}, ["Time", "Plugin", "Action", "Detail"].map(h => el("th", {scope: "col"}, h)))),
        el("tbody", {}, a.records.map(rec => el("tr", {},
          el("td", {}, new Date(rec.time).toLocaleString()), el("td", {}, rec.plugin), el("td", {}, rec.action),
          el("td", {}, Object.entries(rec).filter(([k]) => !["time", "plugin", "action", "prev"].includes(k))
            .map(([k, v]) => `${k}: ${short(typeof v === "string" ? v : JSON.stringify(v))}`).join("; "))))))));
  }
}
