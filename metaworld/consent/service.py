"""The consent service: the one door between the world server and health records.

The world server never reads a record itself. It sends an `AccessRequest` built from a
verified token; the service decides from the role policy, the token's scopes and the
patient's consents, writes the decision to the audit ledger, and only then reads what
was permitted. Consents are read from the store on every request and nothing is
cached, so a revocation holds from the very next request.

`ConsentService` is the interface; every argument and result is a msgspec Struct or a
plain value, so a client can implement it over a connection. `InProcessConsentService`
implements it synchronously on a SQLAlchemy engine: under Trio, call it through
``trio.to_thread.run_sync`` with a deadline. It keeps no mutable state, so threads may
share it.

Audit. Each decision appends one ``access`` entry per outcome (a partly permitted
request writes a permit and a deny entry), with the patient as an opaque id: the
HMAC-SHA256 of the FHIR patient id under a per-deployment salt kept in the database.
Ids in real exports are medical record numbers, so they are never written in the clear,
and the ledger cannot be joined to another deployment's. Consent changes append their
entry before the change is committed: the ledger may name a change that then failed to
commit, never miss one that did.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from typing import Final, Literal, Protocol

import msgspec
from sqlalchemy import Engine, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from metaworld.consent.errors import (
    BreakGlassRefusedError,
    ConsentConflictError,
    ConsentNotFoundError,
    NotAllowedError,
    PatientMismatchError,
)
from metaworld.consent.evaluate import (
    AccessRequest,
    BreakGlassGrant,
    Decision,
    Evaluation,
    Outcome,
    StoredConsent,
    evaluate,
)
from metaworld.consent.model import Consent, encode_consent, validate_consent
from metaworld.consent.policy import CONSENT_EDITORS, HISTORY_READERS, ROLE_POLICY
from metaworld.consent.store import BreakGlassRow, ConsentHistoryRow, ConsentRow, SettingRow
from metaworld.ledger import Ledger, LedgerEntry
from metaworld.records.categories import CATEGORIES, CATEGORIES_OF_TYPE
from metaworld.records.view import RecordView, record_view
from metaworld.roles import ROLES, Role

log = logging.getLogger("metaworld.consent")

Clock = Callable[[], int]  # milliseconds since the Unix epoch

MAX_BREAK_GLASS_S: Final = 4 * 3600  # longest emergency override; renew with a new reason
MAX_REASON_CHARS: Final = 2000
HISTORY_LIMIT: Final = 1000  # ledger entries one history call returns
SALT_SETTING: Final = "patient_id_salt"
SALT_BYTES: Final = 32
# Statuses a new version may have and still be a grant; the others withdraw the consent.
GRANTING_STATUSES: Final = frozenset({"draft", "proposed", "active"})


_ROLE_NAMES: Final[dict[str, Role]] = {role: role for role in ROLES}


def system_clock() -> int:
    return time.time_ns() // 1_000_000


class Caller(msgspec.Struct, frozen=True):
    """Who asks for a consent change or the accounting: a verified token's subject and
    role, and for a patient the patient id of the token's launch context."""

    subject: str
    role: Role
    launch_patient: str | None = None


class ConsentRef(msgspec.Struct, frozen=True):
    """A stored consent version."""

    id: str
    version: int
    status: str

    @property
    def ref(self) -> str:
        return f"Consent/{self.id}/_history/{self.version}"


class ConsentService(Protocol):
    """What the world server may ask of the consent service."""

    def decide(self, request: AccessRequest) -> Decision:
        """Decide and audit a request without reading the record."""
        ...

    def fetch_view(self, request: AccessRequest) -> tuple[Decision, RecordView | None]:
        """Decide, audit, and return the permitted part of the record (None on deny)."""
        ...

    def grant(self, patient: str, consent: Consent, *, by: Caller) -> ConsentRef:
        """Store `consent` as the next version of its id; raises `InvalidConsentError`."""
        ...

    def revoke(self, patient: str, consent_id: str, *, by: Caller) -> ConsentRef:
        """Withdraw a consent (a new version with status inactive)."""
        ...

    def consents(self, patient: str, *, by: Caller) -> list[StoredConsent]:
        """The current version of each of the patient's consents."""
        ...

    def history(
        self,
        patient: str,
        *,
        by: Caller,
        since_ms: int | None = None,
        limit: int = HISTORY_LIMIT,
    ) -> list[LedgerEntry]:
        """The accounting of disclosures: every ledger entry about the patient."""
        ...

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
        """Start an emergency override for a clinician, flagged for review."""
        ...

    def end_break_glass(self, grant_id: str, *, by: Caller) -> BreakGlassGrant:
        """End an override before its time runs out."""
        ...


def opaque_patient_id(salt: bytes, patient_id: str) -> str:
    """The patient id written to the ledger: HMAC-SHA256 under the deployment salt."""
    return hmac.new(salt, b"patient\0" + patient_id.encode(), hashlib.sha256).hexdigest()


def reason_hash(salt: bytes, reason: str) -> str:
    """Keyed hash of a break-the-glass reason: short reasons cannot be guessed from it."""
    return hmac.new(salt, b"reason\0" + reason.encode(), hashlib.sha256).hexdigest()


def load_or_create_salt(engine: Engine) -> bytes:
    """The deployment's salt for opaque ids, made on first use and kept in the database."""
    with Session(engine) as session:
        row = session.get(SettingRow, SALT_SETTING)
        if row is not None:
            return row.value
    try:
        with Session(engine) as session, session.begin():
            session.add(SettingRow(name=SALT_SETTING, value=secrets.token_bytes(SALT_BYTES)))
    except IntegrityError:
        pass  # another process made it first; use theirs
    with Session(engine) as session:
        stored = session.get(SettingRow, SALT_SETTING)
        assert stored is not None  # just written, or found
        return stored.value


class InProcessConsentService:
    """`ConsentService` over this process's database and ledger."""

    def __init__(
        self,
        engine: Engine,
        ledger: Ledger,
        clock: Clock = system_clock,
        *,
        salt: bytes | None = None,
    ) -> None:
        self._engine = engine
        self._ledger = ledger
        self._clock = clock
        self._salt = salt if salt is not None else load_or_create_salt(engine)
        self._signed_size = -1

    def checkpoint(self) -> str | None:
        """Sign a checkpoint of the ledger if it grew since the last one signed here (on a
        timer and at shutdown); returns its text, or None when there was nothing new."""
        size = self._ledger.size()
        if size in (0, self._signed_size):
            return None
        text = self._ledger.checkpoint()
        self._signed_size = size
        return text

    def opaque(self, patient_id: str) -> str:
        """The opaque id under which the ledger knows this patient."""
        return opaque_patient_id(self._salt, patient_id)

    # ------------------------------------------------------------ access

    def decide(self, request: AccessRequest) -> Decision:
        return self._decide(request).decision

    def fetch_view(self, request: AccessRequest) -> tuple[Decision, RecordView | None]:
        decision = self._decide(request).decision
        if decision.outcome == "deny":
            return decision, None
        view = record_view(
            self._engine, request.patient, decision.permitted(), windows=decision.windows()
        )
        return decision, view

    def _decide(self, request: AccessRequest) -> Evaluation:
        now = self._clock()
        # One short read session and two queries per decision: the patient's consents,
        # and in one go the overrides to close and the requester's live ones.
        with Session(self._engine) as session:
            consents = _current_consents(session, request.patient)
            expired, grants = _overrides(session, request.actor, request.patient, now)
        if expired:
            self._log_ends(expired, now)
        evaluation = evaluate(consents, request, now, grants=grants)
        # The ledger entry is written before anything is read: no view without an audit.
        self._ledger.append_many(self._access_entries(request, evaluation, now))
        log.debug(
            "access %s (%s) for a %s, purpose %s",
            evaluation.decision.outcome,
            evaluation.decision.reason,
            request.role,
            request.purpose,
        )
        return evaluation

    def _access_entries(
        self, request: AccessRequest, evaluation: Evaluation, now: int
    ) -> list[LedgerEntry]:
        decision = evaluation.decision
        parts: list[tuple[Outcome, list[str]]] = [
            ("permit", decision.permitted()),
            ("deny", decision.denied()),
        ]
        entries = []
        for outcome, categories in parts:
            if not categories:
                continue
            entries.append(
                LedgerEntry(
                    kind="access",
                    actor=request.actor,
                    role=request.role,
                    patient=self.opaque(request.patient),
                    categories=categories,
                    purpose=request.purpose,
                    room=request.room,
                    outcome=outcome,
                    consent_version=evaluation.versions(categories),
                    at_ms=now,
                    review=outcome == "permit" and decision.review,
                )
            )
        return entries

    # ------------------------------------------------------------ consent changes

    def grant(self, patient: str, consent: Consent, *, by: Caller) -> ConsentRef:
        _check_editor(by, patient)
        validate_consent(consent)
        if consent.patient != patient:
            raise PatientMismatchError("patient", "the consent is about another patient")
        with Session(self._engine) as session:
            current = session.get(ConsentRow, consent.id)
            if current is not None and current.patient_id != patient:
                raise ConsentConflictError("this consent id is taken; choose another id")
            previous = None if current is None else current.version
        return self._store(consent, previous, by)

    def revoke(self, patient: str, consent_id: str, *, by: Caller) -> ConsentRef:
        _check_editor(by, patient)
        with Session(self._engine) as session:
            row = session.get(ConsentRow, consent_id)
            if row is None or row.patient_id != patient:
                raise ConsentNotFoundError("no such consent for this patient")
            current = msgspec.json.decode(row.body, type=Consent)
            version = row.version
        if current.status not in GRANTING_STATUSES:
            return ConsentRef(consent_id, version, current.status)
        return self._store(msgspec.structs.replace(current, status="inactive"), version, by)

    def consents(self, patient: str, *, by: Caller) -> list[StoredConsent]:
        _check_editor(by, patient)
        with Session(self._engine) as session:
            return _current_consents(session, patient, only_active=False)

    def _store(self, consent: Consent, previous: int | None, by: Caller) -> ConsentRef:
        now = self._clock()
        version = 1 if previous is None else previous + 1
        ref = ConsentRef(consent.id, version, consent.status)
        granting = consent.status in GRANTING_STATUSES
        self._ledger.append(
            LedgerEntry(
                kind="consent_granted" if granting else "consent_revoked",
                actor=by.subject,
                role=by.role,
                patient=self.opaque(consent.patient),
                categories=covered_categories(consent),
                purpose=",".join(sorted(consent.provision.purpose)) or "*",
                room=None,
                outcome="recorded",
                consent_version=ref.ref,
                at_ms=now,
            )
        )
        body = encode_consent(consent).decode()
        try:
            with Session(self._engine) as session, session.begin():
                session.add(
                    ConsentHistoryRow(
                        consent_id=consent.id,
                        version=version,
                        patient_id=consent.patient,
                        status=consent.status,
                        body=body,
                        recorded_ms=now,
                        actor=by.subject,
                        role=by.role,
                    )
                )
                session.flush()
                _point_current(
                    session, consent, previous=previous, version=version, body=body, now=now
                )
        except IntegrityError as exc:
            raise ConsentConflictError("the consent changed meanwhile; read it again") from exc
        log.info("consent version %d stored (%s)", version, consent.status)
        return ref

    # ------------------------------------------------------------ accounting

    def history(
        self,
        patient: str,
        *,
        by: Caller,
        since_ms: int | None = None,
        limit: int = HISTORY_LIMIT,
    ) -> list[LedgerEntry]:
        if by.role not in HISTORY_READERS:
            raise NotAllowedError(f"a {by.role} may not read the accounting of disclosures")
        if by.role == "patient" and by.launch_patient != patient:
            raise NotAllowedError("a patient may read only their own accounting")
        self._close_expired(self._clock())
        stored = self._ledger.entries(
            patient=self.opaque(patient), since_ms=since_ms, limit=min(limit, HISTORY_LIMIT)
        )
        return [item.entry for item in stored]

    # ------------------------------------------------------------ break the glass

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
        policy = ROLE_POLICY.get(role)
        if policy is None or not policy.may_break_glass:
            raise BreakGlassRefusedError(f"a {role} may not break the glass")
        if not 0 < duration_s <= MAX_BREAK_GLASS_S:
            raise BreakGlassRefusedError(f"duration must be 1 to {MAX_BREAK_GLASS_S} s")
        if not reason.strip() or len(reason) > MAX_REASON_CHARS:
            raise BreakGlassRefusedError(f"give a reason of 1 to {MAX_REASON_CHARS} characters")
        if not actor or not 0 < len(patient) <= 64:
            raise BreakGlassRefusedError("actor and patient ids are required")

        now = self._clock()
        self._close_expired(now)
        grant = BreakGlassGrant(
            id=secrets.token_hex(16),
            actor=actor,
            role=role,
            patient=patient,
            start_ms=now,
            end_ms=now + duration_s * 1000,
            room=room,
        )
        digest = reason_hash(self._salt, reason)
        self._ledger.append(self._break_glass_entry("break_glass_start", grant, digest, now))
        with Session(self._engine) as session, session.begin():
            session.add(
                BreakGlassRow(
                    id=grant.id,
                    actor=actor,
                    role=role,
                    patient_id=patient,
                    room=room,
                    start_ms=grant.start_ms,
                    end_ms=grant.end_ms,
                    reason=reason,
                    reason_hash=digest,
                    end_logged=False,
                )
            )
        log.warning("break-the-glass %s started for %d s", grant.id, duration_s)
        return grant

    def end_break_glass(self, grant_id: str, *, by: Caller) -> BreakGlassGrant:
        now = self._clock()
        with Session(self._engine) as session, session.begin():
            row = session.get(BreakGlassRow, grant_id)
            if row is None or row.actor != by.subject:
                raise NotAllowedError("no such override of yours")
            row.end_ms = min(row.end_ms, now)
            grant = _grant_of(row)
        self._close_expired(now)
        return grant

    def _close_expired(self, now: int) -> None:
        """Write the end entry of every override whose time is up and not yet logged."""
        with Session(self._engine) as session:
            expired = _expired_grants(session, now)
        self._log_ends(expired, now)

    def _log_ends(self, expired: list[tuple[BreakGlassGrant, str]], now: int) -> None:
        for grant, digest in expired:
            # Claim first, so two threads sweeping together write one end entry.
            if not self._set_end_logged(grant.id, True):
                continue
            try:
                entry = self._break_glass_entry("break_glass_end", grant, digest, now)
                self._ledger.append(entry)
            except Exception:
                self._set_end_logged(grant.id, False)
                raise
            log.info("break-the-glass %s ended", grant.id)

    def _set_end_logged(self, grant_id: str, logged: bool) -> bool:
        statement = (
            update(BreakGlassRow)
            .where(BreakGlassRow.id == grant_id, BreakGlassRow.end_logged.is_(not logged))
            .values(end_logged=logged)
        )
        with Session(self._engine) as session, session.begin():
            return bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]

    def _break_glass_entry(
        self,
        kind: Literal["break_glass_start", "break_glass_end"],
        grant: BreakGlassGrant,
        digest: str,
        now: int,
    ) -> LedgerEntry:
        return LedgerEntry(
            kind=kind,
            actor=grant.actor,
            role=grant.role,
            patient=self.opaque(grant.patient),
            categories=[c for c in CATEGORIES if c in ROLE_POLICY[grant.role].categories],
            purpose="ETREAT",
            room=grant.room,
            outcome="recorded",
            consent_version=grant.ref,
            at_ms=now,
            review=True,
            reason_hash=digest,
        )


def covered_categories(consent: Consent) -> list[str]:
    """The categories a consent speaks about: its root's classes, or all of them. For the
    usual shape "deny everything, except permit these", it is the permitted classes, so
    the patient's accounting names what they shared rather than the whole record."""
    root = consent.provision
    exceptions = [p for p in root.provision if p.type == "permit"]
    if root.type == "deny" and exceptions:
        classes = [c for p in exceptions for c in (p.data_class or CATEGORIES)]
    else:
        classes = list(root.data_class)
    if not classes:
        return list(CATEGORIES)
    named = {c for c in classes if c in CATEGORIES}
    for name in classes:
        named.update(CATEGORIES_OF_TYPE.get(name, ()))
    return [c for c in CATEGORIES if c in named]


def _check_editor(by: Caller, patient: str) -> None:
    if not by.subject:
        raise NotAllowedError("a consent change needs the subject of who makes it")
    if by.role not in CONSENT_EDITORS:
        raise NotAllowedError(f"a {by.role} may not change consents")
    if by.role == "patient" and by.launch_patient != patient:
        raise NotAllowedError("a patient may change only their own consents")


# The queries of every decision, built once: composing a SELECT costs more than running
# it on SQLite (it was two thirds of a decision's time).
_ALL_CONSENTS = (
    select(ConsentRow.body, ConsentRow.version)
    .where(ConsentRow.patient_id == bindparam("patient"))
    .order_by(ConsentRow.id)
)
_ACTIVE_CONSENTS = _ALL_CONSENTS.where(ConsentRow.status == "active")
_OVERRIDES = select(BreakGlassRow).where(
    (BreakGlassRow.end_logged.is_(False) & (BreakGlassRow.end_ms <= bindparam("now")))
    | (
        (BreakGlassRow.actor == bindparam("actor"))
        & (BreakGlassRow.patient_id == bindparam("patient"))
        & (BreakGlassRow.start_ms <= bindparam("now"))
        & (BreakGlassRow.end_ms > bindparam("now"))
    )
)


def _current_consents(
    session: Session, patient: str, *, only_active: bool = True
) -> list[StoredConsent]:
    query = _ACTIVE_CONSENTS if only_active else _ALL_CONSENTS
    rows = session.execute(query, {"patient": patient})
    return [
        StoredConsent(msgspec.json.decode(body, type=Consent), version) for body, version in rows
    ]


def _expired_grants(session: Session, now: int) -> list[tuple[BreakGlassGrant, str]]:
    """Overrides whose time is up and whose end is not in the ledger yet."""
    query = select(BreakGlassRow).where(
        BreakGlassRow.end_logged.is_(False), BreakGlassRow.end_ms <= now
    )
    return [(_grant_of(row), row.reason_hash) for row in session.scalars(query)]


def _overrides(
    session: Session, actor: str, patient: str, now: int
) -> tuple[list[tuple[BreakGlassGrant, str]], list[BreakGlassGrant]]:
    """Overrides whose end is due in the ledger, and `actor`'s live ones for `patient`."""
    expired, grants = [], []
    rows = session.scalars(_OVERRIDES, {"actor": actor, "patient": patient, "now": now})
    for row in rows:
        if row.end_ms > now:
            grants.append(_grant_of(row))
        elif not row.end_logged:
            expired.append((_grant_of(row), row.reason_hash))
    return expired, grants


def _grant_of(row: BreakGlassRow) -> BreakGlassGrant:
    return BreakGlassGrant(
        id=row.id,
        actor=row.actor,
        role=_ROLE_NAMES[row.role],
        patient=row.patient_id,
        start_ms=row.start_ms,
        end_ms=row.end_ms,
        room=row.room,
    )


def _point_current(
    session: Session, consent: Consent, *, previous: int | None, version: int, body: str, now: int
) -> None:
    """Point the consent's current row at `version`, if nobody moved it meanwhile."""
    if previous is None:
        session.add(
            ConsentRow(
                id=consent.id,
                patient_id=consent.patient,
                version=version,
                status=consent.status,
                body=body,
                updated_ms=now,
            )
        )
        return
    moved = session.execute(
        update(ConsentRow)
        .where(ConsentRow.id == consent.id, ConsentRow.version == previous)
        .values(version=version, status=consent.status, body=body, updated_ms=now)
    )
    if not moved.rowcount:  # type: ignore[attr-defined]
        raise ConsentConflictError("the consent changed meanwhile; read it again")
