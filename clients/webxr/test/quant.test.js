// Compares the JavaScript pose codec and message codec with vectors made by the Python
// server code (scripts/make_vectors.py writes test/vectors.json).

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import * as proto from "../src/protocol.js";
import {
  BODY_SIZE,
  decodeBody,
  encodeBody,
  encodeRecords,
  forEachRecord,
  rint,
} from "../src/quant.js";

const vectors = JSON.parse(readFileSync(new URL("./vectors.json", import.meta.url)));
const hex = (bytes) => Buffer.from(bytes).toString("hex");
const unhex = (text) => new Uint8Array(Buffer.from(text, "hex"));

function assertClose(actual, expected, tolerance, label) {
  assert.equal(actual.length, expected.length, `${label}: length`);
  for (let i = 0; i < expected.length; i++) {
    const diff = Math.abs(actual[i] - expected[i]);
    assert.ok(diff <= tolerance, `${label}[${i}]: ${actual[i]} vs ${expected[i]}`);
  }
}

test("rint rounds halves to even, like numpy", () => {
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6].map(rint), [0, 2, 2, -0, -2, 2, 3]);
});

test("encodeBody is byte-identical to quant.encode_bodies", () => {
  assert.ok(vectors.poses.length > 100);
  vectors.poses.forEach((v, i) => {
    const body = encodeBody(v.pose);
    assert.equal(body.length, BODY_SIZE);
    assert.equal(hex(body), v.body, `pose ${i}`);
  });
});

test("decodeBody matches quant.decode_bodies", () => {
  vectors.poses.forEach((v, i) => {
    assertClose(Array.from(decodeBody(unhex(v.body))), v.decoded, 1e-12, `pose ${i}`);
  });
});

test("records decode with their avatar ids and re-encode to the same bytes", () => {
  const { bytes, ids, decoded } = vectors.records;
  const seen = [];
  forEachRecord(unhex(bytes), (id, pose) => seen.push([id, Array.from(pose)]));
  assert.deepEqual(
    seen.map(([id]) => id),
    ids,
  );
  seen.forEach(([, pose], i) => assertClose(pose, decoded[i], 1e-12, `record ${i}`));
  assert.equal(hex(encodeRecords(seen)), bytes);
});

test("ragged bodies and records are refused", () => {
  assert.throws(() => decodeBody(new Uint8Array(27)), RangeError);
  assert.throws(() => forEachRecord(new Uint8Array(31), () => {}), RangeError);
});

test("server messages decode into named fields", () => {
  const byTag = Object.fromEntries(vectors.messages.map((m) => [m.tag, unhex(m.hex)]));
  const welcome = proto.decode(byTag.welcome);
  assert.equal(welcome.type, "welcome");
  assert.deepEqual(welcome.you, { id: 1, role: "clinician", label: "Dr Vector" });
  assert.equal(welcome.tick_hz, 20);
  assert.equal(welcome.layout.lobby, "lobby");
  assert.deepEqual(welcome.layout.rooms[1].bounds.min, [10, 0, 0]);
  assert.equal(welcome.layout.doors[0].b, "consult-1");

  const snapshot = proto.decode(byTag.snapshot);
  assert.equal(snapshot.avatars[0].role, "patient");
  assert.equal(snapshot.poses.byteLength, 30);
  assert.equal(snapshot.you.byteLength, 28);
  assert.equal(snapshot.epoch, 4);

  assert.deepEqual(proto.decode(byTag.delta).left, [9]);
  assert.equal(proto.decode(byTag.placed).room, "consult-1");
  assert.equal(proto.decode(byTag.correction).reason, "too_fast");
  assert.equal(proto.decode(byTag.chat_message).text, "héllo");
  assert.equal(proto.decode(byTag.presence).full, true);
  assert.equal(proto.decode(byTag.error).code, "too_far");
  assert.equal(proto.decode(byTag.pong).nonce, 9);
});

test("client messages encode exactly as the Python codec does", () => {
  const byTag = Object.fromEntries(vectors.messages.map((m) => [m.tag, m.hex]));
  const body = unhex(vectors.poses[1].body);
  assert.equal(hex(proto.encode(proto.hello("not-a-token", "s-1"))), byTag.hello);
  assert.equal(hex(proto.encode(proto.pose(4, body, 17))), byTag.pose);
  assert.equal(hex(proto.encode(proto.moveTo(2.5, 3.25))), byTag.move_to);
  assert.equal(hex(proto.encode(proto.chat("hi"))), byTag.chat);
});

test("missing trailing fields get defaults and extra fields are ignored", () => {
  const short = proto.decode(proto.encode(["presence", "lobby", [[3, "trainee", "T"]], []]));
  assert.equal(short.full, false);
  assert.equal(short.joined[0].label, "T");
  const long = proto.decode(proto.encode(["error", "x", "y", "a field from the future"]));
  assert.deepEqual([long.code, long.message], ["x", "y"]);
  assert.equal(proto.decode(proto.encode(["brand_new", 1])).unknown, true);
});
