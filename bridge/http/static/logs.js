// Logs: the bridge's log lines, live (what it publishes on bridge/log), filtered by level and feature.
"use strict";
import {el, field} from "./dom.js";
import {get, request} from "./api.js";

const LEVELS = ["debug", "info", "warning", "error", "critical"];

export class LogsPage {
  constructor(app) {
    this.lines = [];
    this.level = el("select", {name: "level", onchange: () => this.render()},
      LEVELS.map(l => el("option", {value: l, selected: l === "debug"}, `${l} and above`)));
    this.feature = el("select", {name: "feature", onchange: () => this.render()}, el("option", {value: ""}, "all"));
    this.list = el("ol", {id: "log-lines", class: "log", "aria-live": "off"});
    this.bridgeLevel = el("select", {name: "bridge_level"}, LEVELS.slice(0, 4).map(l => el("option", {value: l, selected: l === "info"}, l)));
    this.result = el("p", {class: "result", role: "status"});
    this.root = el("section", {"aria-labelledby": "logs-title"}, el("h2", {id: "logs-title"}, "Logs"),
      el("div", {class: "filters"}, field("Level", this.level), field("Feature", this.feature),
        el("form", {class: "inline", onsubmit: async e => {
          e.preventDefault();
          const a = await request("log_level", {level: this.bridgeLevel.value});
          this.result.textContent = a.status === "ok" ? `The bridge now logs ${a.data.level} and above.` : a.error;
        }}, field("Bridge log level", this.bridgeLevel), el("button", {type: "submit"}, "Set"))),
      this.result, this.list);
  }

  async load() {
    this.lines = (await get("/ui/api/logs")).lines;
    this.render();
  }

  featureOf(line) { return (line.logger || "").split(".").slice(0, 2).join("."); }

  add(line) {
    this.lines.push(line);
    if (this.lines.length > 500) this.lines.shift();
    if (this.shows(line)) {
      this.list.prepend(this.item(line));
      while (this.list.children.length > 500) this.list.lastChild.remove();
    }
    this.addFeature(this.featureOf(line));
  }

  addFeature(f) {
    if (f && ![...this.feature.options].some(o => o.value === f)) this.feature.append(el("option", {value: f}, f));
  }

  shows(line) {
    return LEVELS.indexOf(line.level) >= LEVELS.indexOf(this.level.value)
      && (!this.feature.value || this.featureOf(line) === this.feature.value);
  }

  item(line) {
    return el("li", {class: `lvl-${line.level}`}, el("time", {}, line.time ? new Date(line.time).toLocaleTimeString() : ""),
      el("span", {class: "lvl"}, line.level), el("span", {class: "logger"}, line.logger || ""), el("span", {}, line.message));
  }

  render() {
    for (const l of this.lines) this.addFeature(this.featureOf(l));
    this.list.textContent = "";
    const shown = this.lines.filter(l => this.shows(l)).reverse();
    for (const l of shown) this.list.append(this.item(l));
    if (!shown.length) this.list.append(el("li", {class: "muted"}, "No log lines match."));
  }
}
