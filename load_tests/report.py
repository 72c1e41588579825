"""Reports of a swarm run: a JSON document, a Markdown page with plots, a console summary.

The JSON keys are described in docs/load-testing.md. Plots are drawn with matplotlib's
Agg backend (no display needed) into PNG files next to the Markdown page.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path
from typing import Any, Final

from load_tests.runner import Run
from load_tests.scrape import series, server_summary
from load_tests.stats import BIN_MS, spread

PLOT_BIN_MS: Final = 0.5
PLOT_MAX_BINS: Final = 4000  # 2 s of latency at 0.5 ms


def machine() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def build_report(run: Run) -> dict[str, Any]:
    """The JSON report of one run."""
    result, config = run.result, run.config
    clients = result.clients
    window = result.window_wall
    samples = run.samples.window(*window) if run.samples is not None and result.window_s else []
    all_samples = run.samples.samples if run.samples is not None else []
    origin = run.started_wall
    corrections = sum(result.corrections.values())
    errors = sum(result.errors.values())
    report: dict[str, Any] = {
        "scenario": config.scenario.name,
        "kind": type(config.scenario).__name__,
        "count": config.count,
        "duration_s": config.duration_s,
        "measured_s": round(result.window_s, 2),
        "rate_hz": config.rate_hz,
        "procs": run.procs,
        "url": config.url,
        "metrics_url": run.metrics_url,
        "date": dt.datetime.fromtimestamp(run.started_wall, dt.UTC).isoformat(timespec="seconds"),
        "machine": {**machine(), "loadavg_before": [round(x, 2) for x in run.load_before]},
        "connected": result.connected,
        "failed": result.failed,
        "failures": result.failures,
        "ready": result.ready,
        "sessions": result.sessions,
        "reconnects": result.reconnects,
        "latency_ms": result.latency.summary(),
        "down_bytes_per_s": spread([c.down_bytes for c in clients]),
        "up_bytes_per_s": spread([c.up_bytes for c in clients]),
        "down_msgs_per_s": spread([c.down_msgs for c in clients], 2),
        "up_msgs_per_s": spread([c.up_msgs for c in clients], 2),
        "measured_clients": len(clients),
        **server_summary(sorted(samples, key=lambda s: s.at)),
        "corrections": corrections,
        "corrections_by_reason": result.corrections,
        "errors": errors,
        "errors_by_code": result.errors,
        "events": result.events,
        "load_generator": {
            "processes": result.processes,
            "cpu_percent": (
                round(result.cpu_s / result.window_s * 100.0, 1) if result.window_s else None
            ),
        },
        "notes": run.notes,
        "window": [round(window[0] - origin, 3), round(window[1] - origin, 3)]
        if result.window_s
        else None,
        "series": {"server": series(sorted(all_samples, key=lambda s: s.at), origin)},
        "latency_histogram": _histogram(result.latency.counts),
        "per_client": [
            {
                "slot": c.slot,
                "role": c.role,
                "down_bytes_per_s": round(c.down_bytes, 1),
                "up_bytes_per_s": round(c.up_bytes, 1),
            }
            for c in sorted(clients, key=lambda c: c.slot)
        ],
    }
    return report


def _histogram(counts: list[int]) -> dict[str, Any]:
    """The 0.1 ms latency bins, coarsened to 0.5 ms and cut after the last sample."""
    step = round(PLOT_BIN_MS / BIN_MS)
    coarse = [sum(counts[i : i + step]) for i in range(0, len(counts), step)]
    last = max((i for i, n in enumerate(coarse) if n), default=-1)
    kept = coarse[: min(last + 1, PLOT_MAX_BINS)]
    return {"bin_ms": PLOT_BIN_MS, "counts": kept, "beyond": sum(coarse[len(kept) :])}


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


# ---------------------------------------------------------------- text


def _f(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{unit}"
    return f"{value}{unit}"


def _kb(value: float | None) -> float | None:
    return None if value is None else value / 1000.0


def figures(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The headline figures as (label, value) rows, for the console and Markdown."""
    lat, tick = report["latency_ms"], report.get("server_tick_ms") or {}
    down, up = report["down_bytes_per_s"], report["up_bytes_per_s"]
    failures = ", ".join(f"{k}: {v}" for k, v in report["failures"].items()) or "none"
    corrections = ", ".join(f"{k}: {v}" for k, v in report["corrections_by_reason"].items())
    errors = ", ".join(f"{k}: {v}" for k, v in report["errors_by_code"].items())
    return [
        ("connected / failed", f"{report['connected']} / {report['failed']} ({failures})"),
        (
            "pose-to-peer latency p50 / p95 / p99",
            f"{_f(lat['p50'])} / {_f(lat['p95'])} / {_f(lat['p99'])} ms ({lat['count']:,} poses)",
        ),
        (
            "down per client, median / p95",
            f"{_f(_kb(down['median']))} / {_f(_kb(down['p95']))} kB/s, "
            f"{_f(report['down_msgs_per_s']['median'])} messages/s",
        ),
        (
            "up per client, median",
            f"{_f(_kb(up['median']))} kB/s, {_f(report['up_msgs_per_s']['median'])} messages/s",
        ),
        (
            "server tick p50 / p99 / max",
            f"{_f(tick.get('p50'), digits=2)} / {_f(tick.get('p99'), digits=2)} / "
            f"{'> ' if tick.get('max_beyond_buckets') else ''}{_f(tick.get('max'), digits=0)} ms "
            f"(p99 gauge up to {_f(tick.get('p99_gauge_max'), digits=2)} ms)",
        ),
        ("skipped ticks", _f(report.get("skipped_ticks"))),
        (
            "server CPU per client-second",
            f"{_f(report.get('server_cpu_ms_per_client_s'), ' ms', 2)} "
            f"(server at {_f(report.get('server_cpu_percent'), ' %')}, "
            f"{_f(report.get('server_cpu_ms_per_tick'), ' ms', 2)} CPU per tick)",
        ),
        ("server RSS (max)", _f(report.get("server_rss_mb"), " MB")),
        ("corrections", f"{report['corrections']}" + (f" ({corrections})" if corrections else "")),
        ("errors", f"{report['errors']}" + (f" ({errors})" if errors else "")),
        (
            "load generator CPU",
            f"{_f(report['load_generator']['cpu_percent'], ' %')} over "
            f"{report['load_generator']['processes']} process(es)",
        ),
    ]


def summary_text(report: dict[str, Any]) -> str:
    head = (
        f"{report['scenario']}: {report['count']} bots, {report['duration_s']:g} s "
        f"(measured {report['measured_s']:g} s)"
    )
    rows = figures(report)
    width = max(len(label) for label, _ in rows)
    lines = [head] + [f"  {label:<{width}}  {value}" for label, value in rows]
    lines += [f"  note: {note}" for note in report["notes"]]
    return "\n".join(lines)


def write_markdown(report: dict[str, Any], path: Path) -> list[Path]:
    """The Markdown page and its plots (PNG files named after it); returns the plots."""
    path.parent.mkdir(parents=True, exist_ok=True)
    plots = draw_plots(report, path.with_suffix(""))
    m = report["machine"]
    lines = [
        f"# Load test: {report['scenario']}, {report['count']} bots, {report['duration_s']:g} s",
        "",
        f"{report['date']} on {m['nproc']} CPUs ({m['cpu_model']}) (load average before: "
        f"{', '.join(str(x) for x in m['loadavg_before'])}). Server {report['url']}, "
        f"{report['procs']} bot process(es), poses at {report['rate_hz']:g} Hz. Figures "
        f"cover the measured window of {report['measured_s']:g} s, after every bot was in place.",
        "",
        "| figure | value |",
        "|---|---|",
        *(f"| {label} | {value} |" for label, value in figures(report)),
        "",
    ]
    if report["events"]:
        events = ", ".join(f"{k}: {v}" for k, v in sorted(report["events"].items()))
        lines += [f"Events: {events}.", ""]
    lines += [f"Note: {note}" for note in report["notes"]]
    for plot in plots:
        lines += [f"![{plot.stem}]({plot.name})", ""]
    path.write_text("\n".join(lines) + "\n")
    return plots


# ---------------------------------------------------------------- plots


def draw_plots(report: dict[str, Any], stem: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for name, draw in (
        ("latency", _plot_latency),
        ("tick", _plot_tick),
        ("bandwidth", _plot_bandwidth),
    ):
        fig, ax = plt.subplots(figsize=(7.5, 3.6), layout="constrained")
        draw(ax, report)
        out = stem.parent / f"{stem.name}-{name}.png"
        fig.savefig(out, dpi=100)
        plt.close(fig)
        paths.append(out)
    return paths


def _plot_latency(ax: Any, report: dict[str, Any]) -> None:
    hist = report["latency_histogram"]
    counts, step = hist["counts"], hist["bin_ms"]
    lat = report["latency_ms"]
    ax.set_title("Pose-to-peer latency")
    ax.set_xlabel("ms")
    ax.set_ylabel("poses")
    if not counts:
        ax.text(0.5, 0.5, "no latency samples", ha="center", transform=ax.transAxes)
        return
    ax.bar([i * step for i in range(len(counts))], counts, width=step, align="edge")
    for key, style in (("p50", "-"), ("p99", "--")):
        if lat[key] is not None:
            ax.axvline(lat[key], color="black", linestyle=style, label=f"{key} {lat[key]:.1f} ms")
    if lat["p99"] is not None:
        ax.set_xlim(0, max(lat["p99"] * 1.5, step * 4))
    ax.legend(loc="upper right")


def _plot_tick(ax: Any, report: dict[str, Any]) -> None:
    rows = report["series"]["server"]
    ax.set_title("Server tick time")
    ax.set_xlabel("s since start")
    ax.set_ylabel("ms")
    if not rows:
        ax.text(0.5, 0.5, "no server metrics", ha="center", transform=ax.transAxes)
        return
    t = [r["t"] for r in rows]
    ax.plot(t, [r["tick_mean_ms"] for r in rows], label="mean per interval")
    ax.plot(t, [r["tick_p99_ms"] for r in rows], label="p99 gauge (last minute)")
    ax.axhline(50.0, color="red", linewidth=0.8, linestyle=":", label="tick period (20 Hz)")
    if report["window"]:
        ax.axvspan(*report["window"], color="grey", alpha=0.15, label="measured")
    ax.set_ylim(bottom=0)
    clients = ax.twinx()
    clients.plot(t, [r["clients"] for r in rows], color="grey", linewidth=0.8)
    clients.set_ylabel("clients", color="grey")
    clients.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize="small")


def _plot_bandwidth(ax: Any, report: dict[str, Any]) -> None:
    rows = sorted(report["per_client"], key=lambda r: r["down_bytes_per_s"])
    ax.set_title("Traffic per client over the measured window")
    ax.set_xlabel("clients, by download rate")
    ax.set_ylabel("kB/s")
    if not rows:
        ax.text(0.5, 0.5, "no clients measured", ha="center", transform=ax.transAxes)
        return
    x = range(len(rows))
    ax.bar(x, [r["down_bytes_per_s"] / 1000 for r in rows], width=1.0, label="down")
    ax.plot(x, [r["up_bytes_per_s"] / 1000 for r in rows], color="black", label="up")
    ax.legend(loc="upper left")
