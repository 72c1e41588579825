"""The closed vocabularies a consent and an access request are written in.

Codes follow FHIR R4 Consent where FHIR has a value set (status, scope, provision type,
action) and HL7 v3 PurposeOfUse for purposes. Actor roles are metaworld's own roles
(:mod:`metaworld.roles`); data classes are record categories or FHIR resource types.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from metaworld.records.categories import CATEGORIES, CATEGORIES_OF_TYPE

ConsentStatus = Literal["draft", "proposed", "active", "rejected", "inactive", "entered-in-error"]
STATUSES: Final = frozenset(get_args(ConsentStatus))

# `patient-privacy` speaks about any use; `research` only about research purposes.
ConsentScope = Literal["patient-privacy", "research"]
SCOPES: Final = frozenset(get_args(ConsentScope))

# Document kinds (LOINC) and v3 ActCode consent kinds accepted as Consent.category.
CONSENT_CATEGORIES: Final = frozenset(
    {
        "59284-0",  # LOINC: patient consent
        "57016-8",  # LOINC: privacy policy acknowledgment
        "64292-6",  # LOINC: release of information consent
        "INFA",  # v3: information access
        "INFAO",  # v3: access only
        "INFASO",  # v3: access and save only
        "IDSCL",  # v3: information disclosure
        "RESEARCH",  # v3: research information access
        "RSDID",  # v3: de-identified information access
    }
)

ProvisionType = Literal["deny", "permit"]
PROVISION_TYPES: Final = frozenset(get_args(ProvisionType))

Action = Literal["access", "collect", "use", "disclose", "correct"]
ACTIONS: Final = frozenset(get_args(Action))

# HL7 v3 PurposeOfUse codes a request may carry or a provision may name.
PURPOSES: Final = frozenset(
    {
        "TREAT",  # treatment
        "ETREAT",  # emergency treatment (break-the-glass)
        "CAREMGT",  # care management
        "CLINTRL",  # clinical trial (as treatment)
        "POPHLTH",  # population health
        "HRESCH",  # health research
        "CLINTRCH",  # clinical trial research
        "BIORCH",  # biomedical research
        "HPAYMT",  # payment
        "COVAUTH",  # coverage authorization
        "HOPERAT",  # health care operations
        "PATADMIN",  # patient administration
        "HSYSADMIN",  # system administration
        "HTEST",  # test health data
        "TRAIN",  # training
        "HMARKT",  # marketing
        "HLEGAL",  # legal
        "PUBHLTH",  # public health
        "PATRQT",  # patient requested
        "FAMRQT",  # family requested
        "PWATRNY",  # power of attorney
        "SUPNWK",  # support network
    }
)

# Purposes a provision covers only when it names them: a consent that permits "any
# purpose" does not thereby enrol the patient in research or marketing.
EXPLICIT_PURPOSES: Final = frozenset({"HRESCH", "CLINTRCH", "BIORCH", "HMARKT"})
RESEARCH_PURPOSES: Final = frozenset({"HRESCH", "CLINTRCH", "BIORCH"})

# What a provision's `class` may name: a record category or a resource type mapped to one.
DATA_CLASSES: Final = frozenset(CATEGORIES) | frozenset(CATEGORIES_OF_TYPE)
