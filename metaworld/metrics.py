"""Prometheus metrics of one server, in their own registry (no global state).

Per-message traffic is counted in plain integers and handed to the Prometheus counters
once per tick (`flush`): a labelled counter increment costs more than a small message.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.process_collector import ProcessCollector

_TICK_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25)
_WINDOW = 1200  # ticks kept for the rolling tick-time quantiles (a minute at 20 Hz)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        ProcessCollector(registry=reg)
        self.clients = Gauge("metaworld_connected_clients", "Open client connections", registry=reg)
        self.avatars = Gauge("metaworld_avatars", "Avatars in the world", registry=reg)
        self.tick_seconds = Histogram(
            "metaworld_tick_duration_seconds",
            "Time to run one tick",
            buckets=_TICK_BUCKETS,
            registry=reg,
        )
        self.tick_p99 = Gauge(
            "metaworld_tick_duration_p99_seconds",
            "p99 tick time over the last minute",
            registry=reg,
        )
        self.ticks_skipped = Counter(
            "metaworld_ticks_skipped", "Ticks skipped because the loop fell behind", registry=reg
        )
        self.messages_in = Counter(
            "metaworld_messages_in", "Messages received", ["type"], registry=reg
        )
        self.messages_out = Counter("metaworld_messages_out", "Messages sent", registry=reg)
        self.bytes_in = Counter("metaworld_bytes_in", "Payload bytes received", registry=reg)
        self.bytes_out = Counter("metaworld_bytes_out", "Payload bytes sent", registry=reg)
        self.rejected = Counter(
            "metaworld_rejected_messages",
            "Messages or connections refused",
            ["reason"],
            registry=reg,
        )
        self._recent: deque[float] = deque(maxlen=_WINDOW)
        self._in: Tally[type] = Tally()
        self._bytes_in = 0
        self._out = 0
        self._bytes_out = 0

    def received(self, kind: type, size: int) -> None:
        self._in[kind] += 1
        self._bytes_in += size

    def sent(self, messages: int, size: int) -> None:
        self._out += messages
        self._bytes_out += size

    def flush(self) -> None:
        """Move the traffic counted since the last flush into the Prometheus counters."""
        for kind, count in self._in.items():
            self.messages_in.labels(kind.__name__.lower()).inc(count)
        self.bytes_in.inc(self._bytes_in)
        self.messages_out.inc(self._out)
        self.bytes_out.inc(self._bytes_out)
        self._in.clear()
        self._bytes_in = self._out = self._bytes_out = 0

    def observe_tick(self, seconds: float) -> None:
        self.tick_seconds.observe(seconds)
        self._recent.append(seconds)
        if len(self._recent) % 20 == 0 or len(self._recent) < 20:
            ordered = sorted(self._recent)
            self.tick_p99.set(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))])

    def render(self) -> bytes:
        return generate_latest(self.registry)
