"""A real server on loopback, real SDK clients, and clients that misbehave."""

from __future__ import annotations

import time

import jwt
import msgspec
import numpy as np
import pytest
import trio
import trio_websocket
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import metaworld_sdk
from metaworld import protocol
from metaworld.auth import AUDIENCE, DEV_ISSUER, load_or_create_dev_key
from metaworld.protocol import CloseCode
from metaworld.server import Outbox, Session
from metaworld_sdk.transport import open_websocket


async def raw_exchange(url: str, *frames: bytes | str, read: int = 0) -> tuple[int | None, list]:
    """Send frames on a fresh connection; return the close code and what came back."""
    got: list = []
    async with open_websocket(url) as ws:
        try:
            for frame in frames:
                await ws.send_message(frame)
            with trio.fail_after(15):  # generous: CI machines are shared
                while True:
                    got.append(protocol.decode_server(await ws.get_message()))
        except trio_websocket.ConnectionClosed as exc:
            return exc.reason.code, got
    return None, got


def hello(token: str, **kw) -> bytes:
    return protocol.encode(protocol.Hello(token, "bot", protocol.PROTOCOL_VERSION, **kw))


def claims(sub="mallory", **over):
    now = int(time.time())
    base = {
        "iss": DEV_ISSUER,
        "aud": AUDIENCE,
        "sub": sub,
        "iat": now,
        "exp": now + 600,
        "role": "clinician",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def bad_tokens(data_dir):
    key = load_or_create_dev_key(data_dir)
    other = Ed25519PrivateKey.generate()
    typ = {"typ": "at+jwt"}
    now = int(time.time())
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    unsigned = jwt.encode(claims(), None, algorithm="none", headers=typ)
    return {
        "forged": jwt.encode(claims(), other, algorithm="EdDSA", headers=typ),
        "expired": jwt.encode(
            claims(iat=now - 7200, exp=now - 3600), key, algorithm="EdDSA", headers=typ
        ),
        "wrong audience": jwt.encode(
            claims(aud="someone-else"), key, algorithm="EdDSA", headers=typ
        ),
        "wrong issuer": jwt.encode(claims(iss="evil"), key, algorithm="EdDSA", headers=typ),
        "alg none": unsigned,
        "hs256 with the public key": _hs256(claims(), public_pem),
        "no exp": jwt.encode(claims(exp=None), key, algorithm="EdDSA", headers=typ),
        "no typ": jwt.encode(claims(), key, algorithm="EdDSA"),
        "float iat": jwt.encode(claims(iat=now + 0.5), key, algorithm="EdDSA", headers=typ),
        "unknown role": jwt.encode(
            claims(role="surgeon-general"), key, algorithm="EdDSA", headers=typ
        ),
        "not a jwt": "hello.world",
    }


def _hs256(payload, secret: bytes) -> str:
    import base64
    import hashlib
    import hmac
    import json

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "at+jwt"}).encode())
    body = b64(json.dumps(payload).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


async def test_bad_tokens_are_refused_with_the_documented_code(world_server, ws_url, data_dir):
    for name, token in bad_tokens(data_dir).items():
        code, got = await raw_exchange(ws_url, hello(token))
        assert code == CloseCode.TOKEN_REJECTED, name
        assert not any(isinstance(m, protocol.Welcome) for m in got), name
    assert not world_server.sessions


async def test_handshake_errors(world_server, ws_url, make_token):
    token = make_token("h1")
    assert (await raw_exchange(ws_url, protocol.encode(protocol.Chat("hi"))))[
        0
    ] == CloseCode.BAD_HANDSHAKE
    assert (await raw_exchange(ws_url, b"\x00garbage"))[0] == CloseCode.BAD_HANDSHAKE
    old = protocol.encode(protocol.Hello(token, "bot", 99))
    assert (await raw_exchange(ws_url, old))[0] == CloseCode.VERSION_UNSUPPORTED
    code, got = await raw_exchange(ws_url, hello(token), hello(token))
    # The close may overtake the welcome still queued for the writer; the code is what counts.
    assert code == CloseCode.MALFORMED
    assert all(not isinstance(m, protocol.Error) for m in got)


async def test_subprotocol_is_required(world_server, ws_url):
    with pytest.raises(BaseExceptionGroup) as info:
        async with open_websocket(ws_url, subprotocols=[]):
            pass
    assert info.group_contains(trio_websocket.ConnectionRejected, match="400", depth=None)


async def test_handshake_timeout(start_server):
    server = await start_server(handshake_timeout_s=0.3)
    code, _ = await raw_exchange(f"ws://127.0.0.1:{server.ws_port}/")
    assert code == CloseCode.HANDSHAKE_TIMEOUT


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\xc1\xc1\xc1 garbage", CloseCode.MALFORMED),
        (msgspec.msgpack.encode(["teleport_everyone", 1]), CloseCode.MALFORMED),
        ("a text frame", CloseCode.MALFORMED),
        (b"\x00" * (10 * 1024 * 1024), CloseCode.MESSAGE_TOO_BIG),
    ],
    ids=["garbage", "unknown message", "text frame", "10 MB frame"],
)
async def test_bad_frames_close_only_the_sender(world_server, ws_url, make_token, frame, code):
    async with (
        metaworld_sdk.connect(ws_url, make_token("b1")) as b,
        metaworld_sdk.connect(ws_url, make_token("b2")) as c,
    ):
        await b.wait_for(lambda cl: c.avatar_id in cl.view)
        got, _ = await raw_exchange(ws_url, hello(make_token("evil")), frame)
        assert got == code
        tick = b.last_tick
        await b.wait_for(lambda cl: cl.last_tick >= tick + 5, timeout=2)
        assert b.connected and c.connected


async def test_bad_requests_get_error_replies_and_the_connection_stays(
    world_server, ws_url, make_token
):
    async with metaworld_sdk.connect(ws_url, make_token("e1")) as a:
        await a.wait_for(lambda cl: cl.room == "lobby" and cl.last_tick > 0)
        await a.join_room("no-such-room")
        await a.use_door("no-such-door")
        await a.move_to(1e9, float("nan"))
        await a._send(protocol.Pose(a.epoch, b"\x01\x02"))
        await a.wait_for(lambda cl: len(cl.errors) >= 4)
        codes = [e.code for e in a.errors]
        assert codes == ["unknown_room", "unknown_door", "bad_target", "bad_pose"]
        await a.chat("still here")
        await a.wait_for(lambda cl: any(m.text == "still here" for m in cl.chat_log))


async def test_out_of_bounds_pose_is_corrected(world_server, ws_url, make_token):
    async with metaworld_sdk.connect(ws_url, make_token("oob")) as a:
        await a.wait_for(lambda cl: cl.last_tick > 0)
        start = a.pose.copy()
        pose = start.copy()
        pose[:, 0] -= 30.0  # through the lobby wall
        await a.send_pose(pose)
        await a.wait_for(lambda cl: any(isinstance(p, protocol.Correction) for p in cl.placements))
        assert np.allclose(a.pose[0, :3], start[0, :3], atol=0.002)


async def test_a_patient_cannot_enter_another_patients_consultation(
    world_server, ws_url, make_token
):
    async with metaworld_sdk.connect(ws_url, make_token("intruder", "patient")) as p:
        await p.wait_for(lambda cl: cl.last_tick > 0)
        await p.join_room("consult-1")  # reserved for demo-patient in the sample clinic
        await p.wait_for(lambda cl: cl.errors)
        assert p.errors[0].code == "no_appointment" and p.room == "lobby"


async def test_nobody_outside_a_consultation_sees_or_hears_inside(world_server, ws_url, make_token):
    seen_outside: list = []
    async with (
        metaworld_sdk.connect(ws_url, make_token("doc", "clinician", name="Dr Inside")) as doc,
        metaworld_sdk.connect(ws_url, make_token("pat", "patient", name="Pat Private")) as pat,
        metaworld_sdk.connect(ws_url, make_token("by", "patient")) as bystander,
    ):
        bystander.on_message = seen_outside.append
        await doc.join_room("consult-2")
        await doc.wait_for(lambda cl: cl.room == "consult-2")
        await doc.admit(pat.avatar_id)
        for _ in range(50):
            await pat.join_room("consult-2")
            await trio.sleep(0.05)
            if pat.room == "consult-2":
                break
        await pat.wait_for(lambda cl: cl.room == "consult-2" and doc.avatar_id in cl.view)
        mark = len(seen_outside)
        inside = {doc.avatar_id, pat.avatar_id}
        for step in range(10):
            pose = doc.pose.copy()
            pose[:, 0] += 0.05 * (step % 2)
            await doc.send_pose(pose)
            await doc.chat(f"private {step}")
            await trio.sleep(0.06)
        await pat.wait_for(lambda cl: sum("private" in m.text for m in cl.chat_log) >= 5)
        for message in seen_outside[mark:]:
            match message:
                case protocol.Delta(entered=entered, poses=poses):
                    assert not inside & {a.id for a in entered}
                    ids = set(
                        np.frombuffer(poses, dtype=[("id", "<u2"), ("b", "V28")])["id"].tolist()
                    )
                    assert not inside & ids
                case protocol.ChatMessage():
                    assert "private" not in message.text
                case protocol.Presence(joined=joined):
                    assert not inside & {a.id for a in joined}
        assert inside.isdisjoint(bystander.view)


async def test_patient_names_never_reach_other_clients(world_server, ws_url, make_token):
    frames: list[bytes] = []
    async with metaworld_sdk.connect(ws_url, make_token("watcher", "patient")) as w:
        original = w._apply

        def spy(message):
            frames.append(protocol.encode(message))
            original(message)

        w._apply = spy
        async with metaworld_sdk.connect(
            ws_url, make_token("p-9", "patient", name="Zelda Quartz")
        ) as p:
            await w.wait_for(lambda cl: p.avatar_id in cl.view)
            await p.chat("hello from a patient")
            await w.wait_for(lambda cl: cl.chat_log)
    assert frames and not any(b"Zelda" in f or b"Quartz" in f for f in frames)
    assert w.chat_log[0].label.startswith("Patient ")


async def test_resume_keeps_the_avatar_and_never_duplicates_it(world_server, ws_url, make_token):
    async with (
        metaworld_sdk.connect(ws_url, make_token("mover")) as m,
        metaworld_sdk.connect(ws_url, make_token("observer")) as o,
    ):
        await o.wait_for(lambda cl: m.avatar_id in cl.view)
        avatar, session = m.avatar_id, m.session
        await m.drop_connection()
        await m.wait_for(
            lambda cl: cl.connects == 2 and cl.connected and cl.last_tick > 0, timeout=5
        )
        assert m.avatar_id == avatar and m.session == session
        assert len(world_server.world.avatars) == 2
        assert [i for i in o.presence if o.presence[i].id == avatar] == [avatar]


async def test_session_of_a_vanished_client_expires(start_server, make_token):
    server = await start_server(resume_grace_s=0.3)
    url = f"ws://127.0.0.1:{server.ws_port}/"
    async with metaworld_sdk.connect(url, make_token("ghost"), reconnect=False) as g:
        await g.wait_for(lambda cl: cl.last_tick > 0)
        await g.drop_connection()
    with trio.fail_after(3):
        while server.world.avatars:
            await trio.sleep(0.05)
    assert not server.sessions


async def test_second_login_replaces_the_first(world_server, ws_url, make_token):
    async with metaworld_sdk.connect(ws_url, make_token("twice")) as first:
        await first.wait_for(lambda cl: cl.last_tick > 0)
        async with metaworld_sdk.connect(ws_url, make_token("twice")) as second:
            await first.wait_for(lambda cl: cl.closed is not None)
            assert first.closed.code == CloseCode.REPLACED
            await second.wait_for(lambda cl: cl.last_tick > 0)
            assert len(world_server.world.avatars) == 1


async def test_leave_ends_the_session(world_server, ws_url, make_token):
    async with metaworld_sdk.connect(ws_url, make_token("leaver")) as a:
        await a.wait_for(lambda cl: cl.last_tick > 0)
        await a.leave()
        await a.wait_for(lambda cl: cl.closed is not None)
    assert a.closed.code == CloseCode.NORMAL
    assert not world_server.world.avatars


async def test_a_client_that_never_reads_does_not_slow_others(world_server, ws_url, make_token):
    async with open_websocket(ws_url) as lazy:
        await lazy.send_message(hello(make_token("lazy")))
        async with metaworld_sdk.connect(ws_url, make_token("busy")) as busy:
            await busy.wait_for(lambda cl: len(cl.view) == 1)
            start = busy.last_tick
            await busy.wait_for(lambda cl: cl.last_tick >= start + 20, timeout=2)


async def test_outbox_bound_cuts_off_a_slow_client():
    outbox = Outbox(limit=3)
    session = Session("s", None, 1, outbox=outbox)  # type: ignore[arg-type]
    with trio.CancelScope() as scope:
        session.cancel = scope
        for _ in range(4):
            session.push(b"x")
        await trio.sleep(1)
    assert scope.cancelled_caught and session.too_slow
    assert len(outbox.reliable) == 3


async def test_room_change_sends_a_fresh_snapshot_and_presence(world_server, ws_url, make_token):
    async with (
        metaworld_sdk.connect(ws_url, make_token("walker")) as a,
        metaworld_sdk.connect(ws_url, make_token("waiter")) as b,
    ):
        await b.join_room("waiting")
        await b.wait_for(lambda cl: cl.room == "waiting")
        await a.wait_for(lambda cl: b.avatar_id not in cl.view and b.avatar_id not in cl.presence)
        await a.join_room("waiting")
        await a.wait_for(lambda cl: cl.room == "waiting" and b.avatar_id in cl.view)
        assert b.avatar_id in a.presence and a.avatar_id in b.presence


async def test_pose_reaches_the_peer_within_two_ticks(world_server, ws_url, make_token):
    period = 1 / world_server.config.tick_hz
    async with (
        metaworld_sdk.connect(ws_url, make_token("s1")) as a,
        metaworld_sdk.connect(ws_url, make_token("s2")) as b,
    ):
        await b.wait_for(
            lambda cl: a.avatar_id in cl.view and cl.view[a.avatar_id].pose is not None
        )
        delays = []
        for step in range(20):
            pose = a.pose.copy()
            pose[:, 2] += 0.05 if step % 2 == 0 else -0.05
            sent = trio.current_time()
            await a.send_pose(pose)
            target = pose[0, 2]
            await b.wait_for(
                lambda cl, z=target: abs(cl.view[a.avatar_id].pose[0, 2] - z) < 0.002, timeout=1
            )
            delays.append(trio.current_time() - sent)
            await trio.sleep(period * 0.37)
        assert sorted(delays)[len(delays) // 2] <= 2 * period


async def test_a_pose_with_an_impossible_hand_orientation_is_refused(
    world_server, ws_url, make_token
):
    async with (
        metaworld_sdk.connect(ws_url, make_token("evil", "patient")) as evil,
        metaworld_sdk.connect(ws_url, make_token("calm")) as calm,
    ):
        await evil.wait_for(lambda c: c.last_tick > 0)
        body = bytearray(28)
        body[18] = 0x80  # a hand orientation index of 4: there are only 0..3
        await evil._send(protocol.Pose(evil.epoch, bytes(body)))
        await evil.wait_for(lambda c: any(e.code == "bad_pose" for e in c.errors))
        tick = calm.last_tick
        await calm.wait_for(lambda c: c.last_tick >= tick + 5, timeout=3)


async def test_resuming_with_another_role_is_a_new_session(world_server, ws_url, make_token):
    async with metaworld_sdk.connect(ws_url, make_token("shape", "patient")) as first:
        await first.wait_for(lambda c: c.last_tick > 0)
        session = first.session
    raw = protocol.encode(
        protocol.Hello(make_token("shape", "admin"), "bot", protocol.PROTOCOL_VERSION, session)
    )
    async with open_websocket(ws_url) as ws:
        await ws.send_message(raw)
        with trio.fail_after(10):
            welcome = protocol.decode_server(await ws.get_message())
    assert isinstance(welcome, protocol.Welcome)
    assert welcome.session != session and welcome.you.role == "admin"


async def test_a_ping_is_answered_with_its_nonce_and_times(world_server, ws_url, make_token):
    async with open_websocket(ws_url) as ws:
        await ws.send_message(hello(make_token("pinger")))
        await ws.send_message(protocol.encode(protocol.Ping(7, 123.5)))
        with trio.fail_after(3):
            while True:
                message = protocol.decode_server(await ws.get_message())
                if isinstance(message, protocol.Pong):
                    break
    assert (message.nonce, message.client_time) == (7, 123.5)
    assert message.server_time > 0


async def test_websocket_pings_are_answered(world_server, ws_url, make_token):
    """Control-frame pings (browsers and proxies send them) get pongs on either engine."""
    async with open_websocket(ws_url) as ws:
        await ws.send_message(hello(make_token("ctl-pinger")))
        with trio.fail_after(3):
            for _ in range(3):
                await ws.ping()


async def test_a_flood_of_messages_is_cut_off_and_others_carry_on(world_server, ws_url, make_token):
    async with metaworld_sdk.connect(ws_url, make_token("calm")) as calm:
        await calm.wait_for(lambda cl: cl.last_tick > 0)
        flood = [protocol.encode(protocol.Ping(i, 0.0)) for i in range(400)]
        code, _ = await raw_exchange(ws_url, hello(make_token("flooder")), *flood)
        assert code == CloseCode.RATE_LIMITED
        tick = calm.last_tick
        await calm.wait_for(lambda cl: cl.last_tick >= tick + 5, timeout=2)
        assert calm.connected


async def test_what_a_replaced_connection_still_sends_is_dropped(world_server, ws_url, make_token):
    """Between a resume and the old connection's end, the old connection's messages must
    not act for the session it no longer holds."""
    async with open_websocket(ws_url) as ws:
        await ws.send_message(hello(make_token("drop-old", "patient")))
        with trio.fail_after(3):
            await ws.get_message()  # the Welcome: the session is open
        session = next(iter(world_server.sessions.values()))
        old, new = session.outbox, Outbox()
        session.outbox = new  # as a resume on another connection leaves it
        try:
            ping = protocol.encode(protocol.Ping(7, 0.0))
            world_server._take_message(session, old, ping)
            assert not new.reliable
            world_server._take_message(session, new, ping)
            assert len(new.reliable) == 1
        finally:
            session.outbox = old
