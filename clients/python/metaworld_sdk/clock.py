"""Estimate the server's clock from Ping/Pong round trips.

A Pong carries the client's send time back with the server's time at reply. If the
reply took half of the round trip, the server clock read `server_time` at local time
`sent + rtt / 2`, so ``offset = server_time - (sent + rtt / 2)``. That assumption is
closest to true for the fastest round trips, which waited least in queues on either
side, so the estimator keeps a window of recent samples and trusts the one with the
lowest round-trip time. Its error is at most half that round trip.

Sans-io: feed it times from whatever clock the client uses (the SDK uses
`trio.current_time()`, which is also what it puts in Ping.client_time).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

from metaworld import protocol

WINDOW: Final = 16  # recent samples considered; at one ping per second, 16 s of history


@dataclass(frozen=True, slots=True)
class ClockSample:
    sent: float  # local time the Ping left, seconds
    received: float  # local time the Pong arrived, seconds
    server_time: float  # the server's clock when it replied, seconds

    @property
    def rtt(self) -> float:
        return self.received - self.sent

    @property
    def offset(self) -> float:
        """Server time minus local time, assuming the reply took half the round trip."""
        return self.server_time - (self.sent + self.rtt / 2.0)


class ClockEstimator:
    """Server time minus local time, from the lowest-RTT of the recent samples."""

    def __init__(self, window: int = WINDOW) -> None:
        if window < 1:
            raise ValueError("the window holds at least one sample")
        self._samples: deque[ClockSample] = deque(maxlen=window)
        self.latest: ClockSample | None = None

    def observe(self, sent: float, received: float, server_time: float) -> ClockSample | None:
        """Add one round trip; one that ends before it starts is ignored (None)."""
        if received < sent:
            return None
        sample = ClockSample(sent, received, server_time)
        self._samples.append(sample)
        self.latest = sample
        return sample

    def observe_pong(self, pong: protocol.Pong, received: float) -> ClockSample | None:
        """Add the round trip a Pong closes (its client_time is the Ping's send time)."""
        return self.observe(pong.client_time, received, pong.server_time)

    @property
    def best(self) -> ClockSample | None:
        """The sample with the lowest round-trip time in the window."""
        return min(self._samples, key=lambda s: s.rtt, default=None)

    @property
    def offset(self) -> float | None:
        """Server time minus local time in seconds, or None before the first sample."""
        best = self.best
        return None if best is None else best.offset

    @property
    def error_bound(self) -> float | None:
        """The offset is right to within this many seconds (half the best round trip)."""
        best = self.best
        return None if best is None else best.rtt / 2.0

    @property
    def rtt(self) -> float | None:
        """The latest round-trip time in seconds (what an operator calls ping)."""
        return None if self.latest is None else self.latest.rtt

    def server_time(self, local: float) -> float:
        """Local time to server time; raises LookupError before the first sample."""
        offset = self.offset
        if offset is None:
            raise LookupError("no Pong observed yet")
        return local + offset

    def local_time(self, server: float) -> float:
        """Server time to local time; raises LookupError before the first sample."""
        return server - self.server_time(0.0)
