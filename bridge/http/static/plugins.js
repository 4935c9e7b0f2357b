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
          }}, "Unload")),
        settingsForm(p, async data => {
          const answer = await request("plugin/configure", {domain: p.domain, data});
          say(this.result, answer, `Saved ${p.domain}'s settings; it runs with them now.`);
          if (answer.status === "ok") await this.load();
          return answer;
        })));
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

// A plugin's settings, drawn from its signed config_schema (the form plugin/list carries): each field
// labelled with its title or path; Save sends plugin/configure, which checks it against the schema.
function settingsForm(p, save) {
  const fields = (p.config_form && p.config_form.fields) || [];
  if (!fields.length) return null;
  const entry = p.entry || {};
  const read = path => path.split(".").reduce((o, k) => (o && typeof o === "object" ? o[k] : undefined), entry);
  const inputs = fields.map(f => {
    const value = read(f.path) ?? f.default;
    let input;
    if (f.widget === "select") {
      input = el("select", {name: f.path}, (f.enum || []).map(v => el("option", {value: JSON.stringify(v),
        selected: JSON.stringify(v) === JSON.stringify(value)}, String(v))));
    } else if (f.widget === "checkbox") {
      input = el("input", {type: "checkbox", name: f.path, checked: value === true});
    } else if (f.widget === "number") {
      input = el("input", {type: "number", name: f.path, step: "any", value: value ?? "",
                           min: f.minimum, max: f.maximum});
    } else if (f.widget === "json") {
      input = el("textarea", {name: f.path, rows: "2"}, value === undefined ? "" : JSON.stringify(value));
    } else {
      input = el("input", {name: f.path, autocomplete: "off", value: value ?? "",
                           placeholder: f.widget === "entity" ? `${f.domain || "sensor"}.…` : ""});
    }
    return {f, input};
  });
  const result = el("p", {class: "result", role: "status"});
  const form = el("form", {class: "settings", onsubmit: async e => {
    e.preventDefault();
    const data = {};
    for (const {f, input} of inputs) {
      let v;
      if (f.widget === "checkbox") v = input.checked;
      else if (f.widget === "select") v = JSON.parse(input.value);
      else if (f.widget === "number") v = input.value === "" ? undefined : Number(input.value);
      else if (f.widget === "json") { try { v = input.value === "" ? undefined : JSON.parse(input.value); } catch { v = input.value; } }
      else v = input.value === "" ? undefined : input.value;
      if (v === undefined) continue;
      const keys = f.path.split(".");
      let o = data;
      for (const k of keys.slice(0, -1)) o = o[k] = o[k] || {};
      o[keys[keys.length - 1]] = v;
    }
    const answer = await save(data);
    result.textContent = answer.status === "ok" ? "Saved." : answer.error;
    result.className = answer.status === "ok" ? "result good" : "result bad";
  }}, inputs.map(({f, input}) => field(f.title || f.path, input, f.description)),
    el("button", {type: "submit", "aria-label": `Save ${p.domain} settings`}, "Save settings"), result);
  return el("details", {}, el("summary", {}, "Settings"), form);
}
