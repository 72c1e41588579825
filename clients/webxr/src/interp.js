// Interpolation of remote avatars, and the estimate of the server's clock.
//
// The server sends poses at its tick rate (20 Hz) and, for distant avatars, less often.
// Drawing each pose as it arrives would look like a slide show, so every remote avatar
// keeps a short buffer of timestamped poses and is drawn a little in the past
// (RENDER_DELAY_S): between two known poses, positions are lerped and orientations
// slerped. Past the newest pose the avatar holds still rather than guessing.
//
// Timestamps are server time (Delta.server_time), so network jitter does not become
// motion jitter. ServerClock maps local time onto server time.

import { POSE_LENGTH } from "./quant.js";

export const RENDER_DELAY_S = 0.1; // how far behind the newest server time we draw
const CAPACITY = 8; // poses kept per avatar: 400 ms at 20 Hz

/** Estimate of (server clock - local clock), robust to one-sided network delay. */
export class ServerClock {
  constructor() {
    this.offset = null; // seconds
  }

  /** Feed one (server time, local receipt time) pair, both in seconds. */
  observe(serverTime, localTime) {
    const sample = serverTime - localTime;
    if (this.offset === null || Math.abs(sample - this.offset) > 1.0) {
      this.offset = sample; // first sample, or the server restarted its clock
    } else if (sample > this.offset) {
      // A message that was delayed less than usual: move towards it quickly.
      this.offset += (sample - this.offset) * 0.5;
    } else {
      this.offset += (sample - this.offset) * 0.02;
    }
  }

  serverNow(localTime) {
    return this.offset === null ? null : localTime + this.offset;
  }
}

/** Spherical interpolation of the quaternions at a[ai..] and b[bi..] into out[oi..]. */
export function slerp(a, ai, b, bi, t, out, oi) {
  let bx = b[bi];
  let by = b[bi + 1];
  let bz = b[bi + 2];
  let bw = b[bi + 3];
  let cos = a[ai] * bx + a[ai + 1] * by + a[ai + 2] * bz + a[ai + 3] * bw;
  if (cos < 0) {
    // q and -q are the same rotation; take the short way round.
    cos = -cos;
    bx = -bx;
    by = -by;
    bz = -bz;
    bw = -bw;
  }
  let wa = 1 - t;
  let wb = t;
  if (cos < 0.9995) {
    const angle = Math.acos(cos);
    const sin = Math.sin(angle);
    wa = Math.sin((1 - t) * angle) / sin;
    wb = Math.sin(t * angle) / sin;
  }
  const x = wa * a[ai] + wb * bx;
  const y = wa * a[ai + 1] + wb * by;
  const z = wa * a[ai + 2] + wb * bz;
  const w = wa * a[ai + 3] + wb * bw;
  const n = Math.hypot(x, y, z, w) || 1;
  out[oi] = x / n;
  out[oi + 1] = y / n;
  out[oi + 2] = z / n;
  out[oi + 3] = w / n;
}

/** Blend two 21-number poses (head, left, right) into out. */
export function blendPose(a, ai, b, bi, t, out) {
  for (let part = 0; part < 3; part++) {
    const p = part * 7;
    for (let axis = 0; axis < 3; axis++) {
      const va = a[ai + p + axis];
      out[p + axis] = va + (b[bi + p + axis] - va) * t;
    }
    slerp(a, ai + p + 3, b, bi + p + 3, t, out, p + 3);
  }
  return out;
}

/** A short time-ordered ring of world-space poses for one remote avatar. */
export class PoseBuffer {
  constructor() {
    this.times = new Float64Array(CAPACITY);
    this.poses = new Float64Array(CAPACITY * POSE_LENGTH);
    this.start = 0; // index of the oldest pose
    this.count = 0;
  }

  clear() {
    this.start = 0;
    this.count = 0;
  }

  get newestTime() {
    return this.count ? this.times[(this.start + this.count - 1) % CAPACITY] : -Infinity;
  }

  /** Add a pose taken at server time `time`; out-of-order poses are dropped. */
  push(time, pose) {
    if (this.count && time <= this.newestTime) {
      if (time < this.newestTime) return false;
      this.count -= 1; // same timestamp: the later message wins
    }
    if (this.count === CAPACITY) {
      this.start = (this.start + 1) % CAPACITY;
      this.count -= 1;
    }
    const slot = (this.start + this.count) % CAPACITY;
    this.times[slot] = time;
    this.poses.set(pose, slot * POSE_LENGTH);
    this.count += 1;
    return true;
  }

  /** The pose at server time `time` into out; returns false when the buffer is empty. */
  sample(time, out) {
    if (!this.count) return false;
    const slotOf = (i) => (this.start + i) % CAPACITY;
    let later = 0;
    while (later < this.count && this.times[slotOf(later)] <= time) later += 1;
    if (later === 0 || later === this.count) {
      // Before the oldest or after the newest pose: hold the nearest one.
      const slot = slotOf(later === 0 ? 0 : this.count - 1);
      out.set(this.poses.subarray(slot * POSE_LENGTH, (slot + 1) * POSE_LENGTH));
      return true;
    }
    const a = slotOf(later - 1);
    const b = slotOf(later);
    const t = (time - this.times[a]) / (this.times[b] - this.times[a]);
    blendPose(this.poses, a * POSE_LENGTH, this.poses, b * POSE_LENGTH, t, out);
    return true;
  }
}
