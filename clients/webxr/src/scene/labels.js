// Text labels drawn into a canvas and shown as camera-facing sprites. The browser's own
// sans-serif font is used: nothing is fetched for text.

import * as THREE from "three";

const FONT_PX = 40;
const PAD_PX = 14;

/**
 * A sprite showing `text`, `heightM` metres tall (width follows the text).
 * Call `disposeLabel` when done with it: the canvas texture lives on the GPU.
 */
export function makeLabel(text, { heightM = 0.16, fg = "#111827", bg = "#f9fafbee" } = {}) {
  const canvas = document.createElement("canvas");
  const ctx = canvas.getContext("2d");
  ctx.font = `600 ${FONT_PX}px system-ui, sans-serif`;
  const width = Math.ceil(ctx.measureText(text).width) + 2 * PAD_PX;
  canvas.width = Math.min(1024, width);
  canvas.height = FONT_PX + 2 * PAD_PX;
  ctx.font = `600 ${FONT_PX}px system-ui, sans-serif`;
  ctx.fillStyle = bg;
  ctx.beginPath();
  ctx.roundRect(0, 0, canvas.width, canvas.height, 12);
  ctx.fill();
  ctx.fillStyle = fg;
  ctx.textBaseline = "middle";
  ctx.fillText(text, PAD_PX, canvas.height / 2, canvas.width - 2 * PAD_PX);

  const texture = new THREE.CanvasTexture(canvas);
  texture.colorSpace = THREE.SRGBColorSpace;
  const material = new THREE.SpriteMaterial({ map: texture, transparent: true, depthWrite: false });
  const sprite = new THREE.Sprite(material);
  sprite.scale.set((heightM * canvas.width) / canvas.height, heightM, 1);
  sprite.renderOrder = 10;
  return sprite;
}

export function disposeLabel(sprite) {
  sprite.material.map.dispose();
  sprite.material.dispose();
}
