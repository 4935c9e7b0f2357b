// Drive the bridge's frontend in Debian's chromium (headless) as a person would, by the names a screen
// reader announces, and report what it saw as one JSON line.
// usage: node frontend.mjs '{"url": "...", "scenario": "rename", ...}'
import { chromium } from "playwright-core";

const spec = JSON.parse(process.argv[2]);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const origin = new URL(spec.url).origin;
const out = { requests_off_host: [], errors: [], console: [], failed_requests: [] };
const T = { timeout: spec.timeout || 20000 };
let page;

async function open(hash) {
  await page.goto(`${spec.url}${hash}`);
  await page.getByRole("navigation", { name: "Sections" }).waitFor(T);
}

async function shot(name) {
  if (spec.shots) await page.screenshot({ path: `${spec.shots}/${name}.png`, fullPage: true });
}

const scenarios = {
  // Nodes (nav link) -> the node's name (link) -> Name, Room -> Save
  async rename() {
    await open("#/home");
    await page.getByRole("link", { name: "Nodes", exact: true }).click();
    await page.getByRole("link", { name: spec.node, exact: true }).click();
    await page.getByRole("heading", { name: spec.node, level: 2 }).waitFor(T);
    await page.getByLabel("Name", { exact: true }).fill(spec.to);
    await page.getByLabel("Room", { exact: true }).fill(spec.room);
    await page.getByRole("button", { name: "Save", exact: true }).click();
    await page.getByRole("heading", { name: spec.to, level: 2 }).waitFor(T);
    out.saved = await page.getByRole("status").first().innerText();
    out.facts = await page.locator("#node-facts").innerText();
    out.hash = await page.evaluate(() => location.hash);
    await page.getByRole("link", { name: "Nodes", exact: true }).click();
    await page.getByRole("table").waitFor(T);
    out.table = await page.getByRole("table").innerText();
  },
  // the node's page -> thresholds and expected hours (node/set), and a refusal in the bridge's words
  async settings() {
    await open(`#/nodes/${spec.node}`);
    await page.getByLabel("Enter ratio").fill("4");
    await page.getByLabel("Exit ratio").fill("2");
    await page.getByLabel("Hold (seconds)").fill("7");
    await page.getByRole("button", { name: "Save thresholds" }).click();
    await page.waitForFunction(() => document.querySelector("#th-result")?.innerText === "Saved.", null, T);
    out.enter_shown = await page.getByLabel("Enter ratio").inputValue();
    await page.getByLabel("Expected hours", { exact: true }).fill("08:00-20:00");
    await page.getByRole("button", { name: "Save expected hours" }).click();
    await page.waitForFunction(() => document.querySelector("#hours-result")?.innerText === "Saved.", null, T);
    out.hours_shown = await page.getByLabel("Expected hours", { exact: true }).inputValue();
    await page.getByLabel("Exit ratio").fill("9");
    await page.getByRole("button", { name: "Save thresholds" }).click();
    await page.waitForFunction(() => document.querySelector("#th-result")?.innerText.startsWith("Refused"), null, T);
    out.refused = await page.locator("#th-result").innerText();
  },
  // the node's page -> Remove node (confirmed) -> back on Nodes, without it
  async remove() {
    await open(`#/nodes/${spec.node}`);
    await page.getByRole("button", { name: "Remove node" }).click();
    await page.getByRole("heading", { name: "Nodes", level: 2 }).waitFor(T);
    out.hash = await page.evaluate(() => location.hash);
    out.links = await page.locator("main a").allInnerTexts();
  },
  // the node's page -> Calibrate -> the progress moves -> "Calibrated" when the bridge says so
  async calibrate() {
    await open(`#/nodes/${spec.node}`);
    await page.getByRole("button", { name: "Calibrate", exact: true }).click();
    const status = page.locator("#calibration-status");
    await page.waitForFunction(() => /Calibrating: [1-9]/.test(document.querySelector("#calibration-status").innerText), null, T);
    out.during = await status.innerText();
    out.progress_during = Number(await page.getByRole("progressbar", { name: "Calibration progress" }).getAttribute("value"));
    await page.waitForFunction(() => document.querySelector("#calibration-status").innerText.startsWith("Calibrated"), null,
                               { timeout: 60000 });
    out.after = await status.innerText();
    out.progress_after = Number(await page.getByRole("progressbar", { name: "Calibration progress" }).getAttribute("value"));
  },
  // Plugins -> Plugin directory -> Load -> running; Unload -> gone; the audit chain verified
  async plugins() {
    await open("#/plugins");
    await page.getByLabel("Plugin directory").fill(spec.path);
    await page.getByRole("button", { name: "Load", exact: true }).click();
    const card = page.locator(`[data-plugin="${spec.domain}"]`);
    await card.waitFor(T);
    out.loaded = await card.innerText();
    out.load_status = await page.getByRole("status").first().innerText();
    await page.getByRole("button", { name: `Reload ${spec.domain}` }).click();
    await page.waitForFunction(d => document.querySelector("[role=status]").innerText === `Reloaded ${d}.`, spec.domain, T);
    await card.waitFor(T);
    out.reloaded = await card.innerText();
    if (spec.setting) {  // the settings form drawn from the plugin's config_schema: a refusal, then a save
      await card.getByText("Settings", { exact: true }).click();
      await card.getByLabel(spec.setting.label).fill(String(spec.setting.bad));
      await card.getByRole("button", { name: `Save ${spec.domain} settings` }).click();
      await page.waitForFunction(() => document.querySelector("form.settings .result.bad"), null, T);
      out.setting_refused = await card.locator("form.settings .result").innerText();
      await card.getByLabel(spec.setting.label).fill(String(spec.setting.good));
      await card.getByRole("button", { name: `Save ${spec.domain} settings` }).click();
      await page.waitForFunction(d => document.querySelector("[role=status]").innerText.startsWith(`Saved ${d}`),
                                 spec.domain, T);
      out.setting_saved = await page.getByRole("status").first().innerText();
    }
    await page.getByRole("button", { name: `Unload ${spec.domain}` }).click();
    await card.waitFor({ state: "detached", ...T });
    out.unload_status = await page.getByRole("status").first().innerText();
    out.audit = await page.locator("#audit-chain").innerText();
  },
  // Assist -> Sentence -> Send -> the intent, slots, what was done and the answer
  async assist() {
    await open("#/assist");
    if (spec.dry_run) {
      await page.getByLabel("Sentence").fill(spec.sentence);
      await page.getByLabel("Dry run: only say what would be done").check();
      await page.getByRole("button", { name: "Send", exact: true }).click();
      await page.locator(".assist-answer").waitFor(T);
      out.dry = await page.locator(".assist-answer").innerText();
      await page.getByLabel("Dry run: only say what would be done").uncheck();
    }
    await page.getByLabel("Sentence").fill(spec.sentence);
    await page.getByRole("button", { name: "Send", exact: true }).click();
    await page.locator(".assist-answer").nth(spec.dry_run ? 1 : 0).waitFor(T);
    out.answer = await page.locator(".assist-answer").first().innerText();
  },
  // HomeKit -> the setup code, and its QR code drawn
  async homekit() {
    await open("#/homekit");
    await page.locator("#setup-code").waitFor(T);
    out.code = await page.locator("#setup-code").innerText();
    const qr = page.getByRole("img", { name: /HomeKit QR code/ });
    await page.waitForFunction(() => document.querySelector("img.qr").naturalWidth > 0, null, T);
    out.qr_alt = await qr.getAttribute("alt");
    out.controllers = await page.locator("#controllers").innerText();
  },
  // Updates: the releases, each node's version, a rollout started in the page and followed to its end
  async updates() {
    await open("#/updates");
    await page.locator("#versions").waitFor(T);
    out.releases = await page.locator("#releases").innerText();
    out.before = await page.locator("#versions").innerText();
    await page.getByLabel("Version").selectOption(spec.version);
    await page.getByRole("button", { name: "Update all nodes" }).click();
    await page.waitForFunction(() => /: (done|halted)/.test(document.querySelector("#rollout-state")?.innerText || ""),
                               null, { timeout: 60000 });
    out.state = await page.locator("#rollout-state").innerText();
    out.after = await page.locator("#versions").innerText();
    await shot("http-updates");
  },
  // a bind beyond loopback: the login first; a wrong secret refused; then a change without the CSRF
  // token refused and one with it answered
  async login() {
    await page.goto(spec.url);
    await page.getByRole("heading", { name: "Log in" }).waitFor(T);
    await shot("http-login");
    out.nav_hidden = await page.getByRole("navigation", { name: "Sections" }).isHidden();
    out.before = await page.evaluate(async () => (await fetch("/ui/api/overview")).status);
    await page.getByLabel("API token or password").fill("not-the-token");
    await page.getByRole("button", { name: "Log in" }).click();
    await page.waitForFunction(() => document.querySelector("[role=alert]").innerText.length > 0, null, T);
    out.wrong = await page.getByRole("alert").innerText();
    await page.getByLabel("API token or password").fill(spec.secret);
    await page.getByRole("button", { name: "Log in" }).click();
    await page.getByRole("heading", { name: "Home", level: 2 }).waitFor(T);
    out.health = await page.locator("#health-text").innerText();
    out.cookie_visible_to_script = await page.evaluate(() => document.cookie.includes("ruview_session"));
    const cookies = await page.context().cookies();
    out.cookie = cookies.filter(c => c.name === "ruview_session").map(c => ({ httpOnly: c.httpOnly, sameSite: c.sameSite }));
    out.without_csrf = await page.evaluate(async () => {
      const r = await fetch("/ui/api/request/health_check", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
      return [r.status, (await r.json()).error];
    });
    out.with_csrf = await page.evaluate(async () => {
      const s = await (await fetch("/ui/api/session")).json();
      const r = await fetch("/ui/api/request/health_check", { method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": s.csrf }, body: "{}" });
      return [r.status, await r.json()];
    });
  },
  // Logs -> filter by feature, then by level; a line that arrives while the page is open shows up live
  async logs() {
    await open("#/logs");
    await page.waitForFunction(() => document.querySelectorAll("#log-lines li:not(.muted)").length > 0, null, T);
    const lines = () => page.$$eval("#log-lines li:not(.muted)", items => items.map(li =>
      [...li.children].map(c => c.innerText)));
    out.all = await lines();
    await page.getByLabel("Feature").selectOption(spec.feature);
    out.feature = await lines();
    await page.getByLabel("Feature").selectOption("");
    await page.getByLabel("Level", { exact: true }).selectOption("warning");
    out.warnings = await lines();
    await page.getByLabel("Level", { exact: true }).selectOption("debug");
    const before = (await lines()).length;
    await page.getByLabel("Bridge log level").selectOption("debug");
    await page.getByRole("button", { name: "Set", exact: true }).click();
    await page.waitForFunction(n => document.querySelectorAll("#log-lines li:not(.muted)").length > n, before, T);
    out.live = (await lines())[0];
  },
  // every page, for the docs (and for a person to look at)
  async tour() {
    const pages = spec.pages || ["home", "nodes", `nodes/${spec.node}`, "plugins", "homekit", "assist", "logs"];  // Updates: tests/ota
    for (const p of pages) {
      await open(`#/${p}`);
      await page.waitForTimeout(1500);
      if (p === "assist" && spec.sentence) {
        await page.getByLabel("Sentence").fill(spec.sentence);
        await page.getByRole("button", { name: "Send", exact: true }).click();
        await page.locator(".assist-answer").waitFor(T);
      }
      await shot(`http-${p.replace("/", "-").replace(spec.node, "node")}`);
    }
    await page.setViewportSize({ width: 390, height: 844 });
    await open(`#/nodes/${spec.node}`);
    await page.waitForTimeout(800);
    out.phone_overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
    await shot("http-phone-node");
    await open("#/home");
    await page.waitForTimeout(800);
    out.phone_overflow_home = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
    await shot("http-phone-home");
    await open("#/nodes");
    await page.getByRole("table").waitFor(T);
    out.phone_overflow_nodes = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  },
};

try {
  page = await browser.newPage({ viewport: spec.viewport || { width: 1280, height: 900 } });
  page.on("request", r => { if (!r.url().startsWith(origin) && !r.url().startsWith("data:")) out.requests_off_host.push(r.url()); });
  page.on("pageerror", e => out.errors.push(String(e)));
  page.on("console", m => out.console.push(m.text()));
  page.on("dialog", d => d.accept());
  await scenarios[spec.scenario]();
} catch (e) {
  out.failure = String(e);
  out.dom = page ? (await page.content()).slice(0, 4000) : null;
  if (page) await page.screenshot({ path: "/tmp/frontend-failure.png", fullPage: true }).catch(() => {});
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
process.exit(out.failure ? 1 : 0);
