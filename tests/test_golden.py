"""The golden vectors in tests/golden/ against the server's codec and the SDK's decoding.

A client in another language is checked against the same files; these tests keep the
files true to the Python implementation (and fail when the wire format changes without
the vectors being regenerated on purpose)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from metaworld import protocol, quant

GOLDEN = Path(__file__).resolve().parent / "golden"
_spec = importlib.util.spec_from_file_location("golden_generate", GOLDEN / "generate.py")
assert _spec is not None and _spec.loader is not None
generate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate)

MESSAGES = sorted(p.stem for p in GOLDEN.glob("*.msgpack"))
POSITION_TOLERANCE_M = 0.0005 + 1e-9  # half a millimetre: rounding to whole millimetres
HEAD_TOLERANCE_DEG = 0.25  # 10-bit smallest-three components
HAND_TOLERANCE_DEG = 2.0  # 7-bit smallest-three components


def vector(name: str) -> dict:
    return json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))


def decode(direction: str, frame: bytes) -> protocol.Tagged:
    if direction == "client_to_server":
        return protocol.decode_client(frame)
    return protocol.decode_server(frame)


def assert_pose_close(decoded: np.ndarray, expected: list[list[float]]) -> None:
    expected_pose = np.array(expected)
    assert np.all(np.abs(decoded[:, :3] - expected_pose[:, :3]) <= POSITION_TOLERANCE_M)
    for part, limit in ((0, HEAD_TOLERANCE_DEG), (1, HAND_TOLERANCE_DEG), (2, HAND_TOLERANCE_DEG)):
        want = expected_pose[part, 3:] / np.linalg.norm(expected_pose[part, 3:])
        cos = min(1.0, abs(float(np.dot(decoded[part, 3:], want))))
        assert math.degrees(2 * math.acos(cos)) <= limit, f"part {part}"


def test_every_message_type_has_a_vector():
    tags = {vector(name)["tag"] for name in MESSAGES}
    for union in (protocol.ClientMessage, protocol.ServerMessage):
        for cls in union.__args__:
            assert cls.__struct_config__.tag in tags, cls.__name__


def test_the_files_are_what_the_generator_writes():
    files = generate.build()
    on_disk = {p.name for p in GOLDEN.iterdir() if p.suffix in {".json", ".msgpack", ".bin"}}
    assert on_disk == set(files)
    for name, data in files.items():
        assert (GOLDEN / name).read_bytes() == data, (
            f"{name} is stale: run {GOLDEN / 'generate.py'}"
        )


@pytest.mark.parametrize("name", MESSAGES)
def test_the_server_codec_decodes_and_reencodes_each_vector(name):
    expected = vector(name)
    frame = (GOLDEN / f"{name}.msgpack").read_bytes()
    message = decode(expected["direction"], frame)
    assert type(message).__name__ == expected["type"]
    assert generate.to_named(message) == expected["fields"]
    built = generate.from_named(expected["fields"], type(message))
    assert built == message  # the JSON alone is enough to build the message
    if expected["canonical"]:
        assert protocol.encode(message) == frame
    else:
        assert protocol.encode(message).hex() == expected["canonical_hex"]
        canonical = (GOLDEN / f"{expected['like']}.msgpack").read_bytes()
        assert type(decode(expected["direction"], canonical)) is type(message)


@pytest.mark.parametrize(
    "name", [n for n in MESSAGES if "bodies" in vector(n) or "records" in vector(n)]
)
def test_the_sdk_decodes_the_pose_data_of_each_vector(name):
    expected = vector(name)
    message = decode(expected["direction"], (GOLDEN / f"{name}.msgpack").read_bytes())
    for field, pose in expected.get("bodies", {}).items():
        decoded = quant.decode_bodies(quant.body_from_bytes(getattr(message, field)))[0]
        assert_pose_close(decoded, pose)
    for field, items in expected.get("records", {}).items():
        records = quant.records_from_bytes(getattr(message, field))
        assert records["id"].tolist() == [item["id"] for item in items]
        for decoded, item in zip(quant.decode_bodies(records["body"]), items, strict=True):
            assert_pose_close(decoded, item["pose"])


def test_the_worked_pose_body_example():
    expected = vector("pose_body")
    data = (GOLDEN / "pose_body.bin").read_bytes()
    assert data.hex() == expected["hex"] and len(data) == quant.BODY_SIZE
    decoded = quant.decode_bodies(quant.body_from_bytes(data))[0]
    assert decoded.tolist() == expected["decoded"]
    assert_pose_close(decoded, expected["pose"])
    head = expected["head"]
    assert list(np.frombuffer(data[0:6], "<u2")) == head["position_mm"]
    u32 = int.from_bytes(data[6:10], "little")
    assert u32 == head["orientation_u32"]
    assert [u32 >> 30, (u32 >> 20) & 1023, (u32 >> 10) & 1023, u32 & 1023] == [
        head["largest_index"],
        *head["kept_levels"],
    ]
    for name, at in (("left", 10), ("right", 19)):
        hand = expected[name]
        assert list(np.frombuffer(data[at : at + 6], "<u2")) == hand["position_mm"]
        assert int.from_bytes(data[at + 6 : at + 9], "little") == hand["orientation_u24"]


def test_the_records_example():
    expected = vector("pose_records")
    data = (GOLDEN / "pose_records.bin").read_bytes()
    assert data.hex() == expected["hex"] and len(data) == 2 * quant.RECORD_SIZE
    records = quant.records_from_bytes(data)
    assert records["id"].tolist() == [r["id"] for r in expected["records"]]
    for decoded, item in zip(
        quant.decode_bodies(records["body"]), expected["records"], strict=True
    ):
        assert_pose_close(decoded, item["pose"])


def test_the_protocol_document_names_every_message_close_code_and_error():
    doc = (GOLDEN.parent.parent / "docs" / "protocol.md").read_text(encoding="utf-8")
    for union in (protocol.ClientMessage, protocol.ServerMessage):
        for cls in union.__args__:
            assert f"`{cls.__struct_config__.tag}`" in doc, cls.__name__
    for code in protocol.CloseCode:
        assert f"| {code.value} | {code.name} |" in doc, code.name
    for error in protocol.ERROR_CODES:
        assert f"| `{error}` |" in doc, error
    assert protocol.SUBPROTOCOL in doc and f"{protocol.MAX_MESSAGE_BYTES:,}" in doc
