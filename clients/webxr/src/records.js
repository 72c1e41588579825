// What the clinical panels show, as plain data: a record view turned into titled tables,
// counts for the test hook, and the sentences of the consent panel. No DOM here, so the
// node tests can check every row the panels will draw.
//
// A RecordView arrives as a map (msgspec, omit_defaults): an empty list or a missing
// demographics block is simply absent, so every reader below defaults it.

export const CATEGORY_TITLES = {
  demographics: "Demographics",
  vital_signs: "Vital signs",
  conditions: "Conditions",
  medications: "Medications",
  immunizations: "Immunizations",
  allergies: "Allergies",
  encounters: "Encounters",
};

const DASH = "—";

/** "2020-03-06T20:20:23-08:00" -> "2020-03-06 20:20" (the wall time as recorded). */
export function clinicalDate(text) {
  if (typeof text !== "string" || !text) return DASH;
  const time = /^\d{4}-\d\d-\d\dT(\d\d:\d\d)/.exec(text);
  return time ? `${text.slice(0, 10)} ${time[1]}` : text.slice(0, 10);
}

/** A measured number without float noise: 106.98 -> "106.98", 36.0 -> "36". */
export function formatNumber(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return null;
  return String(Number(value.toFixed(2)));
}

function text(value) {
  return value === null || value === undefined || value === "" ? DASH : String(value);
}

// Blood pressure is read systolic over diastolic, whatever order the source kept.
const COMPONENT_ORDER = [/systolic/i, /diastolic/i];
const componentRank = (c) => {
  const rank = COMPONENT_ORDER.findIndex((re) => re.test(c.display ?? ""));
  return rank < 0 ? COMPONENT_ORDER.length : rank;
};

/** One vital sign as [date, what, value, unit]; a panel (blood pressure) joins its parts. */
function vitalRow(v) {
  const parts = [...(v.components ?? [])].sort((a, b) => componentRank(a) - componentRank(b));
  if (parts.length && v.value == null && !v.text) {
    const values = parts.map((c) => formatNumber(c.value) ?? c.text ?? "?");
    const units = [...new Set(parts.map((c) => c.unit).filter(Boolean))];
    const names = parts.map((c) => c.display).join(" / ");
    const what = `${v.display} (${names})`;
    return [clinicalDate(v.date), what, values.join(" / "), text(units.join(", "))];
  }
  const value = formatNumber(v.value) ?? text(v.text);
  return [clinicalDate(v.date), text(v.display), value, text(v.unit)];
}

const TABLES = {
  vital_signs: {
    columns: ["Date", "Vital sign", "Value", "Unit"],
    row: vitalRow,
  },
  conditions: {
    columns: ["Onset", "Condition", "Status", "Resolved"],
    row: (c) => [clinicalDate(c.onset), text(c.display), text(c.clinical_status),
      c.abated ? clinicalDate(c.abated) : DASH],
  },
  medications: {
    columns: ["Date", "Medication", "Status", "Dosage"],
    row: (m) => [clinicalDate(m.date), text(m.display), text(m.status), text(m.dosage)],
  },
  immunizations: {
    columns: ["Date", "Vaccine", "Status"],
    row: (i) => [clinicalDate(i.date), text(i.display), text(i.status)],
  },
  allergies: {
    columns: ["Date", "Allergy", "Criticality", "Status", "Reactions"],
    row: (a) => [clinicalDate(a.date), text(a.display), text(a.criticality),
      text(a.clinical_status), text((a.reactions ?? []).join(", "))],
  },
  encounters: {
    columns: ["Start", "Encounter", "Class", "Status", "Reason"],
    row: (e) => [clinicalDate(e.start), text(e.display), text(e.encounter_class),
      text(e.status), text(e.reason)],
  },
};

function demographicFields(d) {
  if (!d) return [];
  return [
    ["Name", text(d.name)],
    ["Gender", text(d.gender)],
    ["Birth date", text(d.birth_date)],
    ["Deceased", d.deceased ? "yes" : "no"],
  ];
}

/**
 * The sections a panel draws for a view, in category order, for the categories the
 * server read (`included`): `{category, title, fields}` for demographics, `{category,
 * title, columns, rows}` for the rest; `truncated` says only the newest are shown.
 */
export function recordSections(view) {
  const included = new Set(view?.included ?? []);
  const cut = new Set(view?.truncated ?? []);
  return Object.keys(CATEGORY_TITLES)
    .filter((category) => included.has(category))
    .map((category) => {
      const base = { category, title: CATEGORY_TITLES[category], truncated: cut.has(category) };
      if (category === "demographics") {
        return { ...base, fields: demographicFields(view.demographics) };
      }
      const table = TABLES[category];
      return { ...base, columns: table.columns, rows: (view[category] ?? []).map(table.row) };
    });
}

/** How many items of each included category a view holds: numbers only, for the hook. */
export function recordCounts(view) {
  const counts = {};
  for (const category of view?.included ?? []) {
    if (!(category in CATEGORY_TITLES)) continue;
    counts[category] = category === "demographics" ? (view.demographics ? 1 : 0)
      : (view[category] ?? []).length;
  }
  return counts;
}

/** ["vital_signs", "allergies"] -> "vital signs and allergies". */
export function describeCategories(categories) {
  const names = (categories ?? []).map((c) => (CATEGORY_TITLES[c] ?? c).toLowerCase());
  if (names.length <= 1) return names[0] ?? "record";
  return `${names.slice(0, -1).join(", ")} and ${names.at(-1)}`;
}

/** What a patient is told when someone is shown part of their record. */
export function disclosureNotice(viewerLabel, categories) {
  return `${viewerLabel} viewed your ${describeCategories(categories)}.`;
}

/** A time of day for end times and audit entries: "14:05", or with the date if not today. */
export function clockTime(ms, now = Date.now()) {
  if (typeof ms !== "number") return DASH;
  const at = new Date(ms);
  const time = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (new Date(now).toDateString() === at.toDateString()) return time;
  return `${at.toLocaleDateString()} ${time}`;
}

/** A consent in a sentence, for its list item and its revoke button. */
export function consentText(summary) {
  const what = describeCategories(summary.categories);
  return `${what[0].toUpperCase()}${what.slice(1)} for ${summary.grantee}`;
}

// The parts named by a consent change are its whole scope, not what it permits (the
// consent list says that), so consent entries name no parts.
const KINDS = {
  access: "asked to view",
  consent_granted: "consent recorded",
  consent_revoked: "consent withdrawn",
  break_glass_start: "emergency access started to",
  break_glass_end: "emergency access ended to",
};
const NO_PARTS = new Set(["consent_granted", "consent_revoked"]);
const OUTCOMES = { permit: "shown", deny: "not shown" };

export const DISCLOSURE_COLUMNS = ["When", "Who", "What", "Outcome"];

/**
 * One accounting-of-disclosures entry as table cells (DISCLOSURE_COLUMNS); `review`
 * marks the entries flagged for a privacy officer's review (break-the-glass).
 */
export function disclosureRow(entry, now = Date.now()) {
  const kind = KINDS[entry.kind] ?? entry.kind;
  const parts = NO_PARTS.has(entry.kind) ? "" : ` ${describeCategories(entry.categories)}`;
  const purpose = entry.purpose && entry.purpose !== "*" ? ` (${entry.purpose})` : "";
  const outcome = OUTCOMES[entry.outcome] ?? entry.outcome;
  const review = Boolean(entry.review);
  return {
    cells: [
      clockTime(entry.at_ms, now),
      `${entry.who} (${entry.role})`,
      `${kind}${parts}${purpose}`,
      review ? `${outcome}; flagged for review` : outcome,
    ],
    review,
  };
}
