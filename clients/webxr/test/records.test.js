// The clinical messages against the Python codec, and what the panels draw from them.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import * as proto from "../src/protocol.js";
import {
  clinicalDate,
  consentText,
  describeCategories,
  disclosureNotice,
  disclosureRow,
  formatNumber,
  recordCounts,
  recordSections,
} from "../src/records.js";

const vectors = JSON.parse(readFileSync(new URL("./vectors.json", import.meta.url)));
const byTag = Object.fromEntries(vectors.messages.map((m) => [m.tag, m.hex]));
const decoded = (tag) => proto.decode(new Uint8Array(Buffer.from(byTag[tag], "hex")));
const hex = (message) => Buffer.from(proto.encode(message)).toString("hex");

test("clinical server messages decode into named fields", () => {
  const shown = decoded("record_shown");
  assert.equal(shown.request, 7);
  assert.equal(shown.patient, 2);
  assert.deepEqual(shown.viewer, { id: 1, role: "clinician", label: "Dr Vector" });
  assert.equal(shown.consent_version, "Consent/world-1/_history/1");
  // The view is a map with its field names; empty lists are left out on the wire.
  assert.deepEqual(shown.view.included, ["demographics", "vital_signs", "conditions", "allergies"]);
  assert.equal(shown.view.allergies, undefined);
  assert.equal(shown.view.vital_signs[0].unit, "/min");

  const denied = decoded("record_denied");
  assert.deepEqual([denied.request, denied.reason], [8, "denied"]);
  assert.equal(decoded("record_purge").patient, 2);

  const result = decoded("consent_result");
  assert.deepEqual(
    [result.request, result.ok, result.consent, result.version, result.status],
    [9, true, "bg-1", 0, "emergency"],
  );
  assert.equal(result.end_ms, 1767226500000);

  const state = decoded("consent_state");
  assert.deepEqual(state.consents[0], {
    id: "world-1",
    version: 2,
    status: "active",
    categories: ["vital_signs"],
    purpose: "TREAT",
    grantee: "Dr Vector",
    end_ms: 1767225600000,
  });
  assert.equal(state.disclosures[0].who, "Dr Vector");
  assert.equal(state.disclosures[0].review, true);
});

test("a short consent_result gets its defaults; a RecordView must be a map", () => {
  const short = proto.decode(proto.encode(["consent_result", 3, false]));
  assert.deepEqual([short.consent, short.message, short.end_ms], ["", "", null]);
  const bad = proto.encode(["record_shown", 1, 2, [1, "clinician", "X"], ["not", "a map"], ""]);
  assert.throws(() => proto.decode(bad), proto.ProtocolError);
});

test("clinical client messages encode exactly as the Python codec does", () => {
  assert.equal(hex(proto.recordRequest(1, 2, ["vital_signs", "conditions"])), byTag.record_request);
  const grant = proto.consentGrant(2, ["vital_signs"], null, "TREAT", 900);
  assert.equal(hex(grant), byTag.consent_grant);
  assert.equal(hex(proto.consentRevoke(3, "world-1")), byTag.consent_revoke);
  assert.equal(hex(proto.consentQuery(4)), byTag.consent_query);
  assert.equal(hex(proto.breakGlass(5, 2, "unconscious on arrival", 1800)), byTag.break_glass);
  assert.equal(hex(proto.admit(2)), byTag.admit);
});

test("a view becomes titled sections, in category order, with readable rows", () => {
  const sections = recordSections(decoded("record_shown").view);
  assert.deepEqual(
    sections.map((s) => s.title),
    ["Demographics", "Vital signs", "Conditions", "Allergies"],
  );
  const [demographics, vitals, conditions, allergies] = sections;
  assert.deepEqual(demographics.fields, [
    ["Name", "Test Person"],
    ["Gender", "other"],
    ["Birth date", "1990-01-02"],
    ["Deceased", "no"],
  ]);
  assert.deepEqual(vitals.columns, ["Date", "Vital sign", "Value", "Unit"]);
  assert.deepEqual(vitals.rows, [
    ["2020-03-06 20:20", "Heart rate", "72.5", "/min"],
    [
      "2020-03-06 20:20",
      "Blood pressure panel (Systolic blood pressure / Diastolic blood pressure)",
      "121 / 79",
      "mm[Hg]",
    ],
  ]);
  assert.deepEqual(conditions.rows, [["2020-03-01", "Cough", "resolved", "—"]]);
  assert.equal(conditions.truncated, true);
  assert.deepEqual(allergies.rows, []); // asked for, none recorded
});

test("blood pressure reads systolic over diastolic whatever the stored order", () => {
  const [vitals] = recordSections({
    included: ["vital_signs"],
    vital_signs: [
      {
        display: "Blood Pressure",
        date: "2020-03-06",
        components: [
          { display: "Diastolic Blood Pressure", value: 72, unit: "mm[Hg]" },
          { display: "Systolic Blood Pressure", value: 116, unit: "mm[Hg]" },
        ],
      },
    ],
  });
  assert.deepEqual(vitals.rows[0].slice(1), [
    "Blood Pressure (Systolic Blood Pressure / Diastolic Blood Pressure)",
    "116 / 72",
    "mm[Hg]",
  ]);
});

test("counts hold numbers only, for the included categories", () => {
  const counts = recordCounts(decoded("record_shown").view);
  assert.deepEqual(counts, { demographics: 1, vital_signs: 2, conditions: 1, allergies: 0 });
  assert.deepEqual(recordCounts({ included: ["demographics"] }), { demographics: 0 });
  assert.deepEqual(recordCounts(undefined), {});
});

test("values, dates and sentences read naturally", () => {
  assert.equal(formatNumber(106.98), "106.98");
  assert.equal(formatNumber(36), "36");
  assert.equal(formatNumber(40.894), "40.89");
  assert.equal(formatNumber(null), null);
  assert.equal(clinicalDate("2019-05-08"), "2019-05-08");
  assert.equal(clinicalDate(null), "—");
  assert.equal(describeCategories(["vital_signs"]), "vital signs");
  assert.equal(
    describeCategories(["vital_signs", "allergies", "encounters"]),
    "vital signs, allergies and encounters",
  );
  assert.equal(disclosureNotice("Dr Ada", ["vital_signs"]), "Dr Ada viewed your vital signs.");
  const summary = decoded("consent_state").consents[0];
  assert.equal(consentText(summary), "Vital signs for Dr Vector");
  const everyone = { ...summary, grantee: "every clinician" };
  assert.equal(consentText(everyone), "Vital signs for every clinician");
});

test("an accounting entry names who, what and the outcome, and keeps the review flag", () => {
  const entry = decoded("consent_state").disclosures[0];
  const row = disclosureRow(entry, entry.at_ms);
  assert.equal(row.review, true);
  assert.deepEqual(row.cells.slice(1), [
    "Dr Vector (clinician)",
    "asked to view vital signs (ETREAT)",
    "shown; flagged for review",
  ]);
  const granted = { ...entry, kind: "consent_granted", purpose: "*", outcome: "recorded" };
  granted.review = false;
  assert.deepEqual(disclosureRow(granted).cells.slice(2), ["consent recorded", "recorded"]);
  assert.match(row.cells[0], /\d/);
});
