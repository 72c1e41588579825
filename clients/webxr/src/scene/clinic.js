// The clinic drawn from its layout: a floor per room, the room's box edges as walls,
// furniture (obstacles), doors at both of their ends, and a name over each room.
// Floors and doors carry userData so pointer and controller rays can tell what they hit.

import * as THREE from "three";

import { disposeLabel, makeLabel } from "./labels.js";

const FLOOR_COLOURS = {
  lobby: 0xc7d3df,
  waiting: 0xc9dbbf,
  consultation: 0xd5c9e6,
  therapy: 0xe6d3b3,
  training: 0xb9dbe6,
  staff: 0xcfcfcf,
};
const WALL_COLOUR = 0x475569;
const OBSTACLE_COLOUR = 0x8b6f4e;
const DOOR_COLOUR = 0x0f766e;
const DOOR_HEIGHT_M = 2.1;
const DOOR_WIDTH_M = 1.0;

export class Clinic {
  constructor(layout) {
    this.layout = layout;
    this.group = new THREE.Group();
    this.group.name = "clinic";
    this.rooms = new Map(layout.rooms.map((room) => [room.id, room]));
    this.floors = []; // meshes with userData {kind: "floor", room}
    this.doorMeshes = []; // meshes with userData {kind: "door", door, room}
    this._labels = [];
    for (const room of layout.rooms) this._addRoom(room);
    for (const door of layout.doors ?? []) {
      this._addDoorEnd(door, door.a, door.a_at, door.b);
      this._addDoorEnd(door, door.b, door.b_at, door.a);
    }
  }

  room(id) {
    return this.rooms.get(id);
  }

  /** The doors with an end in `roomId`, as {door, at: [x, z], to: room}. */
  doorsOf(roomId) {
    const out = [];
    for (const door of this.layout.doors ?? []) {
      if (door.a === roomId) out.push({ door, at: door.a_at, to: this.rooms.get(door.b) });
      if (door.b === roomId) out.push({ door, at: door.b_at, to: this.rooms.get(door.a) });
    }
    return out;
  }

  /** Meshes a pointer may act on in `roomId`: its floor and its door ends. */
  targetsIn(roomId) {
    return [
      ...this.floors.filter((m) => m.userData.room === roomId),
      ...this.doorMeshes.filter((m) => m.userData.room === roomId),
    ];
  }

  _addRoom(room) {
    const [x0, y0, z0] = room.bounds.min;
    const [x1, y1, z1] = room.bounds.max;
    const w = x1 - x0;
    const d = z1 - z0;
    const h = y1 - y0;

    const floor = new THREE.Mesh(
      new THREE.PlaneGeometry(w, d),
      new THREE.MeshLambertMaterial({ color: FLOOR_COLOURS[room.kind] ?? 0xe5e7eb }),
    );
    floor.rotation.x = -Math.PI / 2;
    floor.position.set(x0 + w / 2, y0, z0 + d / 2);
    floor.userData = { kind: "floor", room: room.id };
    floor.name = `floor:${room.id}`;
    this.floors.push(floor);
    this.group.add(floor);

    // Walls: the edges of the room box, and faint panels so the room reads as a room.
    const box = new THREE.BoxGeometry(w, h, d);
    const edges = new THREE.LineSegments(
      new THREE.EdgesGeometry(box),
      new THREE.LineBasicMaterial({ color: WALL_COLOUR }),
    );
    edges.position.set(x0 + w / 2, y0 + h / 2, z0 + d / 2);
    this.group.add(edges);
    // An open four-sided prism (no floor or ceiling face to fight with the floor).
    const walls = new THREE.CylinderGeometry(Math.SQRT1_2, Math.SQRT1_2, 1, 4, 1, true);
    walls.rotateY(Math.PI / 4);
    const panels = new THREE.Mesh(
      walls,
      new THREE.MeshBasicMaterial({
        color: WALL_COLOUR,
        transparent: true,
        opacity: 0.15,
        side: THREE.BackSide,
        depthWrite: false,
      }),
    );
    panels.scale.set(w, h, d);
    panels.position.copy(edges.position);
    this.group.add(panels);

    const furniture = new THREE.MeshLambertMaterial({ color: OBSTACLE_COLOUR });
    for (const ob of room.obstacles ?? []) {
      const size = [0, 1, 2].map((i) => ob.max[i] - ob.min[i]);
      const mesh = new THREE.Mesh(new THREE.BoxGeometry(...size), furniture);
      mesh.position.set(...[0, 1, 2].map((i) => (ob.min[i] + ob.max[i]) / 2));
      mesh.userData = { kind: "obstacle", room: room.id };
      this.group.add(mesh);
    }

    const label = makeLabel(room.name, { heightM: 0.35, fg: "#ffffff", bg: "#1e293bdd" });
    label.position.set(x0 + w / 2, y0 + Math.min(h, 3) - 0.2, z0 + d / 2);
    this._labels.push(label);
    this.group.add(label);
  }

  _addDoorEnd(door, roomId, at, toRoomId) {
    const room = this.rooms.get(roomId);
    if (!room) return;
    const y0 = room.bounds.min[1];
    const material = new THREE.MeshLambertMaterial({
      color: DOOR_COLOUR,
      emissive: DOOR_COLOUR,
      emissiveIntensity: 0.35,
    });
    const group = new THREE.Group();
    group.position.set(at[0], y0, at[1]);
    // Face the door towards the room's centre so its frame reads as an opening.
    const cx = (room.bounds.min[0] + room.bounds.max[0]) / 2;
    const cz = (room.bounds.min[2] + room.bounds.max[2]) / 2;
    group.rotation.y = Math.atan2(cx - at[0], cz - at[1]);

    const post = new THREE.BoxGeometry(0.1, DOOR_HEIGHT_M, 0.1);
    for (const side of [-1, 1]) {
      const mesh = new THREE.Mesh(post, material);
      mesh.position.set((side * DOOR_WIDTH_M) / 2, DOOR_HEIGHT_M / 2, 0);
      group.add(mesh);
    }
    const lintel = new THREE.Mesh(new THREE.BoxGeometry(DOOR_WIDTH_M + 0.1, 0.1, 0.1), material);
    lintel.position.y = DOOR_HEIGHT_M;
    group.add(lintel);
    // An invisible pane fills the opening so the whole doorway is one click target.
    const pane = new THREE.Mesh(
      new THREE.PlaneGeometry(DOOR_WIDTH_M, DOOR_HEIGHT_M),
      new THREE.MeshBasicMaterial({
        color: DOOR_COLOUR,
        transparent: true,
        opacity: 0.18,
        side: THREE.DoubleSide,
        depthWrite: false,
      }),
    );
    pane.position.y = DOOR_HEIGHT_M / 2;
    const radius = door.radius ?? 1.5;
    const ring = new THREE.Mesh(
      new THREE.RingGeometry(radius - 0.05, radius, 48),
      new THREE.MeshBasicMaterial({ color: DOOR_COLOUR, transparent: true, opacity: 0.5 }),
    );
    ring.rotation.x = -Math.PI / 2;
    ring.position.y = 0.01;
    group.add(ring);
    const userData = { kind: "door", door: door.id, room: roomId, to: toRoomId };
    for (const child of [...group.children, pane]) child.userData = userData;
    group.add(pane);
    this.doorMeshes.push(...group.children.filter((c) => c !== ring));

    const to = this.rooms.get(toRoomId);
    const label = makeLabel(`to ${to?.name ?? toRoomId}`, { heightM: 0.18 });
    label.position.y = DOOR_HEIGHT_M + 0.25;
    group.add(label);
    this._labels.push(label);
    this.group.add(group);
  }

  dispose() {
    for (const label of this._labels) disposeLabel(label);
    this.group.traverse((obj) => {
      if (obj.isMesh || obj.isLineSegments) {
        obj.geometry.dispose();
        obj.material.dispose?.();
      }
    });
  }
}
