// CLINICAL PANELS — where the clinician record panel and the patient consent panel
// (src/ui/clinical.js) plug into the page. The "Clinical" card in index.html stays
// hidden until a panel for the signed-in role is mounted.
//
// A panel is an object:
//   {
//     id: "record" | "consent" | ...,
//     title: "Patient record",
//     roles: ["clinician", "therapist"],      // who sees it
//     messages: ["record_shown", ...],        // server message tags it consumes
//     mount(container, ctx),                  // build its DOM; ctx: {role(), room(),
//                                             //   send(msg), nextRequest(), people(),
//                                             //   selfId()}
//     started(),                              // a session started or resumed (optional)
//     peopleChanged(people, selfId),          // who is in my room changed (optional)
//     roomChanged(room),                      // I am in another room (optional)
//     handle(message),                        // one decoded message of its tags
//     reset(),                                // the session ended or changed
//     unmount(),                              // its role signed out (optional)
//   }
// The app forwards every server message it does not handle itself to `dispatch`.

export class PanelHost {
  constructor(section) {
    this.section = section;
    this.panels = [];
    this.mounted = new Map(); // panel id -> {panel, container}
    this.send = () => false;
    this.role = null;
    this.request = 0; // request numbers, one sequence per page for every panel
    this.people = new Map();
    this.selfId = null;
    this.room = null; // the layout's room I am in: {id, name, kind, appointment, ...}
    this.context = {
      role: () => this.role,
      room: () => this.room,
      send: (message) => this.send(message),
      nextRequest: () => (this.request = (this.request % 0xffffffff) + 1),
      people: () => this.people,
      selfId: () => this.selfId,
    };
  }

  register(panel) {
    this.panels.push(panel);
    if (this.role) this._mount(panel);
  }

  /** A session started (or resumed) with this role; mount the panels it may see. */
  start(role, send, selfId = null) {
    if (role !== this.role) this._unmountAll();
    this.role = role;
    this.send = send;
    this.selfId = selfId;
    for (const panel of this.panels) this._mount(panel);
    for (const { panel } of this.mounted.values()) panel.started?.();
  }

  _mount(panel) {
    if (this.mounted.has(panel.id) || !panel.roles.includes(this.role)) return;
    const container = document.createElement("section");
    container.className = "clinical-panel";
    container.dataset.panel = panel.id;
    const heading = document.createElement("h3");
    heading.id = `panel-${panel.id}-title`;
    heading.textContent = panel.title;
    container.setAttribute("aria-labelledby", heading.id);
    container.append(heading);
    this.section.append(container);
    panel.mount(container, this.context);
    this.mounted.set(panel.id, { panel, container });
    this.section.hidden = false;
  }

  _unmountAll() {
    for (const { panel, container } of this.mounted.values()) {
      panel.reset();
      panel.unmount?.();
      container.remove();
    }
    this.mounted.clear();
    this.section.hidden = true;
  }

  /** I am in another room now. */
  setRoom(room) {
    this.room = room ?? null;
    for (const { panel } of this.mounted.values()) panel.roomChanged?.(this.room);
  }

  /** Who is in my room now (id -> {id, role, label}). */
  setPeople(people, selfId) {
    this.people = people;
    this.selfId = selfId;
    for (const { panel } of this.mounted.values()) panel.peopleChanged?.(people, selfId);
  }

  /** Offer a server message to the panels; true when one of them took it. */
  dispatch(message) {
    let taken = false;
    for (const { panel } of this.mounted.values()) {
      if (panel.messages.includes(message.type)) {
        panel.handle(message);
        taken = true;
      }
    }
    return taken;
  }

  reset() {
    for (const { panel } of this.mounted.values()) panel.reset();
  }

  /** Numbers only, for window.__metaworld: never a name or a value from a record. */
  summary() {
    const out = {};
    for (const [id, { panel }] of this.mounted) out[id] = panel.summary?.() ?? {};
    return out;
  }
}
