// Small DOM helpers: elements from data (text only, never HTML strings), numbers with units.
"use strict";

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined) e.append(c);
  return e;
}

export function fmt(v, digits = 1, unit = "") {
  return v === null || v === undefined ? "—" : `${Number(v).toFixed(digits)}${unit}`;
}

// When something was, as a clock time (a relative "5 s ago" would go stale between updates).
export function ago(iso) {
  if (!iso) return "never";
  const d = new Date(iso);
  return Date.now() - d.getTime() < 86400000 ? d.toLocaleTimeString() : d.toLocaleString();
}

export function presenceText(n) {
  if (n.presence === null || n.presence === undefined) return "presence unknown";
  return n.presence ? "someone there" : "nobody";
}

// One field: a visible label tied to its input, so a screen reader announces the label.
let ids = 0;
export function field(label, input, hint) {
  const id = input.id || `f${++ids}`;
  input.id = id;
  const parts = [el("label", {for: id}, label), input];
  if (hint) {
    const hid = `${id}-hint`;
    input.setAttribute("aria-describedby", hid);
    parts.push(el("small", {id: hid, class: "hint"}, hint));
  }
  return el("div", {class: "field"}, ...parts);
}

// The answer of a request, said where the user looks (role=status is announced).
export function say(box, answer, ok) {
  box.textContent = answer.status === "ok" ? ok : `Refused: ${answer.error}`;
  box.className = "result " + (answer.status === "ok" ? "good" : "bad");
}
