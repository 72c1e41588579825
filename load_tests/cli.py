"""`metaworld bots`: run a swarm of headless bots against a local server and report.

    metaworld bots --scenario crowded-room --count 50 --duration 20 --report out.json

Also runnable before it is wired into `metaworld`: ``python -m load_tests.cli ...``.
Bots only ever connect to this machine (loopback addresses), and every run is bounded
in size and time.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from load_tests.scenario import CrowdedRoom, ScenarioError, available, load_scenario
from metaworld.auth import DEV_KEY_FILE
from metaworld.hosts import is_loopback
from metaworld.layout import DEFAULT_LAYOUT, LayoutError, load_layout

if TYPE_CHECKING:
    from load_tests.swarm import Driver

MAX_COUNT: Final = 1000
MAX_DURATION_S: Final = 900.0
MAX_RATE_HZ: Final = 60.0  # the server cuts a client off above 150 messages a second
MAX_PROCS: Final = 32
DEFAULT_DATA_DIR: Final = os.environ.get("METAWORLD_DATA_DIR", "data")  # as `metaworld serve`


class UsageError(ValueError):
    """Arguments the swarm refuses to run with."""


def loopback_host(url: str, schemes: tuple[str, ...]) -> str:
    """The host of `url` if it is on this machine; raises UsageError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise UsageError(f"{url!r}: expected a {' or '.join(s + '://' for s in schemes)} URL")
    host = parts.hostname or ""
    if not is_loopback(host):
        raise UsageError(
            f"{url!r}: bots only connect to this machine (127.0.0.0/8, ::1 or localhost)"
        )
    return host


def default_metrics_url(ws_url: str) -> str:
    host = urlsplit(ws_url).hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:8080/metrics"


def check_bounds(count: int, duration_s: float, rate_hz: float, procs: int) -> None:
    if not 1 <= count <= MAX_COUNT:
        raise UsageError(f"--count must be between 1 and {MAX_COUNT}, got {count}")
    if not 0 < duration_s <= MAX_DURATION_S:
        raise UsageError(f"--duration must be above 0 and at most {MAX_DURATION_S:g} s")
    if not 1 <= rate_hz <= MAX_RATE_HZ:
        raise UsageError(f"--rate must be between 1 and {MAX_RATE_HZ:g} poses per second")
    if not 1 <= procs <= min(MAX_PROCS, count):
        raise UsageError(f"--procs must be between 1 and {min(MAX_PROCS, count)}")


def configure(parser: argparse.ArgumentParser) -> None:
    """The `bots` options, on a parser of its own or on a subcommand."""
    parser.add_argument("--url", default="ws://127.0.0.1:8765/", help="the server (loopback)")
    parser.add_argument(
        "--scenario",
        default="crowded-room",
        help=f"a shipped scenario ({', '.join(available())}) or a .toml file",
    )
    parser.add_argument("--count", type=int, default=50, help=f"bots, at most {MAX_COUNT}")
    parser.add_argument(
        "--duration", type=float, default=20.0, help=f"seconds, at most {MAX_DURATION_S:g}"
    )
    parser.add_argument("--report", type=Path, help="write the JSON report here")
    parser.add_argument("--markdown", type=Path, help="write a Markdown report and PNG plots")
    parser.add_argument(
        "--metrics-url", help="the server's /metrics (default: http://HOST:8080/metrics)"
    )
    parser.add_argument(
        "--no-metrics", action="store_true", help="do not scrape the server's metrics"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(DEFAULT_DATA_DIR),
        help="the server's data directory, whose dev key signs the bots' tokens",
    )
    parser.add_argument("--procs", type=int, default=1, help="worker processes")
    parser.add_argument(
        "--driver",
        choices=("auto", "sdk", "herd"),
        default="auto",
        help="sdk: an SDK client with Trio tasks per bot; herd: one epoll loop per process "
        "drives all its bots (crowded-room only, far cheaper); auto: herd where it can",
    )
    parser.add_argument("--rate", type=float, default=20.0, help="poses per second per bot")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bots' motion")
    parser.add_argument("--world", type=Path, default=DEFAULT_LAYOUT, help="layout to check")
    parser.add_argument(
        "--decode-poses",
        action="store_true",
        help="decode peers' poses to floats like the stock SDK client (costs bot CPU)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.set_defaults(func=cmd_bots)


def add_bots_parser(subparsers: Any) -> None:
    """Register `bots` on the `metaworld` command's subparsers."""
    parser = subparsers.add_parser(
        "bots",
        help="run a swarm of headless bots against a local server",
        description="Run a swarm of headless bots against a local server and report.",
    )
    configure(parser)


def _config(args: argparse.Namespace) -> tuple[Any, str | None]:
    from load_tests.swarm import SwarmConfig

    check_bounds(args.count, args.duration, args.rate, args.procs)
    loopback_host(args.url, ("ws",))
    metrics_url = None
    if not args.no_metrics:
        metrics_url = args.metrics_url or default_metrics_url(args.url)
        loopback_host(metrics_url, ("http",))
    if not (args.data_dir / DEV_KEY_FILE).exists():
        raise UsageError(
            f"no dev key in {args.data_dir}: give the server's --data-dir "
            f"(start it with `metaworld serve --data-dir {args.data_dir}` first)"
        )
    scenario = load_scenario(args.scenario, load_layout(args.world))
    config = SwarmConfig(
        url=args.url,
        scenario=scenario,
        count=args.count,
        duration_s=args.duration,
        data_dir=args.data_dir,
        rate_hz=args.rate,
        seed=args.seed,
        decode_poses=args.decode_poses,
        driver=_driver(args.driver, scenario, args.decode_poses),
    )
    return config, metrics_url


def _driver(asked: str, scenario: Any, decode_poses: bool) -> Driver:
    """The driver `--driver` asks for; `auto` is the herd wherever it can run."""
    if asked == "sdk":
        return "sdk"
    if isinstance(scenario, CrowdedRoom) and not decode_poses:
        return "herd"
    if asked == "herd":
        raise UsageError("--driver herd runs only crowded-room scenarios, without --decode-poses")
    return "sdk"


def cmd_bots(args: argparse.Namespace) -> int:
    from load_tests.report import build_report, summary_text, write_json, write_markdown
    from load_tests.runner import run_blocking

    try:
        config, metrics_url = _config(args)
    except (UsageError, ScenarioError, LayoutError) as exc:
        print(f"metaworld bots: {exc}", file=sys.stderr)
        return 2
    run = run_blocking(config, procs=args.procs, metrics_url=metrics_url, show=not args.quiet)
    report = build_report(run)
    if args.report:
        write_json(report, args.report)
    if args.markdown:
        write_markdown(report, args.markdown)
    print(summary_text(report))
    return 0 if report["connected"] == config.count and not report["failed"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load_tests.cli", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    configure(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
