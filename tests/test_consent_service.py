"""The consent service end to end: SQLite in tmp_path, imported Synthea data, real ledger."""

from __future__ import annotations

import logging
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

import metaworld.consent
import metaworld.records
from metaworld.consent import (
    AccessRequest,
    Actor,
    Caller,
    Consent,
    ConsentConflictError,
    ConsentNotFoundError,
    ConsentService,
    Decision,
    InProcessConsentService,
    NotAllowedError,
    PatientMismatchError,
    Provision,
    StoredConsent,
    consent_from_fhir,
    opaque_patient_id,
)
from metaworld.ledger import Ledger, LedgerEntry
from metaworld.records import CATEGORIES, RecordView, import_bundles
from metaworld.store import make_engine

REPO_ROOT = Path(__file__).resolve().parent.parent
SYNTHEA = (REPO_ROOT / ".." / "shared" / "data" / "synthea-r4").resolve()
BIBI = "475d72ca-91c7-7211-97e3-f000af33fc04"
START_MS = 1_750_000_000_000


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self, now_ms: int = START_MS) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


class World:
    def __init__(self, tmp_path: Path) -> None:
        if not SYNTHEA.is_dir():
            pytest.skip(f"shared Synthea data not found at {SYNTHEA}")
        self.engine: Engine = make_engine(f"sqlite:///{tmp_path / 'consent.db'}")
        # Bibi's bundle is enough here; test_records_import covers the whole set.
        import_bundles(self.engine, sorted(SYNTHEA.glob(f"*{BIBI}.json")))
        self.ledger = Ledger(self.engine, Ed25519PrivateKey.generate())
        self.clock = ManualClock()
        self.service = InProcessConsentService(self.engine, self.ledger, self.clock)

    def entries(self) -> list[LedgerEntry]:
        return [item.entry for item in self.ledger.entries(limit=10_000)]


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


BIBI_HERSELF = Caller("pat-bibi", "patient", launch_patient=BIBI)


def treatment_consent(consent_id: str = "c-1", status: str = "active") -> Consent:
    """Everything for everyone, except conditions for therapists."""
    root = Provision(
        type="permit",
        provision=[Provision(type="deny", actor=[Actor("therapist")], data_class=["conditions"])],
    )
    return Consent(id=consent_id, patient=BIBI, status=status, provision=root)


def clinician_request(**fields: object) -> AccessRequest:
    values: dict[str, object] = {
        "actor": "dr-1",
        "role": "clinician",
        "patient": BIBI,
        "categories": ["demographics", "vital_signs", "conditions"],
        "scopes": ["user/*.rs"],
        "room": "exam-1",
    }
    values.update(fields)
    return msgspec.convert(values, AccessRequest)


def test_in_process_service_meets_the_protocol(world: World) -> None:
    service: ConsentService = world.service
    assert isinstance(service, InProcessConsentService)


def test_grant_then_view_then_audit(world: World) -> None:
    ref = world.service.grant(BIBI, treatment_consent(), by=BIBI_HERSELF)
    assert (ref.id, ref.version, ref.ref) == ("c-1", 1, "Consent/c-1/_history/1")

    decision, view = world.service.fetch_view(clinician_request())

    assert decision.outcome == "permit"
    assert decision.consent_version == "Consent/c-1/_history/1"
    assert view is not None
    assert view.demographics is not None
    assert len(view.vital_signs) == 6
    assert len(view.conditions) == 9
    granted, access = world.entries()
    opaque = world.service.opaque(BIBI)
    assert granted.kind == "consent_granted"
    assert (granted.actor, granted.role, granted.outcome) == ("pat-bibi", "patient", "recorded")
    assert access.kind == "access"
    assert (access.actor, access.role, access.outcome, access.room) == (
        "dr-1",
        "clinician",
        "permit",
        "exam-1",
    )
    assert access.categories == ["demographics", "vital_signs", "conditions"]
    assert access.consent_version == "Consent/c-1/_history/1"
    assert access.patient == granted.patient == opaque
    assert BIBI not in opaque


def test_partial_permit_writes_a_permit_and_a_deny_entry(world: World) -> None:
    world.service.grant(BIBI, treatment_consent(), by=BIBI_HERSELF)
    therapist = clinician_request(actor="th-1", role="therapist")

    decision, view = world.service.fetch_view(therapist)

    assert decision.permitted() == ["demographics", "vital_signs"]
    assert view is not None
    assert view.conditions == []
    assert view.included == ["demographics", "vital_signs"]
    permit, deny = world.entries()[-2:]
    assert (permit.outcome, permit.categories) == ("permit", ["demographics", "vital_signs"])
    assert (deny.outcome, deny.categories) == ("deny", ["conditions"])


def test_every_decision_is_audited_even_a_deny(world: World) -> None:
    decision = world.service.decide(clinician_request())
    assert decision.outcome == "deny"
    [entry] = world.entries()
    assert (entry.kind, entry.outcome, entry.consent_version) == ("access", "deny", None)


def test_deny_never_reveals_whether_the_patient_exists(world: World) -> None:
    world.service.grant(BIBI, treatment_consent(status="inactive"), by=BIBI_HERSELF)
    known, known_view = world.service.fetch_view(clinician_request())
    unknown, unknown_view = world.service.fetch_view(clinician_request(patient="no-such-id"))
    assert known_view is None
    assert unknown_view is None
    assert msgspec.json.encode(known) == msgspec.json.encode(unknown)


def test_new_version_and_revocation(world: World) -> None:
    world.service.grant(BIBI, treatment_consent(), by=BIBI_HERSELF)
    narrower = msgspec.structs.replace(
        treatment_consent(), provision=Provision(type="permit", data_class=["vital_signs"])
    )
    assert world.service.grant(BIBI, narrower, by=BIBI_HERSELF).version == 2
    assert world.service.decide(clinician_request()).permitted() == ["vital_signs"]

    revoked = world.service.revoke(BIBI, "c-1", by=Caller("dr-1", "clinician"))

    assert (revoked.version, revoked.status) == (3, "inactive")
    assert world.service.decide(clinician_request()).outcome == "deny"
    assert world.service.revoke(BIBI, "c-1", by=BIBI_HERSELF).version == 3  # no new version
    [stored] = world.service.consents(BIBI, by=BIBI_HERSELF)
    assert (stored.version, stored.consent.status) == (3, "inactive")
    kinds = [e.kind for e in world.entries()]
    assert kinds.count("consent_granted") == 2
    assert kinds.count("consent_revoked") == 1


def test_consent_changes_are_checked(world: World) -> None:
    with pytest.raises(PatientMismatchError):
        world.service.grant("someone-else", treatment_consent(), by=Caller("dr-1", "clinician"))
    with pytest.raises(NotAllowedError):
        world.service.grant(BIBI, treatment_consent(), by=Caller("pat-x", "patient", "p-x"))
    with pytest.raises(NotAllowedError):
        world.service.grant(BIBI, treatment_consent(), by=Caller("th-1", "therapist"))
    with pytest.raises(ConsentNotFoundError):
        world.service.revoke(BIBI, "c-404", by=BIBI_HERSELF)
    world.service.grant(BIBI, treatment_consent(), by=BIBI_HERSELF)
    other = msgspec.structs.replace(treatment_consent(), patient="p-2")
    with pytest.raises(ConsentConflictError):
        world.service.grant("p-2", other, by=Caller("dr-1", "clinician"))
    assert [e.kind for e in world.entries()] == ["consent_granted"]


def test_history_is_the_patients_accounting_of_disclosures(world: World) -> None:
    world.service.grant(BIBI, treatment_consent(), by=BIBI_HERSELF)
    world.service.fetch_view(clinician_request())
    world.clock.now_ms += 60_000
    world.service.fetch_view(clinician_request(actor="th-1", role="therapist"))
    world.service.decide(clinician_request(patient="other-patient"))

    history = world.service.history(BIBI, by=BIBI_HERSELF)

    assert [(e.kind, e.actor, e.outcome) for e in history] == [
        ("consent_granted", "pat-bibi", "recorded"),
        ("access", "dr-1", "permit"),
        ("access", "th-1", "permit"),
        ("access", "th-1", "deny"),
    ]
    assert history[-1].at_ms == START_MS + 60_000
    recent = world.service.history(BIBI, by=Caller("po-1", "admin"), since_ms=START_MS + 1)
    assert len(recent) == 2
    with pytest.raises(NotAllowedError):
        world.service.history(BIBI, by=Caller("dr-1", "clinician"))
    with pytest.raises(NotAllowedError):
        world.service.history(BIBI, by=Caller("pat-x", "patient", "p-x"))


def test_patient_views_own_record_without_consent(world: World) -> None:
    own = clinician_request(
        actor="pat-bibi",
        role="patient",
        launch_patient=BIBI,
        purpose="PATRQT",
        scopes=["patient/*.rs"],
        categories=list(CATEGORIES),
    )
    decision, view = world.service.fetch_view(own)
    assert decision.reason == "own-record"
    assert view is not None
    assert view.immunizations


def test_data_period_reaches_the_view(world: World) -> None:
    consent = msgspec.json.decode(
        b"""{"id": "c-9", "patient": "%s", "status": "active",
             "provision": {"type": "permit", "dataPeriod": {"start": "2020-01-01T00:00:00Z"}}}"""
        % BIBI.encode(),
        type=Consent,
    )
    world.service.grant(BIBI, consent, by=BIBI_HERSELF)

    decision, view = world.service.fetch_view(clinician_request(categories=["encounters"]))

    assert decision.windows()
    assert view is not None
    assert view.encounters
    assert all(e.start is not None and e.start >= "2020" for e in view.encounters)


def test_fhir_consent_resource_is_accepted(world: World) -> None:
    resource = {
        "resourceType": "Consent",
        "id": "fhir-1",
        "status": "active",
        "scope": {"coding": [{"code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{BIBI}"},
        "dateTime": "2025-01-01",
        "provision": {
            "type": "deny",
            "provision": [
                {
                    "type": "permit",
                    "actor": [
                        {
                            "role": {"coding": [{"code": "clinician"}]},
                            "reference": {"reference": "dr-1"},
                        }
                    ],
                    "purpose": [{"code": "TREAT"}],
                    "class": [
                        {"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}
                    ],
                }
            ],
        },
    }
    consent = consent_from_fhir(resource)
    world.service.grant(BIBI, consent, by=BIBI_HERSELF)
    assert world.service.decide(clinician_request()).permitted() == ["vital_signs"]
    assert world.service.decide(clinician_request(actor="dr-2")).outcome == "deny"


def test_salt_is_per_deployment_and_stable(world: World, tmp_path: Path) -> None:
    again = InProcessConsentService(world.engine, world.ledger, world.clock)
    assert again.opaque(BIBI) == world.service.opaque(BIBI)
    elsewhere = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    other = InProcessConsentService(elsewhere, Ledger(elsewhere, Ed25519PrivateKey.generate()))
    assert other.opaque(BIBI) != world.service.opaque(BIBI)
    assert opaque_patient_id(b"salt", BIBI) != opaque_patient_id(b"pepper", BIBI)


def test_results_cross_a_connection(world: World) -> None:
    # A remote client implements the same Protocol by sending these types as msgpack.
    world.service.grant(BIBI, treatment_consent(), by=BIBI_HERSELF)
    request = clinician_request()
    decision, view = world.service.fetch_view(
        msgspec.msgpack.decode(msgspec.msgpack.encode(request), type=AccessRequest)
    )
    wire = msgspec.msgpack.encode((decision, view))
    assert msgspec.msgpack.decode(wire, type=tuple[Decision, RecordView | None]) == (
        decision,
        view,
    )
    stored = world.service.consents(BIBI, by=BIBI_HERSELF)
    assert msgspec.json.decode(msgspec.json.encode(stored), type=list[StoredConsent]) == stored
    history = world.service.history(BIBI, by=BIBI_HERSELF)
    assert msgspec.json.decode(msgspec.json.encode(history), type=list[LedgerEntry]) == history


def test_logs_hold_no_patient_ids_names_or_record_content(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="metaworld"):
        world.service.grant(BIBI, treatment_consent(), by=BIBI_HERSELF)
        world.service.fetch_view(clinician_request())
        world.service.break_glass("dr-1", "clinician", BIBI, "collapsed in the lobby", 60)
        world.service.fetch_view(clinician_request(purpose="ETREAT"))
        world.clock.now_ms += 61_000
        world.service.decide(clinician_request(purpose="ETREAT"))
    text = caplog.text
    assert caplog.records
    for needle in (BIBI, "Bibi254", "Schowalter414", "COVID", "collapsed"):
        assert needle not in text


CONSENT_API = """
    AccessRequest Actor BreakGlassGrant BreakGlassRefusedError Caller CategoryDecision
    Clock Consent ConsentConflictError ConsentError ConsentNotFoundError ConsentRef
    ConsentService Decision DuplicateActorError Evaluation InProcessConsentService
    InvalidConsentError InvalidRequestError MAX_DEPTH MalformedConsentError
    MalformedScopeError NestingTooDeepError NotAllowedError PatientMismatchError Period
    PermissionOrderError Provision ROLE_POLICY ReversedPeriodError RolePolicy Scope
    ScopeError StoredConsent UnknownCodeError allowed_categories consent_from_fhir decide
    decode_consent encode_consent evaluate opaque_patient_id parse_scope parse_scopes
    system_clock validate_consent
    """
RECORDS_API = """
    AllergyItem BundleRejectedError CATEGORIES CATEGORIES_OF_TYPE CATEGORY_RULES Category
    CategoryRule ConditionItem DateWindow Demographics EncounterItem ImmunizationItem
    ImportReport MedicationItem ParsedBundle ParsedResource Quantity RecordView
    RecordsError Rejection UnknownCategoryError VitalSign category_of import_bundles
    parse_bundle record_view
    """


def test_public_surface_is_pinned() -> None:
    assert sorted(metaworld.consent.__all__) == sorted(CONSENT_API.split())
    assert sorted(metaworld.records.__all__) == sorted(RECORDS_API.split())
    for module in (metaworld.consent, metaworld.records):
        assert all(hasattr(module, name) for name in module.__all__)
