// `window.__metaworld`: a read-only window onto the client's state for tests and for
// people debugging in the console. Every getter returns a fresh copy, so nothing a test
// does to the result can change the client.

const FRAME_SAMPLES = 1200; // per-frame timings kept (about 20 s at 60 fps)

/** Per-frame cost of applying network state and interpolating avatars, in ms. */
export class FrameStats {
  constructor() {
    this.samples = new Float64Array(FRAME_SAMPLES);
    this.avatarCounts = new Uint16Array(FRAME_SAMPLES);
    this.reset();
  }

  reset() {
    this.count = 0;
    this.next = 0;
    this.total = 0;
    this.last = 0;
  }

  record(ms, avatars) {
    this.samples[this.next] = ms;
    this.avatarCounts[this.next] = avatars;
    this.next = (this.next + 1) % FRAME_SAMPLES;
    this.count += 1;
    this.total += ms;
    this.last = ms;
  }

  summary() {
    const n = Math.min(this.count, FRAME_SAMPLES);
    const kept = Array.from(this.samples.subarray(0, n)).sort((a, b) => a - b);
    const pick = (q) => (n ? kept[Math.min(n - 1, Math.floor(q * n))] : 0);
    const counts = Array.from(this.avatarCounts.subarray(0, n));
    return {
      frames: this.count,
      window: n,
      mean: n ? kept.reduce((a, b) => a + b, 0) / n : 0,
      p50: pick(0.5),
      p95: pick(0.95),
      p99: pick(0.99),
      max: n ? kept[n - 1] : 0,
      last: this.last,
      avatars_max: counts.length ? Math.max(...counts) : 0,
    };
  }
}

/** Install the hook; `app` is the running App (or null before sign-in). */
export function installHook(getApp) {
  const app = () => getApp();
  const hook = {
    get connected() {
      // Open, and the welcome has been applied (it waits in the inbox for a frame).
      const a = app();
      return a?.connection?.state === "open" && a.sessionId === a.connection.session;
    },
    get state() {
      return app()?.connection?.state ?? "idle";
    },
    get session() {
      return app()?.connection?.session ?? null;
    },
    get avatarId() {
      return app()?.self.info?.id ?? null;
    },
    get role() {
      return app()?.self.info?.role ?? null;
    },
    get room() {
      return app()?.self.room ?? null;
    },
    get epoch() {
      return app()?.self.epoch ?? null;
    },
    get self() {
      const a = app();
      if (!a) return null;
      const { x, z, yaw, placed } = a.self;
      return { x, z, yaw, placed, pose: Array.from(a.self.pose) };
    },
    get avatars() {
      const out = {};
      const a = app();
      if (!a) return out;
      const min = a.view.roomMin;
      for (const [id, av] of a.view.avatars) {
        if (!av.hasPose) continue;
        const p = av.pose;
        out[id] = {
          role: av.role,
          label: av.label,
          position: [p[0], p[1], p[2]],
          local: [p[0] - min[0], p[1] - min[1], p[2] - min[2]],
          opacity: av.opacity,
          leaving: av.leaving,
        };
      }
      return out;
    },
    get presence() {
      return Array.from(app()?.presence.values() ?? [], (p) => ({ ...p }));
    },
    get chat() {
      return (app()?.chatLog ?? []).map((m) => ({ ...m }));
    },
    get lastError() {
      const e = app()?.lastError;
      return e ? { ...e } : null;
    },
    get lastClose() {
      const c = app()?.connection?.lastClose;
      return c ? { ...c } : null;
    },
    get ping() {
      return app()?.connection?.pingMs ?? null;
    },
    get xr() {
      const a = app();
      return { supported: a?.xr?.supported ?? false, presenting: a?.xr?.presenting ?? false };
    },
    // The clinical panels, as numbers: which categories of whose record (by avatar id)
    // a staff page holds and how many items of each, purges, and a patient's consent
    // counts. Never a name, a date or a value from a record.
    get records() {
      return app()?.panels.summary().record?.records ?? {};
    },
    get purges() {
      return app()?.panels.summary().record?.purges ?? 0;
    },
    get clinical() {
      return app()?.panels.summary() ?? {};
    },
    get frames() {
      return app()?.frameStats.summary() ?? null;
    },
    resetFrameStats() {
      app()?.frameStats.reset();
    },
  };
  Object.defineProperty(window, "__metaworld", { value: Object.freeze(hook) });
  return hook;
}
