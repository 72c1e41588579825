"""The record categories a consent speaks about, and which FHIR resources each holds.

A category is the unit of consent, of token scope and of the clinician's panel. The
table `CATEGORY_RULES` is the one place that maps FHIR resource types and codes to
categories; docs/consent.md reproduces it. A resource belongs to at most one category,
and resources of no category (labs, claims, care plans, ...) are stored but never shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

Category = Literal[
    "demographics",
    "vital_signs",
    "conditions",
    "medications",
    "immunizations",
    "allergies",
    "encounters",
]
CATEGORIES: Final[tuple[Category, ...]] = get_args(Category)

LOINC: Final = "http://loinc.org"
OBSERVATION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"

# The LOINC codes of the FHIR vital-signs profiles (panel, members and the paediatric
# percentiles), so an Observation missing its `vital-signs` category still counts.
VITAL_SIGNS_LOINC: Final = frozenset(
    {
        "85353-1",  # vital signs panel
        "9279-1",  # respiratory rate
        "8867-4",  # heart rate
        "2708-6",  # oxygen saturation in arterial blood
        "59408-5",  # oxygen saturation by pulse oximetry
        "8310-5",  # body temperature
        "8302-2",  # body height
        "9843-4",  # head occipital-frontal circumference
        "29463-7",  # body weight
        "39156-5",  # body mass index
        "85354-9",  # blood pressure panel
        "8480-6",  # systolic blood pressure
        "8462-4",  # diastolic blood pressure
        "59576-9",  # BMI percentile per age and sex
        "8289-1",  # head circumference percentile
        "77606-2",  # weight-for-length percentile
    }
)


@dataclass(frozen=True, slots=True)
class CategoryRule:
    """Which resources make up a category.

    A resource of one of `resource_types` belongs to the category, unless `codes` is
    set: then an Observation must carry the category code `observation_category` or
    one of `codes` (LOINC) in its `code`.
    """

    resource_types: tuple[str, ...]
    observation_category: str | None = None
    codes: frozenset[str] = frozenset()


CATEGORY_RULES: Final[Mapping[Category, CategoryRule]] = {
    "demographics": CategoryRule(("Patient",)),
    "vital_signs": CategoryRule(("Observation",), "vital-signs", VITAL_SIGNS_LOINC),
    "conditions": CategoryRule(("Condition",)),
    "medications": CategoryRule(("MedicationRequest", "MedicationStatement")),
    "immunizations": CategoryRule(("Immunization",)),
    "allergies": CategoryRule(("AllergyIntolerance",)),
    "encounters": CategoryRule(("Encounter",)),
}

# Resource type -> the categories it can fall in (Observation: only vital_signs so far).
CATEGORIES_OF_TYPE: Final[Mapping[str, tuple[Category, ...]]] = {
    rtype: tuple(c for c in CATEGORIES if rtype in CATEGORY_RULES[c].resource_types)
    for rule in CATEGORY_RULES.values()
    for rtype in rule.resource_types
}


def category_of(resource: Mapping[str, Any]) -> Category | None:
    """The category a (validated) FHIR resource belongs to, or None."""
    rtype = resource.get("resourceType")
    for category in CATEGORIES_OF_TYPE.get(str(rtype), ()):
        rule = CATEGORY_RULES[category]
        if not rule.codes or _has_code(resource, rule):
            return category
    return None


def _has_code(resource: Mapping[str, Any], rule: CategoryRule) -> bool:
    for concept in resource.get("category") or ():
        for coding in concept.get("coding") or ():
            if coding.get("code") == rule.observation_category and coding.get("system") in (
                OBSERVATION_CATEGORY,
                None,
            ):
                return True
    code = resource.get("code") or {}
    return any(
        coding.get("system") == LOINC and coding.get("code") in rule.codes
        for coding in code.get("coding") or ()
    )


# Where a resource keeps the time it is about; the first path present wins. A consent's
# data period is checked against this time, and views list the newest first.
DATE_PATHS: Final[Mapping[str, tuple[str, ...]]] = {
    "Observation": ("effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued"),
    "Condition": ("onsetDateTime", "onsetPeriod.start", "recordedDate"),
    "Encounter": ("period.start",),
    "Immunization": ("occurrenceDateTime", "recorded"),
    "MedicationRequest": ("authoredOn",),
    "MedicationStatement": ("effectiveDateTime", "effectivePeriod.start", "dateAsserted"),
    "AllergyIntolerance": ("onsetDateTime", "onsetPeriod.start", "recordedDate"),
}


def clinical_date(resource: Mapping[str, Any]) -> str | None:
    """The FHIR date or dateTime a resource is about, as written, or None."""
    for path in DATE_PATHS.get(str(resource.get("resourceType")), ()):
        value: Any = resource
        for step in path.split("."):
            value = value.get(step) if isinstance(value, Mapping) else None
        if isinstance(value, str):
            return value
    return None
