"""The clock-offset estimator, on made-up round trips with known true offsets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metaworld import protocol
from metaworld_sdk.clock import ClockEstimator, ClockSample

TRUE_OFFSET = 1234.5  # server clock minus local clock, seconds


def round_trip(sent: float, up: float, down: float) -> tuple[float, float, float]:
    """A Ping sent at local time `sent`, `up` s to reach the server, `down` s back."""
    server_time = sent + up + TRUE_OFFSET
    return sent, sent + up + down, server_time


def test_one_symmetric_round_trip_gives_the_exact_offset():
    sample = ClockSample(*round_trip(10.0, 0.02, 0.02))
    assert math.isclose(sample.rtt, 0.04) and math.isclose(sample.offset, TRUE_OFFSET)


def test_the_lowest_rtt_sample_wins_over_queued_ones():
    clock = ClockEstimator()
    rng = np.random.default_rng(5)
    for i in range(12):
        # Queues add delay to one direction only, which skews the offset of that sample.
        up, down = 0.01 + rng.exponential(0.05), 0.01 + rng.exponential(0.05)
        clock.observe(*round_trip(float(i), up, down))
    clock.observe(*round_trip(20.0, 0.004, 0.006))  # a quiet moment
    assert abs(clock.offset - TRUE_OFFSET) <= 0.0011  # the quiet one: 1 ms asymmetry
    assert math.isclose(clock.error_bound, 0.005)
    assert abs(clock.offset - TRUE_OFFSET) <= clock.error_bound
    assert math.isclose(clock.rtt, 0.01)


def test_old_samples_leave_the_window():
    clock = ClockEstimator(window=4)
    clock.observe(*round_trip(0.0, 0.001, 0.001))  # best ever, but soon too old
    for i in range(4):
        clock.observe(*round_trip(1.0 + i, 0.05, 0.03))
    assert math.isclose(clock.best.rtt, 0.08)
    assert abs(clock.offset - TRUE_OFFSET) <= 0.04


def test_time_conversions_and_pongs():
    clock = ClockEstimator()
    with pytest.raises(LookupError):
        clock.server_time(0.0)
    assert clock.offset is None and clock.rtt is None and clock.error_bound is None
    sent, received, server_time = round_trip(3.0, 0.01, 0.01)
    pong = protocol.Pong(nonce=1, client_time=sent, server_time=server_time)
    assert clock.observe_pong(pong, received) is not None
    assert math.isclose(clock.server_time(5.0), 5.0 + TRUE_OFFSET)
    assert math.isclose(clock.local_time(5.0 + TRUE_OFFSET), 5.0)
    assert clock.observe(10.0, 9.0, 0.0) is None  # received before sent: ignored
    with pytest.raises(ValueError):
        ClockEstimator(window=0)
