"""The consent service as its own process: the same scenarios in process and over HTTP,
the service token, and failing closed.

The remote service is the real one, `metaworld.consent.serve` in a subprocess on a free
loopback port, on its own copy of a SQLite database holding the Synthea patients. The
scenarios of test_consent_service move a manual clock; for them the subprocess reads its
clock from a file the test writes, which is the one thing changed from `metaworld consent
serve`. The tests about tokens run `python -m metaworld.consent.serve` as it is.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import msgspec
import pytest
import test_consent_service as scenarios
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine
from test_consent_service import (
    BIBI,
    BIBI_HERSELF,
    START_MS,
    SYNTHEA,
    ManualClock,
    clinician_request,
    treatment_consent,
)

from metaworld.consent import (
    Actor,
    BreakGlassRefusedError,
    Caller,
    Consent,
    ConsentConflictError,
    ConsentError,
    ConsentNotFoundError,
    ConsentService,
    DuplicateActorError,
    InProcessConsentService,
    InvalidConsentError,
    InvalidRequestError,
    MalformedConsentError,
    MalformedScopeError,
    NestingTooDeepError,
    NotAllowedError,
    PatientMismatchError,
    PermissionOrderError,
    Provision,
    ReversedPeriodError,
    ScopeError,
    UnknownCodeError,
    opaque_patient_id,
)
from metaworld.consent.remote import (
    ENDPOINTS,
    ERRORS,
    MSGPACK,
    SERVICE_AUDIENCE,
    SERVICE_ISSUER,
    SERVICE_KEY_FILE,
    SERVICE_PUBLIC_KEY_FILE,
    SERVICE_SUBJECT,
    ConsentServiceUnavailable,
    DecideArgs,
    ErrorReply,
    RemoteConsentService,
    ServiceTokenRejected,
    ServiceTokenSource,
    error_from_reply,
    error_reply,
    load_service_key,
    service_token,
)
from metaworld.consent.serve import add_consent_serve_parser, cmd_consent_serve
from metaworld.consent.service import load_or_create_salt
from metaworld.ledger import Ledger, LedgerEntry, load_or_create_ledger_key
from metaworld.records import import_bundles
from metaworld.store import make_engine

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0  # a cold interpreter imports FHIR models, SQLAlchemy and Hypercorn
CALL_TIMEOUT_S = 10.0  # generous: these tests are about answers, not speed
LISTENING = re.compile(rb"listening on http://127\.0\.0\.1:(\d+)/")

# `metaworld consent serve`, with the service's clock read from a file (argv[1]).
SERVE_WITH_FILE_CLOCK = """
import sys
from pathlib import Path
from metaworld.consent.serve import main
clock_file = Path(sys.argv[1])
sys.exit(main(sys.argv[2:], clock=lambda: int(clock_file.read_text())))
"""


# ---------------------------------------------------------------- the service process


class ServiceProcess:
    """The consent service in a subprocess; its log goes to a file."""

    def __init__(self, command: list[str], log_path: Path) -> None:
        self.log_path = log_path
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with log_path.open("wb") as log_file:
            self.proc = subprocess.Popen(
                command, stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env
            )
        self.url = f"http://127.0.0.1:{self._wait_for_port()}"

    @classmethod
    def cli(cls, data_dir: Path, db_url: str, *options: str) -> ServiceProcess:
        command = [sys.executable, "-m", "metaworld.consent.serve", "-v", "--port", "0"]
        command += ["--data-dir", str(data_dir), "--db", db_url, *options]
        return cls(command, data_dir.parent / f"{data_dir.name}-service.log")

    @classmethod
    def with_file_clock(cls, data_dir: Path, db_url: str, clock_file: Path) -> ServiceProcess:
        command = [sys.executable, "-c", SERVE_WITH_FILE_CLOCK, str(clock_file)]
        command += ["-v", "--port", "0", "--data-dir", str(data_dir), "--db", db_url]
        return cls(command, data_dir.parent / f"{data_dir.name}-service.log")

    def _wait_for_port(self) -> int:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            found = LISTENING.search(self.log_path.read_bytes())
            if found:
                return int(found.group(1))
            if self.proc.poll() is not None:
                pytest.fail(f"the consent service exited:\n{self.log()}")
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"the consent service did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file with every Synthea bundle imported, copied by each test."""
    if not SYNTHEA.is_dir():
        pytest.skip(f"shared Synthea data not found at {SYNTHEA}")
    path = tmp_path_factory.mktemp("template") / "consent.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        report = import_bundles(engine, sorted(SYNTHEA.glob("*.json")))
    finally:
        engine.dispose()
    assert report.patients >= 7 and not report.rejected
    return path


def copy_db(template: Path, data_dir: Path) -> str:
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, data_dir / "consent.db")
    return f"sqlite:///{data_dir / 'consent.db'}"


def ledger_entries(engine: Engine, data_dir: Path) -> list[LedgerEntry]:
    ledger = Ledger(engine, load_or_create_ledger_key(data_dir))
    return [item.entry for item in ledger.entries(limit=10_000)]


# ---------------------------------------------------------------- the two worlds


class FileClock(ManualClock):
    """The test's manual clock, also written to a file the service process reads."""

    def __init__(self, path: Path) -> None:
        self._path = path
        super().__init__()

    @property  # type: ignore[override]
    def now_ms(self) -> int:
        return int(self._path.read_text())

    @now_ms.setter
    def now_ms(self, value: int) -> None:
        temporary = self._path.with_suffix(".tmp")
        temporary.write_text(str(value))
        os.replace(temporary, self._path)


class InProcessWorld:
    """What test_consent_service's scenarios need: service, engine, ledger, clock, entries."""

    def __init__(self, tmp_path: Path, template: Path) -> None:
        self.data_dir = tmp_path / "data"
        self.engine = make_engine(copy_db(template, self.data_dir))
        self.ledger = Ledger(self.engine, load_or_create_ledger_key(self.data_dir))
        self.clock = ManualClock()
        self.service: Any = InProcessConsentService(self.engine, self.ledger, self.clock)

    def entries(self) -> list[LedgerEntry]:
        return ledger_entries(self.engine, self.data_dir)

    def close(self) -> None:
        self.engine.dispose()


class AuditedRemote(RemoteConsentService):
    """The client, plus the opaque patient ids the scenarios compare ledger entries with:
    computed here from the salt in the shared database, as an auditor would."""

    def __init__(self, url: str, token_source: ServiceTokenSource, salt: bytes) -> None:
        super().__init__(url, token_source, timeout_s=CALL_TIMEOUT_S)
        self._salt = salt

    def opaque(self, patient_id: str) -> str:
        return opaque_patient_id(self._salt, patient_id)


class RemoteWorld:
    """The same, with the service in its own process on a shared data directory."""

    def __init__(self, tmp_path: Path, template: Path) -> None:
        self.data_dir = tmp_path / "data"
        db_url = copy_db(template, self.data_dir)
        self.clock = FileClock(tmp_path / "clock")
        self.server = ServiceProcess.with_file_clock(self.data_dir, db_url, tmp_path / "clock")
        # The test reads the ledger the service writes, as an auditor would.
        self.engine = make_engine(db_url)
        self.ledger = Ledger(self.engine, load_or_create_ledger_key(self.data_dir))
        self.token_source = ServiceTokenSource.from_data_dir(self.data_dir)
        salt = load_or_create_salt(self.engine)
        self.service: Any = AuditedRemote(self.server.url, self.token_source, salt)

    def entries(self) -> list[LedgerEntry]:
        return ledger_entries(self.engine, self.data_dir)

    def close(self) -> None:
        self.service.close()
        status = self.server.stop()
        self.engine.dispose()
        assert status == 0, self.server.log()


@pytest.fixture(
    params=["in-process", pytest.param("remote", marks=pytest.mark.slow)],
)
def world(
    request: pytest.FixtureRequest, tmp_path: Path, template_db: Path
) -> Iterator[InProcessWorld | RemoteWorld]:
    made = (InProcessWorld if request.param == "in-process" else RemoteWorld)(tmp_path, template_db)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def remote_world(tmp_path: Path, template_db: Path) -> Iterator[RemoteWorld]:
    made = RemoteWorld(tmp_path, template_db)
    try:
        yield made
    finally:
        made.close()


# ---------------------------------------------------------------- shared scenarios

# test_consent_service's scenarios, collected again here: pytest gives them this
# module's `world`, so each runs against both services.
test_grant_then_view_then_audit = scenarios.test_grant_then_view_then_audit
test_partial_permit_writes_a_permit_and_a_deny_entry = (
    scenarios.test_partial_permit_writes_a_permit_and_a_deny_entry
)
test_every_decision_is_audited_even_a_deny = scenarios.test_every_decision_is_audited_even_a_deny
test_deny_never_reveals_whether_the_patient_exists = (
    scenarios.test_deny_never_reveals_whether_the_patient_exists
)
test_new_version_and_revocation = scenarios.test_new_version_and_revocation
test_consent_changes_are_checked = scenarios.test_consent_changes_are_checked
test_history_is_the_patients_accounting_of_disclosures = (
    scenarios.test_history_is_the_patients_accounting_of_disclosures
)
test_patient_views_own_record_without_consent = (
    scenarios.test_patient_views_own_record_without_consent
)
test_data_period_reaches_the_view = scenarios.test_data_period_reaches_the_view
test_fhir_consent_resource_is_accepted = scenarios.test_fhir_consent_resource_is_accepted
test_results_cross_a_connection = scenarios.test_results_cross_a_connection
test_logs_hold_no_patient_ids_names_or_record_content = (
    scenarios.test_logs_hold_no_patient_ids_names_or_record_content
)


def test_consent_for_one_clinician_then_revoked(world: Any) -> None:
    only_dr_1 = Consent(
        id="c-dr1",
        patient=BIBI,
        status="active",
        provision=Provision(type="permit", actor=[Actor("clinician", reference="dr-1")]),
    )
    world.service.grant(BIBI, only_dr_1, by=BIBI_HERSELF)

    decision, view = world.service.fetch_view(clinician_request())
    assert decision.outcome == "permit"
    assert view is not None and len(view.vital_signs) == 6
    other, other_view = world.service.fetch_view(clinician_request(actor="dr-2"))
    assert (other.outcome, other.reason, other_view) == ("deny", "not-permitted", None)

    world.service.revoke(BIBI, "c-dr1", by=BIBI_HERSELF)
    assert world.service.decide(clinician_request()).outcome == "deny"

    history = world.service.history(BIBI, by=BIBI_HERSELF)
    assert [(e.kind, e.actor, e.outcome) for e in history] == [
        ("consent_granted", "pat-bibi", "recorded"),
        ("access", "dr-1", "permit"),
        ("access", "dr-2", "deny"),
        ("consent_revoked", "pat-bibi", "recorded"),
        ("access", "dr-1", "deny"),
    ]


def test_break_glass_is_flagged_for_review(world: Any) -> None:
    dr_1 = Caller("dr-1", "clinician")
    grant = world.service.break_glass("dr-1", "clinician", BIBI, "unresponsive", 600, room="er")
    assert (grant.actor, grant.end_ms - grant.start_ms) == ("dr-1", 600_000)

    decision, view = world.service.fetch_view(clinician_request(purpose="ETREAT"))
    assert (decision.outcome, decision.reason, decision.review) == ("permit", "break-glass", True)
    assert decision.consent_version == grant.ref
    assert view is not None and view.vital_signs
    assert world.service.decide(clinician_request()).outcome == "deny"  # TREAT is not covered
    with pytest.raises(NotAllowedError):
        world.service.end_break_glass(grant.id, by=Caller("dr-2", "clinician"))

    world.clock.now_ms += 1000
    ended = world.service.end_break_glass(grant.id, by=dr_1)

    assert ended.end_ms == START_MS + 1000
    assert world.service.decide(clinician_request(purpose="ETREAT")).outcome == "deny"
    flagged = [(e.kind, e.outcome) for e in world.entries() if e.review]
    assert flagged == [
        ("break_glass_start", "recorded"),
        ("access", "permit"),
        ("break_glass_end", "recorded"),
    ]
    with pytest.raises(BreakGlassRefusedError):
        world.service.break_glass("th-1", "therapist", BIBI, "unresponsive", 600)


def test_errors_keep_their_type_message_and_path(world: Any) -> None:
    typo = msgspec.structs.replace(treatment_consent(), status="actve")
    with pytest.raises(UnknownCodeError) as unknown:
        world.service.grant(BIBI, typo, by=BIBI_HERSELF)
    assert (unknown.value.path, unknown.value.code) == ("status", "actve")
    assert str(unknown.value).startswith("status: unknown code 'actve'")
    with pytest.raises(InvalidRequestError, match="unknown categories"):
        world.service.decide(clinician_request(categories=["x-rays"]))
    with pytest.raises(BreakGlassRefusedError, match="duration"):
        world.service.break_glass("dr-1", "clinician", BIBI, "unresponsive", 0)
    assert world.entries() == []


# ---------------------------------------------------------------- remote only


@pytest.mark.slow
def test_service_log_holds_no_patient_ids_reasons_or_tokens(remote_world: RemoteWorld) -> None:
    service = remote_world.service
    service.grant(BIBI, treatment_consent(), by=BIBI_HERSELF)
    service.fetch_view(clinician_request())
    service.break_glass("dr-1", "clinician", BIBI, "collapsed in the lobby", 60)
    service.fetch_view(clinician_request(purpose="ETREAT"))
    service.history(BIBI, by=BIBI_HERSELF)
    token = remote_world.token_source()

    assert remote_world.server.stop() == 0
    log = remote_world.server.log()
    assert "fetch_view: 200" in log  # the debug lines are there to be searched
    for needle in (BIBI, "Bibi254", "Schowalter414", "COVID", "collapsed", token, "eyJ"):
        assert needle not in log


@pytest.mark.slow
def test_world_fails_closed_when_the_service_stops(remote_world: RemoteWorld) -> None:
    remote_world.service.grant(BIBI, treatment_consent(), by=BIBI_HERSELF)
    assert remote_world.service.decide(clinician_request()).outcome == "permit"
    assert remote_world.server.stop() == 0

    started = time.monotonic()
    with pytest.raises(ConsentServiceUnavailable):
        remote_world.service.fetch_view(clinician_request())
    assert time.monotonic() - started < 1.0


# ---------------------------------------------------------------- the service token


class TokenWorld:
    """`python -m metaworld.consent.serve` deployed with separate data directories: the
    world server's holds the service key, the service trusts a copy of its public half."""

    def __init__(self, tmp_path: Path, template: Path) -> None:
        self.world_dir = tmp_path / "world"
        self.service_dir = tmp_path / "service"
        self.key_file = self.world_dir / SERVICE_KEY_FILE
        self.token_source = ServiceTokenSource.from_data_dir(self.world_dir)
        db_url = copy_db(template, self.service_dir)
        public = self.service_dir / "world-server.pub.pem"
        shutil.copyfile(self.world_dir / SERVICE_PUBLIC_KEY_FILE, public)
        self.server = ServiceProcess.cli(
            self.service_dir, db_url, "--service-public-key", str(public)
        )
        self.engine = make_engine(db_url)

    def ledger_size(self) -> int:
        return len(ledger_entries(self.engine, self.service_dir))


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory, template_db: Path) -> Iterator[TokenWorld]:
    made = TokenWorld(tmp_path_factory.mktemp("tokens"), template_db)
    try:
        yield made
    finally:
        status = made.server.stop()
        made.engine.dispose()
        assert status == 0, made.server.log()


def claims(**changes: object) -> dict[str, object]:
    now = int(time.time())
    values: dict[str, object] = {
        "iss": SERVICE_ISSUER,
        "aud": SERVICE_AUDIENCE,
        "sub": SERVICE_SUBJECT,
        "iat": now,
        "exp": now + 60,
    }
    values.update(changes)
    return {name: value for name, value in values.items() if value is not None}


def signed(key: Ed25519PrivateKey | None = None, **changes: object) -> str:
    return jwt.encode(claims(**changes), key, algorithm="EdDSA")


def refused_authorization(kind: str, key: Ed25519PrivateKey) -> dict[str, str]:
    """An authorization header (or none) the service must refuse."""
    now = int(time.time())
    tokens = {
        "forged": lambda: signed(Ed25519PrivateKey.generate()),
        "expired": lambda: signed(key, iat=now - 600, exp=now - 300),
        "wrong-audience": lambda: signed(key, aud="metaworld"),
        "wrong-issuer": lambda: signed(key, iss="metaworld-dev"),
        "other-subject": lambda: signed(key, sub="someone-else"),
        "no-expiry": lambda: signed(key, exp=None),
        "float-times": lambda: signed(key, iat=now + 0.5, exp=now + 60.5),
        "lives-a-day": lambda: signed(key, exp=now + 86_400),
        "alg-none": lambda: jwt.encode(claims(), None, algorithm="none"),
        "HS256": lambda: jwt.encode(claims(), "s" * 64, algorithm="HS256"),
        "garbage": lambda: "not.a.jwt",
    }
    if kind == "none":
        return {}
    if kind == "basic":
        return {"authorization": "Basic d29ybGQ6c2VydmVy"}
    return {"authorization": f"Bearer {tokens[kind]()}"}


REFUSED = [
    "none",
    "basic",
    "forged",
    "expired",
    "wrong-audience",
    "wrong-issuer",
    "other-subject",
    "no-expiry",
    "float-times",
    "lives-a-day",
    "alg-none",
    "HS256",
    "garbage",
]


@pytest.mark.slow
@pytest.mark.parametrize("kind", REFUSED)
def test_requests_without_a_valid_token_are_refused_unexecuted(
    tokens: TokenWorld, kind: str
) -> None:
    key = load_service_key(tokens.key_file)
    headers = {"content-type": MSGPACK, **refused_authorization(kind, key)}
    body = msgspec.msgpack.encode(DecideArgs(clinician_request()))
    before = tokens.ledger_size()

    answer = httpx.post(f"{tokens.server.url}/v1/decide", content=body, headers=headers)

    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert msgspec.msgpack.decode(answer.content, type=ErrorReply).code == "unauthorized"
    assert tokens.ledger_size() == before


@pytest.mark.slow
def test_a_valid_token_is_executed_and_a_forged_one_raises(tokens: TokenWorld) -> None:
    before = tokens.ledger_size()
    with RemoteConsentService(tokens.server.url, tokens.token_source) as service:
        assert service.decide(clinician_request()).outcome == "deny"
    assert tokens.ledger_size() == before + 1

    forged = ServiceTokenSource(Ed25519PrivateKey.generate())
    with (
        RemoteConsentService(tokens.server.url, forged) as service,
        pytest.raises(ServiceTokenRejected, match="signature"),
    ):
        service.decide(clinician_request())
    assert tokens.ledger_size() == before + 1
    # Trusting the given public key, the service made no key of its own.
    assert not (tokens.service_dir / SERVICE_KEY_FILE).exists()
    assert "eyJ" not in tokens.server.log()


@pytest.mark.slow
def test_the_service_refuses_what_is_not_a_call(tokens: TokenWorld) -> None:
    auth = {"authorization": f"Bearer {tokens.token_source()}"}
    url = tokens.server.url
    with httpx.Client(base_url=url, headers=auth) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        as_json = http.post("/v1/decide", json={}, headers={"content-type": "application/json"})
        assert as_json.status_code == 415
        msgpack = {"content-type": MSGPACK}
        assert http.post("/v1/decide", content=b"\xc1", headers=msgpack).status_code == 400
        wrong = msgspec.msgpack.encode({"request": {"actor": 1}})
        assert http.post("/v1/decide", content=wrong, headers=msgpack).status_code == 400
        assert http.post("/v1/drop_tables", content=b"", headers=msgpack).status_code == 404
        # Last: the server closes the connection after refusing an oversized body, and a
        # request after it could race that close on the same keep-alive connection.
        huge = b"\x00" * (300 * 1024)
        assert http.post("/v1/grant", content=huge, headers=msgpack).status_code == 413


# ---------------------------------------------------------------- failing closed


def any_token_source() -> ServiceTokenSource:
    return ServiceTokenSource(Ed25519PrivateKey.generate())


def test_nothing_listening_fails_closed_at_once() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    service = RemoteConsentService(f"http://127.0.0.1:{port}", any_token_source(), 0.5)
    started = time.monotonic()
    with service, pytest.raises(ConsentServiceUnavailable):
        service.decide(clinician_request())
    assert time.monotonic() - started < 0.5


class SilentServer:
    """Accepts connections and never answers, or stalls after the first bytes."""

    def __init__(self, first_bytes: bytes = b"") -> None:
        self._first_bytes = first_bytes
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._held.append(connection)
            if self._first_bytes:
                connection.recv(65536)
                connection.sendall(self._first_bytes)

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        for connection in self._held:
            connection.close()
        self._listener.close()


STALLS = {
    "before answering": b"",
    "mid-answer": b"HTTP/1.1 200 OK\r\ncontent-type: application/msgpack\r\n"
    b"content-length: 4096\r\n\r\n\x82",
}


@pytest.mark.parametrize("when", list(STALLS))
def test_a_hanging_service_fails_closed_within_the_timeout(when: str) -> None:
    timeout_s = 0.3
    with SilentServer(STALLS[when]) as server:
        service = RemoteConsentService(server.url, any_token_source(), timeout_s)
        started = time.monotonic()
        with service, pytest.raises(ConsentServiceUnavailable):
            service.decide(clinician_request())
        elapsed = time.monotonic() - started
    assert timeout_s <= elapsed < timeout_s + 1.0


# ---------------------------------------------------------------- sans-io parts

SAMPLE_ERRORS: list[ConsentError] = [
    MalformedConsentError("provision.class[0]", "not a string"),
    UnknownCodeError("status", "actve", "active, draft"),
    ReversedPeriodError("period", "ends before it starts"),
    NestingTooDeepError("provision", "nested deeper than 8"),
    DuplicateActorError("provision.actor[1]", "twice"),
    PatientMismatchError("patient", "another patient"),
    InvalidConsentError("", "larger than 64 KiB"),
    MalformedScopeError("user/X.rs", "unknown resource type"),
    PermissionOrderError("user/*.sr", "out of order"),
    ScopeError("user/*.rs?", "empty parameters"),
    InvalidRequestError("unknown categories: x-rays"),
    NotAllowedError("a therapist may not change consents"),
    BreakGlassRefusedError("a therapist may not break the glass"),
    ConsentNotFoundError("no such consent for this patient"),
    ConsentConflictError("the consent changed meanwhile"),
]


@pytest.mark.parametrize("error", SAMPLE_ERRORS, ids=lambda e: type(e).__name__)
def test_every_consent_error_crosses_the_wire(error: ConsentError) -> None:
    status, reply = error_reply(error)
    wire = msgspec.msgpack.decode(msgspec.msgpack.encode(reply), type=ErrorReply)

    again = error_from_reply(status, wire)

    assert type(again) is type(error)
    assert str(again) == str(error)
    assert vars(again) == vars(error)


def test_the_error_table_is_complete_and_distinct() -> None:
    assert {type(e) for e in SAMPLE_ERRORS} == {kind for kind, _, _ in ERRORS}
    assert len({code for _, code, _ in ERRORS}) == len(ERRORS)
    status, _ = error_reply(ConsentError("some future error"))
    assert status == 500
    internal = error_from_reply(500, ErrorReply("internal", "the consent service failed"))
    assert type(internal) is ConsentServiceUnavailable
    assert type(error_from_reply(401, ErrorReply("unauthorized", "x"))) is ServiceTokenRejected


def test_every_protocol_method_has_an_endpoint() -> None:
    methods = {name for name in vars(ConsentService) if not name.startswith("_")}
    assert set(ENDPOINTS) == methods


def test_token_source_reuses_a_token_for_half_its_life(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    source = ServiceTokenSource(Ed25519PrivateKey.generate(), clock=lambda: now[0])
    first = source()
    now[0] += 149
    assert source() == first
    now[0] += 2
    renewed = source()
    assert renewed != first
    fresh = jwt.decode(renewed, options={"verify_signature": False})
    assert fresh["exp"] - fresh["iat"] == 300
    assert (fresh["aud"], fresh["iss"], fresh["sub"]) == (
        SERVICE_AUDIENCE,
        SERVICE_ISSUER,
        SERVICE_SUBJECT,
    )

    service_token(tmp_path)
    assert (tmp_path / SERVICE_KEY_FILE).stat().st_mode & 0o077 == 0
    assert (tmp_path / SERVICE_PUBLIC_KEY_FILE).exists()


def test_serve_subcommand_registers_on_the_consent_parser() -> None:
    parser = argparse.ArgumentParser(prog="metaworld consent")
    add_consent_serve_parser(parser.add_subparsers(dest="consent_command", required=True))
    args = parser.parse_args(["serve", "--service-public-key", "a.pem", "--db", "sqlite://"])
    assert args.func is cmd_consent_serve
    assert (args.host, args.port, args.db) == ("127.0.0.1", 8766, "sqlite://")
    assert args.service_public_key == [Path("a.pem")]


def test_serve_refuses_an_unreadable_public_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    add_consent_serve_parser(parser.add_subparsers())
    missing = tmp_path / "no-such.pem"
    db = f"sqlite:///{tmp_path / 'consent.db'}"
    args = parser.parse_args(["serve", "--db", db, "--service-public-key", str(missing)])
    args.data_dir = str(tmp_path / "data")
    assert args.func(args) == 2
    assert str(missing) in capsys.readouterr().err


@pytest.mark.slow
def test_serve_exits_when_its_port_is_taken(tmp_path: Path) -> None:
    # A subprocess: Hypercorn leaves the socket of a failed bind for the collector.
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        command = [sys.executable, "-m", "metaworld.consent.serve", "--port", port]
        command += ["--data-dir", str(tmp_path), "--db", f"sqlite:///{tmp_path / 'c.db'}"]
        done = subprocess.run(
            command, check=False, capture_output=True, text=True, timeout=START_TIMEOUT_S
        )
    assert done.returncode == 1
    assert "Address already in use" in done.stderr
