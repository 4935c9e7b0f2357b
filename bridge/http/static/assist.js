// Assist console: a sentence in, what was recognized (intent, slots), what was done, and the answer.
"use strict";
import {el, field} from "./dom.js";
import {post} from "./api.js";

export class AssistPage {
  constructor(app) {
    this.app = app;
    const input = el("input", {name: "sentence", autocomplete: "off", placeholder: "turn on the kitchen light"});
    const language = el("input", {name: "language", autocomplete: "off", placeholder: "en", maxlength: 8, class: "short"});
    const dry = el("input", {type: "checkbox", name: "dry_run", id: "assist-dry"});
    this.out = el("div", {id: "assist-out", "aria-live": "polite"});
    this.root = el("section", {"aria-labelledby": "assist-title"}, el("h2", {id: "assist-title"}, "Assist"),
      el("p", {class: "hint"}, "The sentence goes where a voice satellite sends it (the assist utterance topic) and acts on the home."),
      el("form", {class: "card", onsubmit: async e => {
        e.preventDefault();
        if (input.value.trim()) await this.ask(input.value.trim(), language.value.trim(), dry.checked);
      }}, field("Sentence", input), field("Language (optional)", language),
        el("div", {class: "check"}, dry, el("label", {for: "assist-dry"}, "Dry run: only say what would be done")),
        el("button", {type: "submit"}, "Send")),
      this.out);
  }

  async ask(text, language, dryRun) {
    this.out.prepend(el("p", {class: "muted"}, `“${text}” …`));
    const answer = await post("/ui/api/assist", {text, ...(language ? {language} : {}), ...(dryRun ? {dry_run: true} : {})});
    this.out.firstChild.remove();
    if (answer.status !== "ok") {
      this.out.prepend(el("article", {class: "card bad"}, el("p", {}, `“${text}”: ${answer.error}`)));
      return;
    }
    const a = answer.data, intent = a.intent || {}, data = a.data || {};
    const targets = list => (list || []).map(t => `${t.name} (${t.id})`).join(", ") || "nothing";
    const slots = Object.entries(intent.slots || {}).map(([k, v]) => `${k} = ${typeof v === "string" ? v : JSON.stringify(v)}`);
    this.out.prepend(el("article", {class: "card assist-answer"},
      el("h3", {}, `“${text}”`),
      el("dl", {class: "facts"},
        el("dt", {}, "intent"), el("dd", {}, intent.name ? `${intent.name} (${intent.recognizer || "?"})` : "not recognized"),
        el("dt", {}, "slots"), el("dd", {}, slots.join("; ") || "—"),
        a.response_type === "dry_run"
          ? [el("dt", {}, "would do"), el("dd", {class: "would"}, (data.would || []).map(c =>
              `${c.service} ${c.name} (${c.entity_id})${Object.keys(c.data || {}).length ? " " + JSON.stringify(c.data) : ""}`).join("; ")
              || "nothing (not a command)")]
          : [el("dt", {}, "done"), el("dd", {class: "done"}, a.response_type === "action_done" ? targets(data.success) : "nothing")],
        el("dt", {}, "failed"), el("dd", {}, targets(data.failed)),
        el("dt", {}, "answer"), el("dd", {class: "speech"}, ((a.speech || {}).plain || {}).speech || "—"),
        el("dt", {}, "took"), el("dd", {}, a.elapsed_ms ? `${a.elapsed_ms.toFixed(1)} ms` : "—"))));
  }
}
