"""The browser-test harness: a server subprocess, pages, bots and a breakable link.

These tests drive the real WebXR client (clients/webxr/dist) in Debian's headless
Chromium through Playwright's sync API; no browser is ever downloaded. The server runs
as `metaworld serve` on free loopback ports, exactly as a person would start it. Bots
are SDK clients, each set running its own Trio loop in a background thread so that the
(synchronous) test body can talk to them between Playwright calls.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from PIL import Image

import metaworld_sdk

REPO_ROOT = Path(__file__).resolve().parents[2]
WEBXR = REPO_ROOT / "clients" / "webxr"
DIST_INDEX = WEBXR / "dist" / "index.html"
NODE_MODULES = WEBXR / "node_modules"
ARTIFACTS = REPO_ROOT / "test-artifacts"
METAWORLD = Path(sys.executable).parent / "metaworld"
CHROMIUM = Path(os.environ.get("METAWORLD_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--enable-unsafe-swiftshader",
    "--use-angle=swiftshader",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SERVER_START_S = 30.0
Pair = tuple[socket.socket, socket.socket]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------- the web client build


def npm(*args: str) -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not installed: cannot build clients/webxr (install Node.js 20+)")
    result = subprocess.run(
        [npm, *args], cwd=WEBXR, capture_output=True, text=True, timeout=600, check=False
    )
    if result.returncode:
        pytest.fail(f"`npm {' '.join(args)}` failed in clients/webxr:\n{result.stderr[-3000:]}")


# ---------------------------------------------------------------- the server


class ServerProcess:
    """`metaworld serve` in a subprocess on loopback, restartable on the same ports."""

    def __init__(self, data_dir: Path, extra: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.extra = extra or []
        self.ws_port = free_port()
        self.http_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "server.log"
        self._log: Any = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/"

    def start(self) -> None:
        args = [
            str(METAWORLD), "serve", "--host", "127.0.0.1",
            "--ws-port", str(self.ws_port), "--http-port", str(self.http_port),
            "--data-dir", str(self.data_dir), *self.extra,
        ]  # fmt: skip
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"metaworld serve exited early:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.http_url + "healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        pytest.fail(f"metaworld serve was not healthy in {SERVER_START_S} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def dev_token(self, role: str, name: str | None = None) -> str:
        body = {"role": role, **({"name": name} if name else {})}
        response = httpx.post(self.http_url + "api/dev-token", json=body, timeout=20)
        response.raise_for_status()
        return str(response.json()["token"])


@contextlib.contextmanager
def running_server(tmp: Path, extra: list[str] | None = None) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp, extra)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------- the browser


class PageErrors(list[str]):
    """Uncaught page errors; tests assert this stays empty."""


def sign_in(page: Any, role: str = "clinician", name: str = "", token: str = "") -> None:
    page.wait_for_selector("#join:not([disabled])")
    page.select_option("#role", role)
    page.fill("#name", name)
    page.fill("#token", token)
    page.click("#join")


def wait_connected(page: Any, timeout_s: float = 15) -> dict[str, Any]:
    page.wait_for_function(
        "() => window.__metaworld.connected && window.__metaworld.self.placed",
        timeout=timeout_s * 1000,
    )
    return dict(page.evaluate("() => ({id: __metaworld.avatarId, room: __metaworld.room})"))


def hook(page: Any, expr: str) -> Any:
    """Evaluate `expr` with `m` bound to window.__metaworld."""
    return page.evaluate(f"() => {{ const m = window.__metaworld; return {expr}; }}")


def screenshot_checked(page: Any, name: str) -> Path:
    """Save a screenshot under test-artifacts/ and check that it is not blank."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=rgb.width * rgb.height) or []
        top_share = max(count for count, _ in colours) / (rgb.width * rgb.height)
    assert top_share < 0.95, f"{path} looks blank: one colour covers {top_share:.0%}"
    return path


# ---------------------------------------------------------------- bots


class BotPool:
    """SDK clients on a Trio loop in a background thread, driven from sync test code."""

    def __init__(self) -> None:
        self.clients: list[Any] = []
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="bots", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the bot thread did not start")

    def _main(self) -> None:
        try:
            trio.run(self._loop)
        except BaseException as exc:  # reported by close()
            self._failure = exc

    async def _loop(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._ready.set()
            await trio.sleep_forever()

    def run(self, afn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        return trio.from_thread.run(afn, *args, trio_token=self._token)

    def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def start_task(self, afn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run `afn(*args)` in the background until close()."""
        assert self._nursery is not None
        trio.from_thread.run_sync(self._nursery.start_soon, afn, *args, trio_token=self._token)

    def connect(self, ws_url: str, token: str, kind: str = "bot") -> Any:
        """Connect one SDK client (kept open until close()) and return it."""

        async def hold(task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
            async with metaworld_sdk.connect(ws_url, token, kind=kind) as client:
                task_status.started(client)
                await trio.sleep_forever()

        async def open_client() -> Any:
            assert self._nursery is not None
            with trio.fail_after(15):
                return await self._nursery.start(hold)

        client = self.run(open_client)
        self.clients.append(client)
        return client

    def wait_for(self, client: Any, predicate: Callable[[Any], bool], timeout: float = 10) -> None:
        self.run(client.wait_for, predicate, timeout)

    def close(self) -> None:
        if self._token is not None and self._thread.is_alive():
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._cancel, trio_token=self._token)
        self._thread.join(10)
        if self._failure is not None:
            raise self._failure

    def _cancel(self) -> None:
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()


# ---------------------------------------------------------------- a breakable link


class TcpProxy:
    """A loopback TCP relay whose live connections can be cut, as a failing network would."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._pairs: set[Pair] = set()
        self._closed = False
        threading.Thread(target=self._accept, name="proxy", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
            for a, b in (pair, pair[::-1]):
                threading.Thread(target=self._pump, args=(a, b, pair), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, pair: Pair) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        self._drop(pair, reset=False)

    def _drop(self, pair: Pair, *, reset: bool) -> None:
        with self._lock:
            if pair not in self._pairs:
                return
            self._pairs.discard(pair)
        for sock in pair:
            with contextlib.suppress(OSError):
                if reset:  # linger 0: close sends RST instead of FIN
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def cut(self) -> None:
        """Reset every live connection (no WebSocket close frame is sent)."""
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            self._drop(pair, reset=True)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut()


# ---------------------------------------------------------------- accessibility

AXE_JS = NODE_MODULES / "axe-core" / "axe.min.js"
# IWER's own full-window container is the emulator's UI, not ours.
AXE_EXCLUDE = ["[data-webxr_runtime]"]


def axe_violations(page: Any, impacts: tuple[str, ...] = ("serious", "critical")) -> list[str]:
    """Run axe-core in the page; return its serious and critical findings, readably."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE_JS))
    result = page.evaluate(
        """async (exclude) => {
            const r = await axe.run({ exclude: exclude.map((s) => [s]) },
                                    { resultTypes: ['violations'] });
            return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
        }""",
        AXE_EXCLUDE,
    )
    return [
        f"{v['impact']}: {v['id']} ({v['help']}) at {v['nodes']}"
        for v in result
        if v["impact"] in impacts
    ]
