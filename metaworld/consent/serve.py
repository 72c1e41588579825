"""`metaworld consent serve`: the consent service in its own process, over HTTP.

The world server reaches it with `RemoteConsentService` (:mod:`.remote`, which also
defines the wire format). Each request is checked in this order, and only a request that
passes every check reaches the service: the service token (401), the content type
(415), the body size (413), the body's schema (400). The service call itself, which is
synchronous and may write to the ledger, runs in a worker thread; a small limiter
bounds how many run at once. Nothing from a token or a record body is ever logged.

    python -m metaworld.consent.serve --data-dir DIR [--db URL] [--host H] [--port P]
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, assert_never

import jwt
import msgspec
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from metaworld.consent.errors import ConsentError
from metaworld.consent.remote import (
    DEFAULT_PORT,
    ENDPOINTS,
    MSGPACK,
    SERVICE_AUDIENCE,
    SERVICE_ISSUER,
    SERVICE_SUBJECT,
    Args,
    BreakGlassArgs,
    ConsentsArgs,
    DecideArgs,
    EndBreakGlassArgs,
    ErrorReply,
    FetchViewArgs,
    GrantArgs,
    HistoryArgs,
    RevokeArgs,
    ServiceKeyError,
    error_reply,
    load_or_create_service_key,
)
from metaworld.consent.service import (
    Clock,
    ConsentService,
    InProcessConsentService,
    system_clock,
)
from metaworld.hosts import is_loopback
from metaworld.ledger import Ledger, LedgerError, LedgerKeyError, load_or_create_ledger_key

log = logging.getLogger("metaworld.consent.serve")

MAX_REQUEST_BYTES: Final = 256 * 1024  # the largest argument is a consent (64 KiB of JSON)
WORKER_THREADS: Final = 4  # service calls running at once; SQLite takes one writer anyway
KEEP_ALIVE_S: Final = 30  # idle connection lifetime; the client drops its own sooner
LEEWAY_S: Final = 30  # clock skew allowed between the two processes
MAX_TOKEN_LIFETIME_S: Final = 15 * 60  # a service token claiming a longer life is refused


# ---------------------------------------------------------------- tokens


class TokenRefused(Exception):
    """Why a service token is not accepted; never quotes the token."""


class ServiceTokenVerifier:
    """Checks service tokens: EdDSA only, one of `keys`, our audience and issuer,
    integer ``iat`` and ``exp`` no further apart than `MAX_TOKEN_LIFETIME_S`."""

    def __init__(
        self,
        keys: Sequence[Ed25519PublicKey],
        *,
        subjects: frozenset[str] = frozenset({SERVICE_SUBJECT}),
    ) -> None:
        if not keys:
            raise ServiceKeyError("the consent service needs at least one public key")
        self._keys = tuple(keys)
        self._subjects = subjects

    def verify(self, token: str) -> str:
        """The token's subject; raises `TokenRefused`."""
        claims = self._decode(token)
        if type(claims["iat"]) is not int or type(claims["exp"]) is not int:
            raise TokenRefused("iat and exp must be integer timestamps")
        if claims["exp"] - claims["iat"] > MAX_TOKEN_LIFETIME_S:
            raise TokenRefused(f"token lives longer than {MAX_TOKEN_LIFETIME_S} s")
        if claims["sub"] not in self._subjects:
            raise TokenRefused("token subject may not call the consent service")
        return str(claims["sub"])

    def _decode(self, token: str) -> dict[str, Any]:
        for key in self._keys:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key,
                    algorithms=["EdDSA"],
                    audience=SERVICE_AUDIENCE,
                    issuer=SERVICE_ISSUER,
                    leeway=LEEWAY_S,
                    options={"require": ["exp", "iat", "iss", "aud", "sub"], "strict_aud": True},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                raise TokenRefused(f"token rejected: {type(exc).__name__}") from exc
            return claims
        raise TokenRefused("token signature does not verify")


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise ServiceKeyError(f"cannot read public key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ServiceKeyError(f"public key {path} is not an Ed25519 key")
    return key


def verifier_for(data_dir: Path, public_keys: Sequence[Path] = ()) -> ServiceTokenVerifier:
    """Trust the given public key files, or else the service key of the shared data dir."""
    if public_keys:
        return ServiceTokenVerifier([load_public_key(path) for path in public_keys])
    return ServiceTokenVerifier([load_or_create_service_key(data_dir).public_key()])


# ---------------------------------------------------------------- the app


def dispatch(service: ConsentService, args: Args) -> object:
    """Run the one service call that `args` stands for."""
    match args:
        case DecideArgs():
            return service.decide(args.request)
        case FetchViewArgs():
            return service.fetch_view(args.request)
        case GrantArgs():
            return service.grant(args.patient, args.consent, by=args.by)
        case RevokeArgs():
            return service.revoke(args.patient, args.consent_id, by=args.by)
        case ConsentsArgs():
            return service.consents(args.patient, by=args.by)
        case HistoryArgs():
            return service.history(
                args.patient, by=args.by, since_ms=args.since_ms, limit=args.limit
            )
        case BreakGlassArgs():
            return service.break_glass(
                args.actor, args.role, args.patient, args.reason, args.duration_s, room=args.room
            )
        case EndBreakGlassArgs():
            return service.end_break_glass(args.grant_id, by=args.by)
        case _:
            assert_never(args)


_encoder: Final = msgspec.msgpack.Encoder()


def _reply(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    return Response(_encoder.encode(body), status, headers, media_type=MSGPACK)


def _refusal(status: int, code: str, message: str) -> Response:
    headers = {"www-authenticate": 'Bearer error="invalid_token"'} if status == 401 else None
    return _reply(status, ErrorReply(code, message), headers)


class _Handler:
    """Serves ``POST /v1/<method>`` for one method."""

    def __init__(
        self,
        method: str,
        service: ConsentService,
        verifier: ServiceTokenVerifier,
        limiter: trio.CapacityLimiter,
    ) -> None:
        self.method = method
        self._decoder = msgspec.msgpack.Decoder(ENDPOINTS[method].args)
        self._service = service
        self._verifier = verifier
        self._limiter = limiter

    async def respond(self, request: Request) -> Response:
        started = time.monotonic()
        response = await self._handle(request)
        log.debug(
            "%s: %d in %.1f ms",
            self.method,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return response

    async def _handle(self, request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            if scheme.lower() != "bearer" or not token:
                raise TokenRefused("no bearer token")
            self._verifier.verify(token.strip())
        except TokenRefused as exc:
            log.warning("refused a call to %s: %s", self.method, exc)
            return _refusal(401, "unauthorized", str(exc))

        if request.headers.get("content-type", "").split(";")[0].strip() != MSGPACK:
            return _refusal(415, "unsupported_media_type", f"send {MSGPACK}")
        body = await _read_body(request)
        if body is None:
            return _refusal(413, "too_large", f"at most {MAX_REQUEST_BYTES} bytes")
        try:
            args = self._decoder.decode(body)
        except msgspec.DecodeError as exc:
            return _refusal(400, "bad_request", str(exc))
        return await self._run(args)

    async def _run(self, args: Args) -> Response:
        try:
            result = await trio.to_thread.run_sync(
                functools.partial(dispatch, self._service, args), limiter=self._limiter
            )
        except ConsentError as exc:
            status, reply = error_reply(exc)
            return _reply(status, reply)
        except LedgerError as exc:
            _log_failure(self.method, exc)
            return _refusal(503, "ledger_unavailable", "the audit ledger failed")
        except Exception as exc:
            _log_failure(self.method, exc)
            return _refusal(500, "internal", "the consent service failed")
        return _reply(200, result)


def _log_failure(method: str, exc: BaseException) -> None:
    # The type and the frames, not the message: a store error's message may quote the SQL
    # parameters, which are patient ids and record contents.
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error("%s failed: %s\n%s", method, type(exc).__name__, frames.rstrip())


async def _read_body(request: Request) -> bytes | None:
    """The request body, or None when it is larger than `MAX_REQUEST_BYTES`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(
    service: ConsentService,
    verifier: ServiceTokenVerifier,
    *,
    threads: int = WORKER_THREADS,
) -> Starlette:
    """The ASGI app: every `ConsentService` method, and ``GET /healthz``."""
    limiter = trio.CapacityLimiter(threads)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    routes = [Route("/healthz", healthz)]
    for method in ENDPOINTS:
        handler = _Handler(method, service, verifier, limiter)
        routes.append(Route(f"/v1/{method}", handler.respond, methods=["POST"]))
    return Starlette(routes=routes)


async def serve_consent(
    app: Starlette,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` until cancelled; reports the bound port (useful with port 0)."""
    config = HypercornConfig()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.keep_alive_timeout = KEEP_ALIVE_S
    # Hypercorn's own lines ("Running on ...") say less than ours; keep its warnings.
    errorlog = logging.getLogger("metaworld.consent.hypercorn")
    errorlog.setLevel(logging.WARNING)
    config.errorlog = errorlog
    async with trio.open_nursery() as nursery:
        bound: list[str] = await nursery.start(
            lambda task_status: serve(
                app,  # type: ignore[arg-type]  # Starlette is an ASGI app
                config,
                task_status=task_status,
            )
        )
        bound_port = int(bound[0].rsplit(":", 1)[1])
        log.info("consent service listening on http://%s:%d/", host, bound_port)
        task_status.started(bound_port)


async def _serve_until_signal(app: Starlette, host: str, port: int) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_consent, app, host, port)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                log.info("consent service shutting down")
                nursery.cancel_scope.cancel()
                break


# ---------------------------------------------------------------- command line


def add_consent_serve_parser(subparsers: Any) -> None:
    """Register ``serve`` on the subparsers of ``metaworld consent``."""
    parser = subparsers.add_parser("serve", help="run the consent service as its own process")
    _add_options(parser)
    parser.set_defaults(func=cmd_consent_serve)


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free one")
    parser.add_argument("--db", help="SQLAlchemy URL (default: SQLite in the data directory)")
    parser.add_argument("--data-dir", help="keys and the database (default: ./data)")
    parser.add_argument(
        "--service-public-key",
        type=Path,
        action="append",
        default=[],
        metavar="PEM",
        help="trust service tokens signed by this key (repeatable; default: the service "
        "key in the data directory)",
    )


def cmd_consent_serve(args: argparse.Namespace, *, clock: Clock = system_clock) -> int:
    """Serve until SIGINT or SIGTERM: 0; 1 when it cannot listen, 2 when a key is unusable."""
    from metaworld.store import default_url, make_engine

    data_dir = Path(args.data_dir or os.environ.get("METAWORLD_DATA_DIR", "data"))
    data_dir.mkdir(parents=True, exist_ok=True)
    db_url = args.db or os.environ.get("METAWORLD_DB") or default_url(data_dir)
    try:
        verifier = verifier_for(data_dir, args.service_public_key)
        ledger_key = load_or_create_ledger_key(data_dir)
    except (ServiceKeyError, LedgerKeyError) as exc:
        print(f"metaworld: {exc}", file=sys.stderr)
        return 2
    if not is_loopback(args.host):
        log.warning("listening beyond loopback: put TLS in front, the service speaks plain HTTP")

    engine = make_engine(db_url)
    status = 0
    service = InProcessConsentService(engine, Ledger(engine, ledger_key), clock)
    try:
        trio.run(_serve_until_signal, build_app(service, verifier), args.host, args.port)
    except* OSError as failed:  # the port is taken, or the address is not ours
        reason = _first_leaf(failed)
        print(f"metaworld: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
        status = 1
    finally:
        service.checkpoint()  # leave no entry outside a signed checkpoint
        engine.dispose()
    return status


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def main(argv: Sequence[str] | None = None, *, clock: Clock = system_clock) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m metaworld.consent.serve",
        description="Run the consent service as its own process.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    _add_options(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return cmd_consent_serve(args, clock=clock)


if __name__ == "__main__":
    sys.exit(main())
