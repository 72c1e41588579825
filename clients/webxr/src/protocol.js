// The metaworld wire protocol as the browser speaks it (see metaworld/protocol.py).
//
// Every frame is binary and holds one MessagePack array: [tag, field1, field2, ...].
// Fields follow the order declared in protocol.py. A sender may leave out trailing
// fields that have defaults, and a newer server may add fields at the end, so decoding
// fills missing trailing fields from the defaults below and ignores extra ones.

import { Decoder, Encoder } from "@msgpack/msgpack";

export const PROTOCOL_VERSION = 1;
export const SUBPROTOCOL = `metaworld.v${PROTOCOL_VERSION}`;
export const CLIENT_KIND = "webxr";
export const MAX_CHAT_CHARS = 500;

// Field names of every server-to-client message, in wire order, with defaults for the
// ones that may be left out.
const SERVER_FIELDS = {
  welcome: ["session", "you", "tick_hz", "room", "layout", "resume_grace_s", "server_time"],
  snapshot: ["tick", "room", "avatars", "poses", "epoch", "you"],
  delta: ["tick", "server_time", "entered", "left", "poses"],
  placed: ["epoch", "room", "body", "reason"],
  correction: ["epoch", "room", "body", "reason"],
  chat_message: ["room", "avatar", "label", "text", "server_time"],
  presence: ["room", "joined", "left", "full"],
  error: ["code", "message"],
  pong: ["nonce", "client_time", "server_time"],
  record_shown: ["request", "patient", "viewer", "view", "consent_version"],
  record_denied: ["request", "reason", "message"],
  record_purge: ["patient"],
  consent_result: ["request", "ok", "consent", "version", "status", "message", "end_ms"],
  consent_state: ["request", "consents", "disclosures"],
};
const DEFAULTS = {
  presence: { full: false },
  consent_result: { consent: "", version: 0, status: "", message: "", end_ms: null },
};
// Structs nested in messages, also encoded as arrays in declared order.
const CONSENT_SUMMARY = ["id", "version", "status", "categories", "purpose", "grantee", "end_ms"];
const DISCLOSURE = ["at_ms", "kind", "who", "role", "categories", "purpose", "outcome", "review"];
const AVATAR_LISTS = {
  welcome: [],
  snapshot: ["avatars"],
  delta: ["entered"],
  presence: ["joined"],
};

// Close codes from protocol.CloseCode, with what the person sees and whether the
// client tries again on its own.
export const CLOSE_CODES = {
  1000: { name: "NORMAL", retry: false, text: "The session ended." },
  1001: {
    name: "GOING_AWAY",
    retry: true,
    text: "The server is restarting. Reconnecting…",
  },
  1006: {
    name: "DROPPED",
    retry: true,
    text: "The connection dropped. Reconnecting…",
  },
  1009: {
    name: "MESSAGE_TOO_BIG",
    retry: true,
    text: "The client sent a message that was too large. Reconnecting…",
  },
  4000: {
    name: "BAD_HANDSHAKE",
    retry: false,
    text: "The server did not understand this client's greeting. Reload the page.",
  },
  4001: {
    name: "TOKEN_REJECTED",
    retry: false,
    text: "Your sign-in token was rejected (expired or not valid). Please sign in again.",
  },
  4002: {
    name: "VERSION_UNSUPPORTED",
    retry: false,
    text: "This client is out of date for the server. Reload the page to update it.",
  },
  4003: {
    name: "MALFORMED",
    retry: false,
    text: "The server could not read a message from this client. Reload the page.",
  },
  4004: {
    name: "HANDSHAKE_TIMEOUT",
    retry: true,
    text: "The server did not hear from this client in time. Reconnecting…",
  },
  4008: {
    name: "TOO_SLOW",
    retry: true,
    text: "This connection fell behind the server. Reconnecting…",
  },
  4010: {
    name: "REPLACED",
    retry: false,
    text: "This session was opened in another window or tab.",
  },
  4011: {
    name: "SERVER_FULL",
    retry: true,
    text: "The clinic is full right now. Trying again shortly…",
  },
  4029: {
    name: "RATE_LIMITED",
    retry: true,
    text: "This client sent too many messages. Reconnecting…",
  },
};

/** What to tell the person about a close code, and whether to reconnect by ourselves. */
export function describeClose(code) {
  return (
    CLOSE_CODES[code] ?? {
      name: `CLOSE_${code}`,
      retry: true,
      text: `The connection closed (code ${code}). Reconnecting…`,
    }
  );
}

const encoder = new Encoder({ ignoreUndefined: true });
const decoder = new Decoder();

/** Encode a client message, given as [tag, ...fields]. */
export function encode(message) {
  return encoder.encode(message);
}

export const hello = (token, session) =>
  session ? ["hello", token, CLIENT_KIND, PROTOCOL_VERSION, session]
    : ["hello", token, CLIENT_KIND, PROTOCOL_VERSION];
export const pose = (epoch, body, seq) => ["pose", epoch >>> 0, body, seq >>> 0];
export const moveTo = (x, z) => ["move_to", x, z];
export const useDoor = (door) => ["use_door", door];
export const joinRoom = (room) => ["join_room", room];
export const chat = (text) => ["chat", text.slice(0, MAX_CHAT_CHARS)];
export const ping = (nonce, clientTime) => ["ping", nonce >>> 0, clientTime];
export const leave = () => ["leave"];
export const admit = (avatar) => ["admit", avatar];

// Records and consent. Every field is sent, defaults included, as the Python codec does.
// The seven record categories, in the order the server reads them.
export const CATEGORIES = [
  "demographics",
  "vital_signs",
  "conditions",
  "medications",
  "immunizations",
  "allergies",
  "encounters",
];
export function recordRequest(request, patient, categories, purpose = "TREAT", room = null) {
  return ["record_request", request >>> 0, patient, [...categories], purpose, room];
}
export function consentGrant(request, categories, grantee = null, purpose = "TREAT",
  durationS = 3600) {
  const seconds = Math.round(durationS);
  return ["consent_grant", request >>> 0, [...categories], grantee, purpose, seconds];
}
export const consentRevoke = (request, consent) => ["consent_revoke", request >>> 0, consent];
export const consentQuery = (request) => ["consent_query", request >>> 0];
export function breakGlass(request, patient, reason, durationS = 900) {
  return ["break_glass", request >>> 0, patient, reason, Math.round(durationS)];
}

export class ProtocolError extends Error {}

function avatarInfo(raw) {
  if (!Array.isArray(raw) || raw.length < 3) throw new ProtocolError("bad AvatarInfo");
  return { id: raw[0], role: raw[1], label: String(raw[2]) };
}

function struct(names, what) {
  return (raw) => {
    if (!Array.isArray(raw)) throw new ProtocolError(`bad ${what}`);
    return Object.fromEntries(names.map((name, i) => [name, raw[i] ?? null]));
  };
}

/**
 * Decode one server frame into a plain object `{type, ...fields}`. Unknown message
 * types decode to `{type, fields}` so the caller can ignore them; structural damage
 * throws ProtocolError.
 */
export function decode(data) {
  let raw;
  try {
    raw = decoder.decode(data);
  } catch (err) {
    throw new ProtocolError(`undecodable frame: ${err.message}`);
  }
  if (!Array.isArray(raw) || typeof raw[0] !== "string") {
    throw new ProtocolError("a message must be an array starting with its tag");
  }
  const type = raw[0];
  const names = SERVER_FIELDS[type];
  if (!names) return { type, unknown: true, fields: raw.slice(1) };
  const out = { type, ...(DEFAULTS[type] ?? {}) };
  names.forEach((name, i) => {
    if (i + 1 < raw.length) out[name] = raw[i + 1];
  });
  for (const name of AVATAR_LISTS[type] ?? []) {
    out[name] = (out[name] ?? []).map(avatarInfo);
  }
  if (type === "welcome") out.you = avatarInfo(out.you);
  if (type === "record_shown") {
    out.viewer = avatarInfo(out.viewer);
    if (out.view === null || typeof out.view !== "object" || Array.isArray(out.view)) {
      throw new ProtocolError("bad RecordView");
    }
  }
  if (type === "consent_state") {
    out.consents = (out.consents ?? []).map(struct(CONSENT_SUMMARY, "ConsentSummary"));
    out.disclosures = (out.disclosures ?? []).map(struct(DISCLOSURE, "Disclosure"));
  }
  if (type === "delta" || type === "presence") out.left = out.left ?? [];
  return out;
}
