// The presence chart: each node's smoothed score against its baseline (a ratio, log scale) over the
// last minutes, with axes, units and a legend. Canvas for the lines; the legend is HTML (readable).
"use strict";
import {el} from "./dom.js";

const COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f"];
const WINDOW = 10 * 60;  // seconds kept and, once there is that much, shown
const MIN_WINDOW = 2 * 60;  // seconds shown at least (a chart just opened spans what the bridge kept)

export class Chart {
  constructor() {
    this.series = new Map();  // node name -> [[t, score, baseline]]
    this.canvas = el("canvas", {role: "img", "aria-label": "Presence score against baseline, last minutes"});
    this.legend = el("ul", {class: "legend", "aria-label": "Legend"});
    this.box = el("figure", {class: "chart"}, this.canvas,
      el("figcaption", {}, "Presence score (solid line) and the empty-room baseline it is compared with (dashed), per node; unitless, log scale"),
      this.legend);
  }

  load(samples) {
    for (const [name, points] of Object.entries(samples)) this.series.set(name, points.slice());
    this.draw();
  }

  add(name, point, replaces) {
    if (!this.series.has(name)) this.series.set(name, []);
    const s = this.series.get(name);
    if (replaces && s.length) s[s.length - 1] = point; else s.push(point);
    while (s.length && s[0][0] < point[0] - WINDOW) s.shift();
    this.draw();
  }

  colour(name) {
    return COLOURS[[...this.series.keys()].sort().indexOf(name) % COLOURS.length];
  }

  draw() {
    const c = this.canvas, ratio = window.devicePixelRatio || 1;
    const width = Math.max(280, c.clientWidth || 600), height = 220;
    c.width = width * ratio; c.height = height * ratio;
    const g = c.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const left = 48, right = 12, top = 10, bottom = 24;
    const now = Date.now() / 1000;
    const oldest = Math.min(now, ...[...this.series.values()].map(s => s.length ? s[0][0] : now));
    const span = Math.min(WINDOW, Math.max(MIN_WINDOW, Math.ceil((now - oldest) / 60) * 60));
    const values = [...this.series.values()].flatMap(s => s.flatMap(p => [p[1], p[2]])).filter(v => v > 0);
    const lo = Math.log10(Math.min(0.8, ...values.map(v => v * 0.8)));
    const hi = Math.log10(Math.max(2, ...values.map(v => v * 1.25)));
    const x = t => left + (1 - (now - t) / span) * (width - left - right);
    const y = v => top + (hi - Math.log10(v)) / (hi - lo) * (height - top - bottom);
    // axes and grid
    g.font = "11px system-ui, sans-serif"; g.fillStyle = "#475569"; g.strokeStyle = "#e2e8f0"; g.lineWidth = 1;
    for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) {
      for (const m of [1, 1.5, 2, 3, 5, 7]) {
        const v = m * 10 ** e;
        if (Math.log10(v) < lo || Math.log10(v) > hi) continue;
        g.beginPath(); g.moveTo(left, y(v)); g.lineTo(width - right, y(v)); g.stroke();
        g.textAlign = "right"; g.fillText(String(Number(v.toPrecision(2))), left - 6, y(v) + 4);
      }
    }
    g.textAlign = "center";
    const step = span > 300 ? 2 : 1;
    for (let m = 0; m <= span / 60; m += step) {
      const t = now - m * 60;
      g.beginPath(); g.moveTo(x(t), top); g.lineTo(x(t), height - bottom); g.stroke();
      g.fillText(m ? `−${m} min` : "now", x(t), height - bottom + 14);
    }
    g.strokeStyle = "#64748b";
    g.beginPath(); g.moveTo(left, top); g.lineTo(left, height - bottom); g.lineTo(width - right, height - bottom); g.stroke();
    g.save(); g.translate(12, (top + height - bottom) / 2); g.rotate(-Math.PI / 2);
    g.fillText("presence score", 0, 0); g.restore();
    // lines
    this.legend.textContent = "";
    for (const [name, points] of [...this.series.entries()].sort()) {
      const colour = this.colour(name);
      for (const [idx, dash] of [[1, []], [2, [5, 4]]]) {
        g.beginPath(); g.setLineDash(dash); g.strokeStyle = colour; g.lineWidth = idx === 1 ? 2.2 : 1.5;
        // a step line: a published value holds until the next one, and the newest holds until now
        let last = null;
        for (const p of points) {
          const t = Math.max(p[0], now - span);
          if (!(p[idx] > 0)) { last = null; continue; }
          if (last === null) g.moveTo(x(t), y(p[idx]));
          else { g.lineTo(x(t), y(last)); g.lineTo(x(t), y(p[idx])); }
          last = p[idx];
        }
        if (last !== null) g.lineTo(x(now), y(last));
        g.stroke();
      }
      g.setLineDash([]);
      const swatch = el("span", {class: "swatch", "aria-hidden": "true"});
      swatch.style.background = colour;
      const last = points[points.length - 1];
      this.legend.append(el("li", {}, swatch, `${name}: `,
        last ? `score ${last[1].toFixed(2)}, baseline ${last[2] ? last[2].toFixed(2) : "learning"}` : "no data yet"));
    }
    if (!this.series.size) this.legend.append(el("li", {class: "muted"}, "No node has a score yet."));
  }
}
