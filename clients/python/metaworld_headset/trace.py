"""Pose traces: the poses a headset sent, saved so they can be sent again exactly.

Format ``metaworld-trace`` version 1 is JSON Lines in UTF-8. The first line is the
header; every other line is one record, in the order the poses were sent::

    {"format": "metaworld-trace", "version": 1, "room": "lobby", "tick_hz": 20,
     "created": "2026-12-03T16:20:00Z"}
    {"t": 0.0, "room": "lobby", "body": "<base64 of the 28-byte pose body>"}
    {"t": 0.05, "room": "lobby", "body": "..."}

`t` is seconds since the first record. `body` is the room-local pose body exactly as it
went on the wire (docs/protocol.md, "Pose bodies"), so a replay sends the same bytes and
the server holds the same poses: decoding and re-encoding would not round-trip, because
the smallest-three encoding may pick a different dropped component the second time.
`room` is the room the body is relative to. Readers ignore keys they do not know, and
refuse a format or a version they do not.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Final

import msgspec

from metaworld import quant

FORMAT: Final = "metaworld-trace"
VERSION: Final = 1


class TraceError(ValueError):
    """A trace file that cannot be read; the message names the file and the line."""


class TraceHeader(msgspec.Struct, frozen=True):
    format: str
    version: int
    room: str
    tick_hz: int
    created: str


class _Line(msgspec.Struct, frozen=True):
    t: float
    room: str
    body: str


@dataclass(frozen=True, slots=True)
class TraceRecord:
    t: float  # seconds since the first record
    room: str
    body: bytes  # 28-byte room-local pose body


@dataclass(frozen=True, slots=True)
class Trace:
    header: TraceHeader
    records: list[TraceRecord]

    @property
    def duration(self) -> float:
        return self.records[-1].t if self.records else 0.0


_encoder = msgspec.json.Encoder()
_header_decoder = msgspec.json.Decoder(TraceHeader)
_line_decoder = msgspec.json.Decoder(_Line)


def read_trace(path: Path | str) -> Trace:
    """Read and check a whole trace; raises TraceError naming the file and line."""
    path = Path(path)
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise TraceError(f"{path}: cannot read: {exc.strerror}") from exc
    if not lines:
        raise TraceError(f"{path}: empty file; expected a {FORMAT} header line")
    header = _read_header(path, lines[0])
    records = [_read_record(path, number, line) for number, line in _numbered(lines)]
    for before, after in itertools.pairwise(records):
        if after.t < before.t:
            raise TraceError(f"{path}: record times go backwards at t={after.t}")
    return Trace(header, records)


def _numbered(lines: list[bytes]) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(lines[1:], start=2):
        if line.strip():
            yield number, line


def _read_header(path: Path, line: bytes) -> TraceHeader:
    try:
        header = _header_decoder.decode(line)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise TraceError(f"{path}:1: not a {FORMAT} header: {exc}") from exc
    if header.format != FORMAT:
        raise TraceError(f"{path}:1: format is {header.format!r}, expected {FORMAT!r}")
    if header.version != VERSION:
        raise TraceError(f"{path}:1: version {header.version} is not supported (only 1)")
    return header


def _read_record(path: Path, number: int, line: bytes) -> TraceRecord:
    try:
        raw = _line_decoder.decode(line)
        body = base64.b64decode(raw.body, validate=True)
    except (msgspec.DecodeError, binascii.Error) as exc:
        raise TraceError(f"{path}:{number}: bad record: {exc}") from exc
    if len(body) != quant.BODY_SIZE:
        raise TraceError(f"{path}:{number}: a pose body is {quant.BODY_SIZE} bytes")
    return TraceRecord(raw.t, raw.room, body)


class TraceWriter:
    """Writes a trace as poses are sent: the header on opening, then one line a pose."""

    def __init__(self, path: Path | str, *, room: str, tick_hz: int) -> None:
        self.path = Path(path)
        self.header = TraceHeader(FORMAT, VERSION, room, tick_hz, _utc_now())
        self.count = 0
        self._file: IO[bytes] | None = None
        self._start = 0.0

    def __enter__(self) -> TraceWriter:
        self._file = self.path.open("wb")
        self._line(self.header)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def write(self, now: float, room: str, body: bytes) -> None:
        """Record one body sent at local time `now` (seconds, any monotonic clock)."""
        if self._file is None:
            raise RuntimeError("the trace writer is not open")
        if len(body) != quant.BODY_SIZE:
            raise ValueError(f"a pose body is {quant.BODY_SIZE} bytes, got {len(body)}")
        if self.count == 0:
            self._start = now
        t = round(now - self._start, 6)
        self._line(_Line(t, room, base64.b64encode(body).decode("ascii")))
        self.count += 1

    def _line(self, value: msgspec.Struct) -> None:
        assert self._file is not None
        self._file.write(_encoder.encode(value) + b"\n")


def _utc_now() -> str:
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    return now.isoformat().replace("+00:00", "Z")
