"""Hostile and careless input: bad consents, replayed requests, break-the-glass abuse."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from metaworld.consent import (
    AccessRequest,
    Actor,
    BreakGlassRefusedError,
    Caller,
    Consent,
    DuplicateActorError,
    InProcessConsentService,
    InvalidRequestError,
    MalformedConsentError,
    NestingTooDeepError,
    NotAllowedError,
    Period,
    Provision,
    ReversedPeriodError,
    UnknownCodeError,
    consent_from_fhir,
    decode_consent,
    validate_consent,
)
from metaworld.consent.model import MAX_DEPTH, MAX_PROVISIONS
from metaworld.consent.service import MAX_BREAK_GLASS_S
from metaworld.consent.store import BreakGlassRow, ConsentHistoryRow
from metaworld.ledger import Ledger, LedgerEntry
from metaworld.store import make_engine

UTC = dt.UTC
PATIENT = "p-1"
START_MS = 1_750_000_000_000


def at(year: int) -> dt.datetime:
    return dt.datetime(year, 1, 1, tzinfo=UTC)


def consent(provision: Provision, **fields: Any) -> Consent:
    values: dict[str, Any] = {"id": "c-1", "patient": PATIENT, "status": "active"}
    values.update(fields)
    return Consent(provision=provision, **values)


def nested(depth: int) -> Provision:
    provision = Provision(type="permit")
    for _ in range(depth - 1):
        provision = Provision(type="permit", provision=[provision])
    return provision


# ---------------------------------------------------------------- bad consents


@pytest.mark.parametrize(
    ("bad", "path"),
    [
        (consent(Provision(type="permit"), period=Period(at(2026), at(2025))), "period"),
        (consent(Provision(type="permit"), period=Period(at(2025), at(2025))), "period"),
        (consent(Provision(type="permit", period=Period(at(2026), at(2020)))), "provision.period"),
        (
            consent(
                Provision(
                    type="permit",
                    provision=[Provision(type="deny", data_period=Period(at(2022), at(2021)))],
                )
            ),
            "provision.provision[0].dataPeriod",
        ),
    ],
)
def test_reversed_periods_are_rejected(bad: Consent, path: str) -> None:
    with pytest.raises(ReversedPeriodError) as caught:
        validate_consent(bad)
    assert caught.value.path == path


@pytest.mark.parametrize(
    ("bad", "path"),
    [
        (consent(Provision(type="permit"), status="activ"), "status"),
        (consent(Provision(type="permit"), scope="adr"), "scope"),
        (consent(Provision(type="permit"), category=["12345-6"]), "category[0]"),
        (consent(Provision(type="allow")), "provision.type"),
        (consent(Provision(type="permit", actor=[Actor("nurse")])), "provision.actor[0].role"),
        (consent(Provision(type="permit", action=["read"])), "provision.action[0]"),
        (consent(Provision(type="permit", purpose=["TRET"])), "provision.purpose[0]"),
        (consent(Provision(type="permit", data_class=["labs"])), "provision.class[0]"),
        (
            consent(
                Provision(type="permit", provision=[Provision(type="deny", data_class=["Claim"])])
            ),
            "provision.provision[0].class[0]",
        ),
    ],
)
def test_unknown_codes_are_rejected_not_ignored(bad: Consent, path: str) -> None:
    with pytest.raises(UnknownCodeError) as caught:
        validate_consent(bad)
    assert caught.value.path == path


def test_nesting_up_to_the_limit_is_fine_and_deeper_is_not() -> None:
    validate_consent(consent(nested(MAX_DEPTH)))
    with pytest.raises(NestingTooDeepError):
        validate_consent(consent(nested(MAX_DEPTH + 1)))
    with pytest.raises(NestingTooDeepError):
        validate_consent(consent(nested(10_000)))  # built in Python, never decoded


def test_too_many_provisions_are_rejected() -> None:
    wide = Provision(type="permit", provision=[Provision(type="deny")] * MAX_PROVISIONS)
    with pytest.raises(NestingTooDeepError):
        validate_consent(consent(wide))


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 50, 1_500])
def test_deeply_nested_json_is_a_named_error_not_a_crash(depth: int) -> None:
    head = '{"id":"c-1","patient":"p-1","status":"active","provision":'
    doc = head + '{"type":"permit","provision":[' * depth + '{"type":"deny"}' + "]}" * depth + "}"
    assert len(doc) < 65_536  # under the size limit: the depth itself must be refused
    with pytest.raises(NestingTooDeepError):
        decode_consent(doc)


@pytest.mark.parametrize(
    "actors",
    [
        [Actor("therapist"), Actor("therapist")],
        [Actor("clinician", "dr-1"), Actor("clinician", "dr-1")],
        [Actor("clinician", "dr-1"), Actor("therapist", "dr-1")],  # one person, two roles
    ],
)
def test_duplicated_actors_are_rejected(actors: list[Actor]) -> None:
    bad = consent(Provision(type="permit", provision=[Provision(type="deny", actor=actors)]))
    with pytest.raises(DuplicateActorError) as caught:
        validate_consent(bad)
    assert caught.value.path == "provision.provision[0].actor[1]"


@pytest.mark.parametrize(
    "document",
    [
        b'{"id": "c-1", "patient": "p-1", "status": "active", "provision": {"type": "permit",'
        b' "purpsoe": ["TREAT"]}}',  # a typo must not silently widen the rule
        b'{"id": "c-1", "patient": "p-1", "status": "active"}',
        b'{"id": "c 1", "patient": "p-1", "status": "active", "provision": {"type": "permit"}}',
        b'{"id": "c-1", "patient": "p-1", "status": "active", "provision": {"type": "permit"},'
        b' "period": {"start": "2025-01-01T00:00:00"}}',  # no zone
        b"[1, 2",
        b"x" * 70_000,
    ],
)
def test_malformed_documents_are_rejected(document: bytes) -> None:
    with pytest.raises(MalformedConsentError):
        decode_consent(document)


def test_fhir_restrictions_we_cannot_enforce_are_refused() -> None:
    resource = {
        "resourceType": "Consent",
        "status": "active",
        "id": "c-1",
        "scope": {"coding": [{"code": "patient-privacy"}]},
        "category": [{"coding": [{"code": "59284-0"}]}],
        "patient": {"reference": "Patient/p-1"},
        "provision": {"type": "permit", "securityLabel": [{"code": "R"}]},
    }
    with pytest.raises(MalformedConsentError) as caught:
        consent_from_fhir(resource)
    assert caught.value.path == "provision.securityLabel"
    resource["provision"] = {"type": "permit", "purpose": [{"code": "NOPE"}]}
    with pytest.raises(UnknownCodeError):
        consent_from_fhir(json.dumps(resource))


# ---------------------------------------------------------------- against the service


class ManualClock:
    def __init__(self) -> None:
        self.now_ms = START_MS

    def __call__(self) -> int:
        return self.now_ms


@pytest.fixture
def setup(tmp_path: Path) -> tuple[InProcessConsentService, Ledger, ManualClock]:
    engine = make_engine(f"sqlite:///{tmp_path / 'hostile.db'}")
    ledger = Ledger(engine, Ed25519PrivateKey.generate())
    clock = ManualClock()
    return InProcessConsentService(engine, ledger, clock), ledger, clock


def entries(ledger: Ledger) -> list[LedgerEntry]:
    return [item.entry for item in ledger.entries(limit=10_000)]


PATIENT_SELF = Caller("pat-1", "patient", launch_patient=PATIENT)
REQUEST = AccessRequest(
    actor="dr-1",
    role="clinician",
    patient=PATIENT,
    categories=["vital_signs", "conditions"],
    scopes=["user/*.rs"],
)


def test_invalid_consent_stores_nothing_and_writes_no_entry(
    setup: tuple[InProcessConsentService, Ledger, ManualClock], tmp_path: Path
) -> None:
    service, ledger, _ = setup
    with pytest.raises(UnknownCodeError):
        service.grant(PATIENT, consent(Provision(type="permit", purpose=["ANY"])), by=PATIENT_SELF)
    assert ledger.size() == 0
    with Session(make_engine(f"sqlite:///{tmp_path / 'hostile.db'}")) as session:
        assert session.scalar(select(func.count()).select_from(ConsentHistoryRow)) == 0


def test_revoked_then_replayed_request_is_denied(
    setup: tuple[InProcessConsentService, Ledger, ManualClock],
) -> None:
    service, ledger, _ = setup
    service.grant(PATIENT, consent(Provision(type="permit")), by=PATIENT_SELF)
    assert service.decide(REQUEST).outcome == "permit"

    service.revoke(PATIENT, "c-1", by=PATIENT_SELF)

    replayed = msgspec.json.decode(msgspec.json.encode(REQUEST), type=AccessRequest)
    assert service.decide(replayed).outcome == "deny"
    assert service.fetch_view(replayed) == (service.decide(replayed), None)
    outcomes = [(e.kind, e.outcome) for e in entries(ledger)]
    assert outcomes[:4] == [
        ("consent_granted", "recorded"),
        ("access", "permit"),
        ("consent_revoked", "recorded"),
        ("access", "deny"),
    ]


def test_regranting_an_old_version_after_revocation_is_a_new_version(
    setup: tuple[InProcessConsentService, Ledger, ManualClock],
) -> None:
    service, _, _ = setup
    original = consent(Provision(type="permit"))
    service.grant(PATIENT, original, by=PATIENT_SELF)
    service.revoke(PATIENT, "c-1", by=PATIENT_SELF)
    # Replaying the grant is a deliberate new grant, visible as version 3 in the ledger.
    assert service.grant(PATIENT, original, by=PATIENT_SELF).version == 3


def test_unknown_categories_and_roles_in_requests_are_refused(
    setup: tuple[InProcessConsentService, Ledger, ManualClock],
) -> None:
    service, ledger, _ = setup
    with pytest.raises(InvalidRequestError):
        service.decide(msgspec.structs.replace(REQUEST, categories=["everything"]))
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(
            b'{"actor": "x", "role": "root", "patient": "p-1", "categories": ["vital_signs"]}',
            type=AccessRequest,
        )
    assert ledger.size() == 0


def test_a_patient_cannot_pose_as_another(
    setup: tuple[InProcessConsentService, Ledger, ManualClock],
) -> None:
    service, _, _ = setup
    posing = msgspec.structs.replace(
        REQUEST, actor="pat-2", role="patient", launch_patient="p-2", scopes=["patient/*.rs"]
    )
    assert service.decide(posing).reason == "role"
    with pytest.raises(NotAllowedError):
        service.revoke(PATIENT, "c-1", by=Caller("pat-2", "patient", launch_patient="p-2"))


# ---------------------------------------------------------------- break the glass


@pytest.mark.parametrize("role", ["therapist", "trainee", "researcher", "admin", "patient"])
def test_only_clinicians_break_the_glass(
    setup: tuple[InProcessConsentService, Ledger, ManualClock], role: Any
) -> None:
    service, ledger, _ = setup
    with pytest.raises(BreakGlassRefusedError):
        service.break_glass("x-1", role, PATIENT, "unconscious", 600)
    assert ledger.size() == 0


@pytest.mark.parametrize(
    ("reason", "duration_s"),
    [("unconscious", 0), ("unconscious", -5), ("unconscious", MAX_BREAK_GLASS_S + 1), ("  ", 60)],
)
def test_break_glass_needs_a_reason_and_a_bounded_time(
    setup: tuple[InProcessConsentService, Ledger, ManualClock], reason: str, duration_s: int
) -> None:
    service, _, _ = setup
    with pytest.raises(BreakGlassRefusedError):
        service.break_glass("dr-1", "clinician", PATIENT, reason, duration_s)


def test_break_glass_is_time_boxed_and_flagged_for_review(
    setup: tuple[InProcessConsentService, Ledger, ManualClock],
) -> None:
    service, ledger, clock = setup
    emergency = msgspec.structs.replace(REQUEST, purpose="ETREAT", room="er-1")
    assert service.decide(emergency).outcome == "deny"

    grant = service.break_glass(
        "dr-1", "clinician", PATIENT, "found unresponsive", 300, room="er-1"
    )

    assert grant.end_ms - grant.start_ms == 300_000
    inside = service.decide(emergency)
    assert (inside.outcome, inside.reason, inside.review) == ("permit", "break-glass", True)
    assert service.decide(REQUEST).outcome == "deny"  # TREAT is not covered
    other = msgspec.structs.replace(emergency, actor="dr-2")
    assert service.decide(other).outcome == "deny"  # the grant is personal

    clock.now_ms = grant.end_ms
    assert service.decide(emergency).outcome == "deny"
    service.decide(emergency)  # a second sweep writes no second end entry

    log = entries(ledger)
    starts = [e for e in log if e.kind == "break_glass_start"]
    ends = [e for e in log if e.kind == "break_glass_end"]
    assert len(starts) == len(ends) == 1
    for marker in (starts[0], ends[0]):
        assert marker.review is True
        assert marker.purpose == "ETREAT"
        assert marker.consent_version == f"BreakGlass/{grant.id}"
        assert marker.reason_hash is not None
    assert ends[0].at_ms == grant.end_ms
    assert starts[0].reason_hash != hashlib.sha256(b"found unresponsive").hexdigest()
    flagged = [e for e in log if e.kind == "access" and e.outcome == "permit"]
    assert [e.review for e in flagged] == [True]
    assert all(b"unresponsive" not in msgspec.json.encode(e) for e in log)


def test_break_glass_can_end_early_only_by_its_holder(
    setup: tuple[InProcessConsentService, Ledger, ManualClock],
) -> None:
    service, ledger, clock = setup
    grant = service.break_glass("dr-1", "clinician", PATIENT, "seizure", 600)
    with pytest.raises(NotAllowedError):
        service.end_break_glass(grant.id, by=Caller("dr-2", "clinician"))
    clock.now_ms += 10_000

    service.end_break_glass(grant.id, by=Caller("dr-1", "clinician"))

    emergency = msgspec.structs.replace(REQUEST, purpose="ETREAT")
    assert service.decide(emergency).outcome == "deny"
    assert [e.kind for e in entries(ledger)][:2] == ["break_glass_start", "break_glass_end"]


def test_break_glass_reason_stays_out_of_the_ledger_but_is_kept_for_review(
    setup: tuple[InProcessConsentService, Ledger, ManualClock], tmp_path: Path
) -> None:
    service, ledger, _ = setup
    grant = service.break_glass("dr-1", "clinician", PATIENT, "anaphylaxis, no history", 60)
    with Session(make_engine(f"sqlite:///{tmp_path / 'hostile.db'}")) as session:
        row = session.get(BreakGlassRow, grant.id)
        assert row is not None
        assert row.reason == "anaphylaxis, no history"
        [start] = entries(ledger)
        assert start.reason_hash == row.reason_hash
