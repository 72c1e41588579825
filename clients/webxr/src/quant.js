// Pose quantization: the 28-byte pose body and the 30-byte downlink record.
//
// This is a line-for-line port of metaworld/quant.py, including its rounding (numpy's
// rint rounds halves to even) and its order of floating-point operations, so that a
// body encoded here is byte-identical to one encoded by the server. The node test in
// test/quant.test.js checks that against vectors generated from the Python module.
//
// A pose is a flat array of 21 numbers: head, left hand, right hand, each
// [x, y, z, qx, qy, qz, qw], positions in metres relative to the room's minimum corner.
//
// Body layout (little-endian):
//   0  head position  3 x uint16 mm     6  head rotation  uint32 (2 + 3 x 10 bits)
//  10  left position  3 x uint16 mm    16  left rotation  uint24 (2 + 3 x 7 bits)
//  19  right position 3 x uint16 mm    25  right rotation uint24

export const BODY_SIZE = 28; // bytes in one pose body
export const RECORD_SIZE = 30; // bytes in one downlink record (uint16 id + body)
export const POSE_LENGTH = 21; // numbers in one float pose
export const MM_PER_M = 1000.0;

const HEAD_BITS = 10;
const HAND_BITS = 7;
const HALF_SQRT2 = 1.0 / Math.sqrt(2.0);

// Byte offsets of each part's position and rotation inside a body.
const PARTS = [
  { pos: 0, rot: 6, bits: HEAD_BITS },
  { pos: 10, rot: 16, bits: HAND_BITS },
  { pos: 19, rot: 25, bits: HAND_BITS },
];

/** numpy.rint: round to nearest, halves to even. */
export function rint(x) {
  if (Math.abs(x % 1) === 0.5) return 2 * Math.round(x / 2);
  return Math.round(x);
}

function clamp(v, lo, hi) {
  return v < lo ? lo : v > hi ? hi : v;
}

/** Room-local metres to uint16 millimetres, clamped to what a uint16 holds. */
export function quantizePosition(metres) {
  const mm = rint(metres * MM_PER_M);
  return Number.isNaN(mm) ? 0 : clamp(mm, 0, 65535);
}

/**
 * Pack a quaternion (x, y, z, w) into 2 + 3 * bits bits, "smallest three" style:
 * the index of the largest component, then the other three in index order.
 * Returns a non-negative Number (up to 32 bits, so no bitwise shifts on the result).
 */
export function packQuaternion(x, y, z, w, bits) {
  let q = [x, y, z, w];
  const norm = Math.sqrt(x * x + y * y + z * z + w * w);
  if (norm === 0 || Number.isNaN(norm)) {
    q = [0, 0, 0, 1];
  } else {
    q = q.map((c) => c / norm);
  }
  let largest = 0;
  for (let i = 1; i < 4; i++) {
    if (Math.abs(q[i]) > Math.abs(q[largest])) largest = i;
  }
  const sign = q[largest] < 0 ? -1.0 : 1.0;
  const steps = 2 ** bits - 1;
  let packed = largest;
  for (let slot = 0; slot < 3; slot++) {
    const comp = q[(largest + 1 + slot) % 4] * sign;
    const level = rint(((comp + HALF_SQRT2) / (2.0 * HALF_SQRT2)) * steps);
    packed = packed * 2 ** bits + clamp(level, 0, steps);
  }
  return packed;
}

/** Inverse of packQuaternion; writes x, y, z, w into out[at .. at+3]. */
export function unpackQuaternion(packed, bits, out, at = 0) {
  const steps = 2 ** bits - 1;
  const comps = [0, 0, 0];
  let value = packed;
  for (let slot = 2; slot >= 0; slot--) {
    const level = value % 2 ** bits;
    comps[slot] = ((level / steps) * 2.0) * HALF_SQRT2 - HALF_SQRT2;
    value = (value - level) / 2 ** bits;
  }
  const largest = value;
  for (let slot = 0; slot < 3; slot++) {
    out[at + ((largest + 1 + slot) % 4)] = comps[slot];
  }
  const sum = comps[0] * comps[0] + comps[1] * comps[1] + comps[2] * comps[2];
  out[at + largest] = Math.sqrt(clamp(1.0 - sum, 0.0, 1.0));
  return out;
}

/** Encode a 21-number room-local pose into a new 28-byte body. */
export function encodeBody(pose) {
  const bytes = new Uint8Array(BODY_SIZE);
  const view = new DataView(bytes.buffer);
  PARTS.forEach((part, i) => {
    const p = i * 7;
    for (let axis = 0; axis < 3; axis++) {
      view.setUint16(part.pos + 2 * axis, quantizePosition(pose[p + axis]), true);
    }
    const packed = packQuaternion(pose[p + 3], pose[p + 4], pose[p + 5], pose[p + 6], part.bits);
    if (part.bits === HEAD_BITS) {
      view.setUint32(part.rot, packed, true);
    } else {
      bytes[part.rot] = packed & 0xff;
      bytes[part.rot + 1] = (packed >>> 8) & 0xff;
      bytes[part.rot + 2] = (packed >>> 16) & 0xff;
    }
  });
  return bytes;
}

/**
 * Decode the body that starts at `offset` in `view` (a DataView) into `out`
 * (21 numbers, room-local metres). Returns `out`.
 */
export function decodeBodyAt(view, offset, out = new Float64Array(POSE_LENGTH)) {
  PARTS.forEach((part, i) => {
    const p = i * 7;
    for (let axis = 0; axis < 3; axis++) {
      out[p + axis] = view.getUint16(offset + part.pos + 2 * axis, true) / MM_PER_M;
    }
    let packed;
    if (part.bits === HEAD_BITS) {
      packed = view.getUint32(offset + part.rot, true);
    } else {
      const at = offset + part.rot;
      packed = view.getUint8(at) | (view.getUint8(at + 1) << 8) | (view.getUint8(at + 2) << 16);
    }
    unpackQuaternion(packed, part.bits, out, p + 3);
  });
  return out;
}

function viewOf(bytes) {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Decode one 28-byte body; throws RangeError when the length is wrong. */
export function decodeBody(bytes, out) {
  if (bytes.byteLength !== BODY_SIZE) {
    throw new RangeError(`a pose body is ${BODY_SIZE} bytes, got ${bytes.byteLength}`);
  }
  return decodeBodyAt(viewOf(bytes), 0, out);
}

/**
 * Call `visit(id, pose)` for every 30-byte record in `bytes`. The pose array is reused
 * between calls: copy what you keep. Throws RangeError on a ragged length.
 */
export function forEachRecord(bytes, visit, scratch = new Float64Array(POSE_LENGTH)) {
  if (bytes.byteLength % RECORD_SIZE) {
    throw new RangeError(
      `pose records come in ${RECORD_SIZE}-byte units, got ${bytes.byteLength} bytes`,
    );
  }
  const view = viewOf(bytes);
  for (let at = 0; at < bytes.byteLength; at += RECORD_SIZE) {
    visit(view.getUint16(at, true), decodeBodyAt(view, at + 2, scratch));
  }
}

/** Build downlink records (used by tests and the load harness in the page). */
export function encodeRecords(entries) {
  const out = new Uint8Array(entries.length * RECORD_SIZE);
  const view = viewOf(out);
  entries.forEach(([id, pose], i) => {
    view.setUint16(i * RECORD_SIZE, id, true);
    out.set(encodeBody(pose), i * RECORD_SIZE + 2);
  });
  return out;
}
