"""Headset clients against a real server on loopback: a simulated body and a replayed
trace seen by a bot, replays that give the server the same path, and resuming after the
server drops the connection."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import trio

import metaworld_sdk
from metaworld import protocol, quant
from metaworld.server import SessionState, WorldServer
from metaworld_headset import Headset, ReplaySource, SimulatedSource, read_trace

QUANTUM_M = 0.0005  # half a millimetre: the largest position error of a pose body


async def run_headset(
    url: str,
    token: str,
    source,
    *,
    duration: float | None,
    trace_out=None,
    started: Callable[[Headset], None] | None = None,
) -> Headset:
    async with metaworld_sdk.connect(url, token, kind="headset") as client:
        headset = Headset(client, source, trace_out=trace_out)
        if started is not None:
            started(headset)
        await headset.run(duration)
    return headset


def watch_ticks(server: WorldServer, each_tick: Callable[[], None]) -> None:
    """Call `each_tick` right after every tick of the server."""
    original = server.tick

    def tick(now: float) -> None:
        original(now)
        each_tick()

    server.tick = tick  # type: ignore[method-assign]


def head_xz(body: bytes) -> np.ndarray:
    return quant.decode_bodies(quant.body_from_bytes(body))[0, 0, [0, 2]]


async def record_trace(url: str, token: str, path, seed: int = 1, duration: float = 1.5):
    headset = await run_headset(
        url, token, SimulatedSource(seed=seed), duration=duration, trace_out=path
    )
    trace = read_trace(path)
    assert len(trace.records) == headset.poses_sent >= 20
    return trace


async def test_a_simulated_and_a_replayed_headset_move_as_scripted_for_a_bot(
    world_server, ws_url, make_token, tmp_path
):
    trace = await record_trace(ws_url, make_token("recorder"), tmp_path / "walk.jsonl")
    trace_heads = np.stack([head_xz(r.body) for r in trace.records])  # the lobby is at 0,0,0
    simulated = SimulatedSource(seed=2)
    seen: dict[str, list[np.ndarray]] = {"sim": [], "rep": []}
    ids: dict[str, int] = {}

    async with metaworld_sdk.connect(ws_url, make_token("bot", name="Bot"), keep_history=1) as bot:

        def on_message(message: protocol.ServerMessage) -> None:
            for name, avatar_id in ids.items():
                remote = bot.view.get(avatar_id)
                if remote is not None and remote.pose is not None:
                    seen[name].append(remote.pose[0, [0, 2]].copy())

        bot.on_message = on_message
        async with trio.open_nursery() as nursery:
            for name, token, source in (
                ("sim", make_token("sim"), simulated),
                ("rep", make_token("rep"), ReplaySource(trace)),
            ):
                nursery.start_soon(
                    lambda t=token, s=source, n=name: run_headset(
                        ws_url,
                        t,
                        s,
                        duration=3.0,
                        started=lambda h, n=n: ids.__setitem__(n, h.client.avatar_id),
                    )
                )

    # The simulated head walks its loop, which passes through where it started.
    loop = simulated.loop
    sim = np.unique(np.stack(seen["sim"]), axis=0)
    # It moved, update after update (beyond 6 m updates come at a quarter of the tick rate,
    # and a loaded machine drops some; five distinct positions prove motion).
    assert len(sim) >= 5
    radii = np.hypot(sim[:, 0] - loop.cx, sim[:, 1] - loop.cz)
    assert np.all(np.abs(radii - loop.radius) <= 2 * QUANTUM_M)
    # The replayed head goes exactly through the recorded points.
    rep = np.unique(np.stack(seen["rep"]), axis=0)
    replayed = [np.min(np.hypot(*(trace_heads - p).T)) <= 1e-9 for p in rep]
    assert sum(replayed) >= 10
    assert sum(not r for r in replayed) <= 1  # at most the spawn point, before the teleport


async def replayed_path(server: WorldServer, url: str, token: str, trace) -> list[int]:
    """Replay `trace`; return, tick by tick, which record the server held for the avatar."""
    index = {r.body: i for i, r in enumerate(trace.records)}
    held: list[bytes] = []
    avatar = {"id": 0}

    def sample() -> None:
        if avatar["id"] in server.world.avatars:
            held.append(server.world.body_of(avatar["id"]))

    watch_ticks(server, sample)
    try:
        await run_headset(
            url,
            token,
            ReplaySource(trace),
            duration=None,  # until the trace ends
            started=lambda h: avatar.__setitem__("id", h.client.avatar_id),
        )
    finally:
        del server.tick  # back to the class's own tick
    first = next(i for i, body in enumerate(held) if body in index)  # after the teleport
    path = [index.get(body) for body in held[first:]]
    assert None not in path, "the server held a pose that is not in the trace"
    return path  # type: ignore[return-value]


async def test_replaying_a_trace_twice_gives_the_server_the_same_path(
    world_server, ws_url, make_token, tmp_path
):
    trace = await record_trace(ws_url, make_token("recorder"), tmp_path / "walk.jsonl", seed=4)
    runs = [
        await replayed_path(world_server, ws_url, make_token("replayer"), trace) for _ in range(2)
    ]
    for path in runs:
        assert path == sorted(path)  # in the recorded order
        assert path[-1] == len(trace.records) - 1
        assert len(set(path)) >= 0.5 * len(trace.records)  # some are overwritten within a tick
    # The server held the recorded bodies byte for byte in both runs, so the two paths
    # are the same wherever both runs sampled the same record.
    assert len(set(runs[0]) & set(runs[1])) >= 0.25 * len(trace.records)


async def dropped_connection_resumes(server: WorldServer, url: str, make_token, drop) -> None:
    """Drop the headset's connection from the server's side with `drop(session)`; the
    headset must resume the same avatar within two seconds, and the bot must never see
    a second avatar for it."""
    problems: list[str] = []
    headsets: list[Headset] = []
    async with (
        metaworld_sdk.connect(url, make_token("observer")) as bot,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(
            lambda: run_headset(
                url,
                make_token("wearer"),
                SimulatedSource(seed=3),
                duration=4.0,
                started=headsets.append,
            )
        )
        await bot.wait_for(lambda c: bool(headsets) and headsets[0].client.avatar_id in c.view)
        headset = headsets[0]
        avatar = headset.client.avatar_id

        def check() -> None:
            if not headset.client.reconnect:
                return  # it is leaving, as asked, at the end of its run
            others = (set(bot.view) | set(bot.presence)) - {bot.avatar_id}
            if others - {avatar}:
                problems.append(f"bot saw avatars {sorted(others)}")
            if len(server.world.avatars) != 2:
                problems.append(f"server held {len(server.world.avatars)} avatars")

        bot.on_message = lambda _message: check()
        watch_ticks(server, check)
        await trio.sleep(0.5)
        session = server.by_avatar[avatar]
        await drop(session)
        await headset.client.wait_for(lambda c: c.connects == 2 and c.connected, timeout=2.0)
        assert server.sessions[session.id] is session
        assert session.state == SessionState.ACTIVE
        assert headset.client.avatar_id == avatar
        sent = headset.poses_sent
        before = server.world.body_of(avatar)
        await trio.sleep(0.5)
        assert headset.poses_sent > sent and server.world.body_of(avatar) != before
    assert not problems, problems[:5]
    assert headsets[0].client.closed is not None  # it left at the end, as asked


async def test_a_connection_dropped_by_the_server_resumes_the_same_avatar(
    world_server, ws_url, make_token
):
    streams: dict[str, object] = {}
    original = world_server._run_connection

    async def capture(ws, session):
        streams[session.id] = ws
        await original(ws, session)

    world_server._run_connection = capture  # type: ignore[method-assign]

    async def cut_tcp(session) -> None:
        await streams[session.id]._stream.aclose()  # the network fails under the server

    await dropped_connection_resumes(world_server, ws_url, make_token, cut_tcp)


async def test_a_connection_cancelled_by_the_server_resumes_the_same_avatar(
    world_server, ws_url, make_token
):
    async def cancel(session) -> None:
        session.cancel.cancel()

    await dropped_connection_resumes(world_server, ws_url, make_token, cancel)


async def test_the_operator_view_shows_who_is_near(world_server, ws_url, make_token):
    from rich.console import Console

    from metaworld_headset.tui import render

    async with metaworld_sdk.connect(ws_url, make_token("neighbour", name="Dr Near")) as other:
        headsets: list[Headset] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: run_headset(
                    ws_url,
                    make_token("viewer"),
                    SimulatedSource(),
                    duration=2.5,
                    started=headsets.append,
                )
            )
            await other.wait_for(lambda c: bool(headsets))
            headset = headsets[0]
            await headset.client.wait_for(
                lambda c: other.avatar_id in c.view and headset.clock.rtt is not None
            )
            await trio.sleep(1.2)  # one full second of traffic counted
            status = headset.status()
            console = Console(record=True, width=100)
            console.print(render(status))
            text = console.export_text()
    assert status.room == "lobby" and status.ping_ms is not None and status.ping_ms < 500
    assert status.packets_out_per_s > 15  # a pose a tick, and pings
    # The neighbour stands about 5 m away, in the middle rate tier: a Delta every
    # second tick (10 a second), plus pongs.
    assert status.packets_in_per_s > 8
    assert [n.label for n in status.neighbours] == ["Dr Near"]
    assert "Dr Near" in text and "lobby" in text and " m" in text
