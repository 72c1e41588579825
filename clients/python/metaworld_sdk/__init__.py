"""metaworld client SDK: connect to a world server from Python, on Trio.

    async with metaworld_sdk.connect("ws://127.0.0.1:8765/", token) as client:
        await client.send_pose(client.pose)
        await client.wait_for(lambda c: len(c.view) > 0, timeout=5)

Tests, bots and the headset client all use this package.
"""

from metaworld_sdk.client import (
    Client,
    ClientClosed,
    RemoteAvatar,
    connect,
    neutral_pose,
)
from metaworld_sdk.clock import ClockEstimator, ClockSample
from metaworld_sdk.interp import PoseBuffer, ViewInterpolator

__all__ = [
    "Client",
    "ClientClosed",
    "ClockEstimator",
    "ClockSample",
    "PoseBuffer",
    "RemoteAvatar",
    "ViewInterpolator",
    "connect",
    "neutral_pose",
]
