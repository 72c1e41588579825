import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from metaworld import quant


def random_poses(rng, n):
    poses = np.empty((n, 3, 7))
    poses[:, :, :3] = rng.uniform(0, 65.0, (n, 3, 3))
    q = rng.normal(size=(n, 3, 4))
    poses[:, :, 3:] = q / np.linalg.norm(q, axis=2, keepdims=True)
    return poses


def angle_between(q1, q2):
    dot = np.abs(np.sum(q1 * q2, axis=-1)).clip(0, 1)
    return 2 * np.degrees(np.arccos(dot))


def test_sizes_are_as_documented():
    assert quant.BODY_SIZE == 28
    assert quant.RECORD_SIZE == 30
    assert len(quant.encode_bodies(random_poses(np.random.default_rng(0), 1)).tobytes()) == 28


def test_round_trip_is_within_quantization_error():
    poses = random_poses(np.random.default_rng(1), 5000)
    back = quant.decode_bodies(quant.encode_bodies(poses))
    assert np.max(np.abs(back[:, :, :3] - poses[:, :, :3])) <= 0.0005 + 1e-12
    assert np.max(angle_between(back[:, 0, 3:], poses[:, 0, 3:])) < 0.3  # head: 10 bits
    assert np.max(angle_between(back[:, 1:, 3:], poses[:, 1:, 3:])) < 2.5  # hands: 7 bits


def test_positions_clamp_to_the_room():
    poses = random_poses(np.random.default_rng(3), 2)
    poses[0, 0, :3] = (-5.0, 0.0, 70.0)
    back = quant.decode_bodies(quant.encode_bodies(poses))
    assert tuple(back[0, 0, :3]) == (0.0, 0.0, 65.535)


def test_zero_quaternion_becomes_identity():
    poses = random_poses(np.random.default_rng(4), 1)
    poses[0, 0, 3:] = 0.0
    back = quant.decode_bodies(quant.encode_bodies(poses))
    assert np.allclose(back[0, 0, 3:], (0, 0, 0, 1), atol=1e-3)


@settings(max_examples=300)
@given(
    arrays(np.float64, (4,), elements=st.floats(-1, 1)).filter(lambda q: np.linalg.norm(q) > 0.1)
)
def test_any_orientation_survives(q):
    poses = np.zeros((1, 3, 7))
    poses[0, :, 3:] = q / np.linalg.norm(q)
    back = quant.decode_bodies(quant.encode_bodies(poses))
    assert angle_between(back[0, 0, 3:], poses[0, 0, 3:]) < 0.3


def test_wrong_lengths_are_value_errors():
    for bad in (b"", b"x" * 27, b"x" * 29):
        try:
            quant.body_from_bytes(bad)
        except ValueError:
            continue
        raise AssertionError("accepted a body of the wrong size")
    try:
        quant.records_from_bytes(b"x" * 31)
    except ValueError:
        pass
    else:
        raise AssertionError("accepted records of the wrong size")
