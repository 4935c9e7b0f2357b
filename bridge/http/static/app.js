// The frontend: a session, the live stream, and a page per section (#/home, #/nodes, #/nodes/<name>,
// #/plugins, #/homekit, #/assist, #/logs, #/updates). Plain ES modules: no build step, nothing from
// outside this host (docs/http.md says why).
"use strict";
import {el, fmt, field} from "./dom.js";
import * as api from "./api.js";
import {HomePage} from "./home.js";
import {nodesTable, NodePage} from "./nodes.js";
import {PluginsPage} from "./plugins.js";
import {HomeKitPage} from "./homekit.js";
import {AssistPage} from "./assist.js";
import {LogsPage} from "./logs.js";
import {UpdatesPage} from "./updates.js";

class App {
  constructor() {
    this.nodes = new Map();   // name -> node row
    this.view = document.getElementById("view");
    this.home = new HomePage(this);
    this.logs = new LogsPage(this);
    this.page = null;
    this.overview = null;
  }

  async start() {
    const s = await api.session();
    if (!s.logged_in) return this.showLogin();
    document.getElementById("logout").hidden = !s.login_required;
    await this.refresh();
    this.listen();
    await this.logs.load();
    window.addEventListener("hashchange", () => this.route());
    await this.route();
    setInterval(() => this.refresh().catch(() => {}), 10000);
  }

  async refresh() {
    const o = this.overview = await api.get("/ui/api/overview");
    this.nodes = new Map(o.nodes.map(n => [n.name, n]));
    this.health(o.health, o.features);
    if (this.page === this.home) this.home.renderRooms();
    return o;
  }

  health(h, features) {
    const on = h.mqtt && h.mqtt.connected;
    document.querySelector("#health .dot").className = "dot " + (on ? "on" : "bad");
    const up = h.uptime_s ? `${Math.floor(h.uptime_s / 60)} min` : "—";
    document.getElementById("health-text").textContent =
      `MQTT ${on ? "connected" : "disconnected"} · ${h.nodes.online}/${h.nodes.count} nodes online · ` +
      `${fmt(h.frames_per_second, 1)} frames/s · up ${up} · v${h.version}`;
    if (features) {
      for (const [name, link] of [["plugins", "nav-plugins"], ["homekit", "nav-homekit"], ["assist", "nav-assist"]]) {
        document.getElementById(link).classList.toggle("off", features[name] !== "running");
      }
    }
  }

  listen() {
    api.stream({
      node_state: s => {
        const row = {...(this.nodes.get(s.name) || {}), ...s};
        this.nodes.set(s.name, row);
        if (this.page === this.home) this.home.renderRooms();
        if (this.page instanceof NodePage) this.page.onState(row);
      },
      node_event: e => this.home.onEvent(e),
      node_removed: d => { this.nodes.delete(d.name); if (this.page === this.home) this.home.renderRooms(); },
      sample: d => this.home.chart.add(d.name, d.point, d.replaces),
      log: line => this.logs.add(line),
    }, ok => { if (!ok) document.querySelector("#health .dot").className = "dot bad"; });
  }

  async route() {
    const [section, name] = (location.hash.replace(/^#\/?/, "") || "home").split("/").map(decodeURIComponent);
    for (const a of document.querySelectorAll("nav a")) {
      a.toggleAttribute("aria-current", a.getAttribute("href") === `#/${section}`);
      if (a.hasAttribute("aria-current")) a.setAttribute("aria-current", "page");
    }
    let page;
    try {
      if (section === "nodes" && name) { page = new NodePage(this, name); this.show(page); await page.load(); return; }
      if (section === "nodes") { await this.refresh(); this.page = "nodes"; this.swap(nodesTable(this)); return; }
      page = {home: this.home, plugins: new PluginsPage(this), homekit: new HomeKitPage(this),
              assist: this.assist || (this.assist = new AssistPage(this)), logs: this.logs,
              updates: new UpdatesPage(this)}[section];
      if (page === undefined) { this.swap(el("p", {}, "No such page. ", el("a", {href: "#/home"}, "Home"))); return; }
      this.show(page);
      if (page === this.home) this.home.show(await this.refresh());
      else if (page.load) await page.load();
    } catch (e) {
      if (e instanceof api.LoginNeeded) return this.showLogin();
      this.swap(el("p", {class: "result bad", role: "alert"}, `Could not load this page: ${e.message}`));
    }
  }

  show(page) { this.page = page; this.swap(page.root); }

  swap(node) {
    this.view.textContent = "";
    this.view.append(node);
    const heading = node.querySelector ? node.querySelector("h2") : null;
    if (heading) { heading.tabIndex = -1; heading.focus({preventScroll: true}); }
  }

  showLogin() {
    document.querySelector("nav").hidden = true;
    const secret = el("input", {type: "password", name: "secret", autocomplete: "current-password", required: true});
    const result = el("p", {class: "result", role: "alert"});
    this.swap(el("section", {"aria-labelledby": "login-title"}, el("h2", {id: "login-title"}, "Log in"),
      el("form", {class: "card", onsubmit: async e => {
        e.preventDefault();
        try {
          await api.login(secret.value);
          location.reload();
        } catch (err) { result.textContent = err.message; result.className = "result bad"; }
      }}, field("API token or password", secret, "RUVIEW_API_TOKEN, or the password behind http.password_hash"),
        el("button", {type: "submit"}, "Log in"), result)));
  }
}

document.getElementById("logout").addEventListener("click", async () => { await api.logout(); location.reload(); });
const app = new App();
// a session that ended (expired, or the bridge restarted) while the page was open: log in again
// (on loopback a new session needs no login: the page just starts again)
window.addEventListener("unhandledrejection", e => {
  if (!(e.reason instanceof api.LoginNeeded)) return;
  e.preventDefault();
  api.session().then(s => s.logged_in ? location.reload() : app.showLogin()).catch(() => app.showLogin());
});
app.start().catch(e => {
  if (e instanceof api.LoginNeeded) return app.showLogin();
  document.getElementById("view").textContent = `The bridge did not answer: ${e.message}`;
});
