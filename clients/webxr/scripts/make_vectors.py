"""Write test/vectors.json: pose bodies and wire messages made by the Python server code.

The browser client re-implements metaworld.quant and the message layout of
metaworld.protocol in JavaScript; its node tests compare against these vectors so the
two stay byte-compatible. The numbers are synthetic (a seeded generator plus edge cases).

Run from clients/webxr:  ../../.venv/bin/python scripts/make_vectors.py > test/vectors.json
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np

from metaworld import protocol, quant
from metaworld.layout import Box, Door, Layout, Room
from metaworld.protocol import AvatarInfo
from metaworld.records import view as rv

SEED = 20261203
RANDOM_POSES = 200


def _random_poses(rng: np.random.Generator, n: int) -> np.ndarray:
    poses = np.empty((n, 3, 7))
    poses[:, :, :3] = rng.uniform(-1.0, 70.0, size=(n, 3, 3))
    poses[:, :, 3:] = rng.normal(size=(n, 3, 4))
    return poses


def _edge_poses() -> np.ndarray:
    """Rounding ties, clamping, zero and negative quaternions, and a 45-degree tie."""
    h = 1.0 / math.sqrt(2.0)
    rows = [
        [
            [0.0005, 0.0015, 0.0025, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 1],
            [65.535, 65.536, 99, 0, 0, 0, -1],
        ],
        [
            [1.6, 1.6, 1.6, h, 0, 0, h],
            [2, 1, 2, 0.5, 0.5, 0.5, 0.5],
            [3, 1, 3, -0.5, 0.5, -0.5, 0.5],
        ],
        [[-3, 0, 0, 0, -h, 0, h], [0.1, 0.2, 0.3, 1, 0, 0, 0], [0.1, 0.2, 0.3, 0, 0, -1, 0]],
        [
            [10, 1.7, 10, 0.1, -0.9, 0.2, -0.3],
            [9.8, 1.1, 10.2, 0, 0, 0, 0],
            [10.2, 1.1, 10.2, 1e-9, 0, 0, 0],
        ],
    ]
    return np.array(rows, dtype=np.float64)


def _pose_vectors() -> list[dict[str, object]]:
    rng = np.random.default_rng(SEED)
    poses = np.concatenate([_edge_poses(), _random_poses(rng, RANDOM_POSES)])
    bodies = quant.encode_bodies(poses)
    decoded = quant.decode_bodies(bodies)
    return [
        {
            "pose": poses[i].reshape(-1).tolist(),
            "body": bodies[i : i + 1].tobytes().hex(),
            "decoded": decoded[i].reshape(-1).tolist(),
        }
        for i in range(len(poses))
    ]


def _records_vector() -> dict[str, object]:
    rng = np.random.default_rng(SEED + 1)
    poses = _random_poses(rng, 3)
    records = np.zeros(3, dtype=quant.RECORD_DTYPE)
    records["id"] = [7, 300, 65535]
    records["body"] = quant.encode_bodies(poses)
    return {
        "bytes": records.tobytes().hex(),
        "ids": [7, 300, 65535],
        "decoded": quant.decode_bodies(records["body"]).reshape(3, -1).tolist(),
    }


def _layout() -> Layout:
    lobby = Room(
        id="lobby",
        name="Lobby",
        kind="lobby",
        bounds=Box(min=(0.0, 0.0, 0.0), max=(10.0, 3.0, 8.0)),
        capacity=50,
        spawn=[(5.0, 0.0, 4.0)],
        obstacles=[Box(min=(1.0, 0.0, 1.0), max=(2.0, 1.0, 2.0))],
    )
    room = Room(
        id="consult-1",
        name="Consultation 1",
        kind="consultation",
        bounds=Box(min=(10.0, 0.0, 0.0), max=(15.0, 3.0, 5.0)),
        capacity=4,
        spawn=[(12.0, 0.0, 2.0)],
        enter=["patient", "clinician"],
        appointment=True,
    )
    door = Door(id="lobby-consult-1", a="lobby", b="consult-1", a_at=(9.5, 2.5), b_at=(10.5, 2.5))
    return Layout(name="vector clinic", lobby="lobby", rooms=[lobby, room], doors=[door])


def _message_vectors() -> list[dict[str, object]]:
    body = quant.encode_bodies(_edge_poses()[1:2]).tobytes()
    me = AvatarInfo(id=1, role="clinician", label="Dr Vector")
    other = AvatarInfo(id=2, role="patient", label="Patient 2")
    messages: list[protocol.Tagged] = [
        protocol.Welcome(
            session="s-1",
            you=me,
            tick_hz=20,
            room="lobby",
            layout=_layout(),
            resume_grace_s=30.0,
            server_time=12.5,
        ),
        protocol.Snapshot(
            tick=3, room="lobby", avatars=[other], poses=b"\x02\x00" + body, epoch=4, you=body
        ),
        protocol.Delta(tick=4, server_time=12.55, entered=[], left=[9], poses=b""),
        protocol.Placed(epoch=5, room="consult-1", body=body, reason="door"),
        protocol.Correction(epoch=6, room="lobby", body=body, reason="too_fast"),
        protocol.ChatMessage(
            room="lobby", avatar=2, label="Patient 2", text="héllo", server_time=13.0
        ),
        protocol.Presence(room="lobby", joined=[other], left=[], full=True),
        protocol.Error(code="too_far", message="you are not close enough to that door"),
        protocol.Pong(nonce=9, client_time=1.25, server_time=14.0),
        protocol.Hello(
            token="not-a-token",  # noqa: S106
            client="webxr",
            version=1,
            session="s-1",
        ),
        protocol.Pose(epoch=4, body=body, seq=17),
        protocol.MoveTo(x=2.5, z=3.25),
        protocol.Chat(text="hi"),
        *_clinical_messages(me, other),
    ]
    return [
        {"tag": type(m).__struct_config__.tag, "hex": protocol.encode(m).hex()} for m in messages
    ]


def _record_view() -> rv.RecordView:
    """A synthetic view: a reading, a panel with components, an empty and a cut category."""
    return rv.RecordView(
        patient="synthetic-1",
        included=["demographics", "vital_signs", "conditions", "allergies"],
        demographics=rv.Demographics(name="Test Person", gender="other", birth_date="1990-01-02"),
        vital_signs=[
            rv.VitalSign("8867-4", "Heart rate", "2020-03-06T20:20:23-08:00", 72.5, "/min"),
            rv.VitalSign(
                "85354-9",
                "Blood pressure panel",
                "2020-03-06T20:20:23-08:00",
                components=[
                    rv.Quantity("Systolic blood pressure", 121.0, "mm[Hg]"),
                    rv.Quantity("Diastolic blood pressure", 79.0, "mm[Hg]"),
                ],
            ),
        ],
        conditions=[rv.ConditionItem("1", "Cough", "2020-03-01", clinical_status="resolved")],
        truncated=["conditions"],
    )


def _clinical_messages(me: AvatarInfo, other: AvatarInfo) -> list[protocol.Tagged]:
    summary = protocol.ConsentSummary(
        "world-1", 2, "active", ["vital_signs"], "TREAT", "Dr Vector", 1767225600000
    )
    disclosure = protocol.Disclosure(
        1767222000000, "access", "Dr Vector", "clinician", ["vital_signs"], "ETREAT", "permit", True
    )
    return [
        protocol.RecordShown(7, other.id, me, _record_view(), "Consent/world-1/_history/1"),
        protocol.RecordDenied(8, "denied", "access to this record is not permitted"),
        protocol.RecordPurge(other.id),
        protocol.ConsentResult(9, True, "bg-1", status="emergency", end_ms=1767226500000),
        protocol.ConsentState(10, [summary], [disclosure]),
        protocol.RecordRequest(1, other.id, ["vital_signs", "conditions"]),
        protocol.ConsentGrant(2, ["vital_signs"], None, "TREAT", 900),
        protocol.ConsentRevoke(3, "world-1"),
        protocol.ConsentQuery(4),
        protocol.BreakGlass(5, other.id, "unconscious on arrival", 1800),
        protocol.Admit(other.id),
    ]


def main() -> None:
    vectors = {
        "about": "generated by scripts/make_vectors.py from metaworld.quant and metaworld.protocol",
        "poses": _pose_vectors(),
        "records": _records_vector(),
        "messages": _message_vectors(),
    }
    # One vector per line keeps the file readable and its diffs small.
    sys.stdout.write("{\n")
    for i, (key, value) in enumerate(vectors.items()):
        sep = "," if i < len(vectors) - 1 else ""
        if isinstance(value, list):
            rows = ",\n  ".join(json.dumps(row) for row in value)
            sys.stdout.write(f' "{key}": [\n  {rows}\n ]{sep}\n')
        else:
            sys.stdout.write(f' "{key}": {json.dumps(value)}{sep}\n')
    sys.stdout.write("}\n")


if __name__ == "__main__":
    main()
