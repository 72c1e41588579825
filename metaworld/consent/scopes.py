"""SMART App Launch scopes: strict parsing, and which record categories they open.

Grammar (SMART v2): ``<context>/<resource>.<permissions>[?<param>=<value>&...]`` where
context is ``patient``, ``user`` or ``system``, resource is a FHIR resource type or
``*``, and permissions are some of the letters ``c r u d s`` in that order, each at most
once. Letters out of order or repeated raise `PermissionOrderError`; anything else that
starts like a resource scope but does not parse raises `MalformedScopeError`.

SMART v1 permissions are accepted and read the way SMART v2 defines them: ``read`` as
``rs``, ``write`` as ``cud`` and ``*`` as ``cruds``. Existing SMART apps still ask for
v1 scopes, and the translation is exact.

Scopes that are not about resources (``openid``, ``fhirUser``, ``launch/patient``,
``offline_access`` and names of other audiences) are ignored: they never open data.

Seeing a category needs both ``r`` and ``s`` on every resource type of the category
(a panel lists a patient's resources, which in FHIR is a search); scopes add up, so
``user/Observation.r user/Observation.s`` counts as ``.rs``. ``patient/`` scopes
count only for the patient of the token's launch context. A scope with parameters
opens only what we can show it allows: ``Observation`` with the vital-signs category.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Final, Literal
from urllib.parse import unquote

import msgspec

from metaworld.consent.errors import MalformedScopeError, PermissionOrderError
from metaworld.records.categories import (
    CATEGORY_RULES,
    OBSERVATION_CATEGORY,
    Category,
)

ScopeContext = Literal["patient", "user", "system"]
PERMISSION_LETTERS: Final = "cruds"
V1_PERMISSIONS: Final = {"read": "rs", "write": "cud", "*": "cruds"}
MAX_SCOPE_CHARS: Final = 512
MAX_SCOPES: Final = 256
VIEW_PERMISSIONS: Final = "rs"

_RESOURCE_SCOPE: Final = re.compile(r"(patient|user|system)/([^.?/]*)\.([^?]*)(?:\?(.*))?")
_RESOURCE_NAME: Final = re.compile(r"\*|[A-Z][A-Za-z]{1,63}")
_V2_PERMISSIONS: Final = re.compile(r"c?r?u?d?s?")
_CONTEXTS: Final[dict[str, ScopeContext]] = {
    "patient": "patient",
    "user": "user",
    "system": "system",
}
_VITAL_SIGNS_VALUES: Final = frozenset({"vital-signs", f"{OBSERVATION_CATEGORY}|vital-signs"})

# FHIR R4B resource types: a scope naming anything else is a typo, not a narrower grant.
# (A word list rather than a set literal: the formatter would give it 143 lines.)
RESOURCE_TYPES: Final = frozenset(
    """
    Account ActivityDefinition AdministrableProductDefinition AdverseEvent
    AllergyIntolerance Appointment AppointmentResponse AuditEvent Basic Binary
    BiologicallyDerivedProduct BodyStructure Bundle CapabilityStatement CarePlan CareTeam
    CatalogEntry ChargeItem ChargeItemDefinition Citation Claim ClaimResponse
    ClinicalImpression ClinicalUseDefinition CodeSystem Communication CommunicationRequest
    CompartmentDefinition Composition ConceptMap Condition Consent Contract Coverage
    CoverageEligibilityRequest CoverageEligibilityResponse DetectedIssue Device
    DeviceDefinition DeviceMetric DeviceRequest DeviceUseStatement DiagnosticReport
    DocumentManifest DocumentReference Encounter Endpoint EnrollmentRequest
    EnrollmentResponse EpisodeOfCare EventDefinition Evidence EvidenceReport
    EvidenceVariable ExampleScenario ExplanationOfBenefit FamilyMemberHistory Flag Goal
    GraphDefinition Group GuidanceResponse HealthcareService ImagingStudy Immunization
    ImmunizationEvaluation ImmunizationRecommendation ImplementationGuide Ingredient
    InsurancePlan Invoice Library Linkage List Location ManufacturedItemDefinition Measure
    MeasureReport Media Medication MedicationAdministration MedicationDispense
    MedicationKnowledge MedicationRequest MedicationStatement MedicinalProductDefinition
    MessageDefinition MessageHeader MolecularSequence NamingSystem NutritionOrder
    NutritionProduct Observation ObservationDefinition OperationDefinition OperationOutcome
    Organization OrganizationAffiliation PackagedProductDefinition Parameters Patient
    PaymentNotice PaymentReconciliation Person PlanDefinition Practitioner PractitionerRole
    Procedure Provenance Questionnaire QuestionnaireResponse RegulatedAuthorization
    RelatedPerson RequestGroup ResearchDefinition ResearchElementDefinition ResearchStudy
    ResearchSubject RiskAssessment Schedule SearchParameter ServiceRequest Slot Specimen
    SpecimenDefinition StructureDefinition StructureMap Subscription SubscriptionStatus
    SubscriptionTopic Substance SubstanceDefinition SupplyDelivery SupplyRequest Task
    TerminologyCapabilities TestReport TestScript ValueSet VerificationResult
    VisionPrescription
    """.split()  # noqa: SIM905
)


class Scope(msgspec.Struct, frozen=True):
    """One parsed resource scope; `permissions` is in c, r, u, d, s order."""

    context: ScopeContext
    resource: str  # a FHIR resource type, or "*"
    permissions: str
    params: tuple[tuple[str, str], ...] = ()

    def grants(self, letters: str) -> bool:
        return all(letter in self.permissions for letter in letters)


def parse_scope(text: str) -> Scope | None:
    """Parse one scope; None for a scope that is not about resources."""
    if len(text) > MAX_SCOPE_CHARS:
        raise MalformedScopeError(text, f"longer than {MAX_SCOPE_CHARS} characters")
    if not text.startswith(("patient/", "user/", "system/")):
        return None
    match = _RESOURCE_SCOPE.fullmatch(text)
    if match is None:
        raise MalformedScopeError(text, "expected <context>/<resource>.<permissions>")
    context, resource, letters, query = match.groups()
    if not _RESOURCE_NAME.fullmatch(resource) or (
        resource != "*" and resource not in RESOURCE_TYPES
    ):
        raise MalformedScopeError(text, f"{resource!r} is not a FHIR resource type or '*'")
    permissions = _permissions(text, letters)
    params = _params(text, query) if query is not None else ()
    return Scope(_CONTEXTS[context], resource, permissions, params)


def parse_scopes(scopes: str | Iterable[str]) -> list[Scope]:
    """Parse a token's scopes (a space-separated string or a list); first error raises."""
    items = scopes.split() if isinstance(scopes, str) else list(scopes)
    if len(items) > MAX_SCOPES:
        raise MalformedScopeError(" ".join(items)[:80], f"more than {MAX_SCOPES} scopes")
    parsed = (parse_scope(item) for item in items)
    return [scope for scope in parsed if scope is not None]


def allowed_categories(
    scopes: str | Iterable[str] | Sequence[Scope],
    categories: Iterable[str],
    *,
    in_patient_context: bool = True,
) -> frozenset[Category]:
    """Those of `categories` the scopes let the holder view.

    `in_patient_context` is False when the record asked for is not the patient of the
    token's launch context; ``patient/`` scopes then open nothing.
    """
    items = scopes.split() if isinstance(scopes, str) else list(scopes)
    parsed = [s for s in items if isinstance(s, Scope)]
    parsed += parse_scopes([s for s in items if isinstance(s, str)])
    usable = [s for s in parsed if in_patient_context or s.context != "patient"]
    allowed: set[Category] = set()
    for category in CATEGORY_RULES:
        if category not in categories:
            continue
        types = CATEGORY_RULES[category].resource_types
        if all(_letters(usable, rtype, category) >= set(VIEW_PERMISSIONS) for rtype in types):
            allowed.add(category)
    return frozenset(allowed)


def _letters(scopes: Sequence[Scope], rtype: str, category: Category) -> set[str]:
    """The permissions the scopes give together on `rtype`, as far as `category` goes."""
    letters: set[str] = set()
    for scope in scopes:
        if scope.resource in (rtype, "*") and _narrowing_keeps(scope, category):
            letters.update(scope.permissions)
    return letters


def _narrowing_keeps(scope: Scope, category: Category) -> bool:
    if not scope.params:
        return True
    # A narrowed scope opens a category only if the narrowing is exactly that category.
    return (
        category == "vital_signs"
        and scope.resource == "Observation"
        and len(scope.params) == 1
        and scope.params[0][0] == "category"
        and scope.params[0][1] in _VITAL_SIGNS_VALUES
    )


def _permissions(text: str, letters: str) -> str:
    if letters in V1_PERMISSIONS:
        return V1_PERMISSIONS[letters]
    if letters and _V2_PERMISSIONS.fullmatch(letters):
        return letters
    if letters and set(letters) <= set(PERMISSION_LETTERS):
        raise PermissionOrderError(text, "permissions must be distinct and in c, r, u, d, s order")
    raise MalformedScopeError(text, "permissions must be letters of cruds, or read/write/*")


def _params(text: str, query: str) -> tuple[tuple[str, str], ...]:
    params = []
    for part in query.split("&"):
        name, sep, value = part.partition("=")
        if not sep or not name or not value:
            raise MalformedScopeError(text, "parameters must be name=value pairs joined by &")
        params.append((unquote(name), unquote(value)))
    return tuple(params)
