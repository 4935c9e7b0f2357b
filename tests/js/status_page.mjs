// Open the status page in Debian's chromium (headless), as a person would, and report what it shows.
// usage: node status_page.mjs URL NODES SCREENSHOT.png [SETTLE_MS]  (SETTLE_MS: wait before the screenshot)
import { chromium } from "playwright-core";

const [url, wanted, shot, settle] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const out = { requests_off_host: [], errors: [], console: [] };
let page;
try {
  page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  page.on("request", r => { if (!r.url().startsWith(new URL(url).origin)) out.requests_off_host.push(r.url()); });
  const errors = out.errors;
  page.on("pageerror", e => errors.push(String(e)));
  page.on("console", m => out.console.push(m.text()));
  await page.goto(url);
  await page.waitForFunction(n => document.querySelectorAll("[data-node]").length >= n, Number(wanted),
                             { timeout: 15000 });
  const snapshot = () => page.$$eval("[data-node]", cards => cards.map(c => ({
    name: c.dataset.node, text: c.innerText,
  })));
  out.first = await snapshot();
  // live: the page changes without a reload (the event stream)
  await page.waitForFunction(before => {
    const now = [...document.querySelectorAll("[data-node]")].map(c => c.innerText).join("|");
    return now !== before;
  }, out.first.map(c => c.text).join("|"), { timeout: 15000 });
  out.later = await snapshot();
  out.events = await page.$$eval("#events li", items => items.map(i => i.innerText));
  out.health = await page.$eval("#health-text", e => e.innerText);
  if (settle) await page.waitForTimeout(Number(settle));
  if (shot) await page.screenshot({ path: shot, fullPage: true });
} catch (e) {
  out.failure = String(e);
  out.dom = page ? (await page.content()).slice(0, 3000) : null;
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
process.exit(out.failure ? 1 : 0);
