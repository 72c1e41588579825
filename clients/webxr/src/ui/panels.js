// CLINICAL PANELS — the place where the clinician record panel and the patient consent
// panel plug in. They arrive with protocol messages that do not exist yet; until then
// this registry holds no panels and the "Clinical" card in index.html stays hidden.
//
// A panel is an object:
//   {
//     id: "record" | "consent" | ...,
//     title: "Patient record",
//     roles: ["clinician", "therapist"],      // who sees it
//     messages: ["record_view", ...],         // server message tags it consumes
//     mount(container, send),                 // build its DOM; `send([tag, ...])` talks
//                                             // to the server over the live connection
//     handle(message),                        // one decoded message of its tags
//     reset(),                                // the session ended or changed
//   }
// The app forwards every server message whose tag it does not know to `dispatch`, so a
// panel can ship before the app learns its tags.

export class PanelHost {
  constructor(section) {
    this.section = section;
    this.panels = [];
    this.mounted = new Map(); // panel id -> panel
    this.send = () => false;
    this.role = null;
  }

  register(panel) {
    this.panels.push(panel);
    if (this.role) this._mount(panel);
  }

  /** A session started (or resumed) with this role; mount the panels it may see. */
  start(role, send) {
    this.role = role;
    this.send = send;
    for (const panel of this.panels) this._mount(panel);
  }

  _mount(panel) {
    if (this.mounted.has(panel.id) || !panel.roles.includes(this.role)) return;
    const container = document.createElement("section");
    container.setAttribute("aria-label", panel.title);
    container.dataset.panel = panel.id;
    this.section.append(container);
    panel.mount(container, (message) => this.send(message));
    this.mounted.set(panel.id, panel);
    this.section.hidden = false;
  }

  /** Offer a server message to the panels; true when one of them took it. */
  dispatch(message) {
    let taken = false;
    for (const panel of this.mounted.values()) {
      if (panel.messages.includes(message.type)) {
        panel.handle(message);
        taken = true;
      }
    }
    return taken;
  }

  reset() {
    for (const panel of this.mounted.values()) panel.reset();
  }
}
