"""Consent: who may see which part of a patient's record, for what, and the audit of it.

    service = InProcessConsentService(engine, ledger)
    decision, view = service.fetch_view(AccessRequest(actor=..., role=..., ...))

The sans-io core is `decide` (:mod:`.evaluate`) over `Consent` documents
(:mod:`.model`), the role policy (:mod:`.policy`) and SMART scopes (:mod:`.scopes`);
`InProcessConsentService` (:mod:`.service`) adds storage, the ledger and the record
view. docs/consent.md describes the rules.
"""

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
from metaworld.consent.evaluate import (
    AccessRequest,
    BreakGlassGrant,
    CategoryDecision,
    Decision,
    Evaluation,
    StoredConsent,
    decide,
    evaluate,
)
from metaworld.consent.fhir import consent_from_fhir
from metaworld.consent.model import (
    MAX_DEPTH,
    Actor,
    Consent,
    Period,
    Provision,
    decode_consent,
    encode_consent,
    validate_consent,
)
from metaworld.consent.policy import ROLE_POLICY, RolePolicy
from metaworld.consent.scopes import Scope, allowed_categories, parse_scope, parse_scopes
from metaworld.consent.service import (
    Caller,
    Clock,
    ConsentRef,
    ConsentService,
    InProcessConsentService,
    opaque_patient_id,
    system_clock,
)

__all__ = [
    "MAX_DEPTH",
    "ROLE_POLICY",
    "AccessRequest",
    "Actor",
    "BreakGlassGrant",
    "BreakGlassRefusedError",
    "Caller",
    "CategoryDecision",
    "Clock",
    "Consent",
    "ConsentConflictError",
    "ConsentError",
    "ConsentNotFoundError",
    "ConsentRef",
    "ConsentService",
    "Decision",
    "DuplicateActorError",
    "Evaluation",
    "InProcessConsentService",
    "InvalidConsentError",
    "InvalidRequestError",
    "MalformedConsentError",
    "MalformedScopeError",
    "NestingTooDeepError",
    "NotAllowedError",
    "PatientMismatchError",
    "Period",
    "PermissionOrderError",
    "Provision",
    "ReversedPeriodError",
    "RolePolicy",
    "Scope",
    "ScopeError",
    "StoredConsent",
    "UnknownCodeError",
    "allowed_categories",
    "consent_from_fhir",
    "decide",
    "decode_consent",
    "encode_consent",
    "evaluate",
    "opaque_patient_id",
    "parse_scope",
    "parse_scopes",
    "system_clock",
    "validate_consent",
]
