// Desktop and touch controls: keys to walk and turn, drag to look, click or tap to act.
//
// Keys: W/S or Up/Down walk, A/D strafe, Left/Right turn, Shift walks faster, E uses the
// nearest door. Mouse: drag to look, click (press and release without dragging) on the
// floor to teleport or on a door to go through it. Touch: one finger drags to look, two
// fingers drag to walk, a tap acts like a click. Keys are only taken while focus is on
// the scene or on nothing, so typing in the chat never moves the avatar.

import { RUN_SPEED_MPS, WALK_SPEED_MPS } from "../self.js";

const LOOK_RAD_PER_PX = 0.005;
const TURN_RAD_PER_S = 1.8;
const TOUCH_M_PER_PX = 0.01;
const CLICK_SLOP_PX = 6;
const MAX_PITCH = 1.4;

const MOVE_KEYS = new Set([
  "KeyW", "KeyA", "KeyS", "KeyD", "ArrowUp", "ArrowDown", "ArrowLeft", "ArrowRight",
  "ShiftLeft", "ShiftRight",
]);

export class DesktopControls {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{pick: (x: number, y: number) => void, useDoor: () => void}} actions
   *   pick gets normalized device coordinates (-1..1) of a click or tap.
   */
  constructor(canvas, actions) {
    this.canvas = canvas;
    this.actions = actions;
    this.keys = new Set();
    this.pointers = new Map(); // pointerId -> {x, y, startX, startY, moved}
    this.lookDelta = [0, 0];
    this.touchMove = [0, 0]; // metres (right, forward) requested by a two-finger drag
    this.enabled = true;
    this._bind();
  }

  _takesKeys(event) {
    const el = event.target;
    return el === this.canvas || el === document.body || el === document.documentElement;
  }

  _bind() {
    const c = this.canvas;
    window.addEventListener("keydown", (e) => {
      if (!this.enabled || !this._takesKeys(e) || e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.code === "KeyE" && !e.repeat) {
        this.actions.useDoor();
        e.preventDefault();
      } else if (MOVE_KEYS.has(e.code)) {
        this.keys.add(e.code);
        e.preventDefault();
      }
    });
    window.addEventListener("keyup", (e) => this.keys.delete(e.code));
    window.addEventListener("blur", () => this.keys.clear());

    c.addEventListener("pointerdown", (e) => {
      if (!this.enabled) return;
      c.setPointerCapture?.(e.pointerId);
      this.pointers.set(e.pointerId, {
        x: e.clientX, y: e.clientY, startX: e.clientX, startY: e.clientY, moved: false,
        touch: e.pointerType === "touch",
      });
    });
    c.addEventListener("pointermove", (e) => this._move(e));
    const end = (e) => {
      const p = this.pointers.get(e.pointerId);
      this.pointers.delete(e.pointerId);
      if (!p || !this.enabled || e.type === "pointercancel") return;
      if (!p.moved && this.pointers.size === 0) {
        const rect = c.getBoundingClientRect();
        const x = ((e.clientX - rect.left) / rect.width) * 2 - 1;
        const y = -((e.clientY - rect.top) / rect.height) * 2 + 1;
        this.actions.pick(x, y);
      }
    };
    c.addEventListener("pointerup", end);
    c.addEventListener("pointercancel", end);
    c.addEventListener("contextmenu", (e) => e.preventDefault());
  }

  _move(e) {
    const p = this.pointers.get(e.pointerId);
    if (!p) return;
    const dx = e.clientX - p.x;
    const dy = e.clientY - p.y;
    p.x = e.clientX;
    p.y = e.clientY;
    if (Math.hypot(p.x - p.startX, p.y - p.startY) > CLICK_SLOP_PX) p.moved = true;
    if (!p.moved) return;
    if (p.touch && this.pointers.size >= 2) {
      // Two fingers: each finger contributes half of the walk.
      const share = 1 / this.pointers.size;
      this.touchMove[0] -= dx * TOUCH_M_PER_PX * share;
      this.touchMove[1] += dy * TOUCH_M_PER_PX * share;
    } else {
      this.lookDelta[0] += dx;
      this.lookDelta[1] += dy;
    }
  }

  /** Apply this frame's input to `self` (see self.js); `room` bounds the walk. */
  update(dt, self, room) {
    self.yaw -= this.lookDelta[0] * LOOK_RAD_PER_PX;
    self.pitch -= this.lookDelta[1] * LOOK_RAD_PER_PX;
    self.pitch = Math.max(-MAX_PITCH, Math.min(MAX_PITCH, self.pitch));
    this.lookDelta = [0, 0];

    const k = this.keys;
    const turn = (k.has("ArrowLeft") ? 1 : 0) - (k.has("ArrowRight") ? 1 : 0);
    self.yaw += turn * TURN_RAD_PER_S * dt;
    let forward = (k.has("KeyW") || k.has("ArrowUp") ? 1 : 0) -
      (k.has("KeyS") || k.has("ArrowDown") ? 1 : 0);
    let right = (k.has("KeyD") ? 1 : 0) - (k.has("KeyA") ? 1 : 0);
    const speed = k.has("ShiftLeft") || k.has("ShiftRight") ? RUN_SPEED_MPS : WALK_SPEED_MPS;
    const norm = Math.hypot(forward, right) || 1;
    forward = (forward / norm) * speed * dt;
    right = (right / norm) * speed * dt;

    // Touch walking is capped at walking speed so the server never sees a jump.
    const cap = WALK_SPEED_MPS * dt;
    const [tr, tf] = this.touchMove;
    const tlen = Math.hypot(tr, tf);
    const scale = tlen > cap ? cap / tlen : 1;
    right += tr * scale;
    forward += tf * scale;
    this.touchMove = [tr - tr * scale, tf - tf * scale];

    if (forward || right) self.walk(forward, right, room);
    return Boolean(forward || right || turn);
  }
}
