"""`metaworld headset`: run a headset client, record a trace, or replay one.

    metaworld headset --url URL --token TOKEN --source {openxr,simulated,replay}
                      [--trace FILE] [--duration S] [--seed N] [--tui]
    metaworld headset record --url URL --token TOKEN --out TRACE [--duration S]
                      [--source {simulated,openxr}]
    metaworld headset replay TRACE --url URL --token TOKEN [--duration S]

Also runs as ``python -m metaworld_headset.cli ...`` with the same arguments. Exit
status: 0 when the run ended as asked, 1 when the session failed (refused, replaced,
unreachable), 2 when the arguments or the pose source cannot be used.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import trio

import metaworld_sdk
from metaworld_headset.headset import Headset, HeadsetError
from metaworld_headset.openxr import OpenXRSource, OpenXRUnavailable
from metaworld_headset.sources import PoseSource, ReplaySource, SimulatedSource
from metaworld_headset.trace import TraceError, read_trace
from metaworld_sdk.client import ClientClosed

DEFAULT_URL: Final = "ws://127.0.0.1:8765/"
TOKEN_ENV: Final = "METAWORLD_TOKEN"
SOURCES: Final = ("openxr", "simulated", "replay")

log = logging.getLogger("metaworld.headset")


class UsageError(Exception):
    """Arguments that cannot work together; the message is one line."""


def add_headset_parser(subparsers: Any) -> None:
    """Register `headset` (with `record` and `replay`) on a `metaworld` subparsers object."""
    parser = subparsers.add_parser(
        "headset", help="run a headset client (OpenXR, simulated or a replayed trace)"
    )
    _connection_options(parser)
    parser.add_argument("--source", choices=SOURCES, default="openxr", help="pose source")
    parser.add_argument("--trace", type=Path, help="trace file for --source replay")
    parser.add_argument("--seed", type=int, default=0, help="motion seed for --source simulated")
    parser.add_argument("--tui", action="store_true", help="live operator view (on a TTY)")
    parser.set_defaults(func=cmd_headset)
    modes = parser.add_subparsers(dest="headset_mode", metavar="{record,replay}")

    record = modes.add_parser("record", help="run a source and save the poses sent")
    _connection_options(record)
    record.add_argument("--out", type=Path, required=True, help="trace file to write")
    record.add_argument("--source", choices=("simulated", "openxr"), default="simulated")
    record.add_argument("--seed", type=int, default=0, help="motion seed for simulated")
    record.add_argument("--tui", action="store_true", help="live operator view (on a TTY)")
    record.set_defaults(func=cmd_record)

    replay = modes.add_parser("replay", help="send a recorded trace again")
    replay.add_argument("trace", type=Path, help="trace file to replay")
    _connection_options(replay)
    replay.add_argument("--tui", action="store_true", help="live operator view (on a TTY)")
    replay.set_defaults(func=cmd_replay)


def _connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help=f"server (default {DEFAULT_URL})")
    parser.add_argument(
        "--token",
        default=None,
        help=f"access token (default: ${TOKEN_ENV}, which keeps it out of the process list)",
    )
    parser.add_argument("--duration", type=float, help="seconds to run (default: until ^C)")


# ---------------------------------------------------------------- commands


def cmd_headset(args: argparse.Namespace) -> int:
    return _run(args, lambda: _make_source(args.source, args), trace_out=None)


def cmd_record(args: argparse.Namespace) -> int:
    return _run(args, lambda: _make_source(args.source, args), trace_out=args.out)


def cmd_replay(args: argparse.Namespace) -> int:
    return _run(args, lambda: _make_source("replay", args), trace_out=None)


def _make_source(kind: str, args: argparse.Namespace) -> PoseSource:
    """Build the source before connecting, so that an unusable one fails at once."""
    if kind == "openxr":
        return OpenXRSource()
    if kind == "simulated":
        return SimulatedSource(seed=args.seed)
    path = getattr(args, "trace", None)
    if path is None:
        raise UsageError("--source replay needs --trace FILE")
    return ReplaySource(read_trace(path))


def _run(
    args: argparse.Namespace, make_source: Callable[[], PoseSource], trace_out: Path | None
) -> int:
    try:
        token = args.token or os.environ.get(TOKEN_ENV)
        if not token:
            raise UsageError(f"give --token or set {TOKEN_ENV}")
        if args.duration is not None and args.duration <= 0:
            raise UsageError("--duration must be positive")
        source = make_source()
    except (UsageError, OpenXRUnavailable, TraceError, ValueError) as exc:
        return _fail(2, str(exc))
    tui = bool(args.tui) and sys.stdout.isatty()
    try:
        trio.run(_session, args.url, token, source, args.duration, trace_out, tui)
    except Exception as exc:  # trio.run hands back task errors in exception groups
        return _explain(exc)
    return 0


def _explain(exc: Exception) -> int:
    """Turn an error from the session into an exit status and one line on stderr."""
    leaf = _first(exc)
    match leaf:
        case ClientClosed():
            return _fail(1, f"session ended: {leaf.reason or 'closed'} ({leaf.code})")
        case HeadsetError():
            return _fail(1, str(leaf))
        case OSError():
            return _fail(1, f"cannot write the trace: {leaf}")
    raise exc


async def _session(
    url: str,
    token: str,
    source: PoseSource,
    duration: float | None,
    trace_out: Path | None,
    tui: bool,
) -> None:
    async with metaworld_sdk.connect(url, token, kind="headset") as client:
        headset = Headset(client, source, trace_out=trace_out)
        log.info("connected as avatar %d in %s", client.avatar_id, client.room)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signal, headset)
            if tui:
                from metaworld_headset.tui import show

                nursery.start_soon(show, headset)
            await headset.run(duration)
            nursery.cancel_scope.cancel()
        log.info("done: %d poses sent", headset.poses_sent)


async def _stop_on_signal(headset: Headset) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            headset.stop()
            return


def _first(exc: BaseException) -> BaseException:
    """The first leaf of a (possibly nested) exception group."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _fail(status: int, reason: str) -> int:
    print(f"metaworld headset: {reason}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    """`python -m metaworld_headset.cli ARGS` is `metaworld headset ARGS`."""
    parser = argparse.ArgumentParser(prog="metaworld")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_headset_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["headset", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
