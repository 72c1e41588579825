"""`metaworld headset` as a person runs it: a real process against a server on loopback."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from metaworld_headset import cli, read_trace

CLIENTS = Path(__file__).resolve().parent.parent / "clients" / "python"


def headset_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "metaworld_headset.cli", *args]


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(CLIENTS), env.get("PYTHONPATH", "")])
    env.pop("METAWORLD_TOKEN", None)
    env.update(extra)
    return env


async def run(*args: str, **env: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(60):
        return await trio.run_process(
            headset_command(*args),
            check=False,
            capture_stdout=True,
            capture_stderr=True,
            env=child_env(**env),
        )


@pytest.mark.skipif(importlib.util.find_spec("xr") is not None, reason="pyopenxr is installed")
async def test_openxr_without_pyopenxr_says_so_in_one_line():
    done = await run("--source", "openxr", "--url", "ws://127.0.0.1:9/", "--token", "t")
    assert done.returncode == 2
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "pyopenxr" in lines[0] and "--source simulated" in lines[0]
    assert b"Traceback" not in done.stderr + done.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--source", "replay", "--token", "t"], "--trace"),
        (["--source", "simulated"], "METAWORLD_TOKEN"),
        (["replay", "no-such-trace.jsonl", "--token", "t"], "cannot read"),
    ],
    ids=["replay without a trace", "no token", "missing trace file"],
)
async def test_unusable_arguments_are_one_line_and_exit_2(args, says):
    done = await run(*args)
    assert done.returncode == 2
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and says in lines[0], lines


async def test_record_then_replay_from_the_command_line(world_server, ws_url, make_token, tmp_path):
    out = tmp_path / "walk.jsonl"
    recorded = await run(
        "record",
        "--url",
        ws_url,
        "--token",
        make_token("rec"),
        "--out",
        str(out),
        "--duration",
        "1.5",
    )
    assert recorded.returncode == 0, recorded.stderr.decode()
    trace = read_trace(out)
    assert trace.header.room == "lobby" and trace.header.tick_hz == 20
    assert len(trace.records) >= 15
    replayed = await run("replay", str(out), "--url", ws_url, METAWORLD_TOKEN=make_token("rep"))
    assert replayed.returncode == 0, replayed.stderr.decode()
    assert not world_server.world.avatars  # both left when done


async def test_simulated_headset_runs_for_its_duration(world_server, ws_url, make_token):
    started = trio.current_time()
    done = await run(
        "--source",
        "simulated",
        "--url",
        ws_url,
        "--token",
        make_token("sim"),
        "--duration",
        "1",
        "--tui",  # not a TTY here: the view stays off
    )
    assert done.returncode == 0, done.stderr.decode()
    assert trio.current_time() - started >= 1.0
    assert b"\x1b[" not in done.stdout  # no terminal drawing into a pipe


async def test_a_refused_token_exits_1_with_the_reason(world_server, ws_url):
    done = await run("--source", "simulated", "--url", ws_url, "--token", "not-a-token")
    assert done.returncode == 1
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "4001" in lines[0], lines


def test_the_subcommand_wires_into_the_metaworld_parser():
    parser = argparse.ArgumentParser(prog="metaworld")
    cli.add_headset_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["headset", "--source", "simulated", "--token", "t"])
    assert args.func is cli.cmd_headset and args.source == "simulated"
    args = parser.parse_args(["headset", "record", "--out", "x.jsonl", "--duration", "5"])
    assert args.func is cli.cmd_record and args.out == Path("x.jsonl") and args.duration == 5.0
    args = parser.parse_args(["headset", "replay", "x.jsonl", "--url", "ws://h:1/"])
    assert args.func is cli.cmd_replay and args.trace == Path("x.jsonl")
