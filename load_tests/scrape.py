"""Reading the server's /metrics page during a run, and summing up a window of it.

The scraper keeps every sample (about one a second) so the report can plot the run;
`server_summary` turns the samples inside the measured window into the report's server
figures: tick-time quantiles from the histogram buckets, the largest p99 gauge reading,
skipped ticks, CPU per client-second and memory.
"""

from __future__ import annotations

import itertools
import logging
import math
import time

import httpx
import msgspec
import trio
from prometheus_client.parser import text_string_to_metric_families

from load_tests.stats import histogram_quantile

log = logging.getLogger("metaworld.load.scrape")

TICK = "metaworld_tick_duration_seconds"
SCRAPE_TIMEOUT_S = 2.0
BUDGET_S = 0.05  # one tick period at the default 20 Hz: a longer tick delays the next


class Sample(msgspec.Struct, frozen=True):
    """The metrics the report uses, read at one moment."""

    at: float  # unix seconds
    tick_bounds: list[float]  # bucket upper bounds in seconds; the last is +Inf
    tick_buckets: list[float]  # cumulative counts
    tick_count: float
    tick_sum: float
    tick_p99: float | None
    skipped: float | None
    cpu_s: float | None
    rss_bytes: float | None
    clients: float | None
    bytes_out: float | None
    avatars: float | None


def parse(text: str, at: float) -> Sample:
    """Pick the report's metrics out of Prometheus text exposition."""
    values: dict[str, float] = {}
    buckets: list[tuple[float, float]] = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == f"{TICK}_bucket":
                buckets.append((float(s.labels["le"]), s.value))
            elif not s.labels:
                values[s.name] = s.value
    buckets.sort()
    return Sample(
        at=at,
        tick_bounds=[b for b, _ in buckets],
        tick_buckets=[c for _, c in buckets],
        tick_count=values.get(f"{TICK}_count", 0.0),
        tick_sum=values.get(f"{TICK}_sum", 0.0),
        tick_p99=values.get("metaworld_tick_duration_p99_seconds"),
        skipped=values.get("metaworld_ticks_skipped_total"),
        cpu_s=values.get("process_cpu_seconds_total"),
        rss_bytes=values.get("process_resident_memory_bytes"),
        clients=values.get("metaworld_connected_clients"),
        bytes_out=values.get("metaworld_bytes_out_total"),
        avatars=values.get("metaworld_avatars"),
    )


class Scraper:
    """Scrapes one /metrics URL at a fixed interval until cancelled."""

    def __init__(self, url: str, interval_s: float = 1.0) -> None:
        self.url = url
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self.failures = 0
        self.last_error: str | None = None
        self._client: httpx.AsyncClient | None = None

    async def scrape(self, client: httpx.AsyncClient) -> None:
        try:
            response = await client.get(self.url)
            response.raise_for_status()
            self.samples.append(parse(response.text, time.time()))
        except (httpx.HTTPError, ValueError) as exc:
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            if self.failures == 1:
                log.warning("cannot read server metrics at %s: %s", self.url, self.last_error)

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=SCRAPE_TIMEOUT_S) as client:
            self._client = client
            try:
                next_at = trio.current_time()
                while True:
                    await self.scrape(client)
                    next_at += self.interval_s
                    await trio.sleep_until(max(next_at, trio.current_time()))
            finally:
                self._client = None

    async def scrape_once(self) -> None:
        """One more sample now, outside the schedule (at the edges of the window)."""
        if self._client is not None:
            await self.scrape(self._client)
            return
        async with httpx.AsyncClient(timeout=SCRAPE_TIMEOUT_S) as client:
            await self.scrape(client)

    def window(self, start: float, end: float) -> list[Sample]:
        """Samples from the last one at or before `start` to the first at or after `end`."""
        s = sorted(self.samples, key=lambda x: x.at)
        first = max((i for i, x in enumerate(s) if x.at <= start), default=0)
        last = min((i for i, x in enumerate(s) if x.at >= end), default=len(s) - 1)
        return s[first : last + 1]


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def server_summary(samples: list[Sample]) -> dict[str, object]:
    """The report's server figures from the samples of the measured window."""
    if len(samples) < 2:
        return dict.fromkeys(
            (
                "server_tick_ms",
                "skipped_ticks",
                "server_cpu_ms_per_client_s",
                "server_cpu_percent",
                "server_cpu_ms_per_tick",
                "server_rss_mb",
                "server_clients",
            )
        )
    a, b = samples[0], samples[-1]
    span = b.at - a.at
    ticks = b.tick_count - a.tick_count
    tick: dict[str, float | None] | None = None
    if ticks > 0 and a.tick_bounds == b.tick_bounds:
        cumulative = [y - x for x, y in zip(a.tick_buckets, b.tick_buckets, strict=True)]
        bounds = b.tick_bounds
        top = next((bounds[i] for i, c in enumerate(cumulative) if c >= cumulative[-1]), None)
        p99s = [s.tick_p99 for s in samples if s.tick_p99 is not None]
        over = next((i for i, bound in enumerate(bounds) if bound >= BUDGET_S), None)
        tick = {
            "p50": _ms(histogram_quantile(0.50, bounds, cumulative)),
            "p99": _ms(histogram_quantile(0.99, bounds, cumulative)),
            # The histogram only bounds the slowest tick: the top of its bucket.
            "max": _ms(top if top is not None and math.isfinite(top) else bounds[-2]),
            "max_beyond_buckets": top is None or not math.isfinite(top),
            "mean": _ms((b.tick_sum - a.tick_sum) / ticks),
            "p99_gauge_max": _ms(max(p99s)) if p99s else None,
            "ticks": int(ticks),
            "over_50ms": int(cumulative[-1] - cumulative[over]) if over is not None else None,
        }
    clients = [s.clients for s in samples if s.clients is not None]
    mean_clients = sum(clients) / len(clients) if clients else 0.0
    cpu = _delta(a.cpu_s, b.cpu_s)
    rss = [s.rss_bytes for s in samples if s.rss_bytes is not None]
    skipped = _delta(a.skipped, b.skipped)
    return {
        "server_tick_ms": tick,
        "skipped_ticks": None if skipped is None else int(skipped),
        "server_cpu_ms_per_client_s": (
            round(cpu * 1000.0 / (mean_clients * span), 3)
            if cpu is not None and mean_clients > 0 and span > 0
            else None
        ),
        "server_cpu_percent": round(cpu / span * 100.0, 1) if cpu is not None and span else None,
        # CPU, not wall time: on a busy machine this is the figure that stays honest.
        "server_cpu_ms_per_tick": (
            round(cpu * 1000.0 / ticks, 3) if cpu is not None and ticks > 0 else None
        ),
        "server_rss_mb": round(max(rss) / 2**20, 1) if rss else None,
        "server_clients": round(mean_clients, 1),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def series(samples: list[Sample], origin: float) -> list[dict[str, float | None]]:
    """Per-interval figures for plots: mean tick time, the p99 gauge, clients, CPU."""
    rows: list[dict[str, float | None]] = []
    for a, b in itertools.pairwise(samples):
        ticks = b.tick_count - a.tick_count
        span = b.at - a.at
        cpu = _delta(a.cpu_s, b.cpu_s)
        rows.append(
            {
                "t": round(b.at - origin, 3),
                "tick_mean_ms": _ms((b.tick_sum - a.tick_sum) / ticks) if ticks > 0 else None,
                "tick_p99_ms": _ms(b.tick_p99),
                "ticks_per_s": round(ticks / span, 2) if span > 0 else None,
                "clients": b.clients,
                "cpu_percent": round(cpu / span * 100.0, 1) if cpu is not None and span else None,
                "rss_mb": round(b.rss_bytes / 2**20, 1) if b.rss_bytes is not None else None,
            }
        )
    return rows
