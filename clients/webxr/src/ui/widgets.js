// The 2D panels beside the scene: status line, chat, people, places and comfort.
// Each reads from and writes to the DOM in index.html only; none knows about sockets.

import { ROLE_COLOURS } from "../scene/avatars.js";

const $ = (id) => document.getElementById(id);

export function element(tag, props = {}, ...children) {
  const el = Object.assign(document.createElement(tag), props);
  el.append(...children);
  return el;
}

export class StatusLine {
  constructor() {
    this.el = $("status");
  }

  show(state, text) {
    this.el.dataset.state = state;
    if (this.el.textContent !== text) this.el.textContent = text;
  }
}

export class ChatPanel {
  constructor(onSend) {
    this.log = $("chat-log");
    this.items = $("chat-items");
    this.form = $("chat-form");
    this.input = $("chat-input");
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      const text = this.input.value.trim();
      if (text && onSend(text)) this.input.value = "";
    });
  }

  add({ label, text, mine = false, system = false }) {
    const item = system
      ? element("li", { className: "system", textContent: text })
      : element(
          "li",
          {},
          element("span", { className: "who", textContent: mine ? `${label} (you)` : label }),
          `: ${text}`,
        );
    this.items.append(item);
    while (this.items.children.length > 200) this.items.firstChild.remove();
    this.log.scrollTop = this.log.scrollHeight;
  }
}

export class PeoplePanel {
  constructor() {
    this.list = $("people");
    this.count = $("people-count");
  }

  show(people, selfId) {
    const items = [...people.values()]
      .sort((a, b) => a.label.localeCompare(b.label))
      .map((p) => {
        const chip = element("span", { className: "role-chip", textContent: p.role });
        chip.style.background = ROLE_COLOURS[p.role] ?? "#334155";
        const name = p.id === selfId ? `${p.label} (you)` : p.label;
        const item = element("li", {}, name, chip);
        item.dataset.avatar = p.id;
        return item;
      });
    this.list.replaceChildren(...items);
    this.count.textContent = `(${people.size})`;
  }
}

export class PlacesPanel {
  constructor({ onDoor, onJoin }) {
    this.roomName = $("room-name");
    this.doors = $("doors");
    this.select = $("jump-room");
    this.onDoor = onDoor;
    $("jump-form").addEventListener("submit", (e) => {
      e.preventDefault();
      if (this.select.value) onJoin(this.select.value);
    });
  }

  setLayout(layout) {
    this.select.replaceChildren(
      ...layout.rooms.map((r) => element("option", { value: r.id, textContent: r.name })),
    );
  }

  show(room, doors) {
    this.roomName.textContent = room ? `You are in: ${room.name}` : "—";
    this.doors.replaceChildren(
      ...doors.map(({ door, to }) => {
        const button = element("button", {
          type: "button",
          textContent: `Door to ${to?.name ?? "another room"}`,
        });
        button.dataset.door = door.id;
        button.addEventListener("click", () => this.onDoor(door.id));
        return element("li", {}, button);
      }),
    );
    if (room) this.select.value = room.id;
  }
}

/** Comfort settings, kept in localStorage; reduced motion defaults to the OS setting. */
export class ComfortPanel {
  constructor(onChange) {
    const media = window.matchMedia?.("(prefers-reduced-motion: reduce)");
    const saved = JSON.parse(localStorage.getItem("metaworld.comfort") ?? "{}");
    this.settings = {
      turn: saved.turn ?? "snap30",
      vignette: saved.vignette ?? true,
      reduced: saved.reduced ?? Boolean(media?.matches),
    };
    const turn = $("turn-mode");
    const vignette = $("vignette");
    const reduced = $("reduced-motion");
    turn.value = this.settings.turn;
    vignette.checked = this.settings.vignette;
    reduced.checked = this.settings.reduced;
    const changed = () => {
      this.settings.turn = turn.value;
      this.settings.vignette = vignette.checked;
      this.settings.reduced = reduced.checked;
      localStorage.setItem("metaworld.comfort", JSON.stringify(this.settings));
      onChange(this.settings);
    };
    for (const el of [turn, vignette, reduced]) el.addEventListener("change", changed);
    media?.addEventListener?.("change", (e) => {
      if (saved.reduced === undefined) {
        reduced.checked = e.matches;
        changed();
      }
    });
  }
}
