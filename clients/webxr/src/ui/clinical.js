// The clinical panels: a staff member's record panel and a patient's consent panel.
//
// Record contents live only in the DOM of the record panel and in its `records` map,
// keyed by the patient's avatar; a purge removes both at once. Nothing from a view is
// logged, and `summary()` (which feeds window.__metaworld) gives categories and counts,
// never a name or a value. A patient's copy of a view is read only for the notice of
// who looked at what, then dropped.

import * as proto from "../protocol.js";
import {
  CATEGORY_TITLES,
  DISCLOSURE_COLUMNS,
  clockTime,
  consentText,
  describeCategories,
  disclosureNotice,
  disclosureRow,
  recordCounts,
  recordSections,
} from "../records.js";
import { element } from "./widgets.js";

const STAFF_ROLES = ["clinician", "therapist", "trainee"];
const NOTICES_KEPT = 20;
const QUERY_TIMEOUT_MS = 5000; // a consent query unanswered this long counts as lost
const DISCLOSURES_SHOWN = 100;
const CONSENT_DURATIONS = [
  [900, "15 minutes"],
  [3600, "1 hour"],
  [86400, "1 day"],
  [7 * 86400, "1 week"],
  [30 * 86400, "30 days"],
];
const EMERGENCY_DURATIONS = [
  [900, "15 minutes"],
  [1800, "30 minutes"],
  [3600, "1 hour"],
  [7200, "2 hours"],
  [14400, "4 hours"],
];
const PURPOSES = { TREAT: "treatment", ETREAT: "emergency treatment" };

function options(select, items, selected) {
  const made = items.map(([value, label]) =>
    element("option", { value: String(value), textContent: label }),
  );
  select.replaceChildren(...made);
  if (selected !== undefined) select.value = String(selected);
}

function labelled(id, label, control) {
  control.id = id;
  const name = element("label", { htmlFor: id, textContent: label });
  return element("div", { className: "row" }, name, control);
}

/** A fieldset of one checkbox per record category; returns it and a reader. */
function categoryBoxes(prefix, legend, checked = []) {
  const boxes = Object.entries(CATEGORY_TITLES).map(([category, title]) => {
    const id = `${prefix}-${category}`;
    const box = element("input", { type: "checkbox", id, value: category });
    box.checked = checked.includes(category);
    const name = element("label", { htmlFor: id, textContent: title });
    return element("div", { className: "check" }, box, name);
  });
  const fieldset = element(
    "fieldset",
    { className: "categories" },
    element("legend", { textContent: legend }),
    ...boxes,
  );
  const read = () => [...fieldset.querySelectorAll("input:checked")].map((b) => b.value);
  return [fieldset, read];
}

function button(text, label) {
  const out = element("button", { type: "button", className: "secondary", textContent: text });
  if (label) out.setAttribute("aria-label", label);
  return out;
}

function statusLine(id) {
  const line = element("p", { id, className: "panel-status" });
  line.setAttribute("role", "status");
  return line;
}

function say(line, text, tone = "info") {
  line.textContent = text;
  line.dataset.tone = tone;
}

function table(columns, rows, labelledBy) {
  const cell = (tag, text) => element(tag, { textContent: text });
  const head = element("tr", {}, ...columns.map((c) => cell("th", c)));
  for (const th of head.children) th.scope = "col";
  const body = rows.map((cells) => element("tr", {}, ...cells.map((c) => cell("td", c))));
  const out = element("table", {}, element("thead", {}, head), element("tbody", {}, ...body));
  if (labelledBy) out.setAttribute("aria-labelledby", labelledBy);
  return out;
}

// ---------------------------------------------------------------- staff: the record panel

export class RecordPanel {
  id = "record";
  title = "Patient record";
  roles = STAFF_ROLES;
  messages = ["record_shown", "record_denied", "record_purge", "consent_result"];

  constructor({ now = () => Date.now() } = {}) {
    this.now = now;
    this.records = new Map(); // patient avatar -> {view, label, at, purpose}
    this.pending = new Map(); // request number -> {kind, patient, purpose}
    this.emergency = new Map(); // patient avatar -> {endMs, timer}
    this.purges = 0;
    this.denied = 0;
  }

  mount(container, ctx) {
    this.ctx = ctx;
    this.patient = element("select", {});
    this.emergencyLine = null;
    const [boxes, read] = categoryBoxes("record-cat", "Parts of the record", ["vital_signs"]);
    this.readCategories = read;
    this.purpose = element("select", {});
    const purposes = [["TREAT", "Treatment"]];
    if (this.canBreakGlass) {
      purposes.push(["ETREAT", "Emergency treatment (after breaking the glass)"]);
    }
    options(this.purpose, purposes);
    this._showEmergency();
    const form = element(
      "form",
      { id: "record-form" },
      labelled("record-patient", "Patient", this.patient),
      boxes,
      labelled("record-purpose", "Purpose", this.purpose),
      element("button", { type: "submit", textContent: "Show record" }),
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.request();
    });
    this.patient.addEventListener("change", () => this._showEmergency());
    this.status = statusLine("record-status");
    this.content = element("div", { id: "record-content" });
    container.append(form, this.status);
    if (this.canBreakGlass) container.append(this._breakGlassForm());
    container.append(this.content);
    this.peopleChanged(ctx.people(), ctx.selfId());
  }

  _breakGlassForm() {
    this.reason = element("input", { maxLength: 500, autocomplete: "off", required: true });
    this.reason.setAttribute("aria-describedby", "break-glass-help");
    this.duration = element("select", {});
    options(this.duration, EMERGENCY_DURATIONS, 900);
    const form = element(
      "form",
      { id: "break-glass-form", className: "emergency" },
      element("h4", { id: "break-glass-title", textContent: "Emergency access" }),
      element("p", {
        id: "break-glass-help",
        className: "help",
        textContent:
          "Only in an emergency: opens the chosen patient's record for emergency treatment " +
          "for a limited time, whatever their consent says. Every view is flagged for review.",
      }),
      labelled("break-glass-reason", "Reason", this.reason),
      labelled("break-glass-duration", "For", this.duration),
      element("button", { type: "submit", className: "danger", textContent: "Break the glass" }),
    );
    form.setAttribute("aria-labelledby", "break-glass-title");
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.breakGlass();
    });
    this.emergencyLine = statusLine("break-glass-state");
    return element("div", {}, form, this.emergencyLine);
  }

  get canBreakGlass() {
    return this.ctx?.role?.() === "clinician";
  }

  _selected() {
    const id = Number.parseInt(this.patient.value, 10);
    return Number.isInteger(id) ? id : null;
  }

  _label(patient) {
    const known = this.ctx?.people().get(patient) ?? this.records.get(patient);
    return known?.label ?? "the patient";
  }

  request() {
    const patient = this._selected();
    const categories = this.readCategories();
    if (patient === null) {
      return say(this.status, "Choose a patient in this room first.", "error");
    }
    if (!categories.length) {
      return say(this.status, "Choose at least one part of the record.", "error");
    }
    const purpose = this.purpose.value;
    const number = this.ctx.nextRequest();
    if (!this.ctx.send(proto.recordRequest(number, patient, categories, purpose))) {
      return say(this.status, "Not connected; try again in a moment.", "error");
    }
    this.pending.set(number, { kind: "record", patient, purpose });
    say(this.status, `Asking for ${describeCategories(categories)} of ${this._label(patient)}…`);
  }

  breakGlass() {
    const patient = this._selected();
    const reason = this.reason.value.trim();
    if (patient === null) {
      return say(this.emergencyLine, "Choose a patient in this room first.", "error");
    }
    if (!reason) {
      return say(this.emergencyLine, "Give the reason for emergency access.", "error");
    }
    const number = this.ctx.nextRequest();
    const seconds = Number(this.duration.value);
    if (!this.ctx.send(proto.breakGlass(number, patient, reason, seconds))) {
      return say(this.emergencyLine, "Not connected; try again in a moment.", "error");
    }
    this.pending.set(number, { kind: "break_glass", patient });
    say(this.emergencyLine, "Asking for emergency access…");
  }

  peopleChanged(people, selfId) {
    if (!this.patient) return;
    const before = this.patient.value;
    const patients = [...people.values()]
      .filter((p) => p.role === "patient" && p.id !== selfId)
      .sort((a, b) => a.label.localeCompare(b.label));
    if (!patients.length) {
      options(this.patient, [["", "No patient in this room"]]);
    } else {
      options(this.patient, patients.map((p) => [p.id, p.label]));
      if (patients.some((p) => String(p.id) === before)) this.patient.value = before;
    }
    this._showEmergency();
  }

  handle(msg) {
    switch (msg.type) {
      case "record_shown":
        return this._shown(msg);
      case "record_denied":
        return this._denied(msg);
      case "record_purge":
        return this._purged(msg.patient);
      case "consent_result":
        return this._emergencyResult(msg);
    }
  }

  _shown(msg) {
    const asked = this.pending.get(msg.request);
    this.pending.delete(msg.request);
    if (msg.request === 0) return; // a patient's own copy; staff never get one
    const label = this._label(msg.patient);
    this.records.delete(msg.patient); // re-insert: the newest record is drawn first
    this.records.set(msg.patient, {
      view: msg.view,
      label,
      at: this.now(),
      purpose: asked?.purpose ?? "TREAT",
    });
    this._render();
    const parts = describeCategories(msg.view.included);
    say(this.status, `Showing ${parts} of ${label}.`, "ok");
  }

  _denied(msg) {
    const asked = this.pending.get(msg.request);
    this.pending.delete(msg.request);
    this.denied += 1;
    const whom = asked ? ` (${this._label(asked.patient)})` : "";
    say(this.status, `Not shown${whom}: ${msg.message}.`, "error");
  }

  _purged(patient) {
    this.purges += 1;
    const label = this._label(patient);
    this.records.delete(patient);
    this._render();
    const text = `${label}: the patient withdrew consent. Their record was removed.`;
    say(this.status, text, "warn");
  }

  _emergencyResult(msg) {
    const asked = this.pending.get(msg.request);
    if (asked?.kind !== "break_glass") return;
    this.pending.delete(msg.request);
    if (!msg.ok) {
      const why = msg.message || "not permitted";
      say(this.emergencyLine, `Emergency access refused: ${why}.`, "error");
      return;
    }
    this._endEmergency(asked.patient);
    const endMs = msg.end_ms ?? this.now() + 900_000;
    const left = Math.max(0, endMs - this.now());
    const timer = setTimeout(() => this._endEmergency(asked.patient), left);
    this.emergency.set(asked.patient, { endMs, timer });
    if (this._selected() === asked.patient) this.purpose.value = "ETREAT";
    this._showEmergency();
  }

  _endEmergency(patient) {
    const live = this.emergency.get(patient);
    if (!live) return;
    clearTimeout(live.timer);
    this.emergency.delete(patient);
    this._showEmergency();
  }

  /** The purpose menu and the emergency line follow the selected patient's state. */
  _showEmergency() {
    if (!this.purpose) return;
    const patient = this._selected();
    const live = patient === null ? null : this.emergency.get(patient);
    const emergency = this.purpose.querySelector("option[value=ETREAT]");
    if (emergency) emergency.disabled = !live;
    if (!live && this.purpose.value === "ETREAT") this.purpose.value = "TREAT";
    if (!this.emergencyLine) return;
    if (live) {
      const until = clockTime(live.endMs, this.now());
      const text = `Emergency access to ${this._label(patient)} until ${until}.`;
      say(this.emergencyLine, `${text} Every view is flagged for review.`, "warn");
    } else if (this.emergencyLine.dataset.tone === "warn") {
      say(this.emergencyLine, "No emergency access.");
    }
  }

  _render() {
    const newest = [...this.records.entries()].reverse();
    this.content.replaceChildren(...newest.map(([id, record]) => this._record(id, record)));
  }

  _record(patient, { view, label, at, purpose }) {
    const id = `record-${patient}`;
    const hide = button("Hide", `Hide the record of ${label}`);
    hide.addEventListener("click", () => {
      this.records.delete(patient);
      this._render();
    });
    const title = element("h4", { id: `${id}-title`, textContent: `Record of ${label}` });
    const when = `Shown at ${clockTime(at, this.now())} for ${PURPOSES[purpose] ?? purpose}.`;
    const block = element(
      "section",
      { className: "record" },
      element("div", { className: "row record-head" }, title, hide),
      element("p", { className: "help", textContent: when }),
    );
    block.setAttribute("aria-labelledby", title.id);
    block.dataset.patient = String(patient);
    for (const section of recordSections(view)) block.append(...this._section(id, section));
    return block;
  }

  _section(id, section) {
    const titleId = `${id}-${section.category}`;
    const out = [element("h5", { id: titleId, textContent: section.title })];
    const none = () => element("p", { textContent: "None recorded." });
    if (section.fields) {
      const pairs = section.fields.flatMap(([name, value]) => [
        element("dt", { textContent: name }),
        element("dd", { textContent: value }),
      ]);
      out.push(pairs.length ? element("dl", {}, ...pairs) : none());
    } else if (section.rows.length) {
      const shown = table(section.columns, section.rows, titleId);
      shown.dataset.category = section.category;
      out.push(shown);
    } else {
      out.push(none());
    }
    if (section.truncated) {
      out.push(element("p", { className: "help", textContent: "Only the newest are shown." }));
    }
    return out;
  }

  reset() {
    for (const { timer } of this.emergency.values()) clearTimeout(timer);
    this.emergency.clear();
    this.records.clear();
    this.pending.clear();
    this.purges = 0;
    this.denied = 0;
    if (!this.content) return;
    this._render();
    say(this.status, "");
    if (this.emergencyLine) say(this.emergencyLine, "");
    this._showEmergency();
  }

  unmount() {
    this.ctx = this.patient = this.purpose = this.status = this.content = null;
    this.reason = this.duration = this.emergencyLine = null;
  }

  summary() {
    const records = {};
    for (const [patient, { view }] of this.records) {
      records[patient] = { categories: [...(view.included ?? [])], counts: recordCounts(view) };
    }
    return {
      records,
      purges: this.purges,
      denied: this.denied,
      emergency: [...this.emergency.keys()],
    };
  }
}

// ---------------------------------------------------------------- staff: admitting a patient

/**
 * Appointment rooms admit only patients on their allow-list; staff standing in one add a
 * patient with `admit`. A patient is never in the room yet, so the menu offers the
 * patients this page has seen elsewhere (the waiting room, the lobby) this session.
 */
export class AdmitPanel {
  id = "admit";
  title = "Admit a patient";
  roles = ["clinician", "therapist", "admin"];
  messages = [];

  constructor() {
    this.seen = new Map(); // patient avatar -> {label, where}
  }

  mount(container, ctx) {
    this.ctx = ctx;
    this.patient = element("select", {});
    this.help = element("p", { id: "admit-help", className: "help" });
    this.patient.setAttribute("aria-describedby", "admit-help");
    const form = element(
      "form",
      { id: "admit-form" },
      this.help,
      labelled("admit-patient", "Patient", this.patient),
      element("button", { type: "submit", textContent: "Admit to this room" }),
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.admit();
    });
    this.status = statusLine("admit-status");
    container.append(form, this.status);
    this.peopleChanged(ctx.people(), ctx.selfId());
  }

  roomChanged() {
    // The people shown are still those of the room I left until its presence arrives.
    if (this.patient) this._show(this.ctx.people());
  }

  peopleChanged(people, selfId) {
    if (!this.patient) return;
    const room = this.ctx.room();
    for (const p of people.values()) {
      if (p.role !== "patient" || p.id === selfId) continue;
      this.seen.delete(p.id); // re-insert: the most recently seen come first
      this.seen.set(p.id, { label: p.label, where: room?.name ?? "another room" });
    }
    this._show(people);
  }

  _show(people) {
    const room = this.ctx.room();
    this.help.textContent = room?.appointment
      ? `Patients may enter ${room.name} only once admitted.`
      : "Go to a consultation or therapy room to admit a patient there.";
    const before = this.patient.value;
    // Patients in an appointment room with me are admitted already.
    const inside = (id) => Boolean(room?.appointment) && people.has(id);
    const waiting = [...this.seen.entries()].reverse().filter(([id]) => !inside(id));
    const choices = waiting.map(([id, p]) => [id, `${p.label} (seen in ${p.where})`]);
    options(this.patient, choices.length ? choices : [["", "No patient waiting"]]);
    if (waiting.some(([id]) => String(id) === before)) this.patient.value = before;
  }

  admit() {
    const room = this.ctx.room();
    const patient = Number.parseInt(this.patient.value, 10);
    if (!room?.appointment) {
      return say(this.status, "This room takes no appointments.", "error");
    }
    if (!Number.isInteger(patient)) return say(this.status, "Choose a patient first.", "error");
    if (!this.ctx.send(proto.admit(patient))) {
      return say(this.status, "Not connected; try again in a moment.", "error");
    }
    const label = this.seen.get(patient)?.label ?? "The patient";
    say(this.status, `${label} may now enter ${room.name}.`, "ok");
  }

  handle() {}

  reset() {
    this.seen.clear();
    if (this.status) say(this.status, "");
  }

  unmount() {
    this.ctx = this.patient = this.help = this.status = null;
  }
}

// ---------------------------------------------------------------- patient: the consent panel

export class ConsentPanel {
  id = "consent";
  title = "My record and consent";
  roles = ["patient"];
  messages = ["record_shown", "consent_result", "consent_state"];

  constructor({ now = () => Date.now() } = {}) {
    this.now = now;
    this.pending = new Map(); // request number -> {kind, text}
    this.consents = [];
    this.disclosures = [];
    this.notices = 0;
    this.querying = null; // when the pending query went out (ms), or null
    this.queryAgain = false;
  }

  mount(container, ctx) {
    this.ctx = ctx;
    this.notice = statusLine("consent-notice");
    this.noticeList = element("ul", { id: "consent-notices", className: "notices" });
    this.noticeList.setAttribute("aria-label", "Who viewed your record");
    this.noticeList.hidden = true;

    const [boxes, read] = categoryBoxes("consent-cat", "Parts to share");
    this.readCategories = read;
    this.grantee = element("select", {});
    this.duration = element("select", {});
    options(this.duration, CONSENT_DURATIONS, 3600);
    const form = element(
      "form",
      { id: "consent-form" },
      element("h4", { id: "consent-form-title", textContent: "Share your record" }),
      boxes,
      labelled("consent-grantee", "With", this.grantee),
      labelled("consent-duration", "For", this.duration),
      element("button", { type: "submit", textContent: "Share" }),
    );
    form.setAttribute("aria-labelledby", "consent-form-title");
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.grant();
    });
    this.status = statusLine("consent-status");

    const refresh = button("Refresh", "Refresh your consents and who asked for your record");
    refresh.addEventListener("click", () => this.query());
    this.list = element("ul", { id: "consent-list", className: "consents" });
    this.list.setAttribute("aria-labelledby", "consent-list-title");
    this.accounting = element("div", { id: "consent-accounting" });
    container.append(
      this.notice,
      this.noticeList,
      form,
      this.status,
      element("div", { className: "row record-head" },
        element("h4", { id: "consent-list-title", textContent: "Your consents" }), refresh),
      this.list,
      element("h4", { id: "accounting-title", textContent: "Who asked for your record" }),
      this.accounting,
    );
    this.peopleChanged(ctx.people(), ctx.selfId());
    this._renderConsents();
    this._renderAccounting();
  }

  started() {
    this.query();
  }

  peopleChanged(people, selfId) {
    if (!this.grantee) return;
    const before = this.grantee.value;
    const staff = [...people.values()]
      .filter((p) => p.role !== "patient" && p.id !== selfId)
      .sort((a, b) => a.label.localeCompare(b.label));
    const choices = staff.map((p) => [p.id, `${p.label} (${p.role})`]);
    options(this.grantee, [["", "Every clinician"], ...choices]);
    if ([...this.grantee.options].some((o) => o.value === before)) this.grantee.value = before;
  }

  grant() {
    const categories = this.readCategories();
    if (!categories.length) {
      return say(this.status, "Choose at least one part of your record to share.", "error");
    }
    const grantee = this.grantee.value === "" ? null : Number(this.grantee.value);
    const whom = this.grantee.selectedOptions[0]?.textContent ?? "every clinician";
    const seconds = Number(this.duration.value);
    const number = this.ctx.nextRequest();
    if (!this.ctx.send(proto.consentGrant(number, categories, grantee, "TREAT", seconds))) {
      return say(this.status, "Not connected; try again in a moment.", "error");
    }
    const what = describeCategories(categories);
    this.pending.set(number, { kind: "grant", text: `${what} with ${whom}` });
    say(this.status, `Sharing your ${what}…`);
  }

  revoke(summary) {
    const number = this.ctx.nextRequest();
    if (!this.ctx.send(proto.consentRevoke(number, summary.id))) {
      return say(this.status, "Not connected; try again in a moment.", "error");
    }
    this.pending.set(number, { kind: "revoke", text: consentText(summary) });
    say(this.status, "Withdrawing consent…");
  }

  /** Ask for my consents and the accounting; one query at a time, then one more. */
  query() {
    // A query the server could not answer gets an error, not a reply: stop waiting.
    const lost = this.querying !== null && this.now() - this.querying > QUERY_TIMEOUT_MS;
    if (this.querying !== null && !lost) {
      this.queryAgain = true;
      return;
    }
    const number = this.ctx.nextRequest();
    if (!this.ctx.send(proto.consentQuery(number))) return;
    this.querying = this.now();
    this.pending.set(number, { kind: "query" });
  }

  handle(msg) {
    switch (msg.type) {
      case "record_shown":
        return this._viewed(msg);
      case "consent_result":
        return this._result(msg);
      case "consent_state":
        return this._state(msg);
    }
  }

  /** Someone was shown part of my record: tell me who and what, and forget the view. */
  _viewed(msg) {
    const text = disclosureNotice(msg.viewer.label, msg.view?.included);
    this.notices += 1;
    say(this.notice, text, "warn");
    const at = clockTime(this.now(), this.now());
    this.noticeList.prepend(element("li", { textContent: `${at}: ${text}` }));
    while (this.noticeList.children.length > NOTICES_KEPT) this.noticeList.lastChild.remove();
    this.noticeList.hidden = false;
    this.query();
  }

  _result(msg) {
    const asked = this.pending.get(msg.request);
    if (!asked) return;
    this.pending.delete(msg.request);
    if (asked.kind === "grant") {
      if (msg.ok) say(this.status, `You shared your ${asked.text}.`, "ok");
      else say(this.status, `Could not share: ${msg.message || "refused"}.`, "error");
    } else if (asked.kind === "revoke") {
      const done = `Consent withdrawn: ${asked.text}. Open views of it were removed.`;
      if (msg.ok) say(this.status, done, "ok");
      else say(this.status, `Could not withdraw: ${msg.message || "refused"}.`, "error");
    }
    this.query();
  }

  _state(msg) {
    this.pending.delete(msg.request);
    this.querying = null;
    this.consents = msg.consents;
    this.disclosures = [...msg.disclosures].sort((a, b) => b.at_ms - a.at_ms);
    this._renderConsents();
    this._renderAccounting();
    if (this.queryAgain) {
      this.queryAgain = false;
      this.query();
    }
  }

  _renderConsents() {
    const now = this.now();
    const items = this.consents.map((c) => {
      const expired = c.end_ms !== null && c.end_ms <= now;
      const state = c.status === "active" && expired ? "expired" : c.status;
      const until = c.end_ms === null ? "" : ` · until ${clockTime(c.end_ms, now)}`;
      const line = `${consentText(c)}${until} · ${state}`;
      const item = element("li", {}, element("span", { textContent: line }));
      item.dataset.consent = c.id;
      item.dataset.status = state;
      if (state === "active") {
        const revoke = button("Revoke", `Revoke: ${consentText(c)}`);
        revoke.addEventListener("click", () => {
          revoke.disabled = true;
          this.revoke(c);
        });
        item.append(revoke);
      }
      return item;
    });
    if (!items.length) {
      const none = "You have not shared your record.";
      items.push(element("li", { className: "empty", textContent: none }));
    }
    this.list.replaceChildren(...items);
  }

  _renderAccounting() {
    if (!this.disclosures.length) {
      const none = element("p", { textContent: "No one has asked for your record." });
      this.accounting.replaceChildren(none);
      return;
    }
    const now = this.now();
    const rows = this.disclosures.slice(0, DISCLOSURES_SHOWN).map((d) => disclosureRow(d, now));
    const shown = table(DISCLOSURE_COLUMNS, rows.map((r) => r.cells), "accounting-title");
    shown.id = "disclosures";
    rows.forEach((r, i) => shown.tBodies[0].rows[i].classList.toggle("review", r.review));
    this.accounting.replaceChildren(shown);
  }

  reset() {
    this.pending.clear();
    this.consents = [];
    this.disclosures = [];
    this.notices = 0;
    this.querying = null;
    this.queryAgain = false;
    if (!this.list) return;
    this.noticeList.replaceChildren();
    this.noticeList.hidden = true;
    say(this.notice, "");
    say(this.status, "");
    this._renderConsents();
    this._renderAccounting();
  }

  unmount() {
    this.ctx = this.notice = this.noticeList = this.grantee = this.duration = null;
    this.status = this.list = this.accounting = null;
  }

  summary() {
    return {
      consents: this.consents.length,
      active: this.consents.filter((c) => c.status === "active").length,
      disclosures: this.disclosures.length,
      review: this.disclosures.filter((d) => d.review).length,
      notices: this.notices,
    };
  }
}
