"""The HTTP side: health, metrics, client configuration, dev tokens and the web client.

Served by Hypercorn on Trio (a Starlette app) in the server's own nursery, on its own
port, so a burst of page loads never competes with the WebSocket listener's accept loop.
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from metaworld import protocol
from metaworld.auth import mint_dev_token
from metaworld.roles import ROLES

if TYPE_CHECKING:
    from metaworld.server import WorldServer

log = logging.getLogger("metaworld.http")
_NAME = re.compile(r"^[\w .'-]{1,40}$")
_RECORD_ID = re.compile(r"^[A-Za-z0-9.-]{1,64}$")
# Development tokens get the SMART scopes a person in that role would normally hold.
_DEV_SCOPES = {"patient": ("patient/*.rs",), "researcher": ()}
_STAFF_SCOPES = ("user/*.rs",)

_NO_CLIENT = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>metaworld</title></head><body><main><h1>metaworld server</h1>
<p>The web client is not built. Run <code>make run</code> (it builds the client) or
<code>make client</code>.</p></main></body></html>"""


def build_app(server: WorldServer) -> Starlette:
    async def healthz(_: Request) -> Response:
        if server.ready.is_set():
            return JSONResponse({"status": "ok", **server.status()})
        return JSONResponse({"status": "starting"}, status_code=503)

    async def metrics(_: Request) -> Response:
        return Response(server.metrics.render(), media_type="text/plain; version=0.0.4")

    async def config(request: Request) -> Response:
        host = request.url.hostname or server.config.host
        return JSONResponse(
            {
                "ws_url": f"ws://{host}:{server.ws_port}/",
                "subprotocol": protocol.SUBPROTOCOL,
                "dev_tokens": server.config.dev_tokens,
                "tick_hz": server.config.tick_hz,
            }
        )

    async def dev_token(request: Request) -> Response:
        if not server.config.dev_tokens:
            return PlainTextResponse("dev tokens are off on this server", status_code=404)
        try:
            body: Any = await request.json()
        except ValueError:
            return PlainTextResponse("send a JSON object", status_code=400)
        role = body.get("role") if isinstance(body, dict) else None
        name = body.get("name") or None if isinstance(body, dict) else None
        if role not in ROLES:
            return PlainTextResponse(f"role must be one of {', '.join(ROLES)}", status_code=400)
        if name is not None and (not isinstance(name, str) or not _NAME.match(name)):
            return PlainTextResponse("name: 1-40 letters, digits, spaces", status_code=400)
        patient = body.get("patient") or None if role == "patient" else None
        if patient is not None and (not isinstance(patient, str) or not _RECORD_ID.match(patient)):
            return PlainTextResponse("patient: a FHIR Patient id", status_code=400)
        subject = f"web-{role}-{secrets.token_hex(6)}"
        token = mint_dev_token(
            server.config.data_dir,
            subject,
            role,
            name=name,
            ttl_s=8 * 3600,
            scopes=_DEV_SCOPES.get(role, _STAFF_SCOPES),
            patient=patient,
        )
        return JSONResponse({"token": token})

    async def no_client(_: Request) -> Response:
        return HTMLResponse(_NO_CLIENT)

    routes: list[Any] = [
        Route("/healthz", healthz),
        Route("/metrics", metrics),
        Route("/api/config", config),
        Route("/api/dev-token", dev_token, methods=["POST"]),
    ]
    static = server.config.static_dir
    if static is not None and (static / "index.html").exists():
        routes.append(Mount("/", StaticFiles(directory=static, html=True)))
    else:
        routes.append(Route("/", no_client))
    return Starlette(routes=routes)


async def serve_http(
    server: WorldServer, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    cfg = HypercornConfig()
    cfg.bind = [f"{server.config.host}:{server.config.http_port}"]
    cfg.accesslog = None
    cfg.errorlog = logging.getLogger("metaworld.http.hypercorn")
    async with trio.open_nursery() as nursery:
        bound: list[str] = await nursery.start(
            lambda task_status: serve(
                build_app(server),  # type: ignore[arg-type]  # Starlette is an ASGI app
                cfg,
                task_status=task_status,
            )
        )
        port = int(bound[0].rsplit(":", 1)[1])
        log.info("HTTP on http://%s:%d/", server.config.host, port)
        task_status.started(port)
