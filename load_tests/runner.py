"""Running a swarm: in this process or in worker processes, with the server scraped and
a one-line progress display, ending in one merged SwarmResult.

With ``procs > 1``, and always with the herd driver (its loop is not Trio's, and it
should not share a process with the scraper), each worker is a fresh interpreter (the
spawn start method; forking a running Trio loop is not safe) that runs every procs-th
bot and sends progress snapshots and, at the end, its SwarmResult over a multiprocessing
queue. Latency is measured between bots of the same process, since only they share a clock.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final

import trio
from rich.console import Console
from rich.live import Live
from rich.text import Text

from load_tests.scrape import Scraper
from load_tests.stats import SwarmResult
from load_tests.swarm import TEARDOWN_S, Swarm, SwarmConfig

log = logging.getLogger("metaworld.load.runner")

WORKER_START_S: Final = 30.0  # a spawned worker imports numpy, trio and the SDK first
Snapshot = dict[str, Any]


@dataclass
class Run:
    """What one run produced, before it becomes a report."""

    config: SwarmConfig
    result: SwarmResult
    samples: Scraper | None
    started_wall: float
    ended_wall: float
    metrics_url: str | None
    procs: int = 1
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    notes: list[str] = field(default_factory=list)


class ProgressLine:
    """connected, failed, elapsed, latency p50 and download rate, on one updated line."""

    def __init__(self, total: int, duration_s: float, console: Console | None = None) -> None:
        self.total = total
        self.duration_s = duration_s
        self.console = console or Console(stderr=True)
        self.live: Live | None = None
        self._last: tuple[float, int] | None = None
        self._rate = 0.0
        self._printed = 0.0

    def __enter__(self) -> ProgressLine:
        if self.console.is_terminal:
            self.live = Live(Text(""), console=self.console, refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def update(self, snapshot: Snapshot) -> None:
        now = time.monotonic()
        if self._last is not None and now > self._last[0]:
            per_s = (snapshot["bytes_in"] - self._last[1]) / (now - self._last[0])
            self._rate = per_s / max(1, snapshot["connected"]) / 1000.0
        self._last = (now, snapshot["bytes_in"])
        p50 = snapshot.get("latency_p50")
        text = (
            f"connected {snapshot['connected']:>4}/{self.total}  "
            f"failed {snapshot['failed']:>3}  "
            f"elapsed {snapshot['elapsed']:5.1f}/{self.duration_s:.0f} s  "
            f"latency p50 {'-' if p50 is None else f'{p50:5.1f}'} ms  "
            f"down {self._rate:6.1f} kB/s per client"
            + ("  [measuring]" if snapshot.get("measuring") else "")
        )
        if self.live is not None:
            self.live.update(Text(text))
        elif now - self._printed >= 5.0:
            self._printed = now
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)


def merge_snapshots(snapshots: list[Snapshot]) -> Snapshot:
    p50s = sorted(s["latency_p50"] for s in snapshots if s.get("latency_p50") is not None)
    return {
        "count": sum(s["count"] for s in snapshots),
        "connected": sum(s["connected"] for s in snapshots),
        "failed": sum(s["failed"] for s in snapshots),
        "ready": sum(s["ready"] for s in snapshots),
        "elapsed": max((s["elapsed"] for s in snapshots), default=0.0),
        "latency_p50": p50s[len(p50s) // 2] if p50s else None,
        "bytes_in": sum(s["bytes_in"] for s in snapshots),
        "measuring": all(s.get("measuring") for s in snapshots),
    }


# ---------------------------------------------------------------- in this process


async def run_swarm(
    config: SwarmConfig,
    *,
    procs: int = 1,
    metrics_url: str | None = None,
    progress: Callable[[Snapshot], None] | None = None,
    scrape_every_s: float = 1.0,
) -> Run:
    """Run the whole swarm (and scrape the server) from inside a Trio loop."""
    scraper = Scraper(metrics_url, scrape_every_s) if metrics_url else None
    started = time.time()
    load = _loadavg()
    async with trio.open_nursery() as nursery:
        if scraper is not None:
            nursery.start_soon(scraper.run)
        if procs == 1 and config.driver == "sdk":

            def edge(_: str) -> None:
                if scraper is not None:
                    nursery.start_soon(scraper.scrape_once)

            result = await Swarm(config).run(progress, on_window=edge)
        else:
            result = await _run_workers(config, procs, progress)
        if scraper is not None:
            await scraper.scrape_once()
        nursery.cancel_scope.cancel()
    run = Run(config, result, scraper, started, time.time(), metrics_url, procs, load)
    if scraper is not None and scraper.failures:
        run.notes.append(f"{scraper.failures} metrics scrapes failed: {scraper.last_error}")
    return run


def run_blocking(
    config: SwarmConfig, *, procs: int = 1, metrics_url: str | None = None, show: bool = True
) -> Run:
    """Run the swarm from synchronous code, with the progress line when `show`."""
    interval = min(1.0, max(0.25, config.duration_s / 20.0))
    with ProgressLine(config.count, config.duration_s) as line:
        return trio.run(
            lambda: run_swarm(
                config,
                procs=procs,
                metrics_url=metrics_url,
                progress=line.update if show else None,
                scrape_every_s=interval,
            )
        )


def _loadavg() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (0.0, 0.0, 0.0)


# ---------------------------------------------------------------- worker processes


def _worker(config: SwarmConfig, index: int, out: Any) -> None:
    """Entry point of one worker process."""
    logging.basicConfig(level=logging.WARNING)
    _die_with_parent()

    def progress(snapshot: Snapshot) -> None:
        out.put(("progress", index, snapshot))

    try:
        if config.driver == "herd":
            from load_tests.herd import Herd

            result = Herd(config).run(progress, 0.5)
        else:
            result = trio.run(lambda: Swarm(config).run(progress, 0.5))
    except BaseException as exc:
        out.put(("error", index, f"{type(exc).__name__}: {exc}"))
        raise
    out.put(("result", index, result))


def _die_with_parent(every_s: float = 0.5) -> None:
    """End this worker at once when the process that started it is gone (killed, say):
    a run must end by itself, and nobody would read its results. The parent's pid comes
    from multiprocessing, not from `getppid` now: the parent may already have died while
    this worker was still importing."""
    known = mp.parent_process()
    parent = known.pid if known is not None and known.pid is not None else os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


async def _run_workers(
    config: SwarmConfig, procs: int, progress: Callable[[Snapshot], None] | None
) -> SwarmResult:
    ctx = mp.get_context("spawn")
    inbox = ctx.Queue()
    shares = [
        replace(config, slots=tuple(range(i, config.count, procs)), processes=procs)
        for i in range(procs)
    ]
    workers = [
        ctx.Process(target=_worker, args=(share, i, inbox), daemon=True, name=f"bots-{i}")
        for i, share in enumerate(shares)
    ]
    for worker in workers:
        worker.start()
    results: dict[int, SwarmResult] = {}
    latest: dict[int, Snapshot] = {}
    limit = trio.current_time() + config.duration_s + TEARDOWN_S + WORKER_START_S
    with trio.move_on_at(limit):
        while len(results) < procs:
            try:
                kind, index, payload = await trio.to_thread.run_sync(
                    inbox.get, True, 0.5, abandon_on_cancel=True
                )
            except queue.Empty:
                _note_dead(workers, shares, results)
                continue
            if kind == "progress":
                latest[index] = payload
                if progress is not None:
                    progress(merge_snapshots(list(latest.values())))
            elif kind == "result":
                results[index] = payload
            else:
                log.warning("worker %d failed: %s", index, payload)
                results[index] = _all_failed(shares[index], "worker crashed")
    for i, worker in enumerate(workers):
        await trio.to_thread.run_sync(worker.join, 5.0)
        if worker.is_alive():
            worker.terminate()
        if i not in results:
            results[i] = _all_failed(shares[i], "worker gave no result")
    merged = SwarmResult(processes=0)
    for i in sorted(results):
        merged.merge(results[i])
    return merged


def _note_dead(
    workers: list[Any], shares: list[SwarmConfig], results: dict[int, SwarmResult]
) -> None:
    for i, worker in enumerate(workers):
        if i not in results and worker.exitcode is not None:
            results[i] = _all_failed(shares[i], f"worker exited with {worker.exitcode}")


def _all_failed(share: SwarmConfig, reason: str) -> SwarmResult:
    n = len(share.my_slots())
    return SwarmResult(count=n, failed=n, failures={reason: n})
