// The WebSocket session: hello/welcome, pings, and reconnecting with backoff.
//
// States: idle -> connecting -> open -> (closed by us | waiting to retry -> connecting).
// A connection that closes with a code the person must act on (a rejected token, a
// session opened elsewhere) stops retrying and reports `stopped`; every other close
// schedules a new attempt after an exponentially growing, jittered delay, and the new
// hello carries the session id so the server can resume the session within its grace
// period.

import * as proto from "./protocol.js";

const BACKOFF_START_S = 0.5;
const BACKOFF_MAX_S = 10;
const PING_EVERY_MS = 2000;

export class Connection extends EventTarget {
  /**
   * @param {object} options
   * @param {string} options.url         ws:// address from /api/config
   * @param {() => Promise<string>|string} options.token  token source, asked per attempt
   * @param {(msg: object) => void} options.onMessage     every decoded server message
   */
  constructor({ url, token, onMessage, WebSocketImpl = globalThis.WebSocket }) {
    super();
    this.url = url;
    this.token = token;
    this.onMessage = onMessage;
    this.WebSocketImpl = WebSocketImpl;
    this.state = "idle";
    this.session = null; // session id to resume
    this.ws = null;
    this.attempt = 0;
    this.pingMs = null;
    this.lastClose = null; // {code, reason, name, text}
    this._nonce = 0;
    this._pingTimer = null;
    this._retryTimer = null;
    this._retryAt = null;
    this._welcomed = false;
  }

  _emit(type, detail = {}) {
    this.dispatchEvent(Object.assign(new Event(type), { detail }));
  }

  _setState(state, detail = {}) {
    this.state = state;
    this._emit("state", { state, ...detail });
  }

  get retryInSeconds() {
    return this._retryAt === null ? null : Math.max(0, (this._retryAt - Date.now()) / 1000);
  }

  async start() {
    this.stop();
    this._stopped = false;
    await this._open();
  }

  /** Close for good (sign out / leave); no reconnect. */
  stop({ leave = false } = {}) {
    this._stopped = true;
    clearTimeout(this._retryTimer);
    this._retryAt = null;
    clearInterval(this._pingTimer);
    if (this.ws) {
      if (leave && this.ws.readyState === 1) this.send(proto.leave());
      this.ws.onclose = null;
      this.ws.close(1000);
      this.ws = null;
    }
    if (leave) this.session = null;
    this._setState("idle");
  }

  send(message) {
    if (!this.ws || this.ws.readyState !== 1 || !this._welcomed) return false;
    this.ws.send(proto.encode(message));
    return true;
  }

  async _open() {
    this._welcomed = false;
    this._setState("connecting", { attempt: this.attempt });
    let token;
    try {
      token = await this.token({ retry: this.attempt > 0, lastClose: this.lastClose });
    } catch (err) {
      this._scheduleRetry({ code: 0, name: "TOKEN", text: `Sign-in failed: ${err.message}` });
      return;
    }
    if (this._stopped) return;
    const ws = new this.WebSocketImpl(this.url, proto.SUBPROTOCOL);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => ws.send(proto.encode(proto.hello(token, this.session)));
    ws.onmessage = (event) => this._receive(event.data);
    ws.onclose = (event) => this._closed(ws, event.code, event.reason);
    ws.onerror = () => {}; // always followed by close, which says more
  }

  _receive(data) {
    if (typeof data === "string") return; // the protocol has no text frames
    let msg;
    try {
      msg = proto.decode(new Uint8Array(data));
    } catch (err) {
      this._emit("protocol-error", { message: err.message });
      return;
    }
    if (msg.type === "welcome") {
      this._welcomed = true;
      this.session = msg.session;
      this.attempt = 0;
      this.lastClose = null;
      this._setState("open");
      clearInterval(this._pingTimer);
      this._pingTimer = setInterval(() => this._ping(), PING_EVERY_MS);
      this._ping();
    } else if (msg.type === "pong") {
      this.pingMs = Math.max(0, performance.now() - msg.client_time * 1000);
      this._emit("ping", { ms: this.pingMs });
    }
    this.onMessage(msg);
  }

  _ping() {
    this._nonce = (this._nonce + 1) >>> 0;
    this.send(proto.ping(this._nonce, performance.now() / 1000));
  }

  _closed(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    this._welcomed = false;
    clearInterval(this._pingTimer);
    const info = { code, reason, ...proto.describeClose(code) };
    this.lastClose = info;
    if (this._stopped) return;
    if (!info.retry) {
      if (code === 4010 || code === 1000) this.session = null;
      this._setState("stopped", info);
      return;
    }
    this._scheduleRetry(info);
  }

  _scheduleRetry(info) {
    this.lastClose = info;
    const base = Math.min(BACKOFF_MAX_S, BACKOFF_START_S * 2 ** this.attempt);
    const delay = base * (0.75 + Math.random() * 0.5);
    this.attempt += 1;
    this._retryAt = Date.now() + delay * 1000;
    this._setState("waiting", { ...info, delay, attempt: this.attempt });
    this._retryTimer = setTimeout(() => {
      this._retryAt = null;
      this._open();
    }, delay * 1000);
  }
}
