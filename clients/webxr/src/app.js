// The running client: one connection, one view, one scene, one local person.
//
// Theory of operation. Server messages are decoded as they arrive but not applied: they
// wait in an inbox that the frame loop drains at the start of each frame, so the
// scene changes only between frames and the cost of applying network state is measured
// together with interpolation (FrameStats, exposed in window.__metaworld.frames). If no
// frame has run for a while (a hidden tab), a timer drains the inbox instead so reliable
// messages such as chat are never held back. Our own pose goes out on a timer at the
// server's tick rate, tagged with the newest epoch the server gave us.

import * as THREE from "three";

import { Connection } from "./connection.js";
import { DesktopControls } from "./controls/desktop.js";
import { XRControls } from "./controls/xr.js";
import { FrameStats } from "./hook.js";
import * as proto from "./protocol.js";
import { decodeBody } from "./quant.js";
import { AvatarLayer } from "./scene/avatars.js";
import { Clinic } from "./scene/clinic.js";
import { EYE_HEIGHT_M, Self, standable } from "./self.js";
import { AdmitPanel, ConsentPanel, RecordPanel } from "./ui/clinical.js";
import { PanelHost } from "./ui/panels.js";
import { ChatPanel, ComfortPanel, PeoplePanel, PlacesPanel, StatusLine } from "./ui/widgets.js";
import { View } from "./view.js";

const STALE_FRAME_MS = 250; // drain the inbox from a timer when frames stop this long
const HINT_MS = 4000; // how long a transient message stays on screen
const CHAT_LOG_LIMIT = 500;
const TELEPORT_HOP_M = 11; // under the server's 12 m teleport range
const MAX_DOOR_HOPS = 6;

export class App {
  /**
   * @param {object} options
   * @param {string} options.wsUrl
   * @param {(ctx: object) => Promise<string>} options.token  asked before each attempt
   * @param {(info: object) => void} options.onStopped  the connection gave up (show sign-in)
   */
  constructor({ wsUrl, token, tickHz = 20, onStopped }) {
    this.onStopped = onStopped;
    this.tickHz = tickHz;
    this.inbox = [];
    this.self = new Self();
    this.view = new View();
    this.presence = new Map(); // id -> {id, role, label}
    this.chatLog = [];
    this.lastError = null;
    this.frameStats = new FrameStats();
    this.layoutKey = null;
    this.clinic = null;
    this.pendingDoor = null;
    this._lastFrame = performance.now();
    this._hintTimer = null;

    this._ui();
    this._scene();
    this.connection = new Connection({
      url: wsUrl,
      token,
      onMessage: (msg) => this.inbox.push(msg),
    });
    this.connection.addEventListener("state", () => this._showStatus());
    this.connection.addEventListener("ping", () => this._showStatus());
    this.connection.addEventListener("protocol-error", (e) =>
      this._error("protocol", e.detail.message),
    );
    this.connection.addEventListener("state", (e) => {
      if (e.detail.state !== "stopped") return;
      this.panels.reset();
      this.onStopped?.(e.detail);
    });
    this._drainTimer = setInterval(() => {
      if (performance.now() - this._lastFrame > STALE_FRAME_MS) this._drain();
    }, STALE_FRAME_MS);
  }

  // ------------------------------------------------------------ setup

  _ui() {
    this.status = new StatusLine();
    this.chat = new ChatPanel((text) => this.sendChat(text));
    this.people = new PeoplePanel();
    this.places = new PlacesPanel({
      onDoor: (id) => this.goThroughDoor(id),
      onJoin: (room) => this.send(proto.joinRoom(room)),
    });
    this.comfort = new ComfortPanel((settings) => this._applyComfort(settings));
    this.panels = new PanelHost(document.getElementById("clinical-panels"));
    this.panels.register(new RecordPanel());
    this.panels.register(new AdmitPanel());
    this.panels.register(new ConsentPanel());
    this.hint = document.getElementById("hint");
  }

  _scene() {
    const canvas = document.getElementById("scene");
    this.canvas = canvas;
    this.renderer = new THREE.WebGLRenderer({ canvas, antialias: false });
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
    this.scene = new THREE.Scene();
    this.scene.background = new THREE.Color(0x8fa5bd);
    this.scene.add(new THREE.HemisphereLight(0xffffff, 0x64748b, 2.2));
    const sun = new THREE.DirectionalLight(0xffffff, 1.2);
    sun.position.set(10, 20, 5);
    this.scene.add(sun);

    this.rig = new THREE.Group();
    this.camera = new THREE.PerspectiveCamera(70, 1, 0.05, 200);
    this.rig.add(this.camera);
    this.scene.add(this.rig);
    this.avatars = new AvatarLayer();
    this.scene.add(this.avatars.group);

    this.desktop = new DesktopControls(canvas, {
      pick: (x, y) => this.pick(x, y),
      useDoor: () => this.useNearestDoor(),
    });
    this.xr = new XRControls({
      renderer: this.renderer,
      rig: this.rig,
      camera: this.camera,
      scene: this.scene,
      comfort: this.comfort.settings,
      actions: {
        teleport: (x, z) => this.send(proto.moveTo(x, z)),
        door: (id) => this.goThroughDoor(id),
        targets: () => (this.clinic ? this.clinic.targetsIn(this.self.room) : []),
        sessionChanged: (on) => this._xrChanged(on),
      },
    });
    this.xr.probe(document.getElementById("xr-buttons"));
    this._applyComfort(this.comfort.settings);
    this.raycaster = new THREE.Raycaster();

    this._resize = () => {
      const rect = canvas.parentElement.getBoundingClientRect();
      if (this.renderer.xr.isPresenting || !rect.width || !rect.height) return;
      this.renderer.setSize(rect.width, rect.height, false);
      this.camera.aspect = rect.width / rect.height;
      this.camera.updateProjectionMatrix();
    };
    new ResizeObserver(this._resize).observe(canvas.parentElement);
    this._resize();
    this.renderer.setAnimationLoop((time) => this._frame(time));
  }

  _applyComfort(settings) {
    Object.assign(this.xr.comfort, settings);
    this.view.fadeSeconds = settings.reduced ? 0 : 0.4;
  }

  /** Start a new session (a new sign-in: never resume the previous one). */
  signIn() {
    this.connection.stop();
    this.connection.session = null;
    this.connection.attempt = 0;
    this.connection.start();
  }

  /** Connect again, resuming the current session when the server still holds it. */
  start() {
    this.connection.start();
  }

  stop({ leave = true } = {}) {
    this.connection.stop({ leave });
    if (leave) this.panels.reset(); // no record stays on a page someone has left
    clearInterval(this._poseTimer);
    this._poseTimer = null;
  }

  send(message) {
    return this.connection.send(message);
  }

  // ------------------------------------------------------------ messages

  _drain() {
    const batch = this.inbox;
    if (!batch.length) return;
    this.inbox = [];
    for (const msg of batch) {
      try {
        this._handle(msg);
      } catch (err) {
        this._error("client", `could not apply ${msg.type}: ${err.message}`);
      }
    }
  }

  _handle(msg) {
    const now = performance.now() / 1000;
    switch (msg.type) {
      case "welcome":
        return this._welcome(msg, now);
      case "snapshot": {
        const room = this.clinic.room(msg.room);
        this.view.applySnapshot(msg, room.bounds.min, now);
        if (!this.self.placed || msg.epoch !== this.self.epoch || msg.room !== this.self.room) {
          this._place(msg.room, msg.epoch, msg.you);
        }
        return;
      }
      case "delta":
        return this.view.applyDelta(msg, now);
      case "placed":
      case "correction":
        this._place(msg.room, msg.epoch, msg.body);
        if (msg.type === "correction") this._say(`The server moved you back (${msg.reason}).`);
        if (this.pendingDoor && msg.reason === "teleport") {
          this.goThroughDoor(this.pendingDoor.id, this.pendingDoor.hops);
        } else {
          this.pendingDoor = null;
        }
        return;
      case "chat_message":
        return this._chatMessage(msg);
      case "presence":
        return this._presence(msg);
      case "error":
        this.pendingDoor = null;
        return this._error(msg.code, msg.message);
      case "pong":
        return;
      default:
        this.panels.dispatch(msg);
    }
  }

  _welcome(msg, now) {
    const layoutKey = JSON.stringify(msg.layout);
    if (layoutKey !== this.layoutKey) {
      if (this.clinic) {
        this.scene.remove(this.clinic.group);
        this.clinic.dispose();
      }
      this.clinic = new Clinic(msg.layout);
      this.scene.add(this.clinic.group);
      this.layoutKey = layoutKey;
      this.places.setLayout(msg.layout);
    }
    if (this.sessionId !== msg.session) {
      this.view.reset();
      this.self.placed = false;
      this.sessionId = msg.session;
      this.panels.reset();
      this._say(`Joined as ${msg.you.label} (${msg.you.role}).`, true);
    } else {
      this._say("Reconnected; your session resumed.", true);
    }
    this.self.info = msg.you;
    this.self.room = msg.room;
    this.view.selfId = msg.you.id;
    this.view.clock.observe(msg.server_time, now);
    this.tickHz = msg.tick_hz || this.tickHz;
    this.panels.start(msg.you.role, (m) => this.send(m), msg.you.id);
    clearInterval(this._poseTimer);
    this._poseTimer = setInterval(() => this._sendPose(), 1000 / this.tickHz);
    this._roomChanged();
  }

  /** Adopt a server placement: room, epoch and where the head is. */
  _place(roomId, epoch, body) {
    const room = this.clinic.room(roomId);
    if (!room) return;
    const changed = roomId !== this.self.room;
    this.self.room = roomId;
    this.self.epoch = epoch;
    this.self.adopt(decodeBody(body), room.bounds.min);
    if (this.xr.presenting) {
      this.xr.placeHeadAt(this.self.x, this.self.z, this.self.floorY);
      this.xr.flashVignette();
    }
    if (changed) this._roomChanged();
  }

  _roomChanged() {
    const room = this.clinic?.room(this.self.room);
    this.places.show(room, this.clinic ? this.clinic.doorsOf(this.self.room) : []);
    this.panels.setRoom(room);
    this._showStatus();
  }

  _chatMessage(msg) {
    const entry = {
      room: msg.room,
      avatar: msg.avatar,
      label: msg.label,
      text: msg.text,
      server_time: msg.server_time,
      mine: msg.avatar === this.self.info?.id,
    };
    this.chatLog.push(entry);
    if (this.chatLog.length > CHAT_LOG_LIMIT) this.chatLog.shift();
    this.chat.add(entry);
  }

  _presence(msg) {
    if (msg.full) this.presence.clear();
    else if (msg.room !== this.self.room) return;
    for (const info of msg.joined) this.presence.set(info.id, info);
    for (const id of msg.left) this.presence.delete(id);
    this.people.show(this.presence, this.self.info?.id);
    this.panels.setPeople(this.presence, this.self.info?.id);
  }

  _error(code, message) {
    this.lastError = { code, message, at: Date.now() };
    this._say(`Could not do that: ${message}`);
  }

  /** A transient on-screen message; `log` also writes it into the chat log. */
  _say(text, log = false) {
    this.hint.textContent = text;
    clearTimeout(this._hintTimer);
    this._hintTimer = setTimeout(() => (this.hint.textContent = ""), HINT_MS);
    if (log) this.chat.add({ text, system: true });
  }

  _showStatus() {
    const c = this.connection;
    const room = this.clinic?.room(this.self.room)?.name;
    switch (c.state) {
      case "open": {
        const ping = c.pingMs === null ? "" : ` · ping ${Math.round(c.pingMs)} ms`;
        this.status.show("open", `Connected${room ? ` · ${room}` : ""}${ping}`);
        break;
      }
      case "connecting":
        this.status.show(
          "connecting",
          c.attempt ? `Reconnecting (attempt ${c.attempt})…` : "Connecting…",
        );
        break;
      case "waiting": {
        const wait = Math.max(1, Math.round(c.retryInSeconds ?? 1));
        const why = c.lastClose?.text ?? "Disconnected.";
        this.status.show("waiting", `${why} Retrying in ${wait} s.`);
        break;
      }
      case "stopped":
        this.status.show("stopped", c.lastClose?.text ?? "Disconnected.");
        break;
      default:
        this.status.show("idle", "Not connected");
    }
  }

  // ------------------------------------------------------------ actions

  sendChat(text) {
    return this.send(proto.chat(text));
  }

  /** A click or tap at normalized device coordinates (x, y) on the scene. */
  pick(x, y) {
    if (!this.clinic || this.xr.presenting) return;
    this.raycaster.setFromCamera(new THREE.Vector2(x, y), this.camera);
    const hit = this.raycaster.intersectObjects(this.clinic.targetsIn(this.self.room), false)[0];
    if (!hit) return;
    if (hit.object.userData.kind === "door") this.goThroughDoor(hit.object.userData.door);
    else this.send(proto.moveTo(hit.point.x, hit.point.z));
  }

  /**
   * Go through a door: at once when near it, else teleport next to it first (in hops
   * of at most TELEPORT_HOP_M, the server's teleport range) and then go through.
   */
  goThroughDoor(doorId, hops = 0) {
    this.pendingDoor = null;
    const end = this.clinic?.doorsOf(this.self.room).find((d) => d.door.id === doorId);
    if (!end) return;
    const [dx, dz] = end.at;
    const radius = end.door.radius ?? 1.5;
    const distance = Math.hypot(this.self.x - dx, this.self.z - dz);
    if (distance < radius * 0.9) {
      this.send(proto.useDoor(doorId));
      return;
    }
    if (hops >= MAX_DOOR_HOPS) return;
    const room = this.clinic.room(this.self.room);
    let [tx, tz] = standingSpotNear(room, dx, dz, radius * 0.6);
    const hop = Math.hypot(tx - this.self.x, tz - this.self.z);
    if (hop > TELEPORT_HOP_M) {
      const f = TELEPORT_HOP_M / hop;
      [tx, tz] = [this.self.x + (tx - this.self.x) * f, this.self.z + (tz - this.self.z) * f];
      if (!standable(room, tx, tz)) [tx, tz] = standingSpotNear(room, tx, tz, 3);
    }
    this.pendingDoor = { id: doorId, hops: hops + 1 };
    this.send(proto.moveTo(tx, tz));
  }

  useNearestDoor() {
    const near = this._nearestDoor();
    if (near) this.send(proto.useDoor(near.door.id));
    else this._say("No door within reach. Walk up to a door first.");
  }

  _nearestDoor() {
    if (!this.clinic) return null;
    let best = null;
    for (const end of this.clinic.doorsOf(this.self.room)) {
      const d = Math.hypot(this.self.x - end.at[0], this.self.z - end.at[1]);
      if (d <= (end.door.radius ?? 1.5) && (!best || d < best.distance)) {
        best = { ...end, distance: d };
      }
    }
    return best;
  }

  _sendPose() {
    if (this.connection.state !== "open" || !this.self.placed || !this.clinic) return;
    const room = this.clinic.room(this.self.room);
    const body = Self.body(this.self.pose, room.bounds.min);
    this.self.seq = (this.self.seq + 1) >>> 0;
    this.send(proto.pose(this.self.epoch, body, this.self.seq));
  }

  _xrChanged(on) {
    this.desktop.enabled = !on;
    if (on) {
      this.rig.rotation.y = this.self.yaw;
      this.camera.rotation.set(0, 0, 0);
      this.rig.position.set(this.self.x, this.self.floorY, this.self.z);
    } else {
      this.rig.rotation.set(0, 0, 0);
      this._resize();
    }
  }

  // ------------------------------------------------------------ the frame

  _frame(time) {
    const now = performance.now();
    const dt = Math.min(0.1, (now - this._lastFrame) / 1000);
    this._lastFrame = now;

    // Apply network state and interpolate: the part of the frame this client owns.
    const started = performance.now();
    this._drain();
    this.view.update(now / 1000, dt);
    this.avatars.sync(this.view);
    this.frameStats.record(performance.now() - started, this.view.avatars.size);

    const room = this.clinic?.room(this.self.room);
    if (this.xr.presenting) {
      this.xr.update(dt);
    } else if (this.self.placed) {
      this.desktop.update(dt, this.self, room);
      this.rig.position.set(this.self.x, this.self.floorY, this.self.z);
      this.camera.position.set(0, EYE_HEIGHT_M, 0);
      this.camera.rotation.set(this.self.pitch, this.self.yaw, 0, "YXZ");
    }
    this.renderer.render(this.scene, this.camera);

    if (this.self.placed) {
      this.self.desktopPose();
      if (this.xr.readPose(this.self.pose)) {
        this.self.x = this.self.pose[0];
        this.self.z = this.self.pose[2];
      }
    }
    this._doorHint(time);
  }

  _doorHint(time) {
    if (time - (this._hintCheck ?? 0) < 200) return;
    this._hintCheck = time;
    const near = this._nearestDoor();
    const id = near?.door.id ?? null;
    if (id === this._hintDoor) return;
    this._hintDoor = id;
    if (near) this._say(`Press E to go through the door to ${near.to?.name ?? "the next room"}.`);
  }
}

/** A point near (x, z) in `room` where a head may stand, within `reach` of it. */
function standingSpotNear(room, x, z, reach) {
  const cx = (room.bounds.min[0] + room.bounds.max[0]) / 2;
  const cz = (room.bounds.min[2] + room.bounds.max[2]) / 2;
  const len = Math.hypot(cx - x, cz - z) || 1;
  for (let step = 0; step <= 6; step++) {
    const d = (reach * step) / 6;
    const px = x + ((cx - x) / len) * d;
    const pz = z + ((cz - z) / len) * d;
    if (standable(room, px, pz)) return [px, pz];
  }
  return [x, z];
}
