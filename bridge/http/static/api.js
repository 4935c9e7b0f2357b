// Talking to the bridge: the session (login, CSRF token), reads, changes and the live stream.
// Every change is a request verb (POST /ui/api/request/<verb>), answered as on MQTT.
"use strict";

let csrf = null;

export class LoginNeeded extends Error {}

export async function session() {
  const r = await fetch("/ui/api/session", {credentials: "same-origin"});
  const s = await r.json();
  csrf = s.csrf;
  return s;
}

export async function login(secret) {
  const r = await fetch("/ui/api/login", {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify({secret})});
  const s = await r.json();
  if (!r.ok) throw new Error(s.error || `login refused (${r.status})`);
  csrf = s.csrf;
  return s;
}

export async function logout() {
  await post("/ui/api/logout", {});
  csrf = null;
}

export async function get(path) {
  const r = await fetch(path, {credentials: "same-origin"});
  if (r.status === 401) throw new LoginNeeded();
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || `${r.status}`);
  return body;
}

export async function post(path, body) {
  const r = await fetch(path, {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf || ""}, body: JSON.stringify(body)});
  if (r.status === 401) throw new LoginNeeded();
  const answer = await r.json();
  if (!r.ok) return {status: "error", data: {}, error: answer.error || `${r.status}`};
  return answer;
}

// A request verb, exactly as <base>/bridge/request/<verb> takes it: {status, data, error}.
export function request(verb, body = {}) {
  return post(`/ui/api/request/${verb}`, body);
}

// The live stream: node states and events, log lines and chart points. handlers: {kind: fn(data)}.
export function stream(handlers, onState) {
  const source = new EventSource("/ui/api/stream");
  for (const [kind, fn] of Object.entries(handlers)) {
    source.addEventListener(kind, m => fn(JSON.parse(m.data)));
  }
  source.onopen = () => onState(true);
  source.onerror = () => onState(false);
  return source;
}
