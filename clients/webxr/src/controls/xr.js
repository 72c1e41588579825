// Immersive VR: the Enter VR button, the rig, controllers, teleport and comfort.
//
// The camera and both controllers hang under one rig group standing on the floor point
// the server placed us at. Walking in the room moves the headset inside the rig; the
// server moves the rig (teleport, doors, corrections) by telling us a new head position,
// and we shift the rig so the head lands there. Pointing a controller at the floor shows a
// marker; pulling the trigger asks the server to teleport there (or, on a door, to go
// through it). The thumbstick turns the rig about the head: in snaps by default, which
// is gentler on the stomach, with a brief vignette unless reduced motion is on.

import * as THREE from "three";

const SNAP_THRESHOLD = 0.7;
const SNAP_RELEASE = 0.3;
const SMOOTH_TURN_RAD_PER_S = 1.5;
const VIGNETTE_S = 0.25;

export class XRControls {
  constructor({ renderer, rig, camera, scene, comfort, actions }) {
    this.renderer = renderer;
    this.rig = rig;
    this.camera = camera;
    this.comfort = comfort; // {turn: "snap30"|"snap45"|"smooth", vignette: bool, reduced: bool}
    this.actions = actions; // {teleport(x, z), door(id), targets(): Object3D[]}
    this.supported = false;
    this.presenting = false;
    this.controllers = [];
    this.raycaster = new THREE.Raycaster();
    this.vignetteLeft = 0;
    renderer.xr.enabled = true;
    renderer.xr.setReferenceSpaceType("local-floor");
    renderer.xr.addEventListener("sessionstart", () => {
      this.presenting = true;
      this.actions.sessionChanged?.(true);
    });
    renderer.xr.addEventListener("sessionend", () => {
      this.presenting = false;
      this.button && (this.button.textContent = "Enter VR");
      this.actions.sessionChanged?.(false);
    });
    for (let i = 0; i < 2; i++) this.controllers.push(this._controller(i));
    this.marker = new THREE.Mesh(
      new THREE.RingGeometry(0.2, 0.28, 32),
      new THREE.MeshBasicMaterial({ color: 0x0f766e, transparent: true, opacity: 0.9 }),
    );
    this.marker.rotation.x = -Math.PI / 2;
    this.marker.visible = false;
    scene.add(this.marker);
    this.vignette = new THREE.Mesh(
      new THREE.RingGeometry(0.12, 1.0, 48),
      new THREE.MeshBasicMaterial({
        color: 0x000000, transparent: true, opacity: 0, depthTest: false, depthWrite: false,
      }),
    );
    this.vignette.position.z = -0.2;
    this.vignette.renderOrder = 100;
    this.vignette.visible = false;
    camera.add(this.vignette);
  }

  /** Find out whether immersive VR is offered, and show the button when it is. */
  async probe(container) {
    try {
      this.supported = Boolean(await navigator.xr?.isSessionSupported("immersive-vr"));
    } catch {
      this.supported = false;
    }
    if (!this.supported) return false;
    const button = document.createElement("button");
    button.type = "button";
    button.id = "enter-vr";
    button.textContent = "Enter VR";
    button.addEventListener("click", () => this.toggle());
    container.append(button);
    this.button = button;
    return true;
  }

  async toggle() {
    const current = this.renderer.xr.getSession();
    if (current) {
      await current.end();
      return;
    }
    const session = await navigator.xr.requestSession("immersive-vr", {
      optionalFeatures: ["local-floor", "bounded-floor"],
    });
    await this.renderer.xr.setSession(session);
    this.button.textContent = "Exit VR";
  }

  _controller(index) {
    const xr = this.renderer.xr;
    const ray = xr.getController(index);
    const grip = xr.getControllerGrip(index);
    const state = { ray, grip, handedness: null, source: null, aiming: false, snapped: false };
    const line = new THREE.Line(
      new THREE.BufferGeometry().setFromPoints([new THREE.Vector3(), new THREE.Vector3(0, 0, -1)]),
      new THREE.LineBasicMaterial({ color: 0xffffff }),
    );
    line.scale.z = 5;
    ray.add(line);
    grip.add(new THREE.Mesh(
      new THREE.BoxGeometry(0.06, 0.04, 0.12),
      new THREE.MeshLambertMaterial({ color: 0x94a3b8 }),
    ));
    ray.addEventListener("connected", (e) => {
      state.source = e.data;
      state.handedness = e.data.handedness;
    });
    ray.addEventListener("disconnected", () => {
      state.source = null;
      state.handedness = null;
    });
    ray.addEventListener("selectstart", () => (state.aiming = true));
    ray.addEventListener("selectend", () => {
      state.aiming = false;
      this._select(state);
    });
    this.rig.add(ray, grip);
    return state;
  }

  _hit(state) {
    this.raycaster.setFromXRController(state.ray);
    const hits = this.raycaster.intersectObjects(this.actions.targets(), false);
    return hits[0] ?? null;
  }

  _select(state) {
    const hit = this._hit(state);
    if (!hit) return;
    if (hit.object.userData.kind === "door") this.actions.door(hit.object.userData.door);
    else this.actions.teleport(hit.point.x, hit.point.z);
    this.flashVignette();
  }

  flashVignette() {
    if (this.comfort.vignette && !this.comfort.reduced) this.vignetteLeft = VIGNETTE_S;
  }

  /** Per-frame work while presenting: markers, turning, the vignette. */
  update(dt) {
    if (!this.presenting) return;
    this.rig.updateMatrixWorld(true);
    let markerAt = null;
    for (const state of this.controllers) {
      if (!state.source) continue;
      const hit = this._hit(state);
      if (hit && hit.object.userData.kind === "floor" && (state.aiming || !markerAt)) {
        markerAt = hit.point;
      }
      this._turn(state, dt);
    }
    this.marker.visible = Boolean(markerAt);
    if (markerAt) this.marker.position.set(markerAt.x, markerAt.y + 0.01, markerAt.z);

    this.vignetteLeft = Math.max(0, this.vignetteLeft - dt);
    const smoothTurning = this.comfort.turn === "smooth" && this._turningSmoothly;
    const strength = smoothTurning && this.comfort.vignette && !this.comfort.reduced
      ? 0.85 : (this.vignetteLeft / VIGNETTE_S) * 0.85;
    this.vignette.material.opacity = strength;
    this.vignette.visible = strength > 0.01;
  }

  _turn(state, dt) {
    const axes = state.source?.gamepad?.axes;
    if (!axes || axes.length < 4 || state.handedness !== "right") return;
    const x = axes[2];
    const smooth = this.comfort.turn === "smooth" && !this.comfort.reduced;
    this._turningSmoothly = smooth && Math.abs(x) > SNAP_RELEASE;
    if (smooth) {
      if (this._turningSmoothly) this.turnAboutHead(-x * SMOOTH_TURN_RAD_PER_S * dt);
      return;
    }
    if (!state.snapped && Math.abs(x) > SNAP_THRESHOLD) {
      state.snapped = true;
      const step = ((this.comfort.turn === "snap45" ? 45 : 30) * Math.PI) / 180;
      this.turnAboutHead(x > 0 ? -step : step);
      this.flashVignette();
    } else if (state.snapped && Math.abs(x) < SNAP_RELEASE) {
      state.snapped = false;
    }
  }

  /** Rotate the rig about the vertical line through the head. */
  turnAboutHead(angle) {
    const head = new THREE.Vector3();
    this.camera.getWorldPosition(head);
    const offset = this.rig.position.clone().sub(head);
    offset.applyAxisAngle(new THREE.Vector3(0, 1, 0), angle);
    this.rig.position.set(head.x + offset.x, this.rig.position.y, head.z + offset.z);
    this.rig.rotation.y += angle;
  }

  /** Move the rig so the head stands over world point (x, z), feet on floorY. */
  placeHeadAt(x, z, floorY) {
    this.rig.updateMatrixWorld(true);
    const head = new THREE.Vector3();
    this.camera.getWorldPosition(head);
    this.rig.position.x += x - head.x;
    this.rig.position.z += z - head.z;
    this.rig.position.y = floorY;
  }

  /** Head and hands in world space into `pose` (21 numbers); false when not presenting. */
  readPose(pose) {
    if (!this.presenting) return false;
    const p = new THREE.Vector3();
    const q = new THREE.Quaternion();
    const s = new THREE.Vector3();
    this.camera.matrixWorld.decompose(p, q, s);
    pose.set([p.x, p.y, p.z, q.x, q.y, q.z, q.w], 0);
    for (const state of this.controllers) {
      const at = state.handedness === "left" ? 7 : state.handedness === "right" ? 14 : -1;
      if (at < 0) continue;
      const space = state.grip.visible ? state.grip : state.ray.visible ? state.ray : null;
      if (!space) continue;
      space.matrixWorld.decompose(p, q, s);
      pose.set([p.x, p.y, p.z, q.x, q.y, q.z, q.w], at);
    }
    return true;
  }
}
