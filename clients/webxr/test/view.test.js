// The interpolation buffer, the server clock and the view, without a browser.

import assert from "node:assert/strict";
import { test } from "node:test";

import { PoseBuffer, ServerClock, slerp } from "../src/interp.js";
import { POSE_LENGTH, encodeRecords } from "../src/quant.js";
import { View } from "../src/view.js";

function standing(x, z, yaw = 0) {
  const q = [0, Math.sin(yaw / 2), 0, Math.cos(yaw / 2)];
  return [x, 1.6, z, ...q, x - 0.25, 0.9, z, ...q, x + 0.25, 0.9, z, ...q];
}

test("the buffer lerps positions between the poses around the asked time", () => {
  const buffer = new PoseBuffer();
  buffer.push(1.0, standing(0, 0));
  buffer.push(1.1, standing(1, 2));
  const out = new Float64Array(POSE_LENGTH);
  buffer.sample(1.05, out);
  assert.ok(Math.abs(out[0] - 0.5) < 1e-9);
  assert.ok(Math.abs(out[2] - 1.0) < 1e-9);
  buffer.sample(5, out); // past the newest pose: hold it
  assert.equal(out[0], 1);
  buffer.sample(0, out); // before the oldest: hold that
  assert.equal(out[0], 0);
});

test("the buffer drops late poses and keeps a bounded history", () => {
  const buffer = new PoseBuffer();
  for (let i = 0; i < 20; i++) buffer.push(i, standing(i, 0));
  assert.equal(buffer.push(3, standing(0, 0)), false);
  assert.equal(buffer.count, 8);
  assert.equal(buffer.newestTime, 19);
});

test("slerp takes the short way and stays unit length", () => {
  const a = [0, 0, 0, 1];
  const b = [0, -Math.SQRT1_2, 0, -Math.SQRT1_2]; // +90 degrees about y, as -q
  const out = [0, 0, 0, 0];
  slerp(a, 0, b, 0, 0.5, out, 0);
  const angle = 2 * Math.atan2(out[1], out[3]);
  assert.ok(Math.abs(angle - Math.PI / 4) < 1e-9, `angle ${angle}`);
  assert.ok(Math.abs(Math.hypot(...out) - 1) < 1e-12);
});

test("the clock follows the least-delayed samples", () => {
  const clock = new ServerClock();
  clock.observe(100, 10); // offset 90
  clock.observe(100.05, 10.2); // delayed by 0.15 s: barely moves
  assert.ok(Math.abs(clock.offset - 90) < 0.01);
  clock.observe(200, 10.3); // the server restarted its clock
  assert.equal(clock.offset, 189.7);
});

test("the view enters, moves, fades and forgets avatars", () => {
  const view = new View({ fadeSeconds: 0.4 });
  view.selfId = 1;
  const min = [10, 0, 0];
  const info = (id) => ({ id, role: "patient", label: `P${id}` });
  view.applySnapshot(
    { room: "a", tick: 1, avatars: [info(1), info(2)], poses: new Uint8Array(0) },
    min,
    0,
  );
  assert.deepEqual([...view.avatars.keys()], [2], "our own avatar is never drawn");

  const records = (t) => encodeRecords([[2, standing(1 + t, 2)]]);
  view.applyDelta({ tick: 2, server_time: 50, entered: [], left: [], poses: records(0) }, 1);
  view.applyDelta({ tick: 3, server_time: 50.05, entered: [], left: [], poses: records(1) }, 1.05);
  view.update(1.05 + 0.075, 0.2); // render time = 50.025
  const avatar = view.avatars.get(2);
  assert.ok(Math.abs(avatar.pose[0] - (10 + 1.5)) < 0.002, `x ${avatar.pose[0]}`);
  assert.equal(avatar.opacity, 0.5);

  const gone = { tick: 4, server_time: 50.1, entered: [], left: [2], poses: new Uint8Array(0) };
  view.applyDelta(gone, 1.1);
  view.update(1.15, 0.1);
  assert.equal(view.avatars.get(2).opacity, 0.25);
  view.update(1.3, 0.2);
  assert.equal(view.avatars.has(2), false);
});

test("a snapshot of another room replaces the view at once", () => {
  const view = new View();
  const info = (id) => ({ id, role: "trainee", label: `T${id}` });
  const poses = encodeRecords([[5, standing(1, 1)]]);
  view.applySnapshot({ room: "a", tick: 1, avatars: [info(5)], poses }, [0, 0, 0], 0);
  const other = { room: "b", tick: 2, avatars: [info(6)], poses: new Uint8Array(0) };
  view.applySnapshot(other, [20, 0, 0], 0);
  assert.deepEqual([...view.avatars.keys()], [6]);
});
