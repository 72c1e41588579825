// The client's view of its room: which remote avatars it sees, where they are drawn now,
// and how far each has faded in or out. Plain code with no three.js and no sockets, so
// node tests drive it with hand-made snapshots and deltas.
//
// Pose records on the wire are relative to the minimum corner of the room the view
// belongs to (the room of the latest Snapshot); they are turned into world metres on
// arrival, so a room change never mixes two frames of reference in one buffer.

import { PoseBuffer, RENDER_DELAY_S, ServerClock } from "./interp.js";
import { POSE_LENGTH, forEachRecord } from "./quant.js";

export const FADE_S = 0.4; // seconds for an avatar to fade in or out

/** One remote avatar as the view knows it. */
export class RemoteAvatar {
  constructor(info) {
    this.id = info.id;
    this.role = info.role;
    this.label = info.label;
    this.buffer = new PoseBuffer();
    this.pose = new Float64Array(POSE_LENGTH); // world pose drawn this frame
    this.hasPose = false;
    this.opacity = 0;
    this.leaving = false;
  }
}

export class View {
  constructor({ fadeSeconds = FADE_S, delay = RENDER_DELAY_S } = {}) {
    this.avatars = new Map(); // id -> RemoteAvatar
    this.clock = new ServerClock();
    this.room = null;
    this.roomMin = [0, 0, 0];
    this.selfId = null;
    this.tick = 0;
    this.fadeSeconds = fadeSeconds;
    this.delay = delay;
    this._scratch = new Float64Array(POSE_LENGTH);
    this._world = new Float64Array(POSE_LENGTH);
  }

  /** Forget everything (a new session). */
  reset() {
    this.avatars.clear();
    this.room = null;
  }

  _enter(info) {
    if (info.id === this.selfId) return null;
    let avatar = this.avatars.get(info.id);
    if (!avatar) {
      avatar = new RemoteAvatar(info);
      this.avatars.set(info.id, avatar);
    }
    avatar.role = info.role;
    avatar.label = info.label;
    avatar.leaving = false;
    return avatar;
  }

  _leave(id) {
    const avatar = this.avatars.get(id);
    if (avatar) avatar.leaving = true;
  }

  _records(bytes, serverTime) {
    const [mx, my, mz] = this.roomMin;
    const world = this._world;
    forEachRecord(
      bytes,
      (id, local) => {
        const avatar = this.avatars.get(id);
        if (!avatar) return; // a pose for someone we were not told about: ignore it
        world.set(local);
        for (let p = 0; p < POSE_LENGTH; p += 7) {
          world[p] += mx;
          world[p + 1] += my;
          world[p + 2] += mz;
        }
        avatar.buffer.push(serverTime, world);
      },
      this._scratch,
    );
  }

  /** A Snapshot replaces the view: who is not in it fades out. */
  applySnapshot(msg, roomMin, localTime) {
    const roomChanged = msg.room !== this.room;
    this.room = msg.room;
    this.roomMin = roomMin;
    this.tick = msg.tick;
    const keep = new Set();
    for (const info of msg.avatars) {
      const avatar = this._enter(info);
      if (!avatar) continue;
      keep.add(info.id);
      if (roomChanged) avatar.buffer.clear();
    }
    for (const [id, avatar] of this.avatars) {
      if (!keep.has(id)) {
        if (roomChanged) this.avatars.delete(id);
        else avatar.leaving = true;
      }
    }
    const now = this.clock.serverNow(localTime) ?? localTime;
    this._records(msg.poses, now);
  }

  applyDelta(msg, localTime) {
    this.clock.observe(msg.server_time, localTime);
    this.tick = msg.tick;
    for (const info of msg.entered) this._enter(info);
    for (const id of msg.left) this._leave(id);
    this._records(msg.poses, msg.server_time);
  }

  /** Advance to local time `localTime`: interpolate every avatar and step the fades. */
  update(localTime, dt) {
    const serverNow = this.clock.serverNow(localTime);
    const fadeStep = this.fadeSeconds > 0 ? dt / this.fadeSeconds : 1;
    for (const [id, avatar] of this.avatars) {
      if (serverNow !== null || avatar.buffer.count) {
        const at = (serverNow ?? avatar.buffer.newestTime) - this.delay;
        avatar.hasPose = avatar.buffer.sample(at, avatar.pose) || avatar.hasPose;
      }
      if (avatar.leaving) {
        avatar.opacity = Math.max(0, avatar.opacity - fadeStep);
        if (avatar.opacity === 0) this.avatars.delete(id);
      } else if (avatar.hasPose) {
        avatar.opacity = Math.min(1, avatar.opacity + fadeStep);
      }
    }
  }
}
