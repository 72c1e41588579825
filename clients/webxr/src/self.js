// The local person: where they stand, which way they face, and the pose they report.
//
// On a desktop or phone the head is at eye height above a floor point and the hands hang
// at the sides, as the server's own standing pose has them. In VR the head and hands come
// from the headset and controllers instead (see controls/xr.js), and this object only
// keeps the room, the epoch and the floor point the XR rig stands on.

import { POSE_LENGTH, encodeBody } from "./quant.js";

export const EYE_HEIGHT_M = 1.6; // as metaworld.world.EYE_HEIGHT_M
export const WALL_MARGIN_M = 0.3; // keep clear of the server's 0.15 m wall margin
export const WALK_SPEED_MPS = 1.4;
export const RUN_SPEED_MPS = 2.4; // under the layout's default max_speed_mps of 3

export class Self {
  constructor() {
    this.info = null; // {id, role, label}
    this.room = null;
    this.epoch = 0;
    this.placed = false; // true once the server told us where we are
    this.x = 0;
    this.z = 0;
    this.floorY = 0;
    this.yaw = 0; // radians about +y; 0 looks down -z
    this.pitch = -0.15; // a little down, so the floor and people are in view
    this.seq = 0;
    this.pose = new Float64Array(POSE_LENGTH); // world pose reported to the server
  }

  /** Adopt a pose body the server sent (Snapshot.you, Placed, Correction). */
  adopt(localPose, roomMin) {
    this.x = localPose[0] + roomMin[0];
    this.z = localPose[2] + roomMin[2];
    this.floorY = roomMin[1];
    const [qx, qy, qz, qw] = [localPose[3], localPose[4], localPose[5], localPose[6]];
    // Yaw of the head's forward (-z) vector projected on the floor.
    const fx = -2 * (qx * qz + qw * qy);
    const fz = -(1 - 2 * (qx * qx + qy * qy));
    if (Math.hypot(fx, fz) > 1e-6) this.yaw = Math.atan2(-fx, -fz);
    this.placed = true;
  }

  /** Walk by (forward, right) metres in the facing direction, staying where it is legal. */
  walk(forward, right, room) {
    const sin = Math.sin(this.yaw);
    const cos = Math.cos(this.yaw);
    const dx = -sin * forward + cos * right;
    const dz = -cos * forward - sin * right;
    // Axis by axis, so sliding along a wall or a table still moves.
    if (standable(room, this.x + dx, this.z)) this.x += dx;
    if (standable(room, this.x, this.z + dz)) this.z += dz;
  }

  /** The desktop pose: head at eye height, hands at the sides (world metres). */
  desktopPose() {
    const p = this.pose;
    const half = this.yaw / 2;
    const hp = this.pitch / 2;
    // Head orientation: yaw about y, then pitch about x (three.js Euler order "YXZ").
    const [sy, cy, sp, cp] = [Math.sin(half), Math.cos(half), Math.sin(hp), Math.cos(hp)];
    p.set([this.x, this.floorY + EYE_HEIGHT_M, this.z, cy * sp, sy * cp, -sy * sp, cy * cp]);
    const side = [Math.cos(this.yaw) * 0.25, -Math.sin(this.yaw) * 0.25];
    const fwd = [-Math.sin(this.yaw) * 0.1, -Math.cos(this.yaw) * 0.1];
    const handY = this.floorY + 0.9;
    p.set([this.x - side[0] + fwd[0], handY, this.z - side[1] + fwd[1], 0, sy, 0, cy], 7);
    p.set([this.x + side[0] + fwd[0], handY, this.z + side[1] + fwd[1], 0, sy, 0, cy], 14);
    return p;
  }

  /** Encode a world pose as a body relative to `roomMin`. */
  static body(pose, roomMin) {
    const local = Float64Array.from(pose);
    for (let at = 0; at < POSE_LENGTH; at += 7) {
      local[at] -= roomMin[0];
      local[at + 1] -= roomMin[1];
      local[at + 2] -= roomMin[2];
    }
    return encodeBody(local);
  }
}

/** True where a head may stand in `room`: inside its walls and outside its furniture. */
export function standable(room, x, z, margin = WALL_MARGIN_M) {
  if (!room) return false;
  const { min, max } = room.bounds;
  if (x < min[0] + margin || x > max[0] - margin) return false;
  if (z < min[2] + margin || z > max[2] - margin) return false;
  for (const ob of room.obstacles ?? []) {
    const pad = 0.1; // metres of clearance around furniture
    const insideX = x >= ob.min[0] - pad && x <= ob.max[0] + pad;
    if (insideX && z >= ob.min[2] - pad && z <= ob.max[2] + pad) return false;
  }
  return true;
}
