"""Pose quantization: the compact binary form of head and hand poses on the wire.

A pose is three rigid transforms (head, left hand, right hand). On the wire each position
is three unsigned 16-bit millimetre offsets from the room's minimum corner, and each
orientation is a "smallest three" quaternion: the largest component is dropped (its index
is sent instead) and the other three, which lie in [-1/sqrt(2), 1/sqrt(2)], are sent as
fixed-point numbers. The head orientation gets 10 bits per component (32 bits in all);
hands get 7 bits per component (24 bits), since hands need less angular precision.

Layout of one pose body (28 bytes, little-endian)::

    offset size  field
    0      6     head position      x, y, z: uint16 millimetres from the room minimum
    6      4     head orientation   uint32: index(2 bits) << 30 | a << 20 | b << 10 | c
    10     6     left position      as head position
    16     3     left orientation   uint24: index(2 bits) << 21 | a << 14 | b << 7 | c
    19     6     right position
    25     3     right orientation

A record on the downlink is the avatar id (uint16) followed by the body: 30 bytes.

All functions work on numpy arrays so that the tick can encode every avatar at once.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

BODY_SIZE: Final = 28  # bytes in one pose body
RECORD_SIZE: Final = 30  # bytes in one downlink record (avatar id + body)
MM_PER_M: Final = 1000.0
MAX_EXTENT_M: Final = 65.535  # largest room side a uint16 millimetre offset can hold

_HEAD_BITS: Final = 10
_HAND_BITS: Final = 7
_HALF_SQRT2: Final = 1.0 / math.sqrt(2.0)

BODY_DTYPE: Final = np.dtype(
    [
        ("head_pos", "<u2", (3,)),
        ("head_rot", "<u4"),
        ("left_pos", "<u2", (3,)),
        ("left_rot", "u1", (3,)),
        ("right_pos", "<u2", (3,)),
        ("right_rot", "u1", (3,)),
    ]
)
RECORD_DTYPE: Final = np.dtype([("id", "<u2"), ("body", BODY_DTYPE)])
assert BODY_DTYPE.itemsize == BODY_SIZE
assert RECORD_DTYPE.itemsize == RECORD_SIZE

FloatArray = npt.NDArray[np.float64]
# A batch of poses as floats: shape (n, 3, 7) = (avatar, part, [x y z qx qy qz qw]).
# Parts are ordered head, left hand, right hand. Positions are room-local metres.
POSE_PARTS: Final = 3
POSE_WIDTH: Final = 7


def quantize_positions(local_m: FloatArray) -> npt.NDArray[np.uint16]:
    """Room-local metres to uint16 millimetres, clamped to the representable range."""
    mm = np.rint(local_m * MM_PER_M)
    return np.clip(mm, 0, 65535).astype(np.uint16)


def dequantize_positions(mm: npt.NDArray[np.uint16]) -> FloatArray:
    return mm.astype(np.float64) / MM_PER_M


def _smallest_three(quats: FloatArray, bits: int) -> npt.NDArray[np.uint32]:
    """Pack unit quaternions (n, 4) into 2 + 3*bits bit integers."""
    norm = np.linalg.norm(quats, axis=1, keepdims=True)
    norm[norm == 0.0] = 1.0
    q = quats / norm
    q[np.all(quats == 0.0, axis=1)] = (0.0, 0.0, 0.0, 1.0)
    largest = np.argmax(np.abs(q), axis=1)
    rows = np.arange(len(q))
    sign = np.where(q[rows, largest] < 0.0, -1.0, 1.0)
    q = q * sign[:, None]
    steps = (1 << bits) - 1
    packed = largest.astype(np.uint32)
    for slot in range(3):
        # The three kept components, in index order, skipping the largest one.
        comp = q[rows, (largest + 1 + slot) % 4]
        level = np.rint((comp + _HALF_SQRT2) / (2.0 * _HALF_SQRT2) * steps)
        packed = (packed << np.uint32(bits)) | np.clip(level, 0, steps).astype(np.uint32)
    return np.asarray(packed, dtype=np.uint32)


def _unpack_smallest_three(packed: npt.NDArray[np.uint32], bits: int) -> FloatArray:
    steps = (1 << bits) - 1
    mask = np.uint32(steps)
    comps = np.empty((len(packed), 3))
    value = packed.astype(np.uint32)
    for slot in (2, 1, 0):
        comps[:, slot] = (value & mask).astype(np.float64) / steps * 2.0 * _HALF_SQRT2
        comps[:, slot] -= _HALF_SQRT2
        value = value >> np.uint32(bits)
    largest = value.astype(np.int64) & 3  # callers reject bodies with bits above the index
    rows = np.arange(len(packed))
    out = np.zeros((len(packed), 4))
    for slot in range(3):
        out[rows, (largest + 1 + slot) % 4] = comps[:, slot]
    out[rows, largest] = np.sqrt(np.clip(1.0 - np.sum(comps * comps, axis=1), 0.0, 1.0))
    return out


def _u24_to_bytes(values: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint8]:
    return np.stack([(values >> np.uint32(s)) & np.uint32(0xFF) for s in (0, 8, 16)], axis=1)


def _bytes_to_u24(parts: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint32]:
    p = parts.astype(np.uint32)
    return np.asarray(p[:, 0] | (p[:, 1] << np.uint32(8)) | (p[:, 2] << np.uint32(16)))


def encode_bodies(poses: FloatArray) -> npt.NDArray[np.void]:
    """Encode float poses of shape (n, 3, 7), room-local, into n pose bodies."""
    out = np.zeros(len(poses), dtype=BODY_DTYPE)
    out["head_pos"] = quantize_positions(poses[:, 0, :3])
    out["head_rot"] = _smallest_three(poses[:, 0, 3:], _HEAD_BITS)
    for part, name in ((1, "left"), (2, "right")):
        out[f"{name}_pos"] = quantize_positions(poses[:, part, :3])
        out[f"{name}_rot"] = _u24_to_bytes(_smallest_three(poses[:, part, 3:], _HAND_BITS))
    return out


def decode_bodies(bodies: npt.NDArray[np.void]) -> FloatArray:
    """Decode pose bodies back into float poses of shape (n, 3, 7), room-local metres."""
    out = np.empty((len(bodies), POSE_PARTS, POSE_WIDTH))
    out[:, 0, :3] = dequantize_positions(bodies["head_pos"])
    out[:, 0, 3:] = _unpack_smallest_three(bodies["head_rot"], _HEAD_BITS)
    for part, name in ((1, "left"), (2, "right")):
        out[:, part, :3] = dequantize_positions(bodies[f"{name}_pos"])
        out[:, part, 3:] = _unpack_smallest_three(_bytes_to_u24(bodies[f"{name}_rot"]), _HAND_BITS)
    return out


def valid_bodies(bodies: npt.NDArray[np.void]) -> npt.NDArray[np.bool_]:
    """Which bodies are well formed: a hand orientation's 24 bits leave one bit above
    the 2-bit index, and it must be zero (a head's 32 bits have none to spare)."""
    spare = np.uint8(0x80)
    return np.asarray(
        ((bodies["left_rot"][:, 2] & spare) == 0) & ((bodies["right_rot"][:, 2] & spare) == 0)
    )


def body_from_bytes(data: bytes) -> npt.NDArray[np.void]:
    """One pose body from the wire; raises ValueError when the length is wrong."""
    if len(data) != BODY_SIZE:
        raise ValueError(f"a pose body is {BODY_SIZE} bytes, got {len(data)}")
    return np.frombuffer(data, dtype=BODY_DTYPE, count=1)


def records_from_bytes(data: bytes) -> npt.NDArray[np.void]:
    """Downlink pose records; raises ValueError when the length is not a multiple of 30."""
    if len(data) % RECORD_SIZE:
        raise ValueError(f"pose records come in {RECORD_SIZE}-byte units, got {len(data)} bytes")
    return np.frombuffer(data, dtype=RECORD_DTYPE)
