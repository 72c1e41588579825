// Remote avatars in the scene: a head, two hands and a name label per avatar, coloured by
// role. `sync` mirrors the View (see view.js) into three.js objects once per frame.

import * as THREE from "three";

import { disposeLabel, makeLabel } from "./labels.js";

export const ROLE_COLOURS = {
  patient: "#0f766e",
  clinician: "#1d4ed8",
  therapist: "#7e22ce",
  trainee: "#b45309",
  researcher: "#475569",
  admin: "#b91c1c",
};
const ROLE_NAMES = {
  patient: "patient",
  clinician: "clinician",
  therapist: "therapist",
  trainee: "trainee",
  researcher: "researcher",
  admin: "admin",
};

const headGeometry = new THREE.SphereGeometry(0.13, 16, 12);
const visorGeometry = new THREE.BoxGeometry(0.18, 0.05, 0.04);
const handGeometry = new THREE.BoxGeometry(0.08, 0.04, 0.13);
const visorMaterial = new THREE.MeshBasicMaterial({ color: 0x0b1020 });

class AvatarObject {
  constructor(avatar) {
    this.role = avatar.role;
    this.label = avatar.label;
    this.material = new THREE.MeshLambertMaterial({
      color: ROLE_COLOURS[avatar.role] ?? "#334155",
      transparent: true,
      opacity: 0,
    });
    this.head = new THREE.Mesh(headGeometry, this.material);
    const visor = new THREE.Mesh(visorGeometry, visorMaterial);
    visor.position.set(0, 0.02, -0.12); // the face looks down -z, like a three.js camera
    this.head.add(visor);
    this.left = new THREE.Mesh(handGeometry, this.material);
    this.right = new THREE.Mesh(handGeometry, this.material);
    this.tag = makeLabel(`${avatar.label} · ${ROLE_NAMES[avatar.role] ?? avatar.role}`);
    this.group = new THREE.Group();
    this.group.add(this.head, this.left, this.right, this.tag);
    this.group.userData = { kind: "avatar", id: avatar.id };
  }

  apply(avatar) {
    const p = avatar.pose;
    this.head.position.set(p[0], p[1], p[2]);
    this.head.quaternion.set(p[3], p[4], p[5], p[6]);
    this.left.position.set(p[7], p[8], p[9]);
    this.left.quaternion.set(p[10], p[11], p[12], p[13]);
    this.right.position.set(p[14], p[15], p[16]);
    this.right.quaternion.set(p[17], p[18], p[19], p[20]);
    this.tag.position.set(p[0], p[1] + 0.32, p[2]);
    if (this.material.opacity !== avatar.opacity) {
      this.material.opacity = avatar.opacity;
      // Opaque avatars sort and draw faster; only fading ones need blending.
      this.material.transparent = avatar.opacity < 1;
      this.tag.material.opacity = avatar.opacity;
    }
    this.group.visible = avatar.hasPose && avatar.opacity > 0;
  }

  dispose() {
    this.material.dispose();
    disposeLabel(this.tag);
  }
}

export class AvatarLayer {
  constructor() {
    this.group = new THREE.Group();
    this.group.name = "avatars";
    this.objects = new Map(); // avatar id -> AvatarObject
  }

  sync(view) {
    for (const [id, obj] of this.objects) {
      const avatar = view.avatars.get(id);
      if (!avatar || avatar.role !== obj.role || avatar.label !== obj.label) {
        this.group.remove(obj.group);
        obj.dispose();
        this.objects.delete(id);
      }
    }
    for (const [id, avatar] of view.avatars) {
      let obj = this.objects.get(id);
      if (!obj) {
        obj = new AvatarObject(avatar);
        this.objects.set(id, obj);
        this.group.add(obj.group);
      }
      obj.apply(avatar);
    }
  }
}
