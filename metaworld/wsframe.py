"""RFC 6455 WebSocket framing, sans-io: the handshake key, frames, and close payloads.

Theory of operation. `encode_frame` turns one payload into one frame: a server's frames
go out plain, a client's are masked with a fresh random key, as section 5.3 requires.
`FrameReader` takes bytes as they arrive, in chunks of any size, and returns what they
complete: whole messages (fragments joined), pings, pongs, and the peer's close. Every
rule of sections 5.2 to 5.5 is checked as soon as a frame header is complete, so a
frame larger than the message limit is refused before its payload is read.

A broken rule raises `FrameError`, whose `code` is the close code to send (1002, 1007 or
1009) and whose `events` are what the same bytes completed before the broken rule. The
reader is then failed: when frame boundaries are still known (1007, 1009) it goes on
skipping frames so the peer's answering close can be found; after a 1002 it only
discards. Nothing here reads a socket or a clock.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import os
import struct
from dataclasses import dataclass
from typing import Final

import numpy as np

# Close codes of RFC 6455 section 7.4.1 that this module gives or reads.
NORMAL: Final = 1000
PROTOCOL_ERROR: Final = 1002
NO_STATUS: Final = 1005  # an empty close frame; never sent as a code
ABNORMAL: Final = 1006  # the TCP connection ended without a close frame; never sent
INVALID_DATA: Final = 1007
MESSAGE_TOO_BIG: Final = 1009

MAX_CONTROL_PAYLOAD: Final = 125  # bytes in a ping, pong or close frame
MAX_CLOSE_REASON: Final = MAX_CONTROL_PAYLOAD - 2  # bytes of UTF-8 after the code
_NUMPY_MASK_FROM: Final = 2048  # bytes; smaller payloads are quicker as one big int
_HANDSHAKE_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Opcode(enum.IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class Role(enum.Enum):
    """Which end of the connection this code plays; it decides who masks."""

    CLIENT = "client"
    SERVER = "server"


@dataclass(slots=True)
class Message:
    data: bytes | str  # str for a text message


@dataclass(slots=True)
class Ping:
    payload: bytes


@dataclass(slots=True)
class Pong:
    payload: bytes


@dataclass(slots=True)
class Close:
    code: int  # NO_STATUS when the frame carried no code
    reason: str


Event = Message | Ping | Pong | Close


class FrameError(Exception):
    """The peer broke RFC 6455; `code` is the close code to answer with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.events: list[Event] = []  # completed by the same bytes, before the error


# ---------------------------------------------------------------- handshake


def accept_key(key: str | bytes) -> str:
    """The Sec-WebSocket-Accept value that answers a Sec-WebSocket-Key."""
    raw = key.encode("ascii") if isinstance(key, str) else key
    digest = hashlib.sha1(raw.strip() + _HANDSHAKE_GUID, usedforsecurity=False).digest()
    return base64.b64encode(digest).decode("ascii")


def new_key() -> str:
    """A fresh Sec-WebSocket-Key: 16 random bytes, base64."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def is_valid_key(key: bytes) -> bool:
    """Whether a Sec-WebSocket-Key is base64 of exactly 16 bytes."""
    try:
        return len(base64.b64decode(key.strip(), validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


# ---------------------------------------------------------------- frames


def mask(key: bytes, data: bytes) -> bytes:
    """XOR `data` with the repeated 4-byte `key`; masking and unmasking are the same."""
    n = len(data)
    if n < _NUMPY_MASK_FROM:
        stream = (key * ((n >> 2) + 1))[:n]
        mixed = int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")
        return mixed.to_bytes(n, "little")
    out = bytearray(data)
    words = n >> 2
    view = np.frombuffer(out, dtype=np.uint32, count=words)
    view ^= np.frombuffer(key, dtype=np.uint32)[0]
    for i in range(words << 2, n):
        out[i] ^= key[i & 3]
    return bytes(out)


def _header(first: int, length: int, mask_bit: int) -> bytes:
    if length < 126:
        return bytes((first, mask_bit | length))
    if length < 0x10000:
        return struct.pack("!BBH", first, mask_bit | 126, length)
    return struct.pack("!BBQ", first, mask_bit | 127, length)


def encode_frame(opcode: int, payload: bytes, role: Role, *, fin: bool = True) -> bytes:
    """One frame as `role` sends it: masked with a random key when a client sends it."""
    first = (0x80 if fin else 0) | opcode
    if role is Role.SERVER:
        return _header(first, len(payload), 0) + payload
    key = os.urandom(4)
    return _header(first, len(payload), 0x80) + key + mask(key, payload)


def encode_message(data: bytes | str, role: Role) -> bytes:
    """One unfragmented message: binary for bytes, text for str."""
    if isinstance(data, str):
        return encode_frame(Opcode.TEXT, data.encode("utf-8"), role)
    return encode_frame(Opcode.BINARY, data, role)


def encode_close(code: int, reason: str | None, role: Role) -> bytes:
    return encode_frame(Opcode.CLOSE, close_payload(code, reason), role)


# ---------------------------------------------------------------- close payloads


def is_valid_close_code(code: int) -> bool:
    """Whether `code` may travel in a close frame (RFC 6455 7.4 and the IANA registry)."""
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


def close_payload(code: int, reason: str | None = None) -> bytes:
    """The payload of a close frame; a reason past 123 bytes is cut at a character."""
    if code == NO_STATUS:
        return b""
    if not is_valid_close_code(code):
        raise ValueError(f"{code} may not be sent in a close frame")
    text = (reason or "").encode("utf-8")[:MAX_CLOSE_REASON]
    text = text.decode("utf-8", "ignore").encode("utf-8")
    return code.to_bytes(2, "big") + text


def parse_close(payload: bytes) -> Close:
    """A close frame's payload as a `Close`; raises FrameError for a bad one."""
    if not payload:
        return Close(NO_STATUS, "")
    if len(payload) == 1:
        raise FrameError(PROTOCOL_ERROR, "a close frame of one byte")
    code = int.from_bytes(payload[:2], "big")
    if not is_valid_close_code(code):
        raise FrameError(PROTOCOL_ERROR, f"close code {code} is not allowed on the wire")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(INVALID_DATA, "close reason is not UTF-8") from None
    return Close(code, reason)


# ---------------------------------------------------------------- reading


class _State(enum.Enum):
    OPEN = "open"
    FAILED = "failed"  # a rule was broken; frames are skipped, a close is still reported
    BROKEN = "broken"  # frame boundaries are lost; everything is discarded
    CLOSED = "closed"  # the peer's close arrived; nothing after it counts


class FrameReader:
    """Frames in, events out, for one direction of one connection."""

    def __init__(self, role: Role, max_message_size: int) -> None:
        self.role = role
        self.max_message_size = max_message_size  # bytes in one message, after joining
        self._state = _State.OPEN
        self._masked = role is Role.SERVER  # frames from a client are masked
        self._pending = b""  # the part of a frame header that has arrived
        # The frame whose payload is arriving: opcode, fin, mask key, bytes still due.
        self._frame: tuple[int, bool, bytes | None] | None = None
        self._due = 0
        self._chunks: list[bytes] = []
        # The fragmented message being joined.
        self._message: int | None = None  # its opcode, TEXT or BINARY
        self._fragments: list[bytes] = []
        self._size = 0

    @property
    def failed(self) -> bool:
        return self._state in (_State.FAILED, _State.BROKEN)

    def feed(self, data: bytes) -> list[Event]:
        """Take the next bytes; return the events they complete, in order."""
        events: list[Event] = []
        if self._state is _State.BROKEN or self._state is _State.CLOSED:
            return events
        if self._pending:
            data = self._pending + data
            self._pending = b""
        try:
            self._parse(data, events)
        except FrameError as exc:
            exc.events = events
            raise
        return events

    def _parse(self, data: bytes, events: list[Event]) -> None:
        pos, end = 0, len(data)
        while pos < end:
            if self._frame is not None:
                take = min(self._due, end - pos)
                if self._state is _State.OPEN or self._frame[0] == Opcode.CLOSE:
                    self._chunks.append(data[pos : pos + take])
                pos += take
                self._due -= take
                if self._due:
                    return
                opcode, fin, key = self._frame
                payload = b"".join(self._chunks)
                self._frame, self._chunks = None, []
                self._complete(opcode, fin, key, payload, data, pos, events)
                continue

            # A frame header: 2 bytes, then 0, 2 or 8 of length, then 0 or 4 of mask key.
            if end - pos < 2:
                break
            first, second = data[pos], data[pos + 1]
            length = second & 0x7F
            size = 2 + (4 if second & 0x80 else 0) + (2 if length == 126 else 0)
            size += 8 if length == 127 else 0
            if end - pos < size:
                break
            if length == 126:
                length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            elif length == 127:
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            key = data[pos + size - 4 : pos + size] if second & 0x80 else None
            opcode, fin = first & 0x0F, bool(first & 0x80)
            pos += size
            if self._state is _State.OPEN:
                self._check(first, second, length, data, pos)
            if end - pos >= length:
                payload = data[pos : pos + length]
                pos += length
                self._complete(opcode, fin, key, payload, data, pos, events)
            else:
                self._frame, self._due = (opcode, fin, key), length
        if pos < end:
            self._pending = data[pos:]

    def _check(self, first: int, second: int, length: int, data: bytes, pos: int) -> None:
        """Every rule a frame header can break, before any of its payload is read."""
        opcode = first & 0x0F
        if first & 0x70:
            self._break("reserved bits set without an extension")
        if opcode not in _OPCODES:
            self._break(f"unknown opcode {opcode:#x}")
        if opcode & 0x08:
            if not first & 0x80:
                self._break("a fragmented control frame")
            if length > MAX_CONTROL_PAYLOAD:
                self._break("a control frame longer than 125 bytes")
        if bool(second & 0x80) != self._masked:
            self._break(
                "an unmasked frame from a client"
                if self._masked
                else "a masked frame from a server"
            )
        small = second & 0x7F
        if (small == 126 and length < 126) or (small == 127 and length < 0x10000):
            self._break("a frame length not in its shortest form")
        if length >> 63:
            self._break("a frame length with its top bit set")
        if opcode == Opcode.CONTINUATION and self._message is None:
            self._break("a continuation frame with no message to continue")
        if opcode in (Opcode.TEXT, Opcode.BINARY) and self._message is not None:
            self._break("a new message inside a fragmented one")
        if not opcode & 0x08 and self._size + length > self.max_message_size:
            # Skip this frame's payload from here on, so a close after it can be read.
            self._state = _State.FAILED
            self._frame, self._due = (opcode, True, None), length
            if length == 0:
                self._frame = None
            self._pending = data[pos:]
            raise FrameError(MESSAGE_TOO_BIG, f"a message over {self.max_message_size} bytes")

    def _break(self, reason: str) -> None:
        self._state = _State.BROKEN
        raise FrameError(PROTOCOL_ERROR, reason)

    def _complete(
        self,
        opcode: int,
        fin: bool,
        key: bytes | None,
        payload: bytes,
        data: bytes,
        pos: int,
        events: list[Event],
    ) -> None:
        """A whole frame has arrived; `data[pos:]` is what follows it."""
        if key is not None and payload:
            payload = mask(key, payload)
        if self._state is not _State.OPEN:
            if opcode == Opcode.CLOSE:
                self._closed(payload, events)
            return
        try:
            if opcode == Opcode.BINARY and fin:
                events.append(Message(payload))
            elif opcode & 0x08:
                self._control(opcode, payload, events)
            else:
                self._data(opcode, fin, payload, events)
        except FrameError:
            if self.failed:  # frame boundaries are intact: keep what follows
                self._pending = data[pos:]
            raise

    def _control(self, opcode: int, payload: bytes, events: list[Event]) -> None:
        if opcode == Opcode.PING:
            events.append(Ping(payload))
        elif opcode == Opcode.PONG:
            events.append(Pong(payload))
        else:
            self._closed(payload, events)

    def _closed(self, payload: bytes, events: list[Event]) -> None:
        was_open = self._state is _State.OPEN
        self._state = _State.CLOSED
        try:
            events.append(parse_close(payload))
        except FrameError as exc:
            if was_open:
                raise
            events.append(Close(exc.code, exc.reason))

    def _data(self, opcode: int, fin: bool, payload: bytes, events: list[Event]) -> None:
        if opcode != Opcode.CONTINUATION:
            self._message = opcode
        self._fragments.append(payload)
        self._size += len(payload)
        if not fin:
            return
        whole = b"".join(self._fragments) if len(self._fragments) > 1 else payload
        kind = self._message
        self._message, self._fragments, self._size = None, [], 0
        if kind == Opcode.BINARY:
            events.append(Message(whole))
            return
        try:
            events.append(Message(whole.decode("utf-8")))
        except UnicodeDecodeError:
            self._state = _State.FAILED
            raise FrameError(INVALID_DATA, "a text message that is not UTF-8") from None


_OPCODES: Final = frozenset(int(op) for op in Opcode)
