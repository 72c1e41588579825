"""The clinical desk: record views and consent changes, asked for from inside the world.

The world server never reads a record. When a client asks for one, the tick takes a
snapshot of what the world knows (who asks, in which room, which patient avatar they
mean, whether the two stand together in a consultation or therapy room) and hands an
`AccessRequest` to the consent service. The service decides, audits and returns only
what is allowed. The call runs in a worker thread with a deadline, in this module's own
tasks, so the tick never waits for it; a service that errs or does not answer in time
is a denial ("unavailable"), never a permit.

Replies are unicast: the view goes to the requester and a copy to the patient, and
never into room state. A denial reads the same whatever its cause, so a client cannot
learn whether a record, a patient or a consent exists. When a patient revokes a
consent, every view of their record that the desk handed out is purged from the
clients that hold it, in the same tick the revocation returns.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import trio

from metaworld import protocol
from metaworld.consent import (
    AccessRequest,
    Actor,
    Caller,
    Consent,
    ConsentError,
    ConsentService,
    Provision,
)
from metaworld.consent.model import Period
from metaworld.world import pseudonym

if TYPE_CHECKING:
    from metaworld.server import Session, WorldServer

log = logging.getLogger("metaworld.clinical")

CLINICAL_ROOM_KINDS: Final = frozenset({"consultation", "therapy"})
CALL_TIMEOUT_S: Final = 2.0  # longest wait for the consent service before denying
MAX_WAITING: Final = 64  # requests queued for the service, server-wide
MAX_PER_SESSION: Final = 4  # requests one session may have in flight
_DENIED: Final = "access to this record is not permitted"
_UNAVAILABLE: Final = "the consent service did not answer; access denied"


@dataclass
class _Job:
    session_id: str
    run: Callable[[], Any]  # the blocking service call, run in a worker thread
    on_result: Callable[[Any], None]
    on_failure: Callable[[str], None]


@dataclass
class ClinicalDesk:
    service: ConsentService
    server: WorldServer
    timeout_s: float = CALL_TIMEOUT_S
    open_views: dict[str, set[tuple[str, int]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[_Job](MAX_WAITING)
        self._in_flight: dict[str, int] = {}
        self._threads = trio.CapacityLimiter(4)

    # ------------------------------------------------------------ tasks

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            async for job in self._receive:
                nursery.start_soon(self._call, job)

    async def _call(self, job: _Job) -> None:
        result: Any = None
        failure = "unavailable"
        try:
            with trio.move_on_after(self.timeout_s):
                result = await trio.to_thread.run_sync(
                    job.run, abandon_on_cancel=True, limiter=self._threads
                )
                failure = ""
        except ConsentError as exc:
            failure = f"refused: {exc}"
        except Exception:  # the service broke: fail closed, keep serving
            log.exception("the consent service failed")
        finally:
            self._in_flight[job.session_id] -= 1
        if failure:
            self.server.metrics.rejected.labels("consent_" + failure.split(":")[0]).inc()
            job.on_failure(failure)
        else:
            job.on_result(result)

    def _submit(self, session: Session, job: _Job) -> bool:
        if self._in_flight.get(session.id, 0) >= MAX_PER_SESSION:
            return False
        try:
            self._send.send_nowait(job)
        except trio.WouldBlock:
            return False
        self._in_flight[session.id] = self._in_flight.get(session.id, 0) + 1
        return True

    def _reply(self, session_id: str, message: protocol.Tagged) -> None:
        session = self.server.sessions.get(session_id)
        if session is not None:
            session.send(message)

    # ------------------------------------------------------------ record views

    def request_record(self, session: Session, message: protocol.RecordRequest) -> None:
        """Called in the tick: snapshot the world's view of the request and hand it on."""
        world = self.server.world
        me = world.avatars[session.avatar_id]
        target = self.server.by_avatar.get(message.patient)
        room = world.rooms[me.room]
        together = (
            target is not None
            and target.identity.role == "patient"
            and world.avatars[message.patient].room == me.room
            and room.kind in CLINICAL_ROOM_KINDS
            and (message.room is None or message.room == me.room)
        )
        # An unknown or non-patient avatar still goes to the service, under an id that
        # matches no record, so that the attempt is audited and the reply is the same.
        record = target.identity.record_id if target is not None else f"avatar:{message.patient}"
        if target is not None and target.identity.role != "patient":
            record = f"avatar:{message.patient}"
        request = AccessRequest(
            actor=session.identity.subject,
            role=session.identity.role,
            patient=record,
            categories=list(message.categories),
            purpose=message.purpose,
            scopes=list(session.identity.scopes),
            launch_patient=session.identity.patient
            or (session.identity.subject if session.identity.role == "patient" else None),
            supervisor=self._supervisor(session, me.room),
            room=me.room,
            co_located=together,
        )
        viewer = self.server.replicator.info(session.avatar_id)
        session_id, patient_avatar = session.id, message.patient
        patient_session = target.id if target is not None and together else None

        def shown(result: Any) -> None:
            decision, view = result
            if decision.outcome != "permit" or view is None:
                self._reply(session_id, protocol.RecordDenied(message.request, "denied", _DENIED))
                return
            version = decision.consent_version or ""
            self._reply(
                session_id,
                protocol.RecordShown(message.request, patient_avatar, viewer, view, version),
            )
            if patient_session is not None and patient_session != session_id:
                self._reply(
                    patient_session,
                    protocol.RecordShown(0, patient_avatar, viewer, view, version),
                )
            self.open_views.setdefault(record, set()).add((session_id, patient_avatar))

        def failed(why: str) -> None:
            reason = "unavailable" if why == "unavailable" else "denied"
            text = _UNAVAILABLE if reason == "unavailable" else _DENIED
            self._reply(session_id, protocol.RecordDenied(message.request, reason, text))

        job = _Job(session.id, lambda: self.service.fetch_view(request), shown, failed)
        if not self._submit(session, job):
            session.send(protocol.RecordDenied(message.request, "unavailable", _UNAVAILABLE))

    def _supervisor(self, session: Session, room: str) -> str | None:
        """A clinician in the same room supervises a trainee there."""
        if session.identity.role != "trainee":
            return None
        for avatar_id in self.server.world.room_members(room):
            other = self.server.by_avatar.get(avatar_id)
            if other is not None and other.identity.role == "clinician":
                return other.identity.subject
        return None

    def purge(self, record: str) -> None:
        """Withdraw every view of `record` handed out so far."""
        for session_id, patient_avatar in self.open_views.pop(record, set()):
            self._reply(session_id, protocol.RecordPurge(patient_avatar))

    # ------------------------------------------------------------ consent

    def _patient_caller(self, session: Session, request: int) -> Caller | None:
        if session.identity.role != "patient":
            session.send(protocol.ConsentResult(request, False, message="only patients"))
            return None
        identity = session.identity
        return Caller(identity.subject, identity.role, identity.record_id)

    def grant(self, session: Session, message: protocol.ConsentGrant) -> None:
        caller = self._patient_caller(session, message.request)
        if caller is None:
            return
        actor = Actor(role="clinician")
        if message.grantee is not None:
            grantee = self.server.by_avatar.get(message.grantee)
            if grantee is None or grantee.identity.role == "patient":
                session.send(
                    protocol.ConsentResult(message.request, False, message="no such clinician")
                )
                return
            actor = Actor(role=grantee.identity.role, reference=grantee.identity.subject)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        consent = Consent(
            id=f"world-{secrets.token_hex(8)}",
            patient=session.identity.record_id,
            status="active",
            period=Period(now, now + dt.timedelta(seconds=message.duration_s)),
            date_time=now,
            # A permit scoped to one actor, purpose and categories: it opens just that, so
            # several grants add up (a "deny all, except" root would veto the others).
            provision=Provision(
                type="permit",
                actor=[actor],
                action=["access"],
                purpose=[message.purpose],
                data_class=list(message.categories),
            ),
        )
        record = session.identity.record_id
        self._consent_job(
            session, message.request, lambda: self.service.grant(record, consent, by=caller)
        )

    def revoke(self, session: Session, message: protocol.ConsentRevoke) -> None:
        caller = self._patient_caller(session, message.request)
        if caller is None:
            return
        record = session.identity.record_id
        self._consent_job(
            session,
            message.request,
            lambda: self.service.revoke(record, message.consent, by=caller),
            then=lambda: self.purge(record),
        )

    def _consent_job(
        self,
        session: Session,
        request: int,
        call: Callable[[], Any],
        then: Callable[[], None] | None = None,
    ) -> None:
        session_id = session.id

        def done(ref: Any) -> None:
            if then is not None:
                then()
            self._reply(
                session_id, protocol.ConsentResult(request, True, ref.id, ref.version, ref.status)
            )

        def failed(why: str) -> None:
            self._reply(session_id, protocol.ConsentResult(request, False, message=why))

        if not self._submit(session, _Job(session_id, call, done, failed)):
            session.send(protocol.ConsentResult(request, False, message="busy"))

    def break_glass(self, session: Session, message: protocol.BreakGlass) -> None:
        identity = session.identity
        target = self.server.by_avatar.get(message.patient)
        world = self.server.world
        me = world.avatars[session.avatar_id]
        if (
            target is None
            or target.identity.role != "patient"
            or world.avatars[message.patient].room != me.room
        ):
            session.send(protocol.ConsentResult(message.request, False, message="not permitted"))
            return
        record = target.identity.record_id

        def call() -> Any:
            return self.service.break_glass(
                identity.subject,
                identity.role,
                record,
                message.reason,
                message.duration_s,
                room=me.room,
            )

        session_id = session.id

        def done(grant: Any) -> None:
            log.warning("avatar %d broke the glass; flagged for review", session.avatar_id)
            self._reply(
                session_id,
                protocol.ConsentResult(
                    message.request, True, grant.id, status="emergency", end_ms=grant.end_ms
                ),
            )

        def failed(why: str) -> None:
            self._reply(session_id, protocol.ConsentResult(message.request, False, message=why))

        if not self._submit(session, _Job(session_id, call, done, failed)):
            session.send(protocol.ConsentResult(message.request, False, message="busy"))

    def query(self, session: Session, message: protocol.ConsentQuery) -> None:
        caller = self._patient_caller(session, message.request)
        if caller is None:
            return
        record = session.identity.record_id
        label = self._labels()

        def call() -> Any:
            return (
                self.service.consents(record, by=caller),
                self.service.history(record, by=caller),
            )

        def done(result: Any) -> None:
            stored, history = result
            self._reply(
                session.id,
                protocol.ConsentState(
                    message.request,
                    [_summary(s, label) for s in stored],
                    [_disclosure(e, label) for e in history],
                ),
            )

        def failed(why: str) -> None:
            self._reply(session.id, protocol.Error("busy", why))

        if not self._submit(session, _Job(session.id, call, done, failed)):
            session.send(protocol.Error("busy", protocol.ERROR_CODES["busy"]))

    def _labels(self) -> Callable[[str, str], str]:
        """How a person in the accounting is named: staff by the label they are known
        by now (else their id), patients always by their pseudonym, never their id."""
        present = {
            s.identity.subject: self.server.replicator.info(s.avatar_id).label
            for s in self.server.sessions.values()
        }
        secret = self.server.world.label_secret

        def label(subject: str, role: str) -> str:
            if role == "patient":
                return pseudonym(secret, subject)
            return present.get(subject, subject)

        return label


def _summary(stored: Any, label: Callable[[str, str], str]) -> protocol.ConsentSummary:
    consent = stored.consent
    rule = consent.provision
    actors = [a for a in rule.actor if a.reference]
    grantee = ", ".join(label(a.reference, a.role) for a in actors) if actors else "every clinician"
    end = consent.period.end if consent.period is not None else None
    return protocol.ConsentSummary(
        consent.id,
        stored.version,
        consent.status,
        list(rule.data_class),
        ",".join(rule.purpose) or "any",
        grantee,
        int(end.timestamp() * 1000) if end is not None else None,
    )


def _disclosure(entry: Any, label: Callable[[str, str], str]) -> protocol.Disclosure:
    return protocol.Disclosure(
        entry.at_ms,
        entry.kind,
        label(entry.actor, entry.role),
        entry.role,
        list(entry.categories),
        entry.purpose,
        entry.outcome,
        entry.review,
    )
