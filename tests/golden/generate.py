"""Write the golden test vectors of the metaworld wire protocol into this folder.

One pair of files per example: ``<name>.msgpack`` holds the encoded frame exactly as it
goes on the wire, ``<name>.json`` the decoded values. In the JSON, every byte string
(pose bodies, pose records) is written in lowercase hex; floats are written so that they
read back as the same 64-bit double. Pose bodies also come as ``<name>.bin`` next to
the floats they were encoded from.

JSON fields of a message vector:

    name, direction ("client_to_server" | "server_to_client"), type, tag
    fields       the message's fields by name (nested structs as objects)
    canonical    true when re-encoding the decoded message gives these bytes again;
                 false for vectors that show what a decoder must accept (then
                 `canonical_hex` holds what the reference encoder writes instead)
    bodies       for each pose-body field: the room-local pose (3 x 7 floats) it encodes
    records      for each pose-records field: [{id, pose}] in record order

Everything is computed from metaworld.protocol and metaworld.quant; the numbers are
fixed, so running this twice writes the same bytes. Run from the repository root:

    .venv/bin/python tests/golden/generate.py
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Final

import msgspec
import numpy as np

from metaworld import protocol, quant
from metaworld.layout import Appointment, Box, Door, Layout, Room
from metaworld.protocol import AvatarInfo
from metaworld.records.view import ConditionItem, Demographics, Quantity, RecordView, VitalSign

HERE: Final = Path(__file__).resolve().parent
H: Final = 1.0 / math.sqrt(2.0)

# Room-local poses (metres, quaternions x y z w) with nothing special about them: the
# head turned 30 degrees and tilted, the hands at odd angles, millimetre fractions.
POSE_A: Final = [
    [3.2104, 1.6127, 4.5009, 0.0432, 0.2571, -0.0115, 0.9653],
    [2.9731, 1.1048, 4.3302, 0.3826, -0.1419, 0.5611, 0.7205],
    [3.4417, 0.9519, 4.6886, -0.2218, 0.6402, 0.1307, 0.7234],
]
POSE_B: Final = [
    [12.0005, 1.5, 2.25, 0.0, -H, 0.0, H],
    [11.7, 1.2, 2.0, 0.5, 0.5, 0.5, 0.5],
    [12.3, 1.2, 2.0, -0.1, -0.2, 0.3, -0.9],
]
POSE_C: Final = [
    [0.1234, 1.7, 0.9876, 0.0, 0.0, 0.0, 1.0],
    [0.5, 1.0, 0.5, 0.0, 0.0, 0.0, 1.0],
    [0.3, 0.8, 0.2, 0.0, 1.0, 0.0, 0.0],
]


def body(pose: list[list[float]]) -> bytes:
    return quant.encode_bodies(np.array([pose], dtype=np.float64)).tobytes()


def records(*items: tuple[int, list[list[float]]]) -> bytes:
    out = np.zeros(len(items), dtype=quant.RECORD_DTYPE)
    out["id"] = [avatar for avatar, _ in items]
    out["body"] = quant.encode_bodies(np.array([pose for _, pose in items], dtype=np.float64))
    return out.tobytes()


def layout() -> Layout:
    lobby = Room(
        id="lobby",
        name="Lobby",
        kind="lobby",
        bounds=Box(min=(0.0, 0.0, 0.0), max=(20.0, 3.0, 16.0)),
        capacity=200,
        spawn=[(4.0, 0.0, 4.0), (8.0, 0.0, 4.0)],
        obstacles=[Box(min=(14.0, 0.0, 10.0), max=(18.0, 1.0, 12.0))],
    )
    consult = Room(
        id="consult-1",
        name="Consultation room 1",
        kind="consultation",
        bounds=Box(min=(20.0, 0.0, 0.0), max=(26.0, 3.0, 6.0)),
        capacity=6,
        spawn=[(21.5, 0.0, 3.0)],
        enter=["patient", "clinician"],
        appointment=True,
        keeps_chat=True,
    )
    door = Door(id="lobby-consult-1", a="lobby", b="consult-1", a_at=(19.5, 3.0), b_at=(20.5, 3.0))
    return Layout(
        name="Golden clinic",
        lobby="lobby",
        rooms=[lobby, consult],
        doors=[door],
        appointments=[Appointment(room="consult-1", patient="patient-42")],
    )


DOCTOR: Final = AvatarInfo(id=1, role="clinician", label="Dr Ada Osei")
PATIENT: Final = AvatarInfo(id=2, role="patient", label="Patient 3F9A0C")
TRAINEE: Final = AvatarInfo(id=300, role="trainee", label="Sam Lee")
TOKEN: Final = "eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJleGFtcGxlIn0.c2lnbmF0dXJl"
SESSION: Final = "q1Xb7nV0cR2kP9sLmT4wEg"

# name -> message, with the room-local poses behind each pose field (for the SDK check).
CLIENT: Final[dict[str, protocol.Tagged]] = {
    "hello": protocol.Hello(token=TOKEN, client="headset", version=1),
    "hello_resume": protocol.Hello(token=TOKEN, client="webxr", version=1, session=SESSION),
    "pose": protocol.Pose(epoch=3, body=body(POSE_A), seq=1042),
    "move_to": protocol.MoveTo(x=4.25, z=7.5),
    "use_door": protocol.UseDoor(door="lobby-consult-1"),
    "join_room": protocol.JoinRoom(room="consult-1"),
    "admit": protocol.Admit(avatar=2),
    "chat": protocol.Chat(text="Good morning \u2014 ready when you are."),
    "ping": protocol.Ping(nonce=305419896, client_time=1234.5678),
    "leave": protocol.Leave(),
    "record_request": protocol.RecordRequest(
        request=7, patient=2, categories=["conditions", "vital_signs"], room="consult-1"
    ),
    "consent_grant": protocol.ConsentGrant(
        request=8, categories=["conditions", "medications"], grantee=1, duration_s=7200
    ),
    "consent_revoke": protocol.ConsentRevoke(request=9, consent="c-5d1e0a"),
    "consent_query": protocol.ConsentQuery(request=10),
    "break_glass": protocol.BreakGlass(
        request=11, patient=2, reason="unresponsive in the waiting room"
    ),
}
SERVER: Final[dict[str, protocol.Tagged]] = {
    "welcome": protocol.Welcome(
        session=SESSION,
        you=DOCTOR,
        tick_hz=20,
        room="lobby",
        layout=layout(),
        resume_grace_s=30.0,
        server_time=5021.375,
    ),
    "snapshot": protocol.Snapshot(
        tick=42,
        room="lobby",
        avatars=[PATIENT, TRAINEE],
        poses=records((2, POSE_B), (300, POSE_C)),
        epoch=3,
        you=body(POSE_A),
    ),
    "delta": protocol.Delta(
        tick=43,
        server_time=5023.425,
        entered=[TRAINEE],
        left=[5, 77],
        poses=records((2, POSE_B), (300, POSE_C)),
    ),
    "delta_quiet": protocol.Delta(tick=44, server_time=5023.475, entered=[], left=[], poses=b""),
    "placed": protocol.Placed(epoch=4, room="consult-1", body=body(POSE_B), reason="door"),
    "correction": protocol.Correction(epoch=5, room="lobby", body=body(POSE_A), reason="speed"),
    "chat_message": protocol.ChatMessage(
        room="lobby", avatar=1, label="Dr Ada Osei", text="Welcome in.", server_time=5024.0
    ),
    "presence": protocol.Presence(room="lobby", joined=[TRAINEE], left=[5]),
    "presence_full": protocol.Presence(room="lobby", joined=[DOCTOR, PATIENT], left=[], full=True),
    "error": protocol.Error(code="too_far", message=protocol.ERROR_CODES["too_far"]),
    "pong": protocol.Pong(nonce=305419896, client_time=1234.5678, server_time=5025.125),
    "record_shown": protocol.RecordShown(
        request=7,
        patient=2,
        viewer=DOCTOR,
        view=RecordView(
            patient="patient-42",
            included=["demographics", "conditions", "vital_signs"],
            demographics=Demographics(
                name="Test Patient", gender="female", birth_date="1970-01-01"
            ),
            conditions=[
                ConditionItem(
                    code="44054006",
                    display="Diabetes mellitus type 2",
                    onset="2015-06-01",
                    clinical_status="active",
                )
            ],
            vital_signs=[
                VitalSign(
                    code="85354-9",
                    display="Blood pressure",
                    date="2026-11-30",
                    components=[
                        Quantity(display="Systolic", value=128.0, unit="mm[Hg]"),
                        Quantity(display="Diastolic", value=82.0, unit="mm[Hg]"),
                    ],
                )
            ],
        ),
        consent_version="c-5d1e0a@2",
    ),
    "record_denied": protocol.RecordDenied(
        request=12, reason="denied", message="no part of this record may be shown"
    ),
    "record_purge": protocol.RecordPurge(patient=2),
    "consent_result": protocol.ConsentResult(
        request=8, ok=True, consent="c-5d1e0a", version=2, status="active", end_ms=1796300000000
    ),
    "consent_state": protocol.ConsentState(
        request=10,
        consents=[
            protocol.ConsentSummary(
                id="c-5d1e0a",
                version=2,
                status="active",
                categories=["conditions", "medications"],
                purpose="TREAT",
                grantee="Dr Ada Osei",
                end_ms=1796300000000,
            )
        ],
        disclosures=[
            protocol.Disclosure(
                at_ms=1796290000000,
                kind="view",
                who="Dr Ada Osei",
                role="clinician",
                categories=["conditions"],
                purpose="TREAT",
                outcome="permit",
                review=False,
            )
        ],
    ),
}
POSES_OF: Final = {
    "pose": {"body": [POSE_A]},
    "snapshot": {"you": [POSE_A], "poses": [POSE_B, POSE_C]},
    "delta": {"poses": [POSE_B, POSE_C]},
    "placed": {"body": [POSE_B]},
    "correction": {"body": [POSE_A]},
    "compat_pose_without_seq": {"body": [POSE_A]},
}
# Frames a decoder must accept though the reference encoder never writes them.
COMPAT: Final = {
    # A trailing field with a default (seq) left out.
    "compat_pose_without_seq": (
        "client_to_server",
        ["pose", 3, body(POSE_A)],
        "pose",
    ),
    # A newer peer's extra trailing field: ignored.
    "compat_ping_with_unknown_field": (
        "client_to_server",
        ["ping", 305419896, 1234.5678, "a field from a later version"],
        "ping",
    ),
    # Presence without `full`, which defaults to false.
    "compat_presence_without_full": (
        "server_to_client",
        ["presence", "lobby", [[300, "trainee", "Sam Lee"]], [5]],
        "presence",
    ),
}


# ---------------------------------------------------------------- conversions


def to_named(value: Any) -> Any:
    """Decoded message to JSON-ready values: structs by field name, bytes as hex."""
    if isinstance(value, msgspec.Struct):
        return {name: to_named(getattr(value, name)) for name in value.__struct_fields__}
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (list, tuple)):
        return [to_named(v) for v in value]
    return value


def from_named(value: Any, kind: Any) -> Any:
    """JSON values back into a message of type `kind` (the inverse of to_named)."""
    info = kind if isinstance(kind, msgspec.inspect.Type) else msgspec.inspect.type_info(kind)
    match info:
        case msgspec.inspect.StructType():
            names = {f.name: f.type for f in info.fields}
            return info.cls(**{k: from_named(v, names[k]) for k, v in value.items()})
        case msgspec.inspect.BytesType():
            return bytes.fromhex(value)
        case msgspec.inspect.ListType():
            return [from_named(v, info.item_type) for v in value]
        case msgspec.inspect.TupleType():
            return tuple(from_named(v, t) for v, t in zip(value, info.item_types, strict=True))
        case msgspec.inspect.UnionType():
            if value is None:
                return None
            return from_named(value, next(t for t in info.types if not _is_none(t)))
    return value


def _is_none(info: msgspec.inspect.Type) -> bool:
    return isinstance(info, msgspec.inspect.NoneType)


def message_vector(name: str, direction: str, message: protocol.Tagged) -> dict[str, Any]:
    vector: dict[str, Any] = {
        "name": name,
        "direction": direction,
        "type": type(message).__name__,
        "tag": type(message).__struct_config__.tag,
        "bytes_encoding": "hex",
        "fields": to_named(message),
        "canonical": True,
    }
    poses = POSES_OF.get(name, {})
    bodies = {field: p[0] for field, p in poses.items() if field in ("body", "you")}
    if bodies:
        vector["bodies"] = bodies
    if "poses" in poses:
        ids = quant.records_from_bytes(message.poses)["id"].tolist()  # type: ignore[attr-defined]
        vector["records"] = {
            "poses": [{"id": i, "pose": p} for i, p in zip(ids, poses["poses"], strict=True)]
        }
    return vector


def pose_body_vector() -> dict[str, Any]:
    """The worked example of docs/protocol.md: one body, field by field."""
    data = body(POSE_A)
    packed = quant.body_from_bytes(data)[0]
    head_rot = int(packed["head_rot"])
    hands = {}
    for name in ("left", "right"):
        raw = packed[f"{name}_rot"]
        value = int(raw[0]) | int(raw[1]) << 8 | int(raw[2]) << 16
        hands[name] = {
            "position_mm": packed[f"{name}_pos"].tolist(),
            "orientation_u24": value,
            "largest_index": value >> 21,
            "kept_levels": [value >> 14 & 127, value >> 7 & 127, value & 127],
        }
    return {
        "name": "pose_body",
        "bytes_encoding": "hex",
        "hex": data.hex(),
        "pose": POSE_A,
        "decoded": quant.decode_bodies(quant.body_from_bytes(data))[0].tolist(),
        "head": {
            "position_mm": packed["head_pos"].tolist(),
            "orientation_u32": head_rot,
            "largest_index": head_rot >> 30,
            "kept_levels": [head_rot >> 20 & 1023, head_rot >> 10 & 1023, head_rot & 1023],
        },
        **hands,
    }


def records_vector() -> dict[str, Any]:
    data = records((2, POSE_B), (300, POSE_C))
    return {
        "name": "pose_records",
        "bytes_encoding": "hex",
        "hex": data.hex(),
        "records": [{"id": 2, "pose": POSE_B}, {"id": 300, "pose": POSE_C}],
    }


# ---------------------------------------------------------------- files


def dump(vector: dict[str, Any]) -> str:
    """JSON with one top-level key a line: readable, and small diffs."""
    lines = [f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in vector.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def build() -> dict[str, bytes]:
    """Every golden file by name, as bytes."""
    files: dict[str, bytes] = {}

    def add(name: str, frame: bytes, vector: dict[str, Any], suffix: str = ".msgpack") -> None:
        files[name + suffix] = frame
        files[name + ".json"] = dump(vector).encode()

    for direction, messages in (("client_to_server", CLIENT), ("server_to_client", SERVER)):
        for name, message in messages.items():
            add(name, protocol.encode(message), message_vector(name, direction, message))
    for name, (direction, wire, canonical_of) in COMPAT.items():
        frame = msgspec.msgpack.encode(wire)
        decode = (
            protocol.decode_client if direction == "client_to_server" else protocol.decode_server
        )
        message = decode(frame)
        vector = message_vector(name, direction, message)
        vector["canonical"] = False
        vector["canonical_hex"] = protocol.encode(message).hex()
        vector["like"] = canonical_of
        add(name, frame, vector)
    add("pose_body", body(POSE_A), pose_body_vector(), ".bin")
    add("pose_records", records((2, POSE_B), (300, POSE_C)), records_vector(), ".bin")
    return files


def main() -> None:
    for name, data in sorted(build().items()):
        (HERE / name).write_bytes(data)
    print(f"wrote {len(build())} files to {HERE}", file=sys.stderr)


if __name__ == "__main__":
    main()
