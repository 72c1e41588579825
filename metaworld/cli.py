"""The `metaworld` command."""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Any, Final

import trio

from metaworld import protocol
from metaworld.auth import TokenError, dev_verifier, mint_dev_token, verifier_from_files
from metaworld.hosts import is_loopback
from metaworld.interest import InterestConfig
from metaworld.layout import DEFAULT_LAYOUT, LayoutError, load_layout
from metaworld.roles import ROLES

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR: Final = Path(os.environ.get("METAWORLD_DATA_DIR", "data"))
STATIC_DIR: Final = REPO_ROOT / "clients" / "webxr" / "dist"
LABEL_SECRET_FILE: Final = "label_secret"

log = logging.getLogger("metaworld")


def _data_dir(arg: str | None) -> Path:
    path = Path(arg) if arg else DEFAULT_DATA_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def _db_url(arg: str | None, data_dir: Path) -> str:
    from metaworld.store import default_url

    return arg or os.environ.get("METAWORLD_DB") or default_url(data_dir)


def load_or_create_secret(data_dir: Path, name: str = LABEL_SECRET_FILE) -> bytes:
    path = data_dir / name
    if path.exists():
        return path.read_bytes()
    secret = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secret)
    return secret


# ---------------------------------------------------------------- serve


def cmd_serve(args: argparse.Namespace) -> int:
    from metaworld.consent import InProcessConsentService
    from metaworld.server import ServerConfig, WorldServer
    from metaworld.store import make_engine

    data_dir = _data_dir(args.data_dir)
    try:
        layout = load_layout(args.world)
    except LayoutError as exc:
        print(f"metaworld: {exc}", file=sys.stderr)
        return 2
    if not (args.jwt_pem or args.jwks) and not is_loopback(args.host):
        print(
            "metaworld: development keys mint tokens for anyone who can reach the HTTP port; "
            "serve beyond loopback only with --jwt-pem or --jwks",
            file=sys.stderr,
        )
        return 2
    if args.jwt_pem or args.jwks:
        verifier = verifier_from_files(
            args.jwt_issuer, pem=args.jwt_pem, jwks=args.jwks, audience=args.jwt_audience
        )
        dev = False
    else:
        verifier = dev_verifier(data_dir)
        dev = True
    engine = make_engine(_db_url(args.db, data_dir))
    config = ServerConfig(
        consent=_consent_service(args, engine, data_dir),
        layout=layout,
        verifier=verifier,
        engine=engine,
        data_dir=data_dir,
        host=args.host,
        ws_port=args.ws_port,
        http_port=args.http_port,
        tick_hz=args.tick_hz,
        dev_tokens=dev,
        static_dir=STATIC_DIR,
        interest=InterestConfig(radius=args.view_radius, cap=args.view_cap),
        ws_engine=args.ws_engine,
    )
    server = WorldServer(config, label_secret=load_or_create_secret(data_dir))
    log.info(
        "loaded world %r: %d rooms, %d doors", layout.name, len(layout.rooms), len(layout.doors)
    )
    if dev:
        log.info("dev keys in %s; mint tokens with `metaworld token`", data_dir)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    log.info("shutting down")
                    await server.shutdown()
                    nursery.cancel_scope.cancel()
                    break

    trio.run(main)
    if isinstance(config.consent, InProcessConsentService):
        config.consent.checkpoint()
    engine.dispose()
    return 0


def _consent_service(args: argparse.Namespace, engine: Any, data_dir: Path) -> Any:
    """The consent service: embedded on the same database by default, or the separate
    process at --consent-url, reached with a service token from the data directory."""
    if args.consent_url:
        from metaworld.consent.remote import RemoteConsentService, ServiceTokenSource

        return RemoteConsentService(args.consent_url, ServiceTokenSource.from_data_dir(data_dir))
    from metaworld.consent import InProcessConsentService
    from metaworld.ledger import Ledger
    from metaworld.ledger.checkpoint import load_or_create_ledger_key

    ledger = Ledger(engine, load_or_create_ledger_key(data_dir))
    return InProcessConsentService(engine, ledger)


def cmd_token(args: argparse.Namespace) -> int:
    data_dir = _data_dir(args.data_dir)
    try:
        token = mint_dev_token(
            data_dir,
            args.sub,
            args.role,
            name=args.name,
            ttl_s=args.ttl,
            scopes=tuple(args.scope.split()) if args.scope else (),
            patient=args.patient,
        )
    except (ValueError, TokenError) as exc:
        print(f"metaworld: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def cmd_records_import(args: argparse.Namespace) -> int:
    from metaworld.records.cli import import_command

    return import_command(_db_url(args.db, _data_dir(args.data_dir)), args.files)


def cmd_ledger_verify(args: argparse.Namespace) -> int:
    from metaworld.ledger.cli import verify_command

    data_dir = _data_dir(args.data_dir)
    return verify_command(_db_url(args.db, data_dir), data_dir)


def cmd_consent_demo(args: argparse.Namespace) -> int:
    from metaworld.demo import run_demo

    # Its own database by default (the keys are shared): the demo runs its own server,
    # and two servers must never append to one ledger.
    data_dir = _data_dir(args.data_dir)
    db_url = args.db or os.environ.get("METAWORLD_DB") or f"sqlite:///{data_dir / 'demo.db'}"
    shared = Path(args.patients)
    bundles = sorted(shared.glob("*.json"))
    if not bundles:
        print(f"metaworld: no FHIR bundles in {shared}", file=sys.stderr)
        return 2
    logging.getLogger("metaworld").setLevel(logging.WARNING)
    result = trio.run(run_demo, db_url, data_dir, bundles, print, args.consent_url)
    good = (
        result.outcomes.get("consented clinician") == "RecordShown"
        and all(
            v == "RecordDenied" for k, v in result.outcomes.items() if k != "consented clinician"
        )
        and result.ledger_ok
    )
    return 0 if good else 1


def cmd_schema(_: argparse.Namespace) -> int:
    try:
        print(json.dumps(protocol.json_schema(), indent=2))
    except BrokenPipeError:  # `metaworld schema | head`
        sys.stderr.close()
    return 0


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metaworld", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve_parser(sub)
    _add_other_parsers(sub)
    return parser


def _add_serve_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = sub.add_parser("serve", help="run the world server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--ws-port", type=int, default=8765)
    serve.add_argument("--http-port", type=int, default=8080)
    serve.add_argument("--world", type=Path, default=DEFAULT_LAYOUT, help="layout file")
    serve.add_argument("--db", help="SQLAlchemy URL (default: SQLite in the data directory)")
    serve.add_argument("--data-dir", help="keys and the database (default: ./data)")
    serve.add_argument("--tick-hz", type=int, default=20, choices=range(1, 121), metavar="N")
    serve.add_argument("--view-radius", type=float, default=12.0, help="metres")
    serve.add_argument("--view-cap", type=int, default=32, help="most avatars a client sees")
    serve.add_argument("--jwt-pem", type=Path, help="public key PEM of the token issuer")
    serve.add_argument("--jwks", type=Path, help="JWKS file of the token issuer")
    serve.add_argument("--jwt-issuer", default="metaworld", help="expected iss claim")
    serve.add_argument("--jwt-audience", default="metaworld", help="expected aud claim")
    serve.add_argument(
        "--ws-engine",
        choices=["lean", "trio-websocket"],
        default="lean",
        help="WebSocket implementation (default: lean)",
    )
    serve.add_argument(
        "--consent-url", help="use the consent service at this URL (`metaworld consent serve`)"
    )
    serve.set_defaults(func=cmd_serve)


def _add_other_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]

    token = sub.add_parser("token", help="print a dev token the local server accepts")
    token.add_argument("--sub", required=True, help="subject (a stable user id)")
    token.add_argument("--role", required=True, choices=ROLES)
    token.add_argument("--name", help="display name (staff; patients get a pseudonym)")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    token.add_argument("--scope", help="space-separated SMART scopes, e.g. 'user/*.rs'")
    token.add_argument("--patient", help="SMART launch patient: the record a patient owns")
    token.add_argument("--data-dir")
    token.set_defaults(func=cmd_token)

    schema = sub.add_parser("schema", help="print the protocol's JSON Schema")
    schema.set_defaults(func=cmd_schema)

    from load_tests.cli import add_bots_parser
    from metaworld_headset.cli import add_headset_parser

    add_headset_parser(sub)
    add_bots_parser(sub)

    records = sub.add_parser("records", help="health records").add_subparsers(
        dest="records_command", required=True
    )
    imp = records.add_parser("import", help="import FHIR R4 bundles (JSON files)")
    imp.add_argument("files", nargs="+", type=Path)
    _store_options(imp)
    imp.set_defaults(func=cmd_records_import)

    consent = sub.add_parser("consent", help="the consent service").add_subparsers(
        dest="consent_command", required=True
    )
    from metaworld.consent.serve import add_consent_serve_parser

    add_consent_serve_parser(consent)
    demo = consent.add_parser("demo", help="play the consultation story step by step")
    demo.add_argument(
        "--patients",
        default=str(REPO_ROOT.parent / "shared" / "data" / "synthea-r4"),
        help="folder of FHIR bundles to import (default: the shared Synthea patients)",
    )
    demo.add_argument("--consent-url", help="use a running `metaworld consent serve`")
    _store_options(demo)
    demo.set_defaults(func=cmd_consent_demo)

    ledger = sub.add_parser("ledger", help="the audit ledger").add_subparsers(
        dest="ledger_command", required=True
    )
    verify = ledger.add_parser("verify", help="recompute the log and check its checkpoints")
    _store_options(verify)
    verify.set_defaults(func=cmd_ledger_verify)


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", help="SQLAlchemy URL (default: SQLite in the data directory)")
    parser.add_argument("--data-dir", help="keys and the database (default: ./data)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("metaworld.http.hypercorn").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
