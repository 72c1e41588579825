"""The consent service over a connection: the wire format, the service token, and the
world server's client.

`metaworld consent serve` (:mod:`.serve`) runs `InProcessConsentService` in its own
process; `RemoteConsentService` implements the same `ConsentService` Protocol against it.
Each method is ``POST /v1/<method>`` with a MessagePack body: one ``...Args`` Struct in,
the method's own result Struct out. A refusal comes back as an `ErrorReply` that the
client raises again as the same exception type, with the same message.

Authentication is a short-lived JWT (EdDSA) signed with the service key in the data
directory; `ServiceTokenSource` mints and reuses them. Errors added here:

    ConsentError
    └── ConsentServiceUnavailable  not reached, timed out, failed, or answered nonsense
        └── ServiceTokenRejected   the service refused our token (the keys disagree)
    ServiceKeyError                the service key file cannot be used

Fail closed: a caller treats `ConsentServiceUnavailable` as a deny.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeVar

import httpx
import jwt
import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from metaworld.consent.errors import (
    BreakGlassRefusedError,
    ConsentConflictError,
    ConsentError,
    ConsentNotFoundError,
    DuplicateActorError,
    InvalidConsentError,
    InvalidRequestError,
    MalformedConsentError,
    MalformedScopeError,
    NestingTooDeepError,
    NotAllowedError,
    PatientMismatchError,
    PermissionOrderError,
    ReversedPeriodError,
    ScopeError,
    UnknownCodeError,
)
from metaworld.consent.evaluate import AccessRequest, BreakGlassGrant, Decision, StoredConsent
from metaworld.consent.model import Consent
from metaworld.consent.service import HISTORY_LIMIT, Caller, ConsentRef
from metaworld.keys import load_or_create, read_key
from metaworld.ledger import LedgerEntry
from metaworld.records.view import RecordView
from metaworld.roles import Role

if TYPE_CHECKING:
    from metaworld.consent.service import ConsentService

log = logging.getLogger("metaworld.consent.remote")

T = TypeVar("T")
TokenSource = Callable[[], str]

MSGPACK: Final = "application/msgpack"
DEFAULT_PORT: Final = 8766
MAX_REPLY_BYTES: Final = 8 * 1024 * 1024  # a full history of 1000 entries is ~0.3 MiB

SERVICE_AUDIENCE: Final = "metaworld-consent"
SERVICE_ISSUER: Final = "metaworld"
SERVICE_SUBJECT: Final = "world-server"
SERVICE_TOKEN_TTL_S: Final = 300
SERVICE_KEY_FILE: Final = "consent_service_ed25519.pem"
SERVICE_PUBLIC_KEY_FILE: Final = "consent_service_ed25519.pub.pem"


class ConsentServiceUnavailable(ConsentError):
    """The consent service could not answer: down, too slow, failed or misconfigured.
    Nothing was permitted; the caller must deny."""


class ServiceTokenRejected(ConsentServiceUnavailable):
    """The service refused the service token; nothing was executed."""


class ServiceKeyError(Exception):
    """The service key file is unreadable or not an Ed25519 key."""


# ---------------------------------------------------------------- wire format


class _Args(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class DecideArgs(_Args, frozen=True):
    request: AccessRequest


class FetchViewArgs(_Args, frozen=True):
    request: AccessRequest


class GrantArgs(_Args, frozen=True):
    patient: str
    consent: Consent
    by: Caller


class RevokeArgs(_Args, frozen=True):
    patient: str
    consent_id: str
    by: Caller


class ConsentsArgs(_Args, frozen=True):
    patient: str
    by: Caller


class HistoryArgs(_Args, frozen=True):
    patient: str
    by: Caller
    since_ms: int | None = None
    limit: int = HISTORY_LIMIT


class BreakGlassArgs(_Args, frozen=True):
    actor: str
    role: Role
    patient: str
    reason: str
    duration_s: int
    room: str | None = None


class EndBreakGlassArgs(_Args, frozen=True):
    grant_id: str
    by: Caller


Args = (
    DecideArgs
    | FetchViewArgs
    | GrantArgs
    | RevokeArgs
    | ConsentsArgs
    | HistoryArgs
    | BreakGlassArgs
    | EndBreakGlassArgs
)


class Endpoint(NamedTuple):
    args: type[Args]
    result: Any  # the method's result type, for a msgspec decoder


# Method name (the path after /v1/) -> what it takes and returns.
ENDPOINTS: Final[dict[str, Endpoint]] = {
    "decide": Endpoint(DecideArgs, Decision),
    "fetch_view": Endpoint(FetchViewArgs, tuple[Decision, RecordView | None]),
    "grant": Endpoint(GrantArgs, ConsentRef),
    "revoke": Endpoint(RevokeArgs, ConsentRef),
    "consents": Endpoint(ConsentsArgs, list[StoredConsent]),
    "history": Endpoint(HistoryArgs, list[LedgerEntry]),
    "break_glass": Endpoint(BreakGlassArgs, BreakGlassGrant),
    "end_break_glass": Endpoint(EndBreakGlassArgs, BreakGlassGrant),
}


class ErrorReply(msgspec.Struct, frozen=True):
    """The body of every answer but 200. `detail` holds the error's own attributes
    (`path`, `problem`, `code`, `scope`) so the client can rebuild it."""

    code: str
    message: str
    detail: dict[str, str] = msgspec.field(default_factory=dict)


# Each consent error, subclasses before their bases: its code in an ErrorReply and its
# HTTP status. A status names the family, the code the exact type.
ERRORS: Final[tuple[tuple[type[ConsentError], str, int], ...]] = (
    (MalformedConsentError, "malformed_consent", 422),
    (UnknownCodeError, "unknown_code", 422),
    (ReversedPeriodError, "reversed_period", 422),
    (NestingTooDeepError, "nesting_too_deep", 422),
    (DuplicateActorError, "duplicate_actor", 422),
    (PatientMismatchError, "patient_mismatch", 422),
    (InvalidConsentError, "invalid_consent", 422),
    (MalformedScopeError, "malformed_scope", 400),
    (PermissionOrderError, "permission_order", 400),
    (ScopeError, "scope", 400),
    (InvalidRequestError, "invalid_request", 400),
    (NotAllowedError, "not_allowed", 403),
    (BreakGlassRefusedError, "break_glass_refused", 403),
    (ConsentNotFoundError, "consent_not_found", 404),
    (ConsentConflictError, "consent_conflict", 409),
)
_ERROR_TYPES: Final = {code: kind for kind, code, _ in ERRORS}
_DETAIL: Final = ("path", "problem", "code", "scope")


def error_reply(error: ConsentError) -> tuple[int, ErrorReply]:
    """The status and body that carry `error` to the client."""
    for kind, code, status in ERRORS:
        if isinstance(error, kind):
            detail = {name: getattr(error, name) for name in _DETAIL if hasattr(error, name)}
            return status, ErrorReply(code, str(error), {k: str(v) for k, v in detail.items()})
    return 500, ErrorReply("internal", "the consent service failed")


def error_from_reply(status: int, reply: ErrorReply) -> ConsentError:
    """The exception an answer of `status` with `reply` stands for."""
    if status == 401:
        return ServiceTokenRejected(f"the consent service refused the token: {reply.message}")
    kind = _ERROR_TYPES.get(reply.code)
    if kind is None:
        return ConsentServiceUnavailable(f"the consent service failed ({status} {reply.code})")
    # Built without the subclass's constructor, whose arguments differ from kind to kind:
    # the message is the service's word for word, the attributes are set from `detail`.
    error = kind.__new__(kind)
    Exception.__init__(error, reply.message)
    for name, value in reply.detail.items():
        if name in _DETAIL:
            setattr(error, name, value)
    return error


# ---------------------------------------------------------------- service token


def load_service_key(path: Path) -> Ed25519PrivateKey:
    """Read the service key; raises ServiceKeyError for a bad file."""
    return read_key(path, ServiceKeyError, "service key")


def load_or_create_service_key(data_dir: Path) -> Ed25519PrivateKey:
    """The service key from `data_dir`, created (mode 0600) with its public half beside
    it on first use. Whoever holds it can call the consent service as the world server."""
    path = data_dir / SERVICE_KEY_FILE
    key, created = load_or_create(path, load_service_key)
    if created:
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        (data_dir / SERVICE_PUBLIC_KEY_FILE).write_bytes(public)
        log.info("created service key %s", path)
    return key


def mint_service_token(
    key: Ed25519PrivateKey,
    *,
    subject: str = SERVICE_SUBJECT,
    ttl_s: int = SERVICE_TOKEN_TTL_S,
    now: float | None = None,
) -> str:
    """A service token for the consent service, valid for `ttl_s` seconds."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": SERVICE_ISSUER,
        "aud": SERVICE_AUDIENCE,
        "sub": subject,
        "iat": issued,
        "exp": issued + ttl_s,
    }
    return jwt.encode(claims, key, algorithm="EdDSA")


class ServiceTokenSource:
    """Mints service tokens and reuses each for the first half of its life. Callable
    from any thread; pass it to `RemoteConsentService`."""

    def __init__(
        self,
        key: Ed25519PrivateKey,
        *,
        subject: str = SERVICE_SUBJECT,
        ttl_s: int = SERVICE_TOKEN_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self._subject = subject
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._token = ""
        self._renew_at = 0.0

    @classmethod
    def from_data_dir(cls, data_dir: Path) -> ServiceTokenSource:
        """With the key of a data directory shared with the service (made if missing)."""
        return cls(load_or_create_service_key(data_dir))

    @classmethod
    def from_key_file(cls, path: Path) -> ServiceTokenSource:
        return cls(load_service_key(path))

    def __call__(self) -> str:
        with self._lock:
            now = self._clock()
            if now >= self._renew_at:
                self._token = mint_service_token(
                    self._key, subject=self._subject, ttl_s=self._ttl_s, now=now
                )
                self._renew_at = now + self._ttl_s / 2
            return self._token


def service_token(data_dir: Path) -> str:
    """A fresh service token signed with the key in `data_dir`."""
    return mint_service_token(load_or_create_service_key(data_dir))


# ---------------------------------------------------------------- client

_encoder: Final = msgspec.msgpack.Encoder()
_error_decoder: Final = msgspec.msgpack.Decoder(ErrorReply)
_decision: Final = msgspec.msgpack.Decoder(Decision)
_decision_and_view: Final = msgspec.msgpack.Decoder(tuple[Decision, RecordView | None])
_consent_ref: Final = msgspec.msgpack.Decoder(ConsentRef)
_stored_consents: Final = msgspec.msgpack.Decoder(list[StoredConsent])
_ledger_entries: Final = msgspec.msgpack.Decoder(list[LedgerEntry])
_break_glass_grant: Final = msgspec.msgpack.Decoder(BreakGlassGrant)


class RemoteConsentService:
    """`ConsentService` over HTTP to `metaworld consent serve`, synchronous.

    Call it like the in-process service: under Trio through ``trio.to_thread.run_sync``
    with a deadline. Connecting, sending and each wait for bytes are bounded by
    `timeout_s`, and so is reading the whole answer; any failure to get an answer raises
    `ConsentServiceUnavailable`. Nothing is retried: a grant or an audited decision may
    have been executed even when its answer was lost. Safe to share between threads.
    """

    def __init__(self, base_url: str, token_source: TokenSource, timeout_s: float = 2.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http:// or https:// URL")
        self._token_source = token_source
        self._timeout_s = timeout_s
        # trust_env is off: a proxy from the environment must not see health records.
        # Idle connections are dropped before the service's keep-alive timeout (30 s),
        # so a request never goes out on a connection the service is closing.
        self._client = httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=16, keepalive_expiry=10.0),
            headers={"content-type": MSGPACK, "accept": MSGPACK},
            trust_env=False,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RemoteConsentService:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ------------------------------------------------------------ the Protocol

    def decide(self, request: AccessRequest) -> Decision:
        return self._call("decide", DecideArgs(request), _decision)

    def fetch_view(self, request: AccessRequest) -> tuple[Decision, RecordView | None]:
        result: tuple[Decision, RecordView | None] = self._call(
            "fetch_view", FetchViewArgs(request), _decision_and_view
        )
        return result

    def grant(self, patient: str, consent: Consent, *, by: Caller) -> ConsentRef:
        return self._call("grant", GrantArgs(patient, consent, by), _consent_ref)

    def revoke(self, patient: str, consent_id: str, *, by: Caller) -> ConsentRef:
        return self._call("revoke", RevokeArgs(patient, consent_id, by), _consent_ref)

    def consents(self, patient: str, *, by: Caller) -> list[StoredConsent]:
        return self._call("consents", ConsentsArgs(patient, by), _stored_consents)

    def history(
        self,
        patient: str,
        *,
        by: Caller,
        since_ms: int | None = None,
        limit: int = HISTORY_LIMIT,
    ) -> list[LedgerEntry]:
        args = HistoryArgs(patient, by, since_ms, limit)
        return self._call("history", args, _ledger_entries)

    def break_glass(
        self,
        actor: str,
        role: Role,
        patient: str,
        reason: str,
        duration_s: int,
        *,
        room: str | None = None,
    ) -> BreakGlassGrant:
        args = BreakGlassArgs(actor, role, patient, reason, duration_s, room)
        return self._call("break_glass", args, _break_glass_grant)

    def end_break_glass(self, grant_id: str, *, by: Caller) -> BreakGlassGrant:
        return self._call("end_break_glass", EndBreakGlassArgs(grant_id, by), _break_glass_grant)

    # ------------------------------------------------------------ transport

    def _call(self, method: str, args: Args, decoder: msgspec.msgpack.Decoder[T]) -> T:
        started = time.monotonic()
        headers = {"authorization": f"Bearer {self._token_source()}"}
        try:
            with self._client.stream(
                "POST", f"/v1/{method}", content=_encoder.encode(args), headers=headers
            ) as response:
                body = b"".join(self._read(response, started + self._timeout_s))
        except httpx.HTTPError as exc:
            raise ConsentServiceUnavailable(
                f"consent service {method}: {type(exc).__name__}"
            ) from exc
        status = response.status_code
        log.debug("%s: %d in %.1f ms", method, status, (time.monotonic() - started) * 1000)

        if status == 200:
            try:
                return decoder.decode(body)
            except msgspec.DecodeError as exc:
                raise ConsentServiceUnavailable(f"consent service {method}: bad answer") from exc
        try:
            reply = _error_decoder.decode(body)
        except msgspec.DecodeError:
            reply = ErrorReply("unknown", f"HTTP {status}")
        raise error_from_reply(status, reply)

    @staticmethod
    def _read(response: httpx.Response, deadline: float) -> Iterator[bytes]:
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > MAX_REPLY_BYTES:
                raise ConsentServiceUnavailable(f"answer larger than {MAX_REPLY_BYTES} bytes")
            if time.monotonic() > deadline:
                raise ConsentServiceUnavailable("answer too slow")
            yield chunk


if TYPE_CHECKING:
    # mypy checks here that the client keeps up with the Protocol.
    _: type[ConsentService] = RemoteConsentService
