// HomeKit: the setup code and its QR code to pair, and the paired controllers.
"use strict";
import {el} from "./dom.js";
import {get, request} from "./api.js";

export class HomeKitPage {
  constructor(app) {
    this.root = el("section", {"aria-labelledby": "hk-title"}, el("h2", {id: "hk-title"}, "HomeKit"),
      el("p", {class: "muted"}, "Loading…"));
  }

  async load() {
    const d = await get("/ui/api/homekit"), r = this.root;
    r.textContent = "";
    r.append(el("h2", {id: "hk-title"}, "HomeKit"));
    if (!d.running) {
      r.append(el("p", {}, "HomeKit is off on this bridge (homekit.enabled: true turns it on)."));
      return;
    }
    if (d.error) { r.append(el("p", {class: "result bad"}, d.error)); return; }
    r.append(el("div", {class: "grid"},
      el("div", {class: "card"}, el("h3", {}, "Pair with Apple Home"),
        el("p", {}, "In the Home app: Add Accessory, then scan this code, or enter the setup code."),
        el("img", {src: "/ui/api/homekit/qr.svg", alt: `HomeKit QR code for setup code ${d.pincode}`, class: "qr",
                   width: "180", height: "180"}),
        el("p", {}, "Setup code: ", el("strong", {id: "setup-code", class: "code"}, d.pincode))),
      el("div", {class: "card"}, el("h3", {}, "Paired controllers"),
        d.controllers.length
          ? el("ul", {id: "controllers"}, d.controllers.map(c => el("li", {}, `${c.id} `,
              el("span", {class: "muted"}, c.admin ? "(admin)" : "(user)"), " ",
              el("button", {type: "button", "aria-label": `Remove controller ${c.id}`,
                            onclick: () => this.remove(c.id)}, "Remove"))))
          : el("p", {id: "controllers"}, "Not paired yet."),
        el("p", {id: "unpair-result", class: "result", role: "status"}),
        el("p", {class: "hint"}, "Remove ends that controller's sessions at once; removing the last admin "
          + "unpairs the bridge (pair it again with the code above)."))));
  }

  async remove(id) {
    const answer = await request("homekit/unpair", {controller: id});
    const said = this.root.querySelector("#unpair-result");
    if (answer.status !== "ok") {
      said.textContent = answer.error;
      said.className = "result bad";
      return;
    }
    await this.load();
    const now = this.root.querySelector("#unpair-result");
    now.textContent = `Controller ${id} removed.`;
    now.className = "result ok";
  }
}
