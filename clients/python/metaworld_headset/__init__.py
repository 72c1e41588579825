"""metaworld headset client: stream a headset's poses into a world server.

Pose sources share one interface (`PoseSource`): a real headset through OpenXR
(`OpenXRSource`, needs the optional pyopenxr), a scripted body (`SimulatedSource`) and a
recorded trace (`ReplaySource`). `Headset` streams one of them into a session; the
`metaworld headset` command (`metaworld_headset.cli`) runs it from a terminal.
"""

from metaworld_headset.headset import Headset, HeadsetError, Neighbour, Status
from metaworld_headset.openxr import OpenXRSource, OpenXRUnavailable
from metaworld_headset.sources import (
    BodySource,
    PoseSource,
    ReplaySource,
    SimulatedSource,
    Start,
)
from metaworld_headset.trace import Trace, TraceError, TraceRecord, TraceWriter, read_trace

__all__ = [
    "BodySource",
    "Headset",
    "HeadsetError",
    "Neighbour",
    "OpenXRSource",
    "OpenXRUnavailable",
    "PoseSource",
    "ReplaySource",
    "SimulatedSource",
    "Start",
    "Status",
    "Trace",
    "TraceError",
    "TraceRecord",
    "TraceWriter",
    "read_trace",
]
