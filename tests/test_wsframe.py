"""The RFC 6455 codec: round trips, fragmentation, masking, and every refused frame."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metaworld import wsframe
from metaworld.wsframe import (
    Close,
    FrameError,
    FrameReader,
    Message,
    Opcode,
    Ping,
    Pong,
    Role,
    encode_frame,
    encode_message,
)

OTHER = {Role.CLIENT: Role.SERVER, Role.SERVER: Role.CLIENT}
BOUNDARIES = [0, 1, 124, 125, 126, 127, 2047, 2048, 2049, 65535, 65536, 65537]
roles = st.sampled_from([Role.CLIENT, Role.SERVER])


def payload(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def read_all(sender: Role, data: bytes, max_size: int = 1 << 20) -> list:
    return FrameReader(OTHER[sender], max_size).feed(data)


def in_pieces(reader: FrameReader, data: bytes, cuts: list[int]) -> list:
    events: list = []
    start = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        events += reader.feed(data[start:cut])
        start = cut
    return events


def raw_frame(first: int, body: bytes, *, key: bytes | None = None, length: int | None = None):
    """A frame built by hand, so it can break any rule."""
    n = len(body) if length is None else length
    if n < 126:
        head = bytes((first, (0x80 if key else 0) | n))
    elif n < 0x10000:
        head = struct.pack("!BBH", first, (0x80 if key else 0) | 126, n)
    else:
        head = struct.pack("!BBQ", first, (0x80 if key else 0) | 127, n)
    if key:
        return head + key + wsframe.mask(key, body)
    return head + body


def to_server(first: int, body: bytes = b"", **kw) -> bytes:
    return raw_frame(first, body, key=b"\x01\x02\x03\x04", **kw)


def refused(data: bytes, role: Role = Role.SERVER, max_size: int = 1 << 20) -> FrameError:
    with pytest.raises(FrameError) as info:
        FrameReader(role, max_size).feed(data)
    return info.value


# ---------------------------------------------------------------- handshake


def test_accept_key_matches_the_rfc_example():
    assert wsframe.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_keys():
    key = wsframe.new_key()
    assert wsframe.is_valid_key(key.encode()) and key != wsframe.new_key()
    for bad in (b"", b"short", b"!!!!not base64!!!!!!!!==", b"dGhlIHNhbXBsZSBub25jZQ"):
        assert not wsframe.is_valid_key(bad)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("n", BOUNDARIES)
@pytest.mark.parametrize("role", [Role.CLIENT, Role.SERVER], ids=["client", "server"])
def test_every_length_boundary_round_trips(role, n):
    data = payload(n, n)
    frame = encode_message(data, role)
    header = 2 + (0 if n < 126 else 2 if n < 0x10000 else 8) + (4 if role is Role.CLIENT else 0)
    assert len(frame) == header + n
    assert read_all(role, frame) == [Message(data)]


@settings(max_examples=200, deadline=None)
@given(
    role=roles,
    messages=st.lists(st.binary(max_size=300) | st.text(max_size=100), max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=12),
)
def test_messages_survive_any_chunking(role, messages, cuts):
    wire = b"".join(encode_message(m, role) for m in messages)
    reader = FrameReader(OTHER[role], 1 << 20)
    assert in_pieces(reader, wire, cuts) == [Message(m) for m in messages]


@settings(max_examples=50, deadline=None)
@given(
    role=roles,
    n=st.sampled_from(BOUNDARIES) | st.integers(min_value=0, max_value=200_000),
    seed=st.integers(0, 2**16),
    cuts=st.lists(st.integers(min_value=0, max_value=200_100), max_size=8),
)
def test_big_messages_survive_any_chunking(role, n, seed, cuts):
    data = payload(n, seed)
    reader = FrameReader(OTHER[role], 1 << 20)
    assert in_pieces(reader, encode_message(data, role), cuts) == [Message(data)]


@settings(max_examples=100, deadline=None)
@given(
    role=roles,
    parts=st.lists(st.binary(max_size=200), min_size=1, max_size=6),
    text=st.booleans(),
    ping_after=st.integers(0, 5),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=8),
)
def test_fragments_are_joined_and_control_frames_may_come_between(
    role, parts, text, ping_after, cuts
):
    if text:
        joined = "é€x".encode() * len(parts)  # multi-byte characters split across fragments
        size = -(-len(joined) // len(parts))
        parts = [joined[i : i + size] for i in range(0, len(joined), size)]
    first = Opcode.TEXT if text else Opcode.BINARY
    frames = []
    for i, part in enumerate(parts):
        opcode = first if i == 0 else Opcode.CONTINUATION
        frames.append(encode_frame(opcode, part, role, fin=i == len(parts) - 1))
        if i == ping_after and i < len(parts) - 1:
            frames.append(encode_frame(Opcode.PING, b"p", role))
    events = in_pieces(FrameReader(OTHER[role], 1 << 20), b"".join(frames), cuts)
    whole = b"".join(parts)
    expected = Message(whole.decode() if text else whole)
    assert events[-1] == expected
    assert events[:-1] == ([Ping(b"p")] if ping_after < len(parts) - 1 else [])


def test_control_frames_and_close():
    for role in (Role.CLIENT, Role.SERVER):
        wire = (
            encode_frame(Opcode.PING, b"hi", role)
            + encode_frame(Opcode.PONG, b"", role)
            + wsframe.encode_close(4001, "bye", role)
            + encode_message(b"after the close", role)
        )
        assert read_all(role, wire) == [Ping(b"hi"), Pong(b""), Close(4001, "bye")]
        assert read_all(role, encode_frame(Opcode.CLOSE, b"", role)) == [
            Close(wsframe.NO_STATUS, "")
        ]


# ---------------------------------------------------------------- masking


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 1000, 2047, 2048, 2051, 70001])
def test_mask_is_the_rfc_xor_and_its_own_inverse(n):
    key, data = b"\x9a\x01\xff\x37", payload(n, 7)
    naive = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    assert wsframe.mask(key, data) == naive
    assert wsframe.mask(key, naive) == data


def test_client_frames_are_masked_with_fresh_keys_and_server_frames_are_not():
    data = b"x" * 40
    server = encode_message(data, Role.SERVER)
    assert server[1] & 0x80 == 0 and server.endswith(data)
    first, second = encode_message(data, Role.CLIENT), encode_message(data, Role.CLIENT)
    assert first[1] & 0x80 and second[1] & 0x80
    assert data not in first and first[2:6] != second[2:6]


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("wire", "role"),
    [
        (to_server(0x80 | 0x40 | Opcode.BINARY, b"x"), Role.SERVER),  # RSV1
        (to_server(0x80 | 0x20 | Opcode.BINARY, b"x"), Role.SERVER),  # RSV2
        (to_server(0x80 | 0x10 | Opcode.BINARY, b"x"), Role.SERVER),  # RSV3
        *[(to_server(0x80 | op, b"x"), Role.SERVER) for op in (3, 4, 5, 6, 7, 0xB, 0xF)],
        (to_server(0x80 | Opcode.PING, b"x" * 126), Role.SERVER),
        (to_server(0x80 | Opcode.CLOSE, b"\x03\xe8" + b"x" * 124), Role.SERVER),
        (to_server(Opcode.PING, b"x"), Role.SERVER),  # a fragmented control frame
        (to_server(0x80 | Opcode.CONTINUATION, b"x"), Role.SERVER),
        (to_server(Opcode.BINARY, b"a") + to_server(0x80 | Opcode.TEXT, b"b"), Role.SERVER),
        (raw_frame(0x80 | Opcode.BINARY, b"unmasked"), Role.SERVER),
        (to_server(0x80 | Opcode.BINARY, b"masked"), Role.CLIENT),
        (raw_frame(0x82, b"", key=None, length=0)[:1] + b"\x7e\x00\x05" + b"x" * 5, Role.CLIENT),
        (b"\x82\x7f" + (300).to_bytes(8, "big") + b"x" * 300, Role.CLIENT),
        (b"\x82\x7f" + (1 << 63 | 5).to_bytes(8, "big"), Role.CLIENT),
        (to_server(0x80 | Opcode.CLOSE, b"\x03"), Role.SERVER),  # a one-byte close
    ],
    ids=[
        "rsv1",
        "rsv2",
        "rsv3",
        *[f"opcode {op:#x}" for op in (3, 4, 5, 6, 7, 0xB, 0xF)],
        "ping over 125",
        "close over 125",
        "fragmented ping",
        "continuation without a start",
        "new message inside a fragmented one",
        "unmasked client frame",
        "masked server frame",
        "length 5 in the 16-bit form",
        "length 300 in the 64-bit form",
        "64-bit length with the top bit",
        "one-byte close",
    ],
)
def test_protocol_errors_close_with_1002(wire, role):
    assert refused(wire, role).code == wsframe.PROTOCOL_ERROR


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_close_codes_not_allowed_on_the_wire_are_1002(code):
    error = refused(to_server(0x80 | Opcode.CLOSE, code.to_bytes(2, "big")))
    assert error.code == wsframe.PROTOCOL_ERROR


@pytest.mark.parametrize(
    "wire",
    [
        to_server(0x80 | Opcode.TEXT, b"\xff\xfe"),
        to_server(Opcode.TEXT, "é".encode()[:1]) + to_server(0x80, b"x"),
        to_server(0x80 | Opcode.CLOSE, b"\x03\xe8\xc3"),
    ],
    ids=["text", "fragmented text", "close reason"],
)
def test_invalid_utf8_is_1007(wire):
    assert refused(wire).code == wsframe.INVALID_DATA


def test_a_message_over_the_limit_is_1009_even_across_fragments():
    assert refused(to_server(0x82, b"x" * 101), max_size=100).code == 1009
    wire = to_server(0x02, b"x" * 60) + to_server(0x80, b"x" * 41)
    assert refused(wire, max_size=100).code == 1009
    assert read_all(Role.CLIENT, to_server(0x82, b"x" * 100), 100) == [Message(b"x" * 100)]


def test_a_10_mb_frame_is_refused_from_its_header_alone():
    reader = FrameReader(Role.SERVER, 64 * 1024)
    header = b"\x82\xff" + (10 * 1024 * 1024).to_bytes(8, "big") + b"\x00\x00\x00\x00"
    with pytest.raises(FrameError) as info:
        reader.feed(header)
    assert info.value.code == wsframe.MESSAGE_TOO_BIG
    # The payload is then skipped, never kept, and the peer's close is still heard.
    chunk = b"\x00" * (1024 * 1024)
    for _ in range(10):
        assert reader.feed(chunk) == []
    assert reader.feed(to_server(0x81, b"ignored") + to_server(0x88, b"\x03\xf1")) == [
        Close(1009, "")
    ]


def test_events_before_an_error_come_with_it():
    wire = to_server(0x82, b"one") + to_server(0x89, b"p") + to_server(0x82 | 0x40, b"bad")
    error = refused(wire)
    assert error.events == [Message(b"one"), Ping(b"p")]


def test_after_a_1002_the_reader_discards_everything():
    reader = FrameReader(Role.SERVER, 1000)
    with pytest.raises(FrameError):
        reader.feed(raw_frame(0x82, b"unmasked"))
    assert reader.failed
    assert reader.feed(to_server(0x88, b"\x03\xe8")) == []


@settings(max_examples=500, deadline=None)
@given(
    role=roles,
    chunks=st.lists(st.binary(max_size=200), max_size=8),
    max_size=st.integers(0, 300),
)
def test_garbage_raises_only_frame_errors(role, chunks, max_size):
    reader = FrameReader(role, max_size)
    for chunk in chunks:
        try:
            events = reader.feed(chunk)
        except FrameError as exc:
            assert exc.code in (1002, 1007, 1009)
            events = exc.events
        for event in events:
            assert isinstance(event, Message | Ping | Pong | Close)


# ---------------------------------------------------------------- close payloads


@settings(max_examples=100, deadline=None)
@given(
    code=st.sampled_from([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999]),
    reason=st.text(max_size=200),
)
def test_close_payloads_round_trip_and_long_reasons_are_cut_at_a_character(code, reason):
    built = wsframe.close_payload(code, reason)
    assert len(built) <= wsframe.MAX_CONTROL_PAYLOAD
    parsed = wsframe.parse_close(built)
    assert parsed.code == code and reason.startswith(parsed.reason)


def test_close_payload_refuses_codes_that_may_not_be_sent():
    assert wsframe.close_payload(wsframe.NO_STATUS) == b""
    for code in (999, 1006, 1015, 5000):
        with pytest.raises(ValueError, match="may not be sent"):
            wsframe.close_payload(code)
