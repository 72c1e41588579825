"""What a swarm measures: pose-to-peer latency, per-client traffic, and event counts.

Latency works because the server forwards each accepted pose body byte for byte. A
sending bot notes the 30-byte record its peers will receive (its avatar id, then the
body) with the send time, in a table shared by every bot of the process; a receiving bot
looks each arriving record up in that table. Bots of one process share trio's clock, so
the difference is the latency. A receiver counts only the first arrival of a record, so
a pose repeated to a far viewer is not counted again with a larger delay.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, deque
from typing import Final

import msgspec

BIN_MS: Final = 0.1  # latency histogram resolution
MAX_MS: Final = 5000.0  # latencies beyond this land in the last bin
_BINS: Final = int(MAX_MS / BIN_MS) + 1
SENT_HORIZON_S: Final = 5.0  # a record not seen within this long is forgotten


class LatencyHistogram(msgspec.Struct):
    """Fixed 0.1 ms bins: cheap to fill one sample at a time and to merge."""

    counts: list[int] = msgspec.field(default_factory=lambda: [0] * _BINS)
    total: int = 0
    sum_ms: float = 0.0
    max_ms: float = 0.0

    def add(self, ms: float) -> None:
        self.counts[min(_BINS - 1, max(0, int(ms / BIN_MS)))] += 1
        self.total += 1
        self.sum_ms += ms
        self.max_ms = max(self.max_ms, ms)

    def merge(self, other: LatencyHistogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.total += other.total
        self.sum_ms += other.sum_ms
        self.max_ms = max(self.max_ms, other.max_ms)

    def quantile(self, q: float) -> float | None:
        """The q-quantile in ms (midpoint of its bin), or None without samples."""
        if not self.total:
            return None
        rank = q * (self.total - 1)
        seen = 0
        for i, n in enumerate(self.counts):
            seen += n
            if seen > rank:
                return (i + 0.5) * BIN_MS
        return MAX_MS

    def summary(self) -> dict[str, float | int | None]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 2)

        return {
            "p50": r(self.quantile(0.50)),
            "p95": r(self.quantile(0.95)),
            "p99": r(self.quantile(0.99)),
            "max": r(self.max_ms) if self.total else None,
            "mean": r(self.sum_ms / self.total) if self.total else None,
            "count": self.total,
        }


class LatencyTracker:
    """Send times of pose records, shared by all bots of one process."""

    def __init__(self) -> None:
        self._sent: dict[bytes, float] = {}
        # Send order, for pruning: finding a dict's oldest key after many deletions from
        # its front scans every deleted slot, which made pruning most of a bot's CPU.
        self._order: deque[tuple[float, bytes]] = deque()
        self.histogram = LatencyHistogram()
        self.recent: deque[float] = deque(maxlen=500)  # for the live display
        self.measuring = False

    def sent(self, record: bytes, now: float) -> None:
        # Keep the first send of a record: a repeat is the same pose, not a new one.
        if record not in self._sent:
            self._sent[record] = now
            self._order.append((now, record))

    def received(self, record: bytes, now: float) -> None:
        sent = self._sent.get(record)
        if sent is None:
            return
        ms = (now - sent) * 1000.0
        self.recent.append(ms)
        if self.measuring:
            self.histogram.add(ms)

    def prune(self, now: float) -> None:
        """Forget records older than the horizon."""
        horizon = now - SENT_HORIZON_S
        order, sent = self._order, self._sent
        while order and order[0][0] < horizon:
            del sent[order.popleft()[1]]

    def __len__(self) -> int:
        return len(self._sent)


class Traffic(msgspec.Struct, frozen=True):
    """A bot's payload counters at one moment (WebSocket framing not included)."""

    at: float  # seconds, trio clock
    bytes_in: int
    bytes_out: int
    messages_in: int
    messages_out: int


class ClientRates(msgspec.Struct, frozen=True):
    """One bot's traffic over the measured window, per second."""

    slot: int
    role: str
    down_bytes: float
    up_bytes: float
    down_msgs: float
    up_msgs: float

    @staticmethod
    def between(slot: int, role: str, a: Traffic, b: Traffic) -> ClientRates | None:
        span = b.at - a.at
        if span <= 0:
            return None
        return ClientRates(
            slot,
            role,
            (b.bytes_in - a.bytes_in) / span,
            (b.bytes_out - a.bytes_out) / span,
            (b.messages_in - a.messages_in) / span,
            (b.messages_out - a.messages_out) / span,
        )


class SwarmResult(msgspec.Struct):
    """Everything one process of the swarm measured; results of processes merge."""

    count: int = 0  # bot slots run
    connected: int = 0  # slots that got a Welcome at least once
    failed: int = 0  # slots that never connected or were cut off for good
    sessions: int = 0  # sessions opened (clinic-day patients come back as new ones)
    reconnects: int = 0  # dropped connections the SDK resumed
    ready: int = 0  # slots that reached their steady behaviour
    failures: dict[str, int] = msgspec.field(default_factory=dict)
    corrections: dict[str, int] = msgspec.field(default_factory=dict)
    errors: dict[str, int] = msgspec.field(default_factory=dict)
    events: dict[str, int] = msgspec.field(default_factory=dict)  # admissions, visits, chats
    latency: LatencyHistogram = msgspec.field(default_factory=LatencyHistogram)
    clients: list[ClientRates] = msgspec.field(default_factory=list)
    window_wall: tuple[float, float] = (0.0, 0.0)  # unix seconds
    window_s: float = 0.0
    cpu_s: float = 0.0  # this process's CPU time over the window
    processes: int = 1

    def merge(self, other: SwarmResult) -> None:
        for name in ("count", "connected", "failed", "sessions", "reconnects", "ready"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("failures", "corrections", "errors", "events"):
            merged = Counter(getattr(self, name))
            merged.update(getattr(other, name))
            setattr(self, name, dict(merged))
        self.latency.merge(other.latency)
        self.clients += other.clients
        if other.window_s:
            if not self.window_s:
                self.window_wall = other.window_wall
            else:
                self.window_wall = (
                    max(self.window_wall[0], other.window_wall[0]),
                    min(self.window_wall[1], other.window_wall[1]),
                )
            self.window_s = max(self.window_s, other.window_s)
        self.cpu_s += other.cpu_s
        self.processes += other.processes


def quantile(values: list[float], q: float) -> float | None:
    """Linear-interpolated quantile of unsorted values, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def spread(values: list[float], digits: int = 1) -> dict[str, float | None]:
    """Median, p95 and mean of per-client values."""

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, digits)

    mean = sum(values) / len(values) if values else None
    return {"median": r(quantile(values, 0.5)), "p95": r(quantile(values, 0.95)), "mean": r(mean)}


def median_of_recent(values: deque[float] | list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def histogram_quantile(q: float, bounds: list[float], cumulative: list[float]) -> float | None:
    """Prometheus-style quantile from cumulative bucket counts (the last bound is +Inf):
    linear within the bucket, the highest finite bound when it falls in +Inf."""
    if not cumulative or cumulative[-1] <= 0:
        return None
    rank = q * cumulative[-1]
    i = bisect.bisect_left(cumulative, rank)
    if i >= len(bounds) - 1:
        return bounds[-2] if len(bounds) > 1 else None
    lower = bounds[i - 1] if i > 0 else 0.0
    below = cumulative[i - 1] if i > 0 else 0.0
    inside = cumulative[i] - below
    if inside <= 0:
        return bounds[i]
    return lower + (bounds[i] - lower) * (rank - below) / inside
