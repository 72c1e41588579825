import json
import subprocess
import sys

import msgspec
import pytest

from metaworld import protocol
from metaworld.layout import load_layout


def test_client_messages_round_trip():
    messages = [
        protocol.Hello("tok", "bot", 1, "sess"),
        protocol.Pose(3, b"\x00" * 28, 9),
        protocol.MoveTo(1.5, -2.0),
        protocol.UseDoor("lobby-waiting"),
        protocol.JoinRoom("waiting"),
        protocol.Admit(12),
        protocol.Chat("hello"),
        protocol.Ping(7, 1.25),
        protocol.Leave(),
    ]
    for message in messages:
        assert protocol.decode_client(protocol.encode(message)) == message


def test_server_messages_round_trip():
    info = protocol.AvatarInfo(4, "patient", "Patient ABC123")
    messages = [
        protocol.Welcome("s", info, 20, "lobby", load_layout(), 30.0, 1.0),
        protocol.Snapshot(1, "lobby", [info], b"\x00" * 30, 2, b"\x00" * 28),
        protocol.Delta(2, 1.5, [info], [5], b""),
        protocol.Placed(3, "waiting", b"\x00" * 28, "door"),
        protocol.Correction(4, "lobby", b"\x00" * 28, "speed"),
        protocol.ChatMessage("lobby", 4, "Patient ABC123", "hi", 2.0),
        protocol.Presence("lobby", [info], [3], True),
        protocol.Error("unknown_room", "no room by that id"),
        protocol.Pong(7, 1.0, 2.0),
    ]
    for message in messages:
        assert protocol.decode_server(protocol.encode(message)) == message


def test_messages_are_tagged_arrays():
    raw = msgspec.msgpack.decode(protocol.encode(protocol.Chat("hi")))
    assert raw == ["chat", "hi"]


def test_old_clients_may_omit_trailing_defaults():
    raw = msgspec.msgpack.encode(["hello", "tok", "webxr", 1])
    assert protocol.decode_client(raw) == protocol.Hello("tok", "webxr", 1, None)
    raw = msgspec.msgpack.encode(["pose", 0, b"\x00" * 28])
    assert protocol.decode_client(raw).seq == 0


@pytest.mark.parametrize(
    "frame",
    [
        b"\xc1",  # never-used MessagePack byte
        msgspec.msgpack.encode(["no_such_type", 1]),
        msgspec.msgpack.encode(["chat", "x" * (protocol.MAX_CHAT_CHARS + 1)]),
        msgspec.msgpack.encode(["move_to", "a", "b"]),
        msgspec.msgpack.encode({"type": "chat"}),
        msgspec.msgpack.encode(["ping", -1, 0.0]),
        "text frame",
    ],
)
def test_invalid_frames_raise_protocol_error(frame):
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_client(frame)


def test_delta_of_32_avatars_costs_about_30_bytes_each():
    delta = protocol.Delta(1000, 1234.5, [], [], b"\x01" * (30 * 32))
    per_avatar = len(protocol.encode(delta)) / 32
    assert per_avatar <= 32


def test_schema_command_prints_json_schema():
    out = subprocess.run(
        [sys.executable, "-m", "metaworld.cli", "schema"],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    schema = json.loads(out)
    names = set(schema["$defs"])
    assert {"Hello", "Pose", "Delta", "Snapshot", "Welcome", "Layout"} <= names


def test_close_codes_are_unique_and_in_range():
    codes = [c.value for c in protocol.CloseCode]
    assert len(codes) == len(set(codes))
    assert all(c in (1000, 1001, 1009) or 4000 <= c < 5000 for c in codes)
