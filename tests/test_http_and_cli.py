"""The HTTP side, the `metaworld` command, and `metaworld serve` as a real process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
import trio

import metaworld_sdk
from metaworld.auth import dev_verifier


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_health_metrics_config_and_dev_tokens(start_server, make_token):
    server = await start_server(http_port=0)
    base = f"http://127.0.0.1:{server.http_port}"
    async with httpx.AsyncClient(base_url=base) as http:
        health = await http.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        config = (await http.get("/api/config")).json()
        assert config["ws_url"] == f"ws://127.0.0.1:{server.ws_port}/"
        assert config["subprotocol"] == "metaworld.v1" and config["dev_tokens"] is True

        reply = await http.post("/api/dev-token", json={"role": "therapist", "name": "Sam"})
        identity = dev_verifier(server.config.data_dir).verify(reply.json()["token"])
        assert identity.role == "therapist" and identity.name == "Sam"
        assert identity.scopes == ("user/*.rs",)
        reply = await http.post("/api/dev-token", json={"role": "patient", "patient": "abc-1"})
        identity = dev_verifier(server.config.data_dir).verify(reply.json()["token"])
        assert (identity.patient, identity.scopes) == ("abc-1", ("patient/*.rs",))
        bad_patient = {"role": "patient", "patient": "../etc"}
        assert (await http.post("/api/dev-token", json=bad_patient)).status_code == 400
        for bad in ({"role": "king"}, {"role": "patient", "name": "<script>"}, [1, 2]):
            assert (await http.post("/api/dev-token", json=bad)).status_code == 400
        assert (await http.post("/api/dev-token", content=b"{nope")).status_code == 400

        url = f"ws://127.0.0.1:{server.ws_port}/"
        async with metaworld_sdk.connect(url, make_token("m1")) as a:
            await a.wait_for(lambda c: c.last_tick > 0)
            await a.join_room("nowhere")
            await a.wait_for(lambda c: c.errors)
            text = (await http.get("/metrics")).text
        assert "metaworld_connected_clients 1.0" in text
        assert 'metaworld_rejected_messages_total{reason="unknown_room"} 1.0' in text
        assert "metaworld_tick_duration_seconds_bucket" in text
        assert "metaworld_ticks_skipped_total" in text
        assert 'metaworld_messages_in_total{type="joinroom"} 1.0' in text
        assert "process_cpu_seconds_total" in text
        assert "m1" not in text  # no subjects in metric labels


async def test_dev_tokens_are_off_with_production_keys(start_server):
    server = await start_server(http_port=0, dev_tokens=False)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as http:
        assert (await http.post("/api/dev-token", json={"role": "patient"})).status_code == 404


def run_cli(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metaworld.cli", *args], capture_output=True, text=True, check=check
    )


def test_token_command_prints_a_token_the_server_accepts(tmp_path):
    out = run_cli(
        "token",
        "--sub",
        "u1",
        "--role",
        "trainee",
        "--name",
        "Tia",
        "--ttl",
        "60",
        "--data-dir",
        str(tmp_path),
    )
    assert out.returncode == 0
    identity = dev_verifier(tmp_path).verify(out.stdout.strip())
    assert (identity.subject, identity.role, identity.name) == ("u1", "trainee", "Tia")
    assert identity.expires_at - time.time() <= 61
    assert (tmp_path / "dev_jwt_ed25519.pem").stat().st_mode & 0o077 == 0
    bad = run_cli(
        "token", "--sub", "u1", "--role", "patient", "--ttl", "0", "--data-dir", str(tmp_path)
    )
    assert bad.returncode == 2 and "ttl" in bad.stderr


def test_serve_rejects_a_broken_world_file(tmp_path):
    world = tmp_path / "w.toml"
    world.write_text('name = "x"\n')
    out = run_cli("serve", "--world", str(world), "--data-dir", str(tmp_path))
    assert out.returncode == 2 and str(world) in out.stderr and "lobby" in out.stderr


@pytest.mark.slow
async def test_serve_process_with_defaults_and_a_restart(tmp_path):
    """`metaworld serve` as `make run` starts it: two clients join, move and see each other;
    the server restarts on the same data directory and keeps its state."""
    ws_port, http_port = free_port(), free_port()
    args = [
        sys.executable,
        "-m",
        "metaworld.cli",
        "serve",
        "--ws-port",
        str(ws_port),
        "--http-port",
        str(http_port),
        "--data-dir",
        str(tmp_path),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    log_path = tmp_path / "server.log"

    async def start() -> subprocess.Popen[bytes]:
        with log_path.open("ab") as log_file:
            proc = subprocess.Popen(args, stderr=log_file, env=env)
        async with httpx.AsyncClient() as http:
            with trio.fail_after(20):
                while True:
                    try:
                        if (
                            await http.get(f"http://127.0.0.1:{http_port}/healthz")
                        ).status_code == 200:
                            return proc
                    except httpx.TransportError:
                        pass
                    await trio.sleep(0.1)

    def token(sub: str, role: str = "clinician", name: str | None = None) -> str:
        extra = ["--name", name] if name else []
        return run_cli(
            "token", "--sub", sub, "--role", role, "--data-dir", str(tmp_path), *extra, check=True
        ).stdout.strip()

    url = f"ws://127.0.0.1:{ws_port}/"
    proc = await start()
    try:
        async with (
            metaworld_sdk.connect(url, token("a")) as a,
            metaworld_sdk.connect(url, token("pat", "patient", "Secret Name")) as b,
        ):
            await a.wait_for(lambda c: b.avatar_id in c.view)
            pose = a.pose.copy()
            pose[:, 0] += 0.2
            await a.send_pose(pose)

            def moved(c: metaworld_sdk.Client) -> bool:
                remote = c.view.get(a.avatar_id)
                return (
                    remote is not None
                    and remote.pose is not None
                    and (abs(remote.pose[0, 0] - pose[0, 0]) < 0.002)
                )

            await b.wait_for(moved, timeout=5)
            first_session = a.session
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
            proc = await start()
            # Both clients reconnect on their own; the old session is gone, a new one opens.
            await a.wait_for(
                lambda c: c.connects >= 2 and c.last_tick > 0 and b.avatar_id in c.view, timeout=15
            )
            assert a.session != first_session
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    log = log_path.read_text()
    assert "listening for clients" in log and "joined as patient" in log
    assert "Secret Name" not in log and "eyJ" not in log  # no names, no tokens
    assert proc.returncode == 0
    assert (tmp_path / "metaworld.db").exists()
